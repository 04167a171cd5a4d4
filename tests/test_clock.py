from __future__ import annotations

import asyncio
import itertools
import math
import subprocess
import sys
import time

import pytest

from asynclab import clock
from asynclab.clock import (
    MAX_SPEED,
    MIN_SPEED,
    about,
    at_speed,
    get_speed,
    now,
    set_speed,
    sleep,
    sleep_blocking,
    stopwatch,
)

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
    ("args", "error", "message"),
    [
        ((1.0, math.inf), ValueError, "expected must be a finite number, got inf"),
        ((math.inf, math.inf), ValueError, "measured must be a finite number, got inf"),
        ((math.nan, 1.0), ValueError, "measured must be a finite number, got nan"),
        ((1.0, 1.0, math.nan), ValueError, "rel must be a finite number, got nan"),
        ((1.0, 1.0, math.inf), ValueError, "rel must be a finite number, got inf"),
        ((1.0, 1.0, -0.1), ValueError, r"rel must be a finite number >= 0 \(0.05 is 5 %\), got -0.1"),
        (("1", 1.0), TypeError, "measured must be a finite number, got str '1'"),
        ((1.0, None), TypeError, "expected must be a finite number, got NoneType"),
    ],
)
def test_about_refuses_what_would_make_any_answer_pass_or_none(args: tuple[object, ...], error: type,
                                                               message: str) -> None:
    # about(1.0, inf) was True and about(x, y, rel=nan) always False: both hide a wrong check.
    with pytest.raises(error, match=message):
        about(*args)  # type: ignore[arg-type]


ALLOWED = r"a number from 0\.001 to 1,000,000 \(simulated seconds per wall second\)"


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (0, ValueError, f"speed must be {ALLOWED}, got 0$"),
        (-2.0, ValueError, f"speed must be {ALLOWED}, got -2.0$"),
        (1e18, ValueError, f"speed must be {ALLOWED}, got 1e\\+18$"),
        (MAX_SPEED * 1.01, ValueError, f"speed must be {ALLOWED}"),
        (MIN_SPEED / 2, ValueError, f"speed must be {ALLOWED}, got 0.0005$"),
        (float("inf"), ValueError, f"speed must be {ALLOWED}, got inf$"),
        (float("nan"), ValueError, f"speed must be {ALLOWED}, got nan$"),
        ("fast", TypeError, f"speed must be {ALLOWED}, got str 'fast'$"),
        (True, TypeError, f"speed must be {ALLOWED}, got bool True$"),
    ],
)
def test_a_bad_speed_is_refused_with_what_is_allowed(value: object, error: type, message: str) -> None:
    before, t0 = get_speed(), now()
    with pytest.raises(error, match=message):
        set_speed(value)  # type: ignore[arg-type]
    with pytest.raises(error, match=message), at_speed(value):  # type: ignore[arg-type]
        pass
    # Refused means untouched: the same speed, and simulated time went on without a jump.
    assert get_speed() == before
    assert 0 <= now() - t0 < 0.5 * before


@pytest.mark.parametrize("speed", [MIN_SPEED, MAX_SPEED])
def test_the_speed_bounds_themselves_are_allowed(speed: float) -> None:
    with at_speed(speed):
        assert get_speed() == speed


async def test_the_clock_stays_continuous_and_exact_after_the_fastest_speed() -> None:
    # At 1e18 the clock added whole hours per reading and stayed that coarse for good; at the
    # highest allowed speed the jump is only the wall time spent there, and later readings are
    # as fine as before.
    wall0 = time.perf_counter()
    t0 = now()
    with at_speed(MAX_SPEED):
        a, b = now(), now()
    t1 = now()
    wall = time.perf_counter() - wall0
    assert t0 <= a < b <= t1 <= t0 + wall * MAX_SPEED  # no jump beyond the wall time spent there
    readings = [now() for _ in range(1000)]
    assert readings == sorted(readings)
    assert min(b - a for a, b in itertools.pairwise(readings)) < 1e-3  # still fine-grained
    with at_speed(20), stopwatch() as sw:
        await sleep(0.5)
    # 0.5 simulated s is 25 ms of wall time at speed 20; a loaded 2-core VM wakes a timer up to
    # ~5 ms late, 0.1 simulated s.
    assert sw.elapsed == pytest.approx(0.5, abs=0.12)


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


@pytest.mark.parametrize("raw", ["zero", "-3", "0", "1e18", "nan", "inf", "0.0001"])
def test_asynclab_speed_from_the_environment_is_validated(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("ASYNCLAB_SPEED", raw)
    with pytest.raises(ValueError, match=f"^ASYNCLAB_SPEED must be {ALLOWED}, got '{raw}'$"):
        clock._speed_from_env()


@pytest.mark.parametrize(("raw", "speed"), [("25", 25.0), (" 50 ", 50.0), ("", 1.0), ("1e6", 1e6)])
def test_a_good_or_empty_asynclab_speed_is_used(monkeypatch: pytest.MonkeyPatch, raw: str, speed: float) -> None:
    monkeypatch.setenv("ASYNCLAB_SPEED", raw)
    assert clock._speed_from_env() == speed


def _run(code: str, speed: str) -> subprocess.CompletedProcess[str]:
    env = {"ASYNCLAB_SPEED": speed, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)


def test_a_bad_asynclab_speed_fails_the_first_clock_reading_not_the_import() -> None:
    # The import succeeds so that `python -m asynclab` can report the error in one line; the
    # first use of the clock raises it, naming the variable.
    done = _run("import asynclab\nprint('imported')\nasynclab.now()", "fast")
    assert done.stdout == "imported\n"
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ValueError: ASYNCLAB_SPEED must be a number from 0.001 to 1,000,000")
    assert "got 'fast'" in last and "asynclab.set_speed()" in last


def test_set_speed_repairs_a_clock_with_a_bad_asynclab_speed() -> None:
    code = (
        "import asynclab\n"
        "from asynclab import clock\n"
        "assert clock.speed_error() is not None\n"
        "with asynclab.at_speed(10):\n"
        "    print(asynclab.get_speed())\n"
        "try:\n"
        "    asynclab.get_speed()\n"
        "except ValueError as exc:\n"
        "    print('still bad:', 'ASYNCLAB_SPEED' in str(exc))\n"
        "asynclab.set_speed(5)\n"
        "print(asynclab.get_speed(), clock.speed_error(), asynclab.now() >= 0)\n"
    )
    done = _run(code, "1e18")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["10.0", "still bad: True", "5.0 None True"]


def test_blocking_sleep_of_a_huge_duration_does_not_overflow(monkeypatch: pytest.MonkeyPatch) -> None:
    # time.sleep(1e18) raises OverflowError; a blocking client with latency 1e18 must just block.
    # The fake sleep records the pieces and ends the wait after three of them.
    pieces: list[float] = []

    def fake_sleep(seconds: float) -> None:
        pieces.append(seconds)
        if len(pieces) == 3:
            raise KeyboardInterrupt  # stands for the learner interrupting the kernel

    monkeypatch.setattr(time, "sleep", fake_sleep)
    with at_speed(1), pytest.raises(KeyboardInterrupt):
        sleep_blocking(1e18)
    assert pieces == [clock._LONGEST_BLOCK] * 3


async def test_sleep_does_not_block_the_loop() -> None:
    with at_speed(50), stopwatch() as sw:
        await asyncio.gather(*(sleep(1.0) for _ in range(20)))
    assert sw.elapsed == pytest.approx(1.0, rel=0.05, abs=ABS)
