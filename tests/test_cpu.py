"""asynclab.cpu: CPU-bound work a process pool can run."""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from asynclab.cpu import MAX_LIMIT, count_primes


def test_count_primes_counts_the_primes_below_the_limit() -> None:
    assert [count_primes(n) for n in (0, 1, 2, 3, 4, 11, 12)] == [0, 0, 0, 1, 2, 4, 5]
    assert count_primes(20_000) == 2262


@pytest.mark.parametrize(("limit", "error"), [(-1, ValueError), (MAX_LIMIT + 1, ValueError), (1.5, TypeError)])
def test_count_primes_refuses_a_limit_that_is_not_a_sensible_int(limit: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="limit"):
        count_primes(limit)  # type: ignore[arg-type]


async def test_a_spawned_process_pool_can_import_and_run_it() -> None:
    # What notebook 13 does: a fresh interpreter finds the function by name.
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert await asyncio.get_running_loop().run_in_executor(pool, count_primes, 1000) == 168
