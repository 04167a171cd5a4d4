"""The shared mechanics of every simulated service, written once.

A call to any service goes through the same four steps:

1. open a span in the current trace (:mod:`asynclab.tracing`);
2. pass the rate limit (requests and tokens), then wait for a free slot if the service is at
   capacity (capacity holds per event loop: see :class:`Service`);
3. take its latency in simulated seconds (an injected fault fails or hangs here);
4. compute a real, deterministic result (inside the latency, not on top of it).

A subclass adds only what makes it that service: its operations, their arguments and results.

Introduced in notebook 00.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar, cast

from asynclab.clock import now, sleep_blocking, wall_until
from asynclab.faults import Budget, Faults, ServiceError, ServiceUnavailable
from asynclab.latency import Latency, as_latency, check_count
from asynclab.tracing import Span, record

__all__ = ["BLOCKING_HANG", "Service", "check_text"]

T = TypeVar("T")

#: A blocked thread cannot be cancelled, so a hang in a blocking client ends after this many
#: simulated seconds with ServiceUnavailable: the price the blocking lessons make visible.
BLOCKING_HANG = 30.0


#: The context the wake-up timers of :func:`_alarm` run in: they read no context variable, and
#: passing one saves asyncio a copy of the caller's context per call.
_NO_CONTEXT = contextvars.Context()


def _wake(alarm: asyncio.Future[None]) -> None:
    if not alarm.done():  # cancelled meanwhile: nothing to wake
        alarm.set_result(None)


def _alarm(deadline: float) -> tuple[asyncio.Future[None], asyncio.TimerHandle]:
    """What ``asyncio.sleep`` does, without its coroutine: a future the loop resolves at ``deadline``.

    ``deadline`` is in simulated seconds (see :func:`~asynclab.clock.wall_until`). Awaiting the
    future directly costs one object less per call than ``await asyncio.sleep(...)`` (its
    coroutine), and the timer runs in :data:`_NO_CONTEXT` instead of a copy of the caller's
    context: in a 100,000-call fan-out those objects are what the garbage collector scans.
    """
    loop = asyncio.get_running_loop()
    alarm = loop.create_future()
    return alarm, loop.call_at(loop.time() + wall_until(deadline), _wake, alarm, context=_NO_CONTEXT)


class _Answer(asyncio.Future[Any]):
    """One plain call in flight (no capacity, rate limit or fault plan): the future its caller awaits.

    The call's state rides on the future, and the loop's timer delivers the outcome at the
    call's deadline (:func:`_deliver`), so such a call needs no coroutine of its own: in a
    100,000-call fan-out that is 100,000 coroutine frames fewer to create, resume and scan.
    Cancelling it (a timeout, a TaskGroup) ends its span at once, as in the coroutine path.
    """

    __slots__ = ("outcome", "service", "span", "timer")

    def __init__(self, service: Service, span: Span, outcome: object, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        super().__init__(loop=loop)
        self.service, self.span, self.outcome = service, span, outcome
        when = loop.time() + wall_until(deadline)
        self.timer = loop.call_at(when, _deliver, self, context=_NO_CONTEXT)

    def cancel(self, msg: Any | None = None) -> bool:
        if not super().cancel(msg):
            return False  # answered already
        self.timer.cancel()
        self.service._release()
        self.service._finish(self.span, "cancelled")
        return True


def _deliver(answer: _Answer) -> None:
    """The deadline of a plain call: close its span, then hand its result (or error) to the caller."""
    if answer.done():
        return
    service, outcome = answer.service, answer.outcome
    service._release()
    if isinstance(outcome, ServiceError):  # a "not found" takes its time too
        service._finish(answer.span, type(outcome).__name__)
        answer.set_exception(outcome)
    else:
        service._finish(answer.span)
        answer.set_result(outcome)


class _LoopSlots:
    """``capacity`` slots in each event loop that calls the service, made on first use.

    An ``asyncio.Semaphore`` belongs to the first loop that waits on it; a second loop gets
    "bound to a different event loop". A notebook calls a service from the kernel's loop and
    from a :class:`~asynclab.serving.BackgroundServer`'s loop at once, so each loop gets its own.
    """

    __slots__ = ("_by_loop", "_lock", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # Weak keys: a closed loop (one per asyncio.run, per test) takes its slots with it.
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._by_loop = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()  # two loops in two threads may ask at once

    def here(self) -> asyncio.Semaphore:
        """The slots of the running loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            slots = self._by_loop.get(loop)
            if slots is None:
                slots = self._by_loop[loop] = asyncio.Semaphore(self.capacity)
            return slots

    def release(self) -> None:
        # No running loop: a stream closed by hand after its loop ended; its loop's slots are gone.
        with contextlib.suppress(RuntimeError):
            self.here().release()


