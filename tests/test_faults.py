from __future__ import annotations

import asyncio
import math

import pytest

from asynclab import (
    LLM,
    BlockingLLM,
    Budget,
    Faults,
    RateLimit,
    RateLimited,
    RequestTooLarge,
    Service,
    ServiceError,
    ServiceUnavailable,
    now,
    trace,
)
from asynclab.faults import NotFound, format_duration, parse_duration
from asynclab.services.llm import run_model, token_usage
from asynclab.text import tokenize

# Allowance for reading a wait or a reset back: the calls in these tests take 0.05 simulated
# seconds, and between two reads of the clock the loop may wake a few ms late, 0.1 simulated
# seconds at speed 20 (conftest's TEST_SPEED).
TIME = 0.1


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
        (lambda: RateLimit(), TypeError, "RateLimit needs calls= .requests per window., tokens= .* got neither"),
        (lambda: RateLimit(tokens=0), ValueError, "tokens must be an int >= 1, got 0"),
        (lambda: RateLimit(5, tokens=2.5), TypeError, "tokens must be an int >= 1, got float"),
        (lambda: RateLimit(5).acquire(-1), ValueError, "tokens must be an int >= 0, got -1"),
        (lambda: RateLimit(tokens=10).acquire(11), RequestTooLarge, "needs 11 tokens, more than .*.10 tokens per 1 s."),
        (lambda: RateLimit(3, per=0), ValueError, "per must be a finite number of simulated seconds > 0"),
        (lambda: LLM(faults=0.2), TypeError, "faults must be a Faults plan or None, got float"),
    ],
)
def test_bad_fault_plans_are_refused(build: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        build()  # type: ignore[operator]


# -- rate limits as providers state them: requests and tokens per window ----------------------

PROMPTS = ["What is backpressure?", "Why stream tokens?", "How does a token bucket work?"]


def test_an_llm_call_counts_its_prompt_and_its_answer_in_tokens() -> None:
    for model in ("assistant", "summarizer", "sentiment"):
        prompt = PROMPTS[0]
        expected = len(tokenize(prompt)) + len(tokenize(run_model(model, prompt)))
        assert token_usage(model, prompt) == expected
        assert expected > len(tokenize(prompt))  # the answer counts too


async def test_a_token_budget_refuses_the_call_that_would_exceed_the_tokens_per_window(fast: float) -> None:
    used = [token_usage("assistant", p) for p in PROMPTS]
    limit = sum(used) - 1  # the first two calls fit, the third is one token short
    llm = LLM(latency=0.05, faults=Faults(rate_limit=RateLimit(tokens=limit, per=30)))
    first_admitted = now()
    await llm.complete(PROMPTS[0])
    assert llm.rate_limit_status()["tokens"].remaining == limit - used[0]
    second_admitted = now()
    await llm.complete(PROMPTS[1])
    with trace() as t, pytest.raises(RateLimited, match=r"llm.complete rate limited \(tokens\)") as refused:
        await llm.complete(PROMPTS[2])
    exc = refused.value
    assert (exc.kind, exc.limit, exc.remaining) == ("tokens", limit, limit - used[0] - used[1])
    assert exc.status == 429 and t.spans[0].outcome == "RateLimited"
    # Room for the third call once the first call's tokens leave the window (30 s after it was
    # admitted); the whole budget is back once the second call's tokens leave too.
    assert exc.retry_after == pytest.approx(first_admitted + 30 - now(), abs=TIME)
    assert exc.reset == pytest.approx(second_admitted + 30 - now(), abs=TIME)
    assert exc.budgets == {"tokens": Budget("tokens", limit, exc.remaining, exc.reset)}
    assert llm.rate_limit_status()["tokens"].remaining == exc.remaining  # a refused call counts nothing


async def test_a_request_budget_refuses_the_call_beyond_the_requests_per_window(fast: float) -> None:
    llm = LLM(latency=0.05, faults=Faults(rate_limit=RateLimit(calls=2, per=10, tokens=10_000)))
    first_admitted = now()
    await llm.complete(PROMPTS[0])
    second_admitted = now()
    await llm.complete(PROMPTS[1])
    with pytest.raises(RateLimited, match=r"rate limited \(requests\): more than 2 requests in 10 s") as refused:
        await llm.complete(PROMPTS[2])
    exc = refused.value
    assert (exc.kind, exc.limit, exc.remaining) == ("requests", 2, 0)
    assert exc.retry_after == pytest.approx(first_admitted + 10 - now(), abs=TIME)
    assert exc.reset == pytest.approx(second_admitted + 10 - now(), abs=TIME)
    tokens_left = 10_000 - token_usage("assistant", PROMPTS[0]) - token_usage("assistant", PROMPTS[1])
    assert exc.budgets["tokens"].remaining == tokens_left  # both kinds are reported
    headers = exc.headers()
    assert headers["Retry-After"] == "10"  # 9.9 simulated seconds, rounded up
    assert headers["x-ratelimit-limit-requests"] == "2" and headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-remaining-tokens"] == str(tokens_left)
    assert parse_duration(headers["x-ratelimit-reset-requests"]) == pytest.approx(exc.reset, abs=0.001)


async def test_when_both_budgets_refuse_the_longer_wait_decides(fast: float) -> None:
    limit = RateLimit(calls=2, per=10, tokens=100)
    assert limit.acquire(5) == 0.0
    await asyncio.sleep(1 / fast)
    second = now()
    assert limit.acquire(90) == 0.0
    # 20 more tokens: the requests budget has room once the first request leaves (~9 s), the
    # tokens budget only once the second request's 90 tokens leave too (~10 s).
    with pytest.raises(RateLimited) as refused:
        limit.admit(20, service="llm", operation="complete")
    assert refused.value.kind == "tokens"
    assert refused.value.retry_after == pytest.approx(second + 10 - now(), abs=TIME)
    assert limit.acquire(20) == pytest.approx(second + 10 - now(), abs=TIME)


def test_a_request_larger_than_the_whole_token_window_is_refused_for_good_not_rate_limited() -> None:
    llm = BlockingLLM(latency=0.01, faults=Faults(rate_limit=RateLimit(tokens=10, per=60)))
    prompt = "Explain why an LLM application spends most of its time waiting on the network."
    with trace() as t, pytest.raises(RequestTooLarge, match=r"llm.complete needs \d+ tokens, .* can never be admitted"):
        llm.complete(prompt)
    assert not issubclass(RequestTooLarge, RateLimited)  # a retry loop on RateLimited stops here
    assert RequestTooLarge.status == 413
    assert t.spans[0].outcome == "RequestTooLarge" and llm.failures == 1
    assert llm.rate_limit_status()["tokens"] == Budget("tokens", 10, 10, 0.0)  # nothing counted


def test_a_blocking_llm_counts_its_tokens_against_the_budget() -> None:
    used = token_usage("assistant", PROMPTS[0])
    llm = BlockingLLM(latency=0.0, faults=Faults(rate_limit=RateLimit(tokens=used, per=60)))
    llm.complete(PROMPTS[0])
    assert llm.rate_limit_status()["tokens"].remaining == 0
    with pytest.raises(RateLimited) as refused:
        llm.complete(PROMPTS[0])
    assert refused.value.kind == "tokens"


async def test_a_stream_counts_its_prompt_and_answer_tokens_before_the_first_token(fast: float) -> None:
    used = token_usage("assistant", PROMPTS[1])
    llm = LLM(faults=Faults(rate_limit=RateLimit(tokens=used, per=60)))
    assert [t async for t in llm.stream(PROMPTS[1])]
    stream = llm.stream(PROMPTS[1])
    with pytest.raises(RateLimited) as refused:
        await anext(stream)
    assert (refused.value.kind, refused.value.remaining) == ("tokens", 0)


async def test_one_rate_limit_is_one_budget_shared_by_the_services_given_it(fast: float) -> None:
    shared = RateLimit(calls=10, per=60, tokens=5_000)
    a, b = LLM(latency=0.01, faults=Faults(rate_limit=shared)), LLM(latency=0.01, faults=Faults(rate_limit=shared))
    await a.complete(PROMPTS[0])
    await b.complete(PROMPTS[1])
    status = b.rate_limit_status()
    assert status["requests"].remaining == 8
    assert status["tokens"].remaining == 5_000 - token_usage("assistant", PROMPTS[0]) - token_usage(
        "assistant", PROMPTS[1]
    )
    left = [(b.kind, b.limit, b.remaining) for b in shared.status().values()]
    assert [(b.kind, b.limit, b.remaining) for b in a.rate_limit_status().values()] == left
    assert "2 requests" in repr(shared) and "10 requests and 5000 tokens per 60 s" in repr(shared)


async def test_tokens_are_counted_only_when_the_budget_counts_tokens(fast: float) -> None:
    counted: list[str] = []

    class Echo(Service):
        async def echo(self, text: str) -> str:
            def count() -> int:
                counted.append(text)
                return 7

            return await self._serve("echo", text, str, text, tokens=count)

    assert await Echo(latency=0.01, faults=Faults(rate_limit=RateLimit(5))).echo("requests only") == "requests only"
    assert await Echo(latency=0.01).echo("no limit")
    assert counted == []  # nobody counts tokens: the count (for the LLM, its answer) is never made
    tokens = Echo(latency=0.01, faults=Faults(rate_limit=RateLimit(tokens=100)))
    await tokens.echo("tokens")
    assert counted == ["tokens"] and tokens.rate_limit_status()["tokens"].remaining == 93
    assert Echo().rate_limit_status() == {}


def test_headers_speak_openais_rate_limit_format() -> None:
    exc = RateLimited(
        "limited",
        retry_after=2.2,
        kind="tokens",
        budgets={
            "requests": Budget("requests", 500, 499, 0.25),
            "tokens": Budget("tokens", 30_000, 120, 360.0),
        },
    )
    assert (exc.limit, exc.remaining, exc.reset) == (30_000, 120, 360.0)
    assert exc.headers() == {
        "Retry-After": "3",
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-reset-requests": "250ms",
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "120",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    # A 429 rebuilt by a client that only saw Retry-After knows no budget.
    bare = RateLimited("limited", retry_after=0.2)
    assert (bare.kind, bare.limit, bare.remaining, bare.reset) == ("requests", None, None, None)
    assert bare.headers() == {"Retry-After": "1"}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.0004, "1ms"),  # rounded up: a client that waits this long is never early
        (0.1, "100ms"),
        (0.25, "250ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (59.9996, "1m0s"),
        (360, "6m0s"),
        (3723.004, "1h2m3.004s"),
    ],
)
def test_durations_are_written_like_x_ratelimit_reset_headers(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(math.ceil(round(seconds * 1000, 6)) / 1000)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: format_duration(-1), ValueError, "seconds must be a finite number >= 0, got -1"),
        (lambda: format_duration(math.nan), ValueError, "seconds must be a finite number >= 0, got nan"),
        (lambda: format_duration("1s"), TypeError, "seconds must be a number >= 0, got str"),
        (lambda: parse_duration("6 minutes"), ValueError, "text must be a duration such as '1s'"),
        (lambda: parse_duration("1s2"), ValueError, "got '1s2'"),
        (lambda: parse_duration(""), ValueError, "got ''"),
        (lambda: parse_duration(6), TypeError, "text must be a str such as '6m0s', got int"),
    ],
)
def test_bad_durations_are_refused(call: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        call()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("count", "error", "message"),
    [
        (lambda: -1, ValueError, "tokens must be an int >= 0, got -1"),  # refused by the budget
        (lambda: 1 // 0, ZeroDivisionError, "division"),  # the count itself fails
    ],
)
async def test_a_token_count_that_fails_closes_the_call_instead_of_leaving_it_running(
    fast: float, count: object, error: type, message: str
) -> None:
    class Broken(Service):
        async def echo(self, text: str) -> str:
            return await self._serve("echo", text, str, text, tokens=count)  # type: ignore[arg-type]

    broken = Broken(latency=0.01, faults=Faults(rate_limit=RateLimit(tokens=100)))
    with trace() as t, pytest.raises(error, match=message):
        await broken.echo("hello")
    assert t.spans[0].outcome == error.__name__ and broken.in_flight == 0


def test_a_retry_that_wakes_up_to_one_timer_lead_early_is_admitted(monkeypatch: pytest.MonkeyPatch) -> None:
    """asynclab.sleep aims TIMER_LEAD (wall) early; waiting exactly retry_after must always be enough."""
    from asynclab import faults
    from asynclab.clock import TIMER_LEAD, at_speed

    clock = [100.0]
    monkeypatch.setattr(faults, "now", lambda: clock[0])
    with at_speed(20):
        limit = RateLimit(1, per=0.5)
        limit.admit()
        wait = limit.acquire()
        assert wait == pytest.approx(0.5)
        clock[0] += wait - 0.9 * TIMER_LEAD * 20  # the sleep fired 0.9 of a lead early
        assert limit.acquire() == 0.0
        clock[0] += 0.5 - 2 * TIMER_LEAD * 20  # but a request well inside the window still waits
        assert limit.acquire() > 0
