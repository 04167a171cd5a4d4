from __future__ import annotations

import gc
from collections.abc import Iterator

import matplotlib
import pytest

matplotlib.use("Agg")

from asynclab.clock import at_speed

#: The speed the timing tests run at: 1 simulated second takes 20 ms of wall time.
TEST_SPEED = 50.0


@pytest.fixture
def fast() -> Iterator[float]:
    """Run the test at TEST_SPEED so simulated seconds cost little wall time.

    The heap is frozen first: after hundreds of tests it is large, and a generation-2
    collection that lands inside a timed block pauses the loop for up to ~0.2 s of wall time,
    10 simulated seconds at speed 50. Frozen objects are skipped by the collector, so the
    collections the test itself triggers stay short (and gc.freeze costs nothing, unlike
    gc.collect, which takes ~0.3 s per test once FastAPI is loaded).
    """
    gc.freeze()
    try:
        with at_speed(TEST_SPEED) as speed:
            yield speed
    finally:
        gc.unfreeze()
