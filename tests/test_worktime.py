"""timed(): a function's value with where, when and how much CPU it ran."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

from asynclab import Timed, timed


def spin(seconds: float) -> int:
    """Busy for ``seconds`` of CPU; module-level so a spawned process can import it."""
    end = time.thread_time() + seconds
    n = 0
    while time.thread_time() < end:
        n += 1
    return n


def test_timed_returns_the_value_and_this_thread_and_process() -> None:
    ran = timed(divmod, 17, 5)
    assert ran.value == (3, 2)
    assert ran.pid == os.getpid() and ran.thread == threading.current_thread().name
    assert ran.start <= ran.end and ran.wall == ran.end - ran.start


def test_cpu_counts_computing_not_sleeping() -> None:
    slept = timed(time.sleep, 0.05)
    busy = timed(spin, 0.05)
    assert slept.cpu < 0.01 and slept.wall >= 0.05
    assert busy.cpu >= 0.05 and busy.share > 0.3  # a busy 2-core machine may take the core away for a while


def test_two_threads_share_the_gil_their_cpu_adds_up_to_the_wall_at_most() -> None:
    with ThreadPoolExecutor(2) as pool:
        started = time.perf_counter()
        runs = list(pool.map(lambda _: timed(spin, 0.1), range(2)))
        wall = time.perf_counter() - started
    assert all(run.thread != threading.current_thread().name for run in runs)
    # One thread at a time holds the GIL: together they computed no longer than the wall time
    # (5 % for the clocks' granularity).
    assert sum(run.cpu for run in runs) <= wall * 1.05


def test_a_process_pool_reports_its_workers_pid_on_the_same_clock() -> None:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        before = time.perf_counter()
        ran = pool.submit(timed, spin, 0.01).result()
        after = time.perf_counter()
    assert ran.pid != os.getpid() and ran.value > 0
    assert before <= ran.start <= ran.end <= after  # perf_counter is the machine's monotonic clock on Linux


def test_timed_refuses_what_it_cannot_call() -> None:
    with pytest.raises(TypeError, match="function must be callable, got int 3"):
        timed(3)  # type: ignore[arg-type]
    assert "Timed pid=" in repr(timed(int))
    assert isinstance(timed(int), Timed)
