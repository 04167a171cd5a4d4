"""A simulated inference server: one GPU, many requests, three ways to batch them.

    from asynclab.inference import ContinuousBatcher, GPUModel, InferenceServer, mixed_workload, simulate

    report = simulate(mixed_workload(200, rate=4.0), ContinuousBatcher(), GPUModel())
    server = InferenceServer(ContinuousBatcher())
    async for token in server.stream("Why do LLM apps wait?"):
        ...

One concept per module: :mod:`.model` (the cost of a pass, a + b·n), :mod:`.requests` (a request
and its progress), :mod:`.schedulers` (static, dynamic, continuous batching), :mod:`.engine`
(the queue and the running batch), :mod:`.simulate` (virtual time), :mod:`.server` (simulated
seconds, token streams), :mod:`.report` (the measures), :mod:`.workload` (a seeded workload),
:mod:`.plots` (the batch's membership over time).

Introduced in notebook 14.
"""

from __future__ import annotations

from asynclab.inference.engine import Engine, StepRecord
from asynclab.inference.model import GPUModel
from asynclab.inference.report import ServingReport, table
from asynclab.inference.requests import Request, Sequence
from asynclab.inference.schedulers import ContinuousBatcher, DynamicBatcher, Scheduler, StaticBatcher, Step
from asynclab.inference.server import InferenceServer
from asynclab.inference.simulate import simulate
from asynclab.inference.workload import mixed_workload

__all__ = [
    "ContinuousBatcher",
    "DynamicBatcher",
    "Engine",
    "GPUModel",
    "InferenceServer",
    "Request",
    "Scheduler",
    "Sequence",
    "ServingReport",
    "StaticBatcher",
    "Step",
    "StepRecord",
    "mixed_workload",
    "simulate",
    "table",
]
