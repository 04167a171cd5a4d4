"""Run a scheduler over a workload in virtual time: the same engine, no waiting.

    report = simulate(mixed_workload(200, rate=4.0), ContinuousBatcher(), GPUModel())
    report.throughput

Time jumps from one event to the next (a pass ends, a request arrives, a batcher's delay runs
out), so a workload of minutes runs in milliseconds and gives the same numbers every time: what
a capacity planner does before buying GPUs. The :class:`~asynclab.inference.server.InferenceServer`
runs the same engine in simulated seconds on the event loop, streaming tokens to clients.

Introduced in notebook 14.
"""

from __future__ import annotations

from collections.abc import Iterable

from asynclab.inference.engine import Engine, StepRecord
from asynclab.inference.model import GPUModel
from asynclab.inference.report import ServingReport
from asynclab.inference.requests import Request, Sequence
from asynclab.inference.schedulers import Scheduler

__all__ = ["simulate"]


def simulate(requests: Iterable[Request], scheduler: Scheduler, gpu: GPUModel | None = None) -> ServingReport:
    """Serve ``requests`` (each at its arrival) with ``scheduler`` on ``gpu``; report what happened."""
    pending = sorted(requests, key=lambda request: (request.arrival, request.id))
    if not pending or not all(isinstance(request, Request) for request in pending):
        raise TypeError("requests must be a non-empty iterable of Request")
    engine = Engine(scheduler, gpu or GPUModel())
    t, index = pending[0].arrival, 0
    while True:
        while index < len(pending) and pending[index].arrival <= t:
            engine.submit(Sequence(pending[index]))
            index += 1
        if engine.idle and index == len(pending):
            break
        decision = engine.plan(t)
        if isinstance(decision, StepRecord):
            engine.complete(decision)
            t = decision.end
            continue
        wakes = [decision] if decision is not None else []
        if index < len(pending):
            wakes.append(pending[index].arrival)
        if not wakes:
            raise RuntimeError(
                f"{scheduler!r} left {len(engine.waiting)} requests waiting with nothing running and "
                "no time to look again: a scheduler must run a pass or name a time"
            )
        t = min(wakes)
    name = getattr(scheduler, "name", type(scheduler).__name__)
    return ServingReport(name, tuple(engine.sequences), tuple(engine.steps))
