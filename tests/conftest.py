from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import matplotlib
import pytest

matplotlib.use("Agg")

from asynclab.clock import at_speed

#: The speed most timing tests run at: 1 simulated second takes 50 ms of wall time. Not 50:
#: on this shared 2-core VM the loop now and then wakes 2-5 ms late, which at speed 50 is
#: 0.1-0.25 simulated seconds, as large as the effects under test. The Σ-vs-max law itself is
#: also checked at speed 50 (tests/test_base.py), with its allowance spelled out.
TEST_SPEED = 20.0


@pytest.fixture
def fast() -> Iterator[float]:
    """Run the test at TEST_SPEED so simulated seconds cost little wall time.

    The heap is frozen first: after hundreds of tests it is large, and a generation-2
    collection that lands inside a timed block pauses the loop for up to ~0.2 s of wall time,
    4 simulated seconds at speed 20. Frozen objects are skipped by the collector, so the
    collections the test itself triggers stay short (and gc.freeze costs nothing, unlike
    gc.collect, which takes ~0.3 s per test once FastAPI is loaded).
    """
    gc.freeze()
    try:
        with at_speed(TEST_SPEED) as speed:
            yield speed
    finally:
        gc.unfreeze()


@pytest.fixture(scope="module")
def postgres() -> Iterator[Any]:
    """A real Postgres + pgvector (``EmbeddedPostgres``) for one test module; skipped without the backends extra."""
    pytest.importorskip("asyncpg", reason="the backends extra is not installed")
    pytest.importorskip("pgserver", reason="the backends extra is not installed")
    from asynclab.backends import EmbeddedPostgres

    with EmbeddedPostgres() as server:
        yield server


@pytest.fixture
async def pool(postgres: Any) -> AsyncIterator[Any]:
    """An asyncpg pool of 4 connections to :func:`postgres`, all open before any timing starts."""
    import asyncpg

    pool = await asyncpg.create_pool(postgres.dsn, min_size=4, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()
