from __future__ import annotations

import asyncio

import pytest

from asynclab import LLM, Faults, RateLimit, RateLimited, ServiceError, ServiceUnavailable, trace
from asynclab.faults import NotFound


async def test_an_error_rate_fails_about_that_share_of_requests(fast: float) -> None:
    llm = LLM(latency=0.01, faults=Faults(error_rate=0.3, seed=1))
    results = await asyncio.gather(*(llm.complete(f"q{i}") for i in range(200)), return_exceptions=True)
    failed = [r for r in results if isinstance(r, ServiceUnavailable)]
    assert 35 <= len(failed) <= 85  # 30 % of 200 = 60, binomial sd ≈ 6.5, so ±3.8 sd
    assert all(isinstance(r, str) for r in results if not isinstance(r, BaseException))
    assert llm.failures == len(failed)


async def test_the_same_seed_fails_the_same_requests_whatever_the_order(fast: float) -> None:
    async def failing(order: list[int]) -> set[int]:
        llm = LLM(latency=0.01, faults=Faults(error_rate=0.5, seed=9))
        results = await asyncio.gather(*(llm.complete(f"q{i}") for i in order), return_exceptions=True)
        return {i for i, r in zip(order, results, strict=True) if isinstance(r, Exception)}

    forward = await failing(list(range(40)))
    backward = await failing(list(reversed(range(40))))
    assert forward == backward
    assert 0 < len(forward) < 40


async def test_fail_first_fails_each_request_then_lets_a_retry_through(fast: float) -> None:
    llm = LLM(latency=0.05, faults=Faults(fail_first=2))
    with trace() as t:
        for _ in range(2):
            with pytest.raises(ServiceUnavailable, match=r"llm.complete failed .injected fault. on attempt \d"):
                await llm.complete("retry me")
        assert await llm.complete("retry me")
    assert [s.attempt for s in t.spans] == [1, 2, 3]
    assert [s.outcome for s in t.spans] == ["ServiceUnavailable", "ServiceUnavailable", "ok"]


async def test_a_hang_never_answers_until_cancelled(fast: float) -> None:
    llm = LLM(latency=0.05, faults=Faults(hang_rate=1.0))
    with trace() as t, pytest.raises(TimeoutError):
        await asyncio.wait_for(llm.complete("anyone there?"), timeout=0.5 / fast)
    assert t.spans[0].outcome == "cancelled"
    assert llm.in_flight == 0


async def test_a_rate_limit_answers_429_with_retry_after(fast: float) -> None:
    llm = LLM(latency=0.05, faults=Faults(rate_limit=RateLimit(3, per=1.0)))
    results = await asyncio.gather(*(llm.complete(f"q{i}") for i in range(5)), return_exceptions=True)
    limited = [r for r in results if isinstance(r, RateLimited)]
    assert len(limited) == 2
    assert all(0 < r.retry_after <= 1.0 for r in limited)
    assert limited[0].status == 429
    assert "retry after" in str(limited[0])


async def test_a_rate_limit_window_slides(fast: float) -> None:
    limit = RateLimit(2, per=0.5)
    assert limit.acquire() == 0.0
    assert limit.acquire() == 0.0
    wait = limit.acquire()
    assert 0 < wait <= 0.5
    await asyncio.sleep((wait + 0.05) / fast)
    assert limit.acquire() == 0.0


def test_errors_share_one_hierarchy_with_http_statuses() -> None:
    assert issubclass(ServiceUnavailable, ServiceError)
    assert issubclass(RateLimited, ServiceError)
    assert issubclass(NotFound, ServiceError)
    assert (ServiceUnavailable.status, RateLimited.status, NotFound.status) == (503, 429, 404)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: Faults(error_rate=1.5), ValueError, "error_rate must be between 0 and 1, got 1.5"),
        (lambda: Faults(hang_rate=-0.1), ValueError, "hang_rate must be between 0 and 1"),
        (lambda: Faults(error_rate="often"), TypeError, "error_rate must be a number between 0 and 1, got str"),
        (lambda: Faults(error_rate=0.7, hang_rate=0.6), ValueError, "error_rate \\+ hang_rate must be at most 1"),
        (lambda: Faults(fail_first=-1), ValueError, "fail_first must be an int >= 0, got -1"),
        (lambda: Faults(rate_limit=5), TypeError, "rate_limit must be a RateLimit or None, got int"),
        (lambda: RateLimit(0), ValueError, "calls must be an int >= 1, got 0"),
        (lambda: RateLimit(3, per=0), ValueError, "per must be a finite number of simulated seconds > 0"),
        (lambda: LLM(faults=0.2), TypeError, "faults must be a Faults plan or None, got float"),
    ],
)
def test_bad_fault_plans_are_refused(build: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        build()  # type: ignore[operator]
