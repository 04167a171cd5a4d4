"""Pipelines: items flow through stages joined by bounded queues, with N workers per stage.

    clean = Step(strip_markup, name="clean", latency=0.03)      # a function that takes time
    outcomes = await run_pipeline(pages, [clean, summarize, embed], workers=[1, 4, 2], maxsize=4)
    [o.value for o in outcomes if o.ok]                           # in input order
    [(o.item, o.stage, o.error) for o in outcomes if not o.ok]    # reported, never raised

A stage is any ``async`` function of one value (a service call, a :class:`Step`); its result
goes to the next stage. Each stage has its own workers and an input queue of at most
``maxsize`` items, so a fast stage waits for a slow one instead of piling up work (a preview
of backpressure). Shutdown uses sentinels: when every worker of a stage has stopped, the next
stage gets one sentinel per worker. (Python 3.13's ``Queue.shutdown()`` does the same job; this
module runs on 3.11.) An exception in a stage fails that item only: it is reported in its
:class:`Outcome` and the other items flow on.

Introduced in notebook 10.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from asynclab.clock import now
from asynclab.faults import Faults
from asynclab.latency import Latency
from asynclab.services.base import Service

__all__ = ["Outcome", "Step", "run_pipeline", "stage_name"]

Stage = Callable[[Any], Awaitable[Any]]


class Step(Service):
    """A processing step that takes simulated time: a plain function served like a service.

        clean = Step(strip_markup, name="clean", latency=0.03)
        text = await clean(page)       # 0.03 simulated seconds, a span "clean.run" in the trace

    function: a synchronous function of one argument; its result is the step's result. An
    exception it raises comes out of the call at once, as a client's validation error does
    (a service's own failures, from ``faults=``, still take the latency). name: default the
    function's name. latency, faults, capacity: see :class:`~asynclab.services.base.Service`.
    """

    default_name = "step"
    default_latency = 0.1

    def __init__(
        self,
        function: Callable[[Any], Any],
        *,
        name: str | None = None,
        latency: float | Latency | None = None,
        faults: Faults | None = None,
        capacity: int | None = None,
    ) -> None:
        if not callable(function):
            raise TypeError(f"function must be a function of one value, got {type(function).__name__} {function!r}")
        if inspect.iscoroutinefunction(function):
            raise TypeError(
                f"function must be a plain (synchronous) function: Step adds the waiting; got the async "
                f"function {function.__name__!r} (await it directly instead)"
            )
        own_name = getattr(function, "__name__", "")
        default = own_name if own_name.isidentifier() else None  # a lambda is "<lambda>"
        super().__init__(name=name if name is not None else default, latency=latency, faults=faults,
                         capacity=capacity)
        self.function = function

    async def __call__(self, value: Any) -> Any:
        """``function(value)``, after the step's latency; the span's key is the value (a text) or its repr."""
        key = value if isinstance(value, str) and value else repr(value)
        return await self._serve("run", key, self.function, value)

    def __repr__(self) -> str:
        return f"<Step {self.name} latency={self.latency!r} in_flight={self.in_flight} calls={self.calls}>"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one item: its result, or the stage that failed it and why.

    index: the item's position in the input. entered: when it was read from the input; left:
    when its last stage ended (simulated seconds, from :func:`asynclab.now`).
    """

    index: int
    item: Any
    value: Any
    error: Exception | None
    stage: str | None
    entered: float
    left: float

    @property
    def ok(self) -> bool:
        """True when every stage succeeded."""
        return self.error is None

    @property
    def latency(self) -> float:
        """Simulated seconds from entering the pipeline to leaving it (queues included)."""
        return self.left - self.entered


#: The sentinel a worker takes as "no more items: stop".
_DONE = object()


def stage_name(stage: object) -> str:
    """How a stage is named in outcomes: a service's ``name``, else the function's name."""
    name = getattr(stage, "name", None)
    if isinstance(name, str) and name:
        return name
    return str(getattr(stage, "__name__", type(stage).__name__))


def _check_stages(stages: object) -> list[Stage]:
    if isinstance(stages, (str, bytes)) or not isinstance(stages, Sequence):
        raise TypeError(f"stages must be a list of async functions of one value, got {type(stages).__name__}")
    if not stages:
        raise ValueError("stages must hold at least one async function, got an empty list")
    for i, stage in enumerate(stages):
        # An object with an async __call__ (a Step) is a stage too.
        if not callable(stage) or not (
            inspect.iscoroutinefunction(stage) or inspect.iscoroutinefunction(type(stage).__call__)
        ):
            raise TypeError(f"stages[{i}] must be an async function of one value (or a Step), got {stage!r}")
    return list(stages)


def _check_workers(workers: object, stages: int) -> list[int]:
    counts = [workers] * stages if isinstance(workers, int) and not isinstance(workers, bool) else workers
    if isinstance(counts, (str, bytes)) or not isinstance(counts, Sequence):
        raise TypeError(f"workers must be an int or a list of ints (one per stage), got {workers!r}")
    if len(counts) != stages:
        raise ValueError(f"workers must give one count per stage ({stages}), got {len(counts)}: {workers!r}")
    for count in counts:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"workers must be ints >= 1, got {workers!r}")
    return list(counts)