def check_text(value: object, name: str) -> str:
    """Validate a text argument: a non-empty ``str``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__} {value!r}")
    if not value.strip():
        raise ValueError(f"{name} must be a non-empty str, got {value!r}")
    return value


class Service:
    """Latency, faults, capacity and tracing for one simulated service.

    name: how the service appears in traces and plots. latency: simulated seconds per call, a
    number or a latency model. faults: a :class:`Faults` plan (none by default); its
    ``rate_limit`` may count requests and tokens (see :meth:`rate_limit_status`). capacity: how
    many calls the service serves at once; more calls queue inside it (None: unlimited).

    Capacity holds *per event loop*: calls from the kernel's loop and calls through a
    :class:`~asynclab.serving.BackgroundServer` (its own loop, in its own thread) each get
    ``capacity`` slots, like two replicas of the service. Blocking calls (``BlockingLLM``, in
    any thread) share one set of ``capacity`` slots per service.
    """

    default_name: ClassVar[str] = "service"
    default_latency: ClassVar[float] = 0.5

    def __init__(
        self,
        *,
        name: str | None = None,
        latency: float | Latency | None = None,
        faults: Faults | None = None,
        capacity: int | None = None,
    ) -> None:
        self.name = check_text(name, "name") if name is not None else self.default_name
        self.latency = as_latency(self.default_latency if latency is None else latency)
        if faults is not None and not isinstance(faults, Faults):
            raise TypeError(f"faults must be a Faults plan or None, got {type(faults).__name__}")
        self.faults = faults or Faults()
        self.capacity = None if capacity is None else check_count(capacity, "capacity")
        self._slots = _LoopSlots(self.capacity) if self.capacity else None
        self._thread_slots = threading.BoundedSemaphore(capacity) if capacity else None
        self._failed: dict[tuple[str, str], int] = {}
        self.in_flight = 0
        self.calls = 0
        self.failures = 0

    # -- the four steps, in pieces a streaming subclass can hold open -----------------------

    def _open(self, operation: str, key: str, items: int = 1) -> Span:
        # The attempt is 1 + how often *this* request has failed so far (never the global call
        # order): a retry after a failure is attempt 2, asking again after a success is attempt 1.
        failed = self._failed.get((operation, key), 0) if self._failed else 0
        span = Span(self.name, operation, key, failed + 1)
        span.items = items
        record(span)
        self.calls += 1
        return span

    def rate_limit_status(self) -> dict[str, Budget]:
        """What is left of the rate limit now: ``{"requests": Budget(...), "tokens": Budget(...)}``.

            llm.rate_limit_status()["tokens"].remaining     # tokens left in the window

        Only the kinds the limit has; empty when the service has no rate limit.
        """
        limit = self.faults.rate_limit
        return {} if limit is None else limit.status()

    def _count_tokens(self, tokens: int | Callable[[], int]) -> int:
        """The tokens a call counts against the budget: 0 unless the rate limit counts tokens.

        ``tokens`` may be a function, called only then, inside the call's span: the LLM counts
        its answer's tokens, and computing the answer must not cost time when nobody counts.
        """
        limit = self.faults.rate_limit
        if limit is None or limit.tokens is None:
            return 0
        return tokens() if callable(tokens) else tokens

    def _check_rate_limit(self, span: Span, tokens: int = 0) -> None:
        limit = self.faults.rate_limit
        if limit is not None:
            try:
                limit.admit(tokens, service=self.name, operation=span.operation)
            except ServiceError as exc:  # RateLimited, or RequestTooLarge (more than a window holds)
                self.failures += 1
                self._finish(span, type(exc).__name__)
                raise
            except BaseException as exc:  # a bad token count: the call ends here too
                self._close(span, exc)
                raise

    async def _admit(self, span: Span, tokens: int = 0) -> None:
        """Step 2: the rate limit counts this request (and its ``tokens``), then a slot is taken."""
        self._check_rate_limit(span, tokens)
        if self._slots is not None:
            try:
                await self._slots.here().acquire()
            except BaseException:
                self._finish(span, "cancelled")
                raise
            span.start = now()  # the queueing ends here; the span's wait shows it
        self.in_flight += 1

    def _release(self) -> None:
        self.in_flight -= 1
        if self._slots is not None:
            self._slots.release()

    def _fail(self, span: Span, why: str) -> ServiceUnavailable:
        self.failures += 1
        self._finish(span, "ServiceUnavailable")
        return ServiceUnavailable(
            f"{span.name} failed ({why}) on attempt {span.attempt} of request {span.key[:40]!r}",
            service=self.name,
            operation=span.operation,
        )

    def _finish(self, span: Span, outcome: str = "ok") -> None:
        """Close a span and remember whether this request failed (for its next attempt)."""
        span.finish(outcome)
        if outcome == "ok":
            if self._failed:  # the common case, no failures on record, costs one truth test
                self._failed.pop((span.operation, span.key), None)
        else:
            self._failed[(span.operation, span.key)] = span.attempt

    def _close(self, span: Span, exc: BaseException) -> None:
        """Close a span that ended in an exception (an injected fault closed it already)."""
        if span.end is None:
            cancelled = isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt))
            self._finish(span, "cancelled" if cancelled else type(exc).__name__)

    def _serve(
        self,
        operation: str,
        key: str,
        compute: Callable[..., T],
        *args: Any,
        items: int = 1,
        latency: Latency | None = None,
        tokens: int | Callable[[], int] = 0,
    ) -> Awaitable[T]:
        """One call through steps 1–4, to be awaited; ``compute(*args)`` makes the result.

        ``compute`` runs inside the latency (its CPU time is not added on top) and may raise a
        ServiceError (a "not found"), which the caller gets after the latency too. tokens: what
        the call counts against a token budget (a number, or a function that counts, see
        :meth:`_count_tokens`).

        This is the hot path of every lesson and of ``benchmarks/fanout.py``, where 100,000
        calls wait at once and the garbage collector, scanning every object a waiting call
        holds again and again, is most of the overhead. So a plain call (no capacity, no rate
        limit, no fault plan) is an :class:`_Answer` future resolved by a timer, with no
        coroutine; a call that may queue, be refused or fail goes through :meth:`_serve_gated`.
        """
        if self._slots is not None or self.faults.rate_limit is not None or self.faults.active:
            return self._serve_gated(operation, key, compute, *args, items=items, latency=latency, tokens=tokens)
        span = self._open(operation, key, items)
        self.in_flight += 1
        try:
            deadline = span.start + (latency or self.latency).seconds(key, items)
            try:
                outcome: object = compute(*args)
            except ServiceError as exc:
                outcome = exc
            return cast("Awaitable[T]", _Answer(self, span, outcome, deadline))
        except BaseException as exc:
            self._release()
            self._close(span, exc)
            raise

    async def _serve_gated(
        self,
        operation: str,
        key: str,
        compute: Callable[..., T],
        *args: Any,
        items: int = 1,
        latency: Latency | None = None,
        tokens: int | Callable[[], int] = 0,
    ) -> T:
        """:meth:`_serve` for a call that may queue for a slot, be rate limited, fail or hang."""
        span = self._open(operation, key, items)
        try:
            counted = self._count_tokens(tokens)
        except BaseException as exc:
            self._close(span, exc)
            raise
        await self._admit(span, counted)
        try:
            faults = self.faults
            fate = faults.decide(self.name, operation, key, span.attempt) if faults.active else "ok"
            if fate == "hang":
                await asyncio.Event().wait()  # never set: only cancellation ends a hang
            deadline = span.start + (latency or self.latency).seconds(key, items)
            outcome: T | ServiceError
            try:
                outcome = compute(*args)  # inside the latency: its CPU time is not added on top
            except ServiceError as exc:
                outcome = exc  # a "not found" takes its time too
            del compute, args  # a waiting call holds only what it still needs
            alarm, timer = _alarm(deadline)
            try:
                await alarm
            except BaseException:
                timer.cancel()  # cancelled while waiting: drop the timer, as asyncio.sleep does
                raise
            if isinstance(outcome, ServiceError):
                raise outcome
            if fate == "error":
                raise self._fail(span, "injected fault")
        except BaseException as exc:
            self._close(span, exc)
            raise
        finally:
            self._release()
        self._finish(span)
        return outcome

    def _serve_blocking(
        self,
        operation: str,
        key: str,
        compute: Callable[..., T],
        *args: Any,
        items: int = 1,
        latency: Latency | None = None,
        tokens: int | Callable[[], int] = 0,
    ) -> T:
        """Steps 1–4 with ``time.sleep``: the calling thread (and its event loop) is blocked."""
        span = self._open(operation, key, items)
        span.froze_loop = asyncio.events._get_running_loop() is not None  # called from async code
        try:
            counted = self._count_tokens(tokens)
        except BaseException as exc:
            self._close(span, exc)
            raise
        self._check_rate_limit(span, counted)
        if self._thread_slots is not None:
            self._thread_slots.acquire()
            span.start = now()
        self.in_flight += 1
        try:
            fate = self.faults.decide(self.name, operation, key, span.attempt)
            if fate == "hang":
                sleep_blocking(BLOCKING_HANG)
                raise self._fail(span, f"hung for {BLOCKING_HANG:g} s")
            deadline = span.start + (latency or self.latency).seconds(key, items)
            result = compute(*args)  # inside the latency, as in _serve
            sleep_blocking(max(deadline - now(), 0.0))
            if fate == "error":
                raise self._fail(span, "injected fault")
        except BaseException as exc:
            self._close(span, exc)
            raise
        finally:
            self.in_flight -= 1
            if self._thread_slots is not None:
                self._thread_slots.release()
        self._finish(span)
        return result

    def __repr__(self) -> str:
        capacity = "∞" if self.capacity is None else str(self.capacity)
        return (
            f"<{type(self).__name__} {self.name!r} latency={self.latency!r}"
            f" in_flight={self.in_flight}/{capacity} calls={self.calls}"
            f" failures={self.failures} faults={self.faults!r}>"
        )
