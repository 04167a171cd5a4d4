"""A simulated inference server: many clients' streams, one GPU, batches chosen by a scheduler.

    server = InferenceServer(ContinuousBatcher(max_num_seqs=32))
    async for token in server.stream("Why do LLM apps wait?"):      # like LLM.stream
        print(token, end="")
    server.report()           # throughput, time to first token, GPU busy time of what it served

Each request opens a span (service ``"inference"``, operation ``"stream"``) in the current trace:
its wait is the time queued before it joined a batch, ``first_token`` when its prefill ended.
One engine task per server runs the passes in simulated seconds (:func:`~asynclab.clock.sleep_until`
on each pass's end, so timer lateness does not pile up); it starts with the first request and
ends when nothing is left, and it belongs to the server, not to the caller's task. Faults,
rate limits and capacity work as for every service (:class:`~asynclab.services.Service`).

Introduced in notebook 14.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Iterable

from asynclab import text
from asynclab.clock import now, sleep_until, timeout
from asynclab.faults import Faults
from asynclab.inference.engine import Engine, StepRecord
from asynclab.inference.model import GPUModel
from asynclab.inference.report import ServingReport
from asynclab.inference.requests import Request, Sequence
from asynclab.inference.schedulers import ContinuousBatcher, Scheduler
from asynclab.latency import check_count
from asynclab.services.base import Service, check_text
from asynclab.services.llm import run_model
from asynclab.services.vectorstores import nearest

__all__ = ["InferenceServer"]


class InferenceServer(Service):
    """Serve token streams from one simulated GPU, batched by ``scheduler`` (continuous by default).

    scheduler: a :class:`~asynclab.inference.schedulers.Scheduler`. gpu: the
    :class:`~asynclab.inference.model.GPUModel` (pass cost a + b·n, batch and KV-cache limits).
    faults, capacity, name: as for every service. One server serves one event loop at a time.
    """

    default_name = "inference"

    def __init__(
        self,
        scheduler: Scheduler | None = None,
        gpu: GPUModel | None = None,
        *,
        faults: Faults | None = None,
        capacity: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name, latency=0.0, faults=faults, capacity=capacity)
        self.scheduler = scheduler if scheduler is not None else ContinuousBatcher()
        self.gpu = gpu if gpu is not None else GPUModel()
        self.engine = Engine(self.scheduler, self.gpu)
        self._task: asyncio.Task[None] | None = None
        self._arrived: asyncio.Event | None = None
        self._woken: dict[Sequence, asyncio.Event] = {}
        nearest("warm up", 1)  # build the knowledge index now, not inside the first timed request

    # -- the client's side ---------------------------------------------------------------

    def stream(self, prompt: str, *, model: str = "assistant", max_tokens: int | None = None) -> AsyncIterator[str]:
        """The model's answer to ``prompt``, token by token as the batches make them (like ``LLM.stream``).

        max_tokens: stop the answer after this many tokens (None: the whole answer).
        """
        check_text(prompt, "prompt")
        tokens = text.tokenize(run_model(model, prompt)) or ["."]
        if max_tokens is not None:
            tokens = tokens[: check_count(max_tokens, "max_tokens")]
        return self._produce(f"{model}:{prompt}", len(text.tokenize(prompt)), tokens)

    def generate(self, prompt_tokens: int, output_tokens: int, *, key: str = "") -> AsyncIterator[str]:
        """A synthetic request of given lengths (a workload's), streamed as tokens ``" t0"``, ``" t1"``, …"""
        check_count(prompt_tokens, "prompt_tokens")
        check_count(output_tokens, "output_tokens")
        tokens = [f" t{index}" for index in range(output_tokens)]
        return self._produce(key or f"generate:{prompt_tokens}:{output_tokens}", prompt_tokens, tokens)

    async def complete(self, prompt: str, *, model: str = "assistant", max_tokens: int | None = None) -> str:
        """The whole answer at once (after its last token)."""
        return "".join([token async for token in self.stream(prompt, model=model, max_tokens=max_tokens)])

    async def replay(self, requests: Iterable[Request]) -> ServingReport:
        """Send each request at its arrival (relative to now), drain every stream; report what was served.

        Each request counts as arrived at its scheduled time, even when a busy loop wakes its
        client a little late (what a load generator does, so the lateness is not the server's).
        """
        pending = sorted(requests, key=lambda request: (request.arrival, request.id))
        start = now()

        async def client(request: Request) -> None:
            due = start + request.arrival
            await sleep_until(due)
            # Stamped with its scheduled time, as a load generator does: a client woken a few ms
            # late by a busy loop does not move the workload (no "coordinated omission").
            tokens = [f" t{index}" for index in range(request.output_tokens)]
            async for _ in self._produce(f"request {request.id}", request.prompt_tokens, tokens, arrival=due):
                pass

        first = len(self.engine.sequences)
        async with asyncio.TaskGroup() as group:
            for request in pending:
                group.create_task(client(request))
        return self.report(since=first)

    def report(self, since: int = 0) -> ServingReport:
        """What the server has served (requests from index ``since`` on): see :class:`ServingReport`."""
        served = [seq for seq in self.engine.sequences[since:] if seq.finished is not None]
        start = min((seq.arrival for seq in served), default=0.0)
        steps = tuple(step for step in self.engine.steps if step.start >= start)
        return ServingReport(self.scheduler.name, tuple(served), steps)

    async def _produce(
        self, key: str, prompt_tokens: int, tokens: list[str], arrival: float | None = None
    ) -> AsyncIterator[str]:
        span = self._open("stream", key, items=len(tokens))
        if arrival is not None:
            span.queued = span.start = min(arrival, span.start)
        await self._admit(span, prompt_tokens + len(tokens))
        seq: Sequence | None = None
        outcome = "cancelled"  # an early exit (break, aclose, cancel) lands here via finally
        try:
            fate = self.faults.decide(self.name, "stream", key, span.attempt) if self.faults.active else "ok"
            if fate == "hang":
                await asyncio.Event().wait()  # never set: only cancellation ends a hang
            arrived = now() if arrival is None else min(arrival, now())
            request = Request(len(self.engine.sequences), arrived, prompt_tokens, len(tokens))
            seq = Sequence(request)
            woken = self._woken[seq] = asyncio.Event()
            self.engine.submit(seq)
            self._kick()
            sent = 0
            while sent < len(tokens):
                if seq.generated <= sent:
                    woken.clear()
                    await woken.wait()
                    continue
                if sent == 0:
                    span.start = seq.admitted if seq.admitted is not None else now()
                    span.first_token = seq.token_times[0]
                if fate == "error" and sent == len(tokens) // 2:
                    raise self._fail(span, "stream broke mid-answer")
                yield tokens[sent]
                sent += 1
            outcome = "ok"
        finally:
            if seq is not None:
                self._woken.pop(seq, None)
                if not seq.done:
                    self.engine.cancel(seq)
            self._release()
            if span.end is None:
                self._finish(span, outcome)
                if outcome == "ok" and seq is not None and seq.finished is not None:
                    span.end = min(span.end or seq.finished, seq.finished)  # the pass's end, not our wake-up

    # -- the engine's side ---------------------------------------------------------------

    def _kick(self) -> None:
        """A request arrived: wake the engine, or start it (in a context of its own: it is the server's task)."""
        if self._task is None or self._task.done():
            # A fresh event per engine run: an asyncio.Event belongs to the loop that first waits on
            # it, and the next run may be on another loop (a new asyncio.run, a test).
            self._arrived = asyncio.Event()
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), name=f"{self.name} engine", context=contextvars.Context())
        assert self._arrived is not None
        self._arrived.set()

    async def _run(self) -> None:
        engine, arrived = self.engine, self._arrived
        assert arrived is not None  # set by _kick, which starts this task
        t = now()
        while not engine.idle:
            decision = engine.plan(t)
            if isinstance(decision, StepRecord):
                await sleep_until(decision.end)
                for seq in engine.complete(decision):
                    if seq in self._woken:
                        self._woken[seq].set()
                t = decision.end  # the engine's own timeline: a late wake-up does not delay the next pass
                continue
            wakes = [when for when in (decision, engine.next_arrival(t)) if when is not None]
            arrived.clear()
            if wakes and min(wakes) <= now():
                t = max(t, min(wakes))
                continue
            try:
                async with timeout(None if not wakes else min(wakes) - now()):
                    await arrived.wait()
                t = max(t, now())
            except TimeoutError:
                t = max(t, min(wakes))

    def __repr__(self) -> str:
        return (
            f"<InferenceServer {self.name} {self.scheduler!r}: {len(self.engine.waiting)} waiting, "
            f"{len(self.engine.running)} running, {len(self.engine.steps)} passes>"
        )
