from __future__ import annotations

import asyncio
import time

import pytest

from asynclab import clock
from asynclab.clock import about, at_speed, get_speed, now, set_speed, sleep, sleep_blocking, stopwatch

# Tolerance for wall-timed claims: asyncio timers wake up to ~1-2 ms late on a loaded 2-core
# machine; at speed 50 that is 0.05-0.1 simulated seconds, hence abs=0.1 on top of 5 %.
ABS = 0.1


@pytest.mark.parametrize("speed", [10.0, 50.0, 200.0])
async def test_sleep_reports_the_same_simulated_time_at_any_speed(speed: float) -> None:
    with at_speed(speed):
        wall0 = time.perf_counter()
        with stopwatch() as sw:
            await sleep(1.0)
        wall = time.perf_counter() - wall0
    assert sw.elapsed == pytest.approx(1.0, rel=0.05, abs=ABS * speed / 50)
    # ...while the wall time really shrinks with the speed.
    assert wall == pytest.approx(1.0 / speed, rel=0.05, abs=0.005)


def test_blocking_sleep_blocks_the_thread_for_simulated_seconds() -> None:
    with at_speed(50), stopwatch() as sw:
        sleep_blocking(1.0)
    assert sw.elapsed == pytest.approx(1.0, rel=0.05, abs=ABS)


def test_at_speed_restores_the_previous_speed_even_after_an_error() -> None:
    before = get_speed()
    with pytest.raises(RuntimeError), at_speed(123):
        assert get_speed() == 123
        raise RuntimeError("boom")
    assert get_speed() == before


def test_simulated_time_never_jumps_when_the_speed_changes() -> None:
    before = get_speed()
    try:
        t0 = now()
        set_speed(1000)
        t1 = now()
        set_speed(1)
        t2 = now()
        assert t0 <= t1 <= t2
        assert t2 - t0 < 1.0  # no jump: a few microseconds of wall time passed
    finally:
        set_speed(before)


def test_stopwatch_reads_the_running_time_then_freezes() -> None:
    with at_speed(1000), stopwatch() as sw:
        sleep_blocking(1.0)
        running = sw.elapsed
    assert running > 0.9
    final = sw.elapsed
    assert sw.elapsed == final
    assert "stopped" in repr(sw)


def test_about_forgives_timer_lateness_but_not_a_wrong_answer() -> None:
    with at_speed(50):
        assert about(1.23, 1.2)
        assert not about(2.1, 1.2)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (0, ValueError, "speed must be a finite number > 0, got 0"),
        (-2.0, ValueError, "speed must be a finite number > 0, got -2.0"),
        (float("inf"), ValueError, "finite number > 0"),
        ("fast", TypeError, "speed must be a number > 0, got str 'fast'"),
        (True, TypeError, "speed must be a number > 0, got bool"),
    ],
)
def test_a_bad_speed_is_refused_with_what_is_allowed(value: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        set_speed(value)  # type: ignore[arg-type]
    with pytest.raises(error, match=message), at_speed(value):  # type: ignore[arg-type]
        pass


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (-1, ValueError, "seconds must be a finite number >= 0"),
        ("1s", TypeError, "seconds must be a number >= 0 .simulated seconds., got str '1s'"),
        (None, TypeError, "got NoneType"),
    ],
)
async def test_a_bad_sleep_duration_is_refused(value: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        await sleep(value)  # type: ignore[arg-type]
    with pytest.raises(error, match=message):
        sleep_blocking(value)  # type: ignore[arg-type]


def test_asynclab_speed_from_the_environment_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCLAB_SPEED", "zero")
    with pytest.raises(ValueError, match="ASYNCLAB_SPEED must be a number > 0"):
        clock._speed_from_env()
    monkeypatch.setenv("ASYNCLAB_SPEED", "-3")
    with pytest.raises(ValueError, match="ASYNCLAB_SPEED must be a finite number > 0, got -3"):
        clock._speed_from_env()
    monkeypatch.setenv("ASYNCLAB_SPEED", "25")
    assert clock._speed_from_env() == 25.0


async def test_sleep_does_not_block_the_loop() -> None:
    with at_speed(50), stopwatch() as sw:
        await asyncio.gather(*(sleep(1.0) for _ in range(20)))
    assert sw.elapsed == pytest.approx(1.0, rel=0.05, abs=ABS)
