"""Exercise checkers: grade a learner's answer for correctness *and* concurrency.

A checker runs the learner's coroutine function against fresh services inside a trace, then
reads the trace: were the calls overlapped, was a limit respected, was any task left running?
A wrong answer fails with :class:`ExerciseFailed` carrying a hint in plain words, never a
traceback of the checker's internals.

    from asynclab.checks import lesson02
    await lesson02.check_fetch_all(fetch_all)     # ✅ or ExerciseFailed: "your calls ran one after another…"

The per-lesson checkers live in ``asynclab/checks/lessonNN.py`` and are built from the pieces
here: :func:`attempt`, then ``expect_*`` helpers, then :func:`passed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from asynclab.clock import WALL_SLACK, get_speed, now
from asynclab.clock import timeout as deadline
from asynclab.faults import ServiceError
from asynclab.tracing import Trace, catch_threads, current_trace, trace

__all__ = [
    "Attempt",
    "ExerciseFailed",
    "attempt",
    "awaiting",
    "build_app",
    "close_coroutines",
    "describe_error",
    "expect",
    "expect_about",
    "expect_concurrent",
    "expect_max_concurrency",
    "expect_no_leaks",
    "fail",
    "learner_tasks",
    "passed",
    "require_async",
    "watch_progress",
    "within",
]


class ExerciseFailed(AssertionError):
    """The learner's answer is not right yet; the message says why and what to try.

    An ``AssertionError`` for pytest; in a notebook it renders itself as the exercise and the hint
    (IPython's ``_render_traceback_``), without a traceback of the checker's internals.
    """

    def __init__(self, hint: str) -> None:
        super().__init__(hint)
        self.hint = hint

    @property
    def exercise(self) -> str:
        """The checker that failed, e.g. ``lesson02.check_fetch_all`` (from the traceback)."""
        found = ""
        tb: TracebackType | None = self.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            module = str(frame.f_globals.get("__name__", ""))
            if module.startswith("asynclab.checks.") and frame.f_code.co_name.startswith("check_"):
                found = f"{module.rpartition('.')[2]}.{frame.f_code.co_name}"
                break  # the outermost check_ frame: the one the learner called
            tb = tb.tb_next
        return found

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a traceback: a red title, then the hint."""
        title = f"Not yet: {self.exercise}" if self.exercise else "Not yet"
        return [f"\x1b[1;31m❌ {title}\x1b[0m", *self.hint.splitlines()]


def fail(hint: str) -> None:
    """Raise :class:`ExerciseFailed` with ``hint`` (the only frame a learner sees)."""
    __tracebackhide__ = True
    raise ExerciseFailed(hint)


def describe_error(exc: BaseException) -> str:
    """An error in plain words, naming the service behind it and looking inside exception groups.

        describe_error(ExceptionGroup("unhandled errors in a TaskGroup", [ServiceUnavailable(...)]))
        # 'ServiceUnavailable from pgvector.search: pgvector.search failed (injected fault) …'
    """
    if isinstance(exc, BaseExceptionGroup):
        leaves = _leaves(exc)
        shown = "; ".join(describe_error(leaf) for leaf in leaves[:3])
        more = f" (and {len(leaves) - 3} more)" if len(leaves) > 3 else ""
        where = "a TaskGroup" if "TaskGroup" in str(exc.message) else f"an {type(exc).__name__}"
        return f"{len(leaves)} error(s) inside {where}: {shown}{more}"
    if isinstance(exc, ServiceError) and exc.service:
        return f"{type(exc).__name__} from {exc.service}.{exc.operation}: {exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        leaves.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return leaves


@dataclass
class Attempt:
    """What happened when the learner's function ran: its result, trace and leftovers.

    ``leaked``: tasks the function started (directly or through its own tasks) that were still
    running when the checker looked, a few loop turns after the return; they were cancelled.
    ``running_at_return`` / ``cancelling_at_return``: the same, counted at the very moment the
    function returned (a task that was only *asked* to cancel is still running then).
    ``froze``: simulated seconds the event loop stood still during the attempt, beyond what
    scheduling noise explains.
    ``descheduled``: wall seconds the loop's thread was ready to run but waited for a CPU during
    the attempt (a busy machine: its timers fired that much late in all; 0.0 off Linux).
    """

    result: Any
    trace: Trace
    leaked: list[asyncio.Task[Any]] = field(default_factory=list)
    running_at_return: int = 0
    cancelling_at_return: int = 0
    froze: float = 0.0
    descheduled: float = 0.0

    @property
    def elapsed(self) -> float:
        return self.trace.elapsed


# -- which tasks are the learner's -------------------------------------------------------------
#
# JupyterLab's Run All queues every cell at once, and ipykernel runs its own tasks on the same
# loop while a cell runs. "New on the loop" is therefore not "the learner's": a task is the
# learner's when it was created in the context the attempt runs the function in (tasks copy
# their creator's context, so a task made by a task of the learner's is the learner's too).
# A task factory, installed on the loop while any attempt runs, writes each such task down.


class _Owned:
    """The tasks created by one attempt's function, directly or indirectly."""

    __slots__ = ("tasks",)

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[Any]] = []


