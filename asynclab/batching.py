"""Dynamic batching: many callers ask for one item each, and one request per batch goes out.

    async with MicroBatcher(emb.embed_batch, max_batch=32, max_wait=0.02) as batcher:
        vector = await batcher.submit("one chunk")      # from as many tasks as you like

A batch is sent when it holds ``max_batch`` items, or when its oldest item has waited
``max_wait`` simulated seconds, whichever comes first: what a model server's dynamic batcher
does (Triton's ``max_queue_delay_microseconds``, Ray Serve's ``@serve.batch(max_batch_size=...,
batch_wait_timeout_s=...)``). Each caller gets its own result, or the batch's error.

``max_concurrent`` caps the batches in flight (Ray Serve's ``max_concurrent_batches``, Triton's
model instances): while every slot is busy, requests keep arriving, so the next batch is larger.

Introduced in notebook 09 (whose exercise 2 writes the same loop by hand).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, TypeVar

from asynclab.clock import now, timeout
from asynclab.latency import check_count, check_seconds

__all__ = ["BatchRecord", "MicroBatcher"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One batch the batcher sent: how many items, when (simulated seconds), how long its oldest waited."""

    size: int
    sent: float
    oldest_wait: float


class _Request(Generic[T, R]):
    __slots__ = ("arrived", "future", "item")

    def __init__(self, item: T, future: asyncio.Future[R]) -> None:
        self.item = item
        self.future = future
        self.arrived = now()


#: Put in the queue by ``__aexit__``: no more requests; send what is left, then stop.
_CLOSE = None


class MicroBatcher(Generic[T, R]):
    """Combine single requests into batches for ``handler``, an async function of a list.

    handler: ``async (items: list[T]) -> Sequence[R]``, one result per item, in order (e.g.
    ``Embeddings.embed_batch``). max_batch: the most items in one batch (>= 1). max_wait:
    simulated seconds the oldest item of a batch may wait for more to join (>= 0; 0 sends what
    has arrived at once). max_concurrent: the most batches in flight at once (None: no limit).

    Use it as an ``async with`` block: the block owns the batcher's tasks. When the block ends,
    the batcher sends what is still waiting, waits for every batch in flight, and stops; when the
    block fails, its error comes out as it is, and the callers still waiting are cancelled.
    """

    def __init__(
        self,
        handler: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        max_batch: int,
        max_wait: float,
        max_concurrent: int | None = None,
    ) -> None:
        if not callable(handler):
            raise TypeError(
                f"handler must be an async function of a list (such as emb.embed_batch), got {type(handler).__name__}"
            )
        self.handler = handler
        self.max_batch = check_count(max_batch, "max_batch")
        self.max_wait = check_seconds(max_wait, "max_wait")
        self.max_concurrent = None if max_concurrent is None else check_count(max_concurrent, "max_concurrent")
        #: Every batch sent so far, in the order it was sent.
        self.batches: list[BatchRecord] = []
        self.in_flight = 0
        self._queue: asyncio.Queue[_Request[T, R] | None] = asyncio.Queue()
        self._collector: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._open = False

    # -- the callers' side ------------------------------------------------------------------------

    async def submit(self, item: T) -> R:
        """Wait for ``item``'s result: it joins the next batch. Raises what the batch's handler raised."""
        if not self._open:
            raise RuntimeError("submit() needs a running batcher: call it inside `async with MicroBatcher(...)`")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Request(item, future))
        return await future  # a cancelled caller cancels its future: the batch skips it

    # -- the block ----------------------------------------------------------------------------------

    async def __aenter__(self) -> MicroBatcher[T, R]:
        if self._collector is not None:
            raise RuntimeError("this MicroBatcher has already been used: make a new one")
        self._collector = asyncio.get_running_loop().create_task(self._collect(), name="MicroBatcher._collect")
        self._open = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Its own tasks, not a TaskGroup: a TaskGroup would wrap the block's own error in an ExceptionGroup.
        assert self._collector is not None
        self._open = False
        try:
            if exc_type is None:
                self._queue.put_nowait(_CLOSE)
                await self._collector  # it sends what is still waiting, then stops
                while self._sending:  # _send keeps its batch's errors: only a cancellation comes out
                    await asyncio.gather(*self._sending)
        finally:  # the block failed or was cancelled: stop everything, and nobody waits for ever
            leftover = [task for task in (self._collector, *self._sending) if not task.done()]
            for task in leftover:
                task.cancel()
            await asyncio.gather(*leftover, return_exceptions=True)
            self._fail_waiting()

    # -- the batcher's side -----------------------------------------------------------------------

    async def _collect(self) -> None:
        slots = asyncio.Semaphore(self.max_concurrent) if self.max_concurrent else None
        closing = False
        while not closing:
            if slots is not None:
                await slots.acquire()  # a free slot first: while we wait for it, the next batch grows
            first = await self._queue.get()
            if first is _CLOSE:
                if slots is not None:
                    slots.release()
                break
            batch = [first]
            try:
                # The window runs from the oldest request's arrival, not from the latest one's.
                async with timeout(max(first.arrived + self.max_wait - now(), 0.0)):
                    while len(batch) < self.max_batch:
                        request = await self._queue.get()  # cancellation-safe: no item is ever lost
                        if request is _CLOSE:
                            closing = True
                            break
                        batch.append(request)
            except TimeoutError:
                pass  # the oldest request has waited max_wait: send what we have
            waiting = [request for request in batch if not request.future.done()]  # skip cancelled callers
            if waiting:
                task = asyncio.get_running_loop().create_task(self._send(waiting, slots))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)
            elif slots is not None:
                slots.release()

    async def _send(self, batch: list[_Request[T, R]], slots: asyncio.Semaphore | None) -> None:
        sent = now()
        self.batches.append(BatchRecord(len(batch), sent, sent - batch[0].arrived))
        self.in_flight += 1
        try:
            results = await self.handler([request.item for request in batch])
            if len(results) != len(batch):
                raise ValueError(f"handler returned {len(results)} results for a batch of {len(batch)} items")
        except Exception as exc:  # the batch's error goes to its callers, not to the batcher
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(exc)
        else:
            for request, result in zip(batch, results, strict=True):
                if not request.future.done():
                    request.future.set_result(result)
        finally:
            self.in_flight -= 1
            for request in batch:  # cancelled while in flight: the callers are told so
                if not request.future.done():
                    request.future.cancel()
            if slots is not None:
                slots.release()

    def _fail_waiting(self) -> None:
        while not self._queue.empty():
            request = self._queue.get_nowait()
            if request is not _CLOSE and not request.future.done():
                request.future.cancel()

    def __repr__(self) -> str:
        waiting = self._queue.qsize()
        concurrent = "∞" if self.max_concurrent is None else str(self.max_concurrent)
        wait = "0" if self.max_wait == 0 else f"{self.max_wait:g}"
        sizes = [batch.size for batch in self.batches]
        mean = f"{sum(sizes) / len(sizes):.1f}" if sizes else "-"
        return (
            f"<MicroBatcher max_batch={self.max_batch} max_wait={wait} s waiting={waiting}"
            f" in_flight={self.in_flight}/{concurrent} batches={len(sizes)} mean size={mean}>"
        )