def _check_maxsize(maxsize: object) -> int:
    if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0:
        raise ValueError(f"maxsize must be an int >= 0 (0: unbounded queues), got {maxsize!r}")
    return maxsize


def _check_items(items: object) -> Iterable[Any] | AsyncIterable[Any]:
    if isinstance(items, (str, bytes)) or not isinstance(items, (Iterable, AsyncIterable)):
        raise TypeError(f"items must be a list (or any iterable) or an async iterable of items, got {items!r:.60}")
    return items


async def _each(items: Iterable[Any] | AsyncIterable[Any]) -> AsyncGenerator[Any, None]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


async def run_pipeline(
    items: Iterable[Any] | AsyncIterable[Any],
    stages: Sequence[Stage],
    *,
    workers: int | Sequence[int] = 1,
    maxsize: int = 0,
) -> list[Outcome]:
    """Pass every item through ``stages`` in order; one :class:`Outcome` per item, in input order.

        outcomes = await run_pipeline(docs, [clean, summarize, embed], workers=[1, 4, 2], maxsize=4)

    items: a list, or an async iterable read as the first queue takes them. workers: one count
    for every stage, or one per stage. maxsize: the bound of each queue (0: unbounded). The
    throughput is the slowest stage's, about ``min(workers_i / seconds_i)`` items per second. An
    ``Exception`` in a stage ends that item (``Outcome.error``, ``Outcome.stage``); anything else
    (cancellation) stops the whole pipeline, and no worker outlives the call.
    """
    chain = _check_stages(stages)
    counts = _check_workers(workers, len(chain))
    bound = _check_maxsize(maxsize)
    names = [stage_name(stage) for stage in chain]
    source = _check_items(items)
    queues: list[asyncio.Queue[Any]] = [asyncio.Queue(bound) for _ in chain]
    outcomes: dict[int, Outcome] = {}

    async def work(i: int) -> None:
        last = i == len(chain) - 1
        while (entry := await queues[i].get()) is not _DONE:
            index, item, value, entered = entry
            try:
                value = await chain[i](value)
            except Exception as exc:  # this item fails; the worker takes the next one
                outcomes[index] = Outcome(index, item, None, exc, names[i], entered, now())
                continue
            if last:
                outcomes[index] = Outcome(index, item, value, None, None, entered, now())
            else:
                await queues[i + 1].put((index, item, value, entered))

    async def crew(i: int) -> None:
        async with asyncio.TaskGroup() as group:
            for _ in range(counts[i]):
                group.create_task(work(i))
        # Every worker of stage i has stopped, so no item of it is still on its way: only now
        # may the next stage's workers be told to stop, one sentinel each.
        if i + 1 < len(chain):
            for _ in range(counts[i + 1]):
                await queues[i + 1].put(_DONE)

    count = 0
    async with asyncio.TaskGroup() as group:
        for i in range(len(chain)):
            group.create_task(crew(i))
        # The producer: a bounded first queue makes it read the input only as fast as the
        # pipeline takes it. (Should the input raise, the group cancels the workers.)
        async with contextlib.aclosing(_each(source)) as each:  # closed even if we are cancelled
            async for item in each:
                await queues[0].put((count, item, item, now()))
                count += 1
        for _ in range(counts[0]):
            await queues[0].put(_DONE)
    return [outcomes[index] for index in range(count)]