_owner: contextvars.ContextVar[_Owned | None] = contextvars.ContextVar("asynclab_attempt", default=None)
#: Per loop: the task factory that was there before ours, and how many attempts are running.
_factories: dict[asyncio.AbstractEventLoop, tuple[Any, int]] = {}


def _owning_factory(previous: Any) -> Any:
    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = (
            previous(loop, coro, **kwargs) if previous is not None else asyncio.Task(coro, loop=loop, **kwargs)
        )
        context = kwargs.get("context")
        owner = context.get(_owner) if context is not None else _owner.get()
        if owner is not None:
            owner.tasks.append(task)
        return task

    factory.asynclab_owning = True  # type: ignore[attr-defined]
    return factory


def learner_tasks() -> list[asyncio.Task[Any]] | None:
    """The tasks the learner's function has created so far, when called inside an :func:`attempt`.

    For checkers that watch an answer while it runs (e.g. to say where a stalled pipeline
    waits). None outside an attempt.
    """
    owned = _owner.get()
    return None if owned is None else list(owned.tasks)


@contextmanager
def _tracking_tasks(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    previous, active = _factories.get(loop, (loop.get_task_factory(), 0))
    if active == 0:
        loop.set_task_factory(_owning_factory(previous))
    _factories[loop] = (previous, active + 1)
    try:
        yield
    finally:
        previous, active = _factories.pop(loop)
        if active > 1:
            _factories[loop] = (previous, active - 1)
        elif getattr(loop.get_task_factory(), "asynclab_owning", False):
            loop.set_task_factory(previous)


# -- a frozen loop -------------------------------------------------------------------------------

#: Wall seconds between heartbeat ticks while an attempt runs.
HEARTBEAT = 0.005
#: A stall of the loop counts as the learner's blocking call when it is longer than this many
#: simulated seconds AND this many wall seconds. The wall floor is there because a busy 2-core
#: machine stalls a loop for tens of milliseconds now and then, and a correct answer must never
#: be told it froze the loop. Blocking clients of this package are caught exactly instead
#: (``Span.froze_loop``).
FREEZE_SIMULATED = 0.25
FREEZE_WALL = 0.1


def _waited_for_cpu() -> float:
    """Seconds this thread has spent runnable but waiting for a CPU (Linux; 0.0 elsewhere).

    On a loaded machine the loop's thread is sometimes not scheduled for a few hundred
    milliseconds: the heartbeat sees a gap, but nothing of the learner's froze the loop.
    ``/proc/thread-self/schedstat`` holds the run-queue wait, so that time can be taken off.
    """
    try:
        with open("/proc/thread-self/schedstat", "rb") as stats:
            return int(stats.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


class _Heartbeat:
    """Ticks every :data:`HEARTBEAT` wall seconds and remembers the longest silence."""

    __slots__ = ("last", "longest", "waited")

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.longest = 0.0
        self.waited = _waited_for_cpu()

    def beat(self) -> None:
        moment = time.perf_counter()
        self.longest = max(self.longest, moment - self.last)
        self.last = moment

    async def run(self) -> None:
        self.last = time.perf_counter()
        self.waited = _waited_for_cpu()
        while True:
            await asyncio.sleep(HEARTBEAT)
            self.beat()

    @property
    def descheduled(self) -> float:
        """Wall seconds the thread has waited for a CPU since the heartbeat started."""
        return max(_waited_for_cpu() - self.waited, 0.0)

    @property
    def frozen_wall(self) -> float:
        """The longest silence beyond one tick, less all the time the thread waited for a CPU.

        Taking off the whole attempt's run-queue wait (not just the gap's) can hide a real
        freeze on a very busy machine; it never invents one, which is the side to err on.
        """
        return max(self.longest - HEARTBEAT - self.descheduled, 0.0)


def _freeze_hint(froze: float, wall: float, blocking: list[tuple[str, float]]) -> str:
    if blocking:
        seconds = sum(duration for _, duration in blocking)
        return (f"the event loop was frozen for {seconds:.2f} s: a blocking call ran on it ({blocking[0][0]} of a "
                "blocking client, inside async def), so nothing else could run while it waited. Await the async "
                "version of the client, or run the blocking call in a thread: `await asyncio.to_thread(...)`.")
    return (f"the event loop was frozen for {froze:.2f} s ({wall:.3f} s of wall time): a blocking call such as "
            "time.sleep or a synchronous client inside async def. Await the async version "
            "(`await asyncio.sleep(...)`, an async client) or use `await asyncio.to_thread(...)`.")


# -- errors nobody retrieved ---------------------------------------------------------------------


@contextmanager
def _quiet_lost_futures(loop: asyncio.AbstractEventLoop, lost: list[str]) -> Iterator[None]:
    """Collect "exception was never retrieved" reports instead of printing them later.

    A future the learner's code abandoned reports its error when it is garbage-collected, in
    whichever cell runs then. Collecting the garbage here, with our handler in place, turns that
    stray red text into a hint of this check.
    """
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        exc = context.get("exception")
        if "never retrieved" in message and isinstance(exc, BaseException):
            lost.append(describe_error(exc))
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    try:
        yield
    finally:
        # The young generations only: the attempt ran with the collector off, so what it made and
        # dropped is young, and a full collection of a kernel's heap (matplotlib, FastAPI, numpy
        # loaded) costs ~0.1 s of CPU per check for objects that were old before it started.
        gc.collect(1)
        if loop.get_exception_handler() is handler:
            loop.set_exception_handler(previous)


# -- the attempt ---------------------------------------------------------------------------------

#: Wall seconds a cancelled answer gets to finish cancelling before we say it ignored cancellation.
CANCEL_GRACE = 1.0


async def attempt(
    function: Callable[..., Awaitable[Any]], *args: Any, timeout: float = 60.0, **kwargs: Any
) -> Attempt:
    """Run ``function(*args, **kwargs)`` in a fresh trace and collect what it left behind.

    timeout: simulated seconds before the attempt counts as stuck. Only tasks the function
    started (directly, or through tasks it started) are the learner's: those still running when
    it ends are cancelled here and reported as leaked. Other tasks on the loop (the kernel's, an
    earlier cell's, a server's) are never touched. A frozen event loop is reported first.
    """
    __tracebackhide__ = True
    require_async(function)
    loop = asyncio.get_running_loop()
    owned = _Owned()
    at_return = [0, 0]

    async def run() -> Any:
        value = await function(*args, **kwargs)
        # In the same step as the return: a task that was only asked to cancel still counts.
        running = [task for task in owned.tasks if not task.done()]
        at_return[:] = [len(running), sum(1 for task in running if task.cancelling())]
        return value

    heartbeat = _Heartbeat()
    beating = loop.create_task(heartbeat.run())  # ours: created outside the learner's context
    hint = ""
    result: Any = None
    ended = now()
    lost: list[str] = []
    leaked: list[asyncio.Task[Any]] = []
    frozen_wall = descheduled = 0.0
    with trace() as recorded, catch_threads(recorded), _quiet_lost_futures(loop, lost):
        context = contextvars.copy_context()
        context.run(_owner.set, owned)
        main = loop.create_task(run(), context=context)
        # No garbage collection inside the attempt: in a kernel with matplotlib and FastAPI loaded,
        # a full collection stops the loop for 0.1-0.3 s, which is not the learner's doing. The
        # collection happens after the attempt (in _quiet_lost_futures), where it is not timed.
        collecting = gc.isenabled()
        gc.disable()
        try:
            with _tracking_tasks(loop):
                await asyncio.sleep(0)  # the heartbeat's first tick time is taken
                with contextlib.suppress(TimeoutError):
                    async with deadline(timeout):  # simulated seconds; cancels the wait, not the answer
                        await asyncio.wait({main})
                done = main.done()
                ended = now()  # the answer's time ends here, not after the checker's cleanup below
                if not done:
                    main.cancel()
                    finished, _ = await asyncio.wait({main}, timeout=CANCEL_GRACE)
                    hint = (f"your function was still running after {timeout:g} simulated seconds: is something "
                            "awaiting forever (a hang, a queue nobody fills, a missing timeout)?")
                    if not finished:
                        hint += (" It also ignored cancellation: an `except` around an await swallowed "
                                 "asyncio.CancelledError. Re-raise it (`except Exception` does not catch it).")
                elif main.cancelled():
                    hint = ("your function was cancelled from inside (a CancelledError escaped it): did it cancel "
                            "its own task or await a task it had cancelled?")
                elif (error := main.exception()) is not None:
                    if isinstance(error, NotImplementedError):
                        hint = "not done yet: replace `raise NotImplementedError` in the exercise cell with your code"
                    elif isinstance(error, ExerciseFailed):
                        hint = error.hint  # a checker's own step run as the function: its hint as is
                    else:
                        hint = f"your function raised {describe_error(error)}"
                    del error
                else:
                    result = main.result()
        finally:
            # Whatever the function started and did not finish is a leak: cancel it here, so
            # nothing keeps running after the check, and nothing of anyone else's is touched.
            if not main.done():
                main.cancel()  # a second request: an answer that swallowed the first one may stop now
            leaked = [task for task in owned.tasks if not task.done()]
            for task in leaked:
                task.cancel()
            if leaked:
                await asyncio.wait(leaked, timeout=CANCEL_GRACE)
            heartbeat.beat()
            frozen_wall = heartbeat.frozen_wall
            descheduled = heartbeat.descheduled
            beating.cancel()
            await asyncio.gather(beating, return_exceptions=True)
            if collecting:
                gc.enable()
            for task in owned.tasks:  # read every error, so none is reported "never retrieved"
                if task.done() and not task.cancelled() and getattr(task, "_log_traceback", False):
                    lost.append(describe_error(task.exception()))  # type: ignore[arg-type]
            owned.tasks.clear()
    recorded.end = ended
    froze = frozen_wall * get_speed()
    blocking = [(span.name, span.duration) for span in recorded.spans if span.froze_loop]
    if blocking or (froze > FREEZE_SIMULATED and frozen_wall > FREEZE_WALL):
        fail(_freeze_hint(froze, frozen_wall, blocking))  # first: it explains every later symptom
    if hint:
        fail(hint)  # outside the except block: no "During handling…" chain for the learner
    if lost:
        fail(f"a task your function started failed with {lost[0]}, and nothing awaited it: the error was lost. "
             "Await every task you start (a TaskGroup, or asyncio.gather) so its failure reaches you.")
    return Attempt(result, recorded, leaked, at_return[0], at_return[1], froze, descheduled)


def require_async(function: object) -> None:
    """Fail unless the learner passed an ``async def`` function itself (not a call of it)."""
    __tracebackhide__ = True
    if inspect.iscoroutine(function):
        name = function.__qualname__
        function.close()  # never awaited, and no warning about it later
        fail(f"pass your function itself, e.g. check({name}), not a call of it: {name}(...) made a "
             "coroutine object. Drop the parentheses.")
    if not callable(function):
        fail(f"pass your function itself, e.g. check(my_function), not {type(function).__name__}")
    if not (inspect.iscoroutinefunction(function)
            or inspect.iscoroutinefunction(type(function).__call__)):  # an object with async __call__
        fail(f"{getattr(function, '__name__', 'your function')} must be an `async def` function")


def require_app_factory(function: object, name: str, check: str, returns: str) -> Callable[..., Any]:
    """Fail unless the learner passed a plain function that builds an app (``name``, checked by ``check``).

    returns: what the factory should return, in the hint (e.g. ``"FastAPI() with your route"``).
    """
    __tracebackhide__ = True
    if inspect.iscoroutinefunction(function):
        fail(f"{name} builds the app, it does not serve a request: make it a plain `def` that returns {returns}; "
             "the routes' handlers are the `async def`s.")
    if not callable(function):
        fail(f"pass your function itself, e.g. {check}({name}), not {type(function).__name__}")
    return function  # type: ignore[return-value]


def build_app(factory: Callable[..., Any], call: str, *args: Any, returns: str = "the app (FastAPI(...))") -> Any:
    """``factory(*args)``, the learner's app; an error it raises or a wrong return becomes a hint naming ``call``."""
    __tracebackhide__ = True
    try:
        app = factory(*args)
    except NotImplementedError:
        fail("not done yet: replace `raise NotImplementedError` in the exercise cell with your code")
    except Exception as exc:  # the learner's code: any error becomes a hint
        fail(f"{call} raised {describe_error(exc)}")
    expect(callable(app) and not inspect.iscoroutine(app), f"{call} must return {returns}, got {type(app).__name__}")
    return app


def close_coroutines(values: Iterable[Any]) -> list[str]:
    """Close the coroutine objects among ``values`` (no 'never awaited' warning later); their names."""
    names = []
    for value in values:
        if inspect.iscoroutine(value):
            names.append(value.__qualname__)
            value.close()
    return names


def expect(condition: bool, hint: str) -> None:
    """Fail with ``hint`` unless ``condition`` holds."""
    __tracebackhide__ = True
    if not condition:
        fail(hint)


def within(measured: float, expected: float, rel: float = 0.1) -> bool:
    """``measured`` is within ``rel`` of ``expected``, forgiving timer lateness at this speed."""
    return abs(measured - expected) <= rel * abs(expected) + 2 * WALL_SLACK * get_speed()


def expect_about(measured: float, expected: float, hint: str, rel: float = 0.1) -> None:
    """Fail with ``hint`` unless a simulated time is about the expected one.

    rel is 10 % by default (looser than the lessons' 5 %): a learner's correct answer may do a
    little extra work, and the check must never fail a right answer on a busy machine.
    """
    __tracebackhide__ = True
    expect(within(measured, expected, rel), hint.format(measured=measured, expected=expected))


def expect_no_leaks(result: Attempt) -> None:
    """Fail when the learner's function returned while tasks it started were still running."""
    __tracebackhide__ = True
    if result.leaked:
        names = ", ".join(t.get_coro().__qualname__ for t in result.leaked[:3])  # type: ignore[union-attr]
        fail(
            f"your function returned while {len(result.leaked)} task(s) it started were still "
            f"running ({names}). Await every task you create (gather them, or use a TaskGroup) "
            "before returning."
        )


def expect_concurrent(result: Attempt, calls: int, longest: float, total: float) -> None:
    """The ``calls`` service calls overlapped: elapsed ≈ the longest call, not the sum."""
    __tracebackhide__ = True
    spans = result.trace.spans
    expect(len(spans) >= calls,
           f"expected {calls} service calls but your function made {len(spans)}: call each one once")
    if result.trace.max_concurrency() <= 1 and calls > 1:
        fail(
            f"your {calls} calls ran one after another: {result.elapsed:.2f} s, the sum "
            f"({total:.2f} s). Start them all before awaiting any (asyncio.gather or create_task)."
        )
    expect_about(
        result.elapsed, longest,
        "your calls overlapped only partly: {measured:.2f} s, but all at once would take "
        "{expected:.2f} s (the longest call). Start every call before awaiting the first.",
    )


def expect_max_concurrency(result: Attempt, limit: int) -> None:
    """At most ``limit`` calls were in flight at once (a semaphore or a worker pool)."""
    __tracebackhide__ = True
    peak = result.trace.max_concurrency()
    if peak > limit:
        fail(f"{peak} calls were in flight at once, but the limit is {limit}. "
             "Hold an asyncio.Semaphore(limit) around each call.")


# -- an answer that stops making progress ---------------------------------------------------------


def awaiting(task: asyncio.Task[Any]) -> list[str]:
    """The coroutines a task is suspended in, outermost first, e.g. ``['worker', 'Queue.get']``.

    Follows coroutines, async generators and generators; a frame of asyncio's queues is named
    ``Queue.<method>``, so a checker can say which queue operation a stuck task waits in.
    """
    chain: list[str] = []
    coro: Any = task.get_coro()
    while coro is not None and len(chain) < 50:
        code = getattr(coro, "cr_code", None) or getattr(coro, "ag_code", None) or getattr(coro, "gi_code", None)
        if code is None:
            break
        queue = code.co_filename.endswith(("asyncio/queues.py", "asyncio\\queues.py"))
        chain.append(f"Queue.{code.co_name}" if queue else code.co_qualname)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None) or getattr(coro, "gi_yieldfrom", None)
    return chain


async def watch_progress(
    function: Callable[..., Awaitable[Any]],
    *args: Any,
    stuck: Callable[[list[asyncio.Task[Any]]], str],
    progress: Callable[[], object] = lambda: None,
    quiet: float = 2.0,
    poll: float = 0.1,
) -> Any:
    """Await ``function(*args)``; when it stops making progress, fail with ``stuck(its tasks)``.

        result = await attempt(watch_progress, pipeline, docs, stuck=why_stuck)

    Run it as the function of an :func:`attempt`, so the learner's tasks are the attempt's. Progress
    is a service call starting or ending in the current trace, or ``progress()`` returning a new
    value; a call still running counts as progress. No progress for ``quiet`` simulated seconds
    *and* for that many polls (so one long stall of a busy machine is never taken for a deadlock)
    cancels the answer and fails with the hint ``stuck`` gives for the tasks it left waiting.
    """
    __tracebackhide__ = True
    recorded = current_trace()
    main = asyncio.ensure_future(function(*args))  # in the attempt's context: the learner's task
    looks_needed = max(round(quiet / poll), 1)
    seen: object = object()
    calm_since, calm_looks = now(), 0
    while True:
        done, _ = await asyncio.wait({main}, timeout=poll / get_speed())
        if done:
            return main.result()  # the learner's exception, as is
        spans = recorded.spans if recorded is not None else []
        ended = sum(1 for span in spans if span.end is not None)
        state = (progress(), len(spans), ended)
        if state != seen or ended != len(spans):
            seen, calm_since, calm_looks = state, now(), 0
        elif (calm_looks := calm_looks + 1) >= looks_needed and now() - calm_since >= quiet:
            hint = stuck(learner_tasks() or [main])
            main.cancel()
            await asyncio.gather(main, return_exceptions=True)
            fail(hint)


def passed(message: str) -> None:
    """Tell the learner the exercise is done."""
    print(f"✅ {message}")
