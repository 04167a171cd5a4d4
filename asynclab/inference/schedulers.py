"""Three ways an inference server turns waiting requests into batches: static, dynamic, continuous.

    StaticBatcher(batch_size=32, timeout=2.0)           # a full batch (or a timeout), run to its end
    DynamicBatcher(max_batch_size=32, max_queue_delay=0.1, preferred_sizes=(8, 16))   # Triton's
    ContinuousBatcher(max_num_seqs=32)                  # Orca / vLLM: decide again at every step

The engine (:mod:`asynclab.inference.engine`) asks its scheduler before every forward pass:
``schedule(t, waiting, running, gpu)`` sees the requests that have arrived and wait (first come,
first served; preempted ones first) and the running batch, and answers with a :class:`Step`
(run a pass now: who joins, who is preempted), a time (ask me again then, unless a request
arrives), or None (nothing to do until a request arrives).

Static and dynamic batching run a batch as one block until its *longest* sequence ends: a
sequence that finished early keeps its row (``rows``), computed and thrown away, and a request
that arrives meanwhile waits for the whole batch. Continuous batching schedules per decode
step: finished sequences leave at once, waiting ones join at the next step.

Introduced in notebook 14.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from typing import Protocol

from asynclab.inference.model import GPUModel
from asynclab.inference.requests import Sequence
from asynclab.latency import check_count, check_seconds

__all__ = ["ContinuousBatcher", "DynamicBatcher", "Scheduler", "StaticBatcher", "Step"]


@dataclass(slots=True)
class Step:
    """A scheduler's decision to run one forward pass now.

    admit: sequences that join the batch in this pass (their prefill; it makes their first
    token). preempt: running sequences that leave it and go back to the head of the queue
    (their KV cache is dropped: they are prefilled again, prompt and tokens so far, when they
    return). rows: the rows the pass computes when the batch is a fixed block (padding
    included); None: exactly the running sequences.
    """

    admit: list[Sequence] = field(default_factory=list)
    preempt: list[Sequence] = field(default_factory=list)
    rows: int | None = None


class Scheduler(Protocol):
    """What the engine asks before each forward pass (see the module docstring)."""

    name: str

    def schedule(
        self, t: float, waiting: Seq[Sequence], running: Seq[Sequence], gpu: GPUModel
    ) -> Step | float | None: ...


class _WholeBatch:
    """Shared by static and dynamic batching: while a batch runs, it runs to its longest sequence."""

    name = "batch"

    def __init__(self) -> None:
        self._rows = 0  # the width of the running block, padding included

    def schedule(
        self, t: float, waiting: Seq[Sequence], running: Seq[Sequence], gpu: GPUModel
    ) -> Step | float | None:
        if running:  # the block goes on until every row has finished; nobody joins
            return Step(rows=self._rows)
        if not waiting:
            return None
        decision = self._dispatch(t, waiting)
        if isinstance(decision, int):
            self._rows = self._width(decision)
            return Step(admit=list(waiting[:decision]), rows=self._rows)
        return decision

    def _dispatch(self, t: float, waiting: Seq[Sequence]) -> int | float:
        raise NotImplementedError  # pragma: no cover - each subclass decides

    def _width(self, size: int) -> int:
        return size


class StaticBatcher(_WholeBatch):
    """Wait for ``batch_size`` requests (or until the oldest waited ``timeout``), run them to the end.

    The batch is one fixed shape: a batch sent short by the timeout still computes
    ``batch_size`` rows (what a model compiled for one batch size does).
    """

    name = "static"

    def __init__(self, batch_size: int = 32, timeout: float = 2.0) -> None:
        super().__init__()
        self.batch_size = check_count(batch_size, "batch_size")
        self.timeout = check_seconds(timeout, "timeout")

    def _dispatch(self, t: float, waiting: Seq[Sequence]) -> int | float:
        if len(waiting) >= self.batch_size or t >= waiting[0].arrival + self.timeout:
            return min(len(waiting), self.batch_size)
        return waiting[0].arrival + self.timeout

    def _width(self, size: int) -> int:
        return self.batch_size

    def __repr__(self) -> str:
        return f"StaticBatcher(batch_size={self.batch_size}, timeout={self.timeout})"


class DynamicBatcher(_WholeBatch):
    """Triton's dynamic batcher: a batch goes when it is full or its oldest request waited ``max_queue_delay``.

    With ``preferred_sizes``, a batch of the largest preferred size that the queue can fill
    goes at once, without waiting for the delay. The batch then runs to its longest sequence.
    """

    name = "dynamic"

    def __init__(
        self, max_batch_size: int = 32, max_queue_delay: float = 0.1, preferred_sizes: Seq[int] = ()
    ) -> None:
        super().__init__()
        self.max_batch_size = check_count(max_batch_size, "max_batch_size")
        self.max_queue_delay = check_seconds(max_queue_delay, "max_queue_delay")
        sizes = tuple(check_count(size, "preferred_sizes[]") for size in preferred_sizes)
        if any(size > self.max_batch_size for size in sizes):
            raise ValueError(f"preferred_sizes must be at most max_batch_size={max_batch_size}, got {sizes}")
        self.preferred_sizes = tuple(sorted(set(sizes)))

    def _dispatch(self, t: float, waiting: Seq[Sequence]) -> int | float:
        n = len(waiting)
        if n >= self.max_batch_size:
            return self.max_batch_size
        formed = [size for size in self.preferred_sizes if size <= n]
        if formed:
            return formed[-1]
        if t >= waiting[0].arrival + self.max_queue_delay:
            return n
        return waiting[0].arrival + self.max_queue_delay

    def __repr__(self) -> str:
        return (
            f"DynamicBatcher(max_batch_size={self.max_batch_size}, max_queue_delay={self.max_queue_delay}, "
            f"preferred_sizes={self.preferred_sizes})"
        )


class ContinuousBatcher:
    """Orca's iteration-level scheduling, as vLLM does it: decide again before every decode step.

    Finished sequences have left already; waiting ones join (first come, first served) while
    the batch has fewer than ``max_num_seqs`` sequences and the KV cache (``gpu.kv_tokens``)
    has room for their prompt and one more token. When the running sequences' next tokens would
    overflow the cache, the youngest are preempted (their cache dropped, recomputed later) and
    nobody joins in that step. A request never overtakes an older one: none starves.
    """

    name = "continuous"

    def __init__(self, max_num_seqs: int = 32) -> None:
        self.max_num_seqs = check_count(max_num_seqs, "max_num_seqs")

    def schedule(
        self, t: float, waiting: Seq[Sequence], running: Seq[Sequence], gpu: GPUModel
    ) -> Step | float | None:
        keep = list(running)  # in the order they joined: the youngest last
        # Each running sequence writes one more token into the cache in this step.
        needed = sum(seq.kv_tokens + 1 for seq in keep)
        preempt: list[Sequence] = []
        while needed > gpu.kv_tokens and len(keep) > 1:
            victim = keep.pop()
            preempt.append(victim)
            needed -= victim.kv_tokens + 1
        admit: list[Sequence] = []
        limit = min(self.max_num_seqs, gpu.max_batch_size)
        if not preempt:  # a step that had to make room takes nobody new (vLLM does the same)
            for seq in waiting:
                if len(keep) + len(admit) >= limit or needed + seq.kv_tokens + 1 > gpu.kv_tokens:
                    break  # first come, first served: a later request never overtakes this one
                admit.append(seq)
                needed += seq.kv_tokens + 1
        if not keep and not admit:
            return None
        return Step(admit=admit, preempt=preempt)

    def __repr__(self) -> str:
        return f"ContinuousBatcher(max_num_seqs={self.max_num_seqs})"
