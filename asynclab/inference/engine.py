"""The engine loop's bookkeeping: a queue, a running batch, and one forward pass at a time.

    engine = Engine(ContinuousBatcher(), GPUModel())
    engine.submit(Sequence(request))
    step = engine.plan(t)            # a StepRecord (a pass from t to step.end), a time, or None
    engine.complete(step)            # every sequence in the pass gets its token at step.end

The engine knows no clock: :func:`~asynclab.inference.simulate.simulate` drives it in virtual
time, :class:`~asynclab.inference.server.InferenceServer` in simulated seconds on the event
loop. Both therefore schedule exactly the same batches.

Introduced in notebook 14.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from asynclab.inference.model import GPUModel
from asynclab.inference.requests import Sequence
from asynclab.inference.schedulers import Scheduler, Step

__all__ = ["Engine", "StepRecord"]


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One forward pass: when, who was in the batch (request ids), its rows and its prefill."""

    start: float
    end: float
    members: tuple[int, ...]
    rows: int  # decode rows computed, padding included
    prefill_tokens: int
    admitted: tuple[int, ...]
    preempted: tuple[int, ...]

    @property
    def duration(self) -> float:
        return self.end - self.start


class Engine:
    """The queue and the running batch of one GPU, advanced one pass at a time by its scheduler."""

    def __init__(self, scheduler: Scheduler, gpu: GPUModel) -> None:
        if not callable(getattr(scheduler, "schedule", None)):
            raise TypeError(
                f"scheduler must have a schedule(t, waiting, running, gpu) method, got {type(scheduler).__name__}"
            )
        if not isinstance(gpu, GPUModel):
            raise TypeError(f"gpu must be a GPUModel, got {type(gpu).__name__}")
        self.scheduler, self.gpu = scheduler, gpu
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.sequences: list[Sequence] = []
        self.steps: list[StepRecord] = []

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.running

    def submit(self, seq: Sequence) -> None:
        """Queue a request; one that could never fit in the KV cache is refused at once."""
        need = seq.request.prompt_tokens + seq.request.output_tokens
        if need > self.gpu.kv_tokens:
            raise ValueError(
                f"request {seq.id} needs {need} KV-cache tokens (prompt + output), more than "
                f"kv_tokens={self.gpu.kv_tokens} holds"
            )
        self.sequences.append(seq)
        self.waiting.append(seq)

    def cancel(self, seq: Sequence) -> None:
        """The client went away: drop the request, queued or running."""
        seq.cancelled = True
        if seq in self.waiting:
            self.waiting.remove(seq)
        if seq in self.running:
            self.running.remove(seq)

    def next_arrival(self, t: float) -> float | None:
        """The earliest arrival still in the future of ``t`` (a server's clock may run ahead of the engine's)."""
        later = [seq.arrival for seq in self.waiting if seq.arrival > t]
        return min(later, default=None)

    def plan(self, t: float) -> StepRecord | float | None:
        """Ask the scheduler at time ``t``: a pass starting now, a time to ask again, or None."""
        waiting = self.waiting
        if not waiting or waiting[-1].request.arrival <= t:  # the usual case: all have arrived (a C copy)
            ready = tuple(waiting)
        else:
            ready = tuple(seq for seq in waiting if seq.request.arrival <= t)
        decision = self.scheduler.schedule(t, ready, tuple(self.running), self.gpu)
        if decision is None:
            return None
        if not isinstance(decision, Step):
            if isinstance(decision, bool) or not isinstance(decision, (int, float)) or decision <= t:
                raise ValueError(
                    f"{type(self.scheduler).__name__}.schedule must return a Step, None, or a time later "
                    f"than t={t:.4f}, got {decision!r}"
                )
            return float(decision)
        return self._start(t, decision)

    def _start(self, t: float, step: Step) -> StepRecord:
        for seq in step.preempt:
            if seq not in self.running:
                raise ValueError(f"the scheduler preempted request {seq.id}, which is not running")
            self.running.remove(seq)
            seq.preemptions += 1
        self.waiting.extendleft(reversed(step.preempt))  # back at the head, oldest first
        for seq in step.admit:
            if seq not in self.waiting or seq in step.preempt:
                raise ValueError(f"the scheduler admitted request {seq.id}, which is not waiting")
            self.waiting.remove(seq)
        decoding = len(self.running) if step.rows is None else step.rows
        if step.rows is not None and step.admit:
            # A block's prefill pads every prompt to the longest: rows × longest prompt.
            prefill, decoding = step.rows * max(seq.kv_tokens for seq in step.admit), 0
        else:
            prefill = sum(seq.kv_tokens for seq in step.admit)  # a preempted one recomputes its tokens too
        cost = self.gpu.step_cost(decode=decoding, prefill_tokens=prefill)
        for seq in step.admit:
            if seq.admitted is None:
                seq.admitted = t
        self.running.extend(step.admit)
        record = StepRecord(
            start=t,
            end=t + cost,
            members=tuple(seq.id for seq in self.running),
            rows=max(decoding, len(step.admit)) if step.rows is None else step.rows,
            prefill_tokens=prefill,
            admitted=tuple(seq.id for seq in step.admit),
            preempted=tuple(seq.id for seq in step.preempt),
        )
        self.steps.append(record)
        return record

    def complete(self, record: StepRecord) -> list[Sequence]:
        """The pass is over: each running sequence gets its next token at ``record.end``. Returns them."""
        served = []
        for seq in list(self.running):
            if seq.cancelled:
                self.running.remove(seq)
                continue
            if seq.generated < seq.request.output_tokens:
                seq.generated += 1
                seq.token_times.append(record.end)
                served.append(seq)
            if seq.generated >= seq.request.output_tokens:
                seq.finished = record.end
                self.running.remove(seq)
        return served

    def __repr__(self) -> str:
        return (
            f"<Engine {self.scheduler!r}: {len(self.waiting)} waiting, {len(self.running)} running, "
            f"{len(self.steps)} passes>"
        )
