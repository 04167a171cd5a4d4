"""asynclab.timeout and asynclab.wait_for: asyncio's deadlines, in simulated seconds."""

from __future__ import annotations

import asyncio
import math
import warnings

import pytest

import asynclab
from asynclab import LLM, Timeout, at_speed, now, sleep, stopwatch, timeout, trace, wait_for


def _slack(speed: float) -> float:
    """Allowance for a deadline measured in simulated seconds: 10 ms of wall time.

    A 2-core VM shared with other test runs wakes a timer up to ~8 ms late (measured), 0.08
    simulated seconds at speed 10 and 0.4 at speed 50. The claims stay sharp: a deadline read
    as wall seconds would fire 10 or 50 times later, one divided by the speed twice 10 or 50
    times earlier.
    """
    return 0.010 * speed


@pytest.mark.parametrize("speed", [10.0, 50.0])
async def test_timeout_cancels_the_block_after_simulated_seconds_at_any_speed(speed: float) -> None:
    with at_speed(speed), stopwatch() as sw, pytest.raises(TimeoutError) as raised:
        async with timeout(0.5) as cm:
            await sleep(10)
    assert type(raised.value) is TimeoutError  # the builtin, as asyncio.timeout raises it
    assert cm.expired()
    assert sw.elapsed == pytest.approx(0.5, abs=_slack(speed))


@pytest.mark.parametrize("speed", [10.0, 50.0])
async def test_a_block_that_ends_in_time_is_not_touched(speed: float) -> None:
    with at_speed(speed), stopwatch() as sw:
        async with timeout(1.0) as cm:
            await sleep(0.3)
            result = "done"
    assert result == "done" and not cm.expired()
    assert sw.elapsed == pytest.approx(0.3, abs=_slack(speed))


async def test_none_means_no_timeout() -> None:
    with at_speed(50):
        async with timeout(None) as cm:
            await sleep(0.5)
        assert cm.when() is None and not cm.expired()
        assert await wait_for(sleep(0.2), None) is None


async def test_a_timed_out_service_call_ends_cancelled_in_the_trace() -> None:
    llm = LLM(latency=2.0)
    with at_speed(50), trace() as t, pytest.raises(TimeoutError):
        async with timeout(0.5):
            await llm.complete("What is a deadline?")
    assert [span.outcome for span in t.spans] == ["cancelled"]
    assert llm.in_flight == 0


async def test_when_and_reschedule_speak_simulated_seconds() -> None:
    with at_speed(50), stopwatch() as sw, pytest.raises(TimeoutError):
        async with timeout(0.4) as cm:
            start = now()
            assert cm.when() == pytest.approx(start + 0.4, abs=0.05)
            cm.reschedule(now() + 1.0)  # one more simulated second from here
            assert cm.when() == pytest.approx(start + 1.0, abs=0.05)
            await sleep(10)
    assert sw.elapsed == pytest.approx(1.0, abs=_slack(50))


async def test_reschedule_to_none_removes_the_deadline_and_before_entering_it_is_kept() -> None:
    with at_speed(50):
        cm = timeout(0.1)
        cm.reschedule(now() + 0.8)  # before the block starts: stored and used on entry
        with stopwatch() as sw, pytest.raises(TimeoutError):
            async with cm:
                await sleep(10)
        assert sw.elapsed == pytest.approx(0.8, abs=_slack(50))
        async with timeout(0.1) as cm2:
            cm2.reschedule(None)
            await sleep(0.3)  # longer than the first deadline
        assert not cm2.expired()
        with pytest.raises(RuntimeError):
            cm2.reschedule(now() + 1)  # the block is over, as with asyncio's Timeout


async def test_a_timeout_cannot_be_entered_twice() -> None:
    cm = timeout(1)
    async with cm:
        pass
    with pytest.raises(RuntimeError, match="already been entered"):
        async with cm:
            pass


async def test_zero_seconds_cancels_at_the_first_wait() -> None:
    with at_speed(50), pytest.raises(TimeoutError):
        async with timeout(0):
            await sleep(0.1)


async def test_an_inner_timeout_does_not_trip_an_outer_one() -> None:
    with at_speed(50), stopwatch() as sw:
        async with timeout(2.0) as outer:
            with pytest.raises(TimeoutError):
                async with timeout(0.2):
                    await sleep(5)
            await sleep(0.2)
    assert not outer.expired()
    assert sw.elapsed == pytest.approx(0.4, abs=2 * _slack(50))


@pytest.mark.parametrize("speed", [10.0, 50.0])
async def test_wait_for_returns_the_result_or_raises_timeout_error(speed: float) -> None:
    llm = LLM(latency=1.2)
    with at_speed(speed):
        answer = await wait_for(llm.complete("What is a token?"), 2.0)
        with stopwatch() as sw, pytest.raises(TimeoutError) as raised:
            await wait_for(llm.complete("What is a token?"), 0.5)
    assert answer == await LLM(latency=0).complete("What is a token?")
    assert type(raised.value) is TimeoutError
    assert sw.elapsed == pytest.approx(0.5, abs=_slack(speed))


async def test_wait_for_cancels_a_task_that_runs_too_long() -> None:
    with at_speed(50):
        task = asyncio.ensure_future(sleep(10))
        with pytest.raises(TimeoutError):
            await wait_for(task, 0.2)
    assert task.cancelled()


BAD_SECONDS = [
    (-1, ValueError, r"seconds must be a finite number of simulated seconds >= 0, or None for no timeout; got -1$"),
    (math.nan, ValueError, r"seconds must be a finite number .* got nan$"),
    (math.inf, ValueError, r"seconds must be a finite number .* got inf$"),
    ("1", TypeError, r"seconds must be a number of simulated seconds >= 0, or None for no timeout; got str '1'$"),
    (True, TypeError, r"seconds must be a number .* got bool True$"),
]


@pytest.mark.parametrize(("seconds", "error", "message"), BAD_SECONDS)
async def test_a_bad_timeout_is_refused_naming_seconds(seconds: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        timeout(seconds)  # type: ignore[arg-type]


@pytest.mark.parametrize(("seconds", "error", "message"), BAD_SECONDS)
async def test_wait_for_refuses_a_bad_timeout_and_closes_the_coroutine(seconds: object, error: type,
                                                                        message: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would fail the test
        coroutine = sleep(1)
        with pytest.raises(error, match=message):
            await wait_for(coroutine, seconds)  # type: ignore[arg-type]
        assert coroutine.cr_frame is None  # closed


async def test_wait_for_refuses_what_cannot_be_awaited() -> None:
    with pytest.raises(TypeError, match=r"aw must be awaitable \(a coroutine, task or future\), got function"):
        await wait_for(sleep, 1)  # type: ignore[arg-type]


async def test_reschedule_refuses_a_bad_deadline() -> None:
    async with timeout(1) as cm:
        with pytest.raises(ValueError, match="when must be a finite simulated time from now"):
            cm.reschedule(math.nan)
        with pytest.raises(TypeError, match=r"when must be a simulated time from now.*got str"):
            cm.reschedule("soon")  # type: ignore[arg-type]


def test_timeout_needs_no_running_loop_to_be_made_and_shows_its_state() -> None:
    cm = timeout(2.0)
    assert isinstance(cm, Timeout)
    assert repr(cm).startswith("<Timeout created when=") and "(simulated)" in repr(cm)
    assert asynclab.timeout is timeout and asynclab.wait_for is wait_for
