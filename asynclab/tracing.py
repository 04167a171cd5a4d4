"""Spans and the current trace: what every service call did, and when.

    with trace() as t:
        await asyncio.gather(llm.complete(q), store.search(q))
    t.spans        # [Span(llm.complete 0.00→1.20 ok), Span(pinecone.search 0.00→0.60 ok)]
    t.elapsed      # 1.2 simulated seconds
    plot_timeline(t)

The current trace lives in a ``contextvars.ContextVar``: tasks created inside the ``with``
block copy the context, so their calls land in the same trace however they interleave.
Calls made with no trace open are not recorded, which keeps large fan-outs cheap.

Introduced in notebook 00.
"""

from __future__ import annotations

import threading
from asyncio import events
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from asynclab.clock import collector_pause, now

__all__ = ["Span", "Trace", "catch_threads", "current_trace", "record", "trace"]


class Span:
    """One service call: who, what, when (simulated seconds) and how it ended.

    ``queued`` is when the call arrived, ``start`` when the service began serving it (later
    than ``queued`` when the service was at capacity), ``end`` when it answered or failed.
    ``outcome`` is ``"ok"``, ``"running"``, ``"cancelled"`` or the error's class name.
    """

    __slots__ = (
        "attempt",
        "end",
        "first_token",
        "froze_loop",
        "items",
        "key",
        "operation",
        "outcome",
        "queued",
        "service",
        "start",
    )

    def __init__(self, service: str, operation: str, key: str = "", attempt: int = 1) -> None:
        self.service = service
        self.operation = operation
        self.key = key
        self.attempt = attempt
        self.queued = self.start = now()
        self.end: float | None = None
        self.outcome = "running"
        self.items = 1
        self.first_token: float | None = None  # streams: when the first token left
        #: True when a blocking client served this call on a thread that runs an event loop:
        #: the loop stood still for the whole call (the blocking-call pitfall, made visible).
        self.froze_loop = False

    @property
    def name(self) -> str:
        return f"{self.service}.{self.operation}"

    @property
    def duration(self) -> float:
        """Simulated seconds from arrival to answer (queueing included)."""
        return (now() if self.end is None else self.end) - self.queued

    @property
    def wait(self) -> float:
        """Simulated seconds spent queued before the service started serving."""
        return self.start - self.queued

    def finish(self, outcome: str = "ok") -> None:
        self.end = now()
        self.outcome = outcome

    def __repr__(self) -> str:
        end = "…" if self.end is None else f"{self.end:.2f}"
        return f"Span({self.name} {self.start:.2f}→{end} {self.outcome})"


class Trace:
    """The spans recorded inside one ``with trace():`` block, in the order they started."""

    __slots__ = ("end", "parent", "spans", "start")

    def __init__(self, parent: Trace | None = None) -> None:
        self.spans: list[Span] = []
        #: An enclosing trace also sees this block's spans (a checker's trace inside a lesson's).
        self.parent = parent
        self.start = now()
        self.end: float | None = None

    @property
    def elapsed(self) -> float:
        """Simulated seconds the block took (so far, while it runs)."""
        return (now() if self.end is None else self.end) - self.start

    @property
    def busy(self) -> float:
        """Σ of span durations: what the same calls cost run one after another."""
        return sum(span.duration for span in self.spans)

    def by_service(self, service: str) -> list[Span]:
        return [span for span in self.spans if span.service == service]

    def max_concurrency(self) -> int:
        """The most spans that were in service at the same moment."""
        events = []
        for span in self.spans:
            events.append((span.start, 1))
            events.append((span.end if span.end is not None else now(), -1))
        # Ends sort before starts at the same instant: back-to-back is not overlap.
        events.sort(key=lambda event: (event[0], event[1]))
        running = peak = 0
        for _, delta in events:
            running += delta
            peak = max(peak, running)
        return peak

    def __len__(self) -> int:
        return len(self.spans)

    def __repr__(self) -> str:
        return (
            f"<Trace {len(self.spans)} spans, elapsed {self.elapsed:.2f} s, "
            f"Σ spans {self.busy:.2f} s (simulated)>"
        )


_current: ContextVar[Trace | None] = ContextVar("asynclab_trace", default=None)


def current_trace() -> Trace | None:
    """The trace open in this context, or None."""
    return _current.get()


#: Traces that also take the spans of worker threads that carry no trace of their own.
_thread_traces: list[Trace] = []
_thread_lock = threading.Lock()


def _worker_trace() -> Trace | None:
    """The innermost :func:`catch_threads` trace, for a call from a thread that runs no event loop.

    ``asyncio.to_thread`` copies the caller's context into the thread, but
    ``loop.run_in_executor`` and a hand-made ``ThreadPoolExecutor`` do not: their calls would
    otherwise be invisible. A thread that runs its own loop (a ``BackgroundServer``) is not a
    worker of the caller, so it is never caught.
    """
    if not _thread_traces or events._get_running_loop() is not None:
        return None
    return _thread_traces[-1]


def record(span: Span) -> None:
    """Add a span to the current trace and every trace enclosing it."""
    recorded = _current.get()
    if recorded is None and _thread_traces:
        recorded = _worker_trace()
    while recorded is not None:
        recorded.spans.append(span)
        recorded = recorded.parent


@contextmanager
def trace() -> Iterator[Trace]:
    """Record every service call made inside the block (tasks included) into a :class:`Trace`.

    While the block runs, Python's full garbage collections wait: at speed 20 one in a notebook
    kernel would read as seconds of simulated time (:class:`asynclab.clock._CollectorPause`).
    """
    recorded = Trace(parent=_current.get())
    token = _current.set(recorded)
    collector_pause.enter()
    try:
        yield recorded
    finally:
        recorded.end = now()
        collector_pause.exit()
        _current.reset(token)


@contextmanager
def catch_threads(recorded: Trace) -> Iterator[Trace]:
    """Also record into ``recorded`` the calls made from worker threads that carry no trace.

        with trace() as t, catch_threads(t):
            await loop.run_in_executor(None, blocking_llm.complete, "hi")   # lands in t

    Used by the exercise checkers, so that an answer that hands a blocking client to
    ``run_in_executor`` is seen like one that uses ``asyncio.to_thread``. A call from a worker
    thread started *before* the block and still running lands here too: it cannot be told apart.
    """
    with _thread_lock:
        _thread_traces.append(recorded)
    try:
        yield recorded
    finally:
        with _thread_lock:
            _thread_traces.remove(recorded)
