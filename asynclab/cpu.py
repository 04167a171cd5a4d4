"""CPU-bound work, for the lessons that move it off the event loop.

    count_primes(20_000)        # 2262: pure-Python arithmetic, no I/O, nothing to await

    with ProcessPoolExecutor(mp_context=multiprocessing.get_context("spawn")) as pool:
        primes = await asyncio.get_running_loop().run_in_executor(pool, count_primes, 20_000)

A process pool sends the function to its worker by name (pickled), so the worker must be able
to import it. With the ``spawn`` start method (Windows and macOS; Linux moves to ``forkserver``
in Python 3.14) a function defined in a notebook cell cannot be imported by the worker: the
CPU-bound work of the lessons lives here.

Introduced in notebook 13.
"""

from __future__ import annotations

import math

from asynclab.latency import check_count

__all__ = ["MAX_LIMIT", "count_primes"]

#: The largest ``limit`` :func:`count_primes` takes: about a minute of CPU; more is a typo.
MAX_LIMIT = 10_000_000


def count_primes(limit: int) -> int:
    """How many primes are below ``limit``, by trial division in pure Python.

    Work that only computes: it holds the GIL and never awaits, so on the event loop it stops
    every other task until it returns. Its cost grows like limit^1.5 (about 40 ms of CPU for 20,000).
    """
    limit = check_count(limit, "limit", minimum=0)
    if limit > MAX_LIMIT:
        raise ValueError(f"limit must be at most {MAX_LIMIT:,} (about a minute of CPU), got {limit:,}")
    return sum(all(k % d for d in range(2, math.isqrt(k) + 1)) for k in range(2, limit))
