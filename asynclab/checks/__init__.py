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
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from asynclab.clock import WALL_SLACK, get_speed
from asynclab.tracing import Trace, trace

__all__ = [
    "Attempt",
    "ExerciseFailed",
    "attempt",
    "close_coroutines",
    "expect",
    "expect_about",
    "expect_concurrent",
    "expect_max_concurrency",
    "expect_no_leaks",
    "fail",
    "passed",
    "require_async",
    "within",
]


class ExerciseFailed(AssertionError):
    """The learner's answer is not right yet; the message says why and what to try."""

    def __init__(self, hint: str) -> None:
        super().__init__(hint)
        self.hint = hint


def fail(hint: str) -> None:
    """Raise :class:`ExerciseFailed` with ``hint`` (the only frame a learner sees)."""
    __tracebackhide__ = True
    raise ExerciseFailed(hint)


@dataclass
class Attempt:
    """What happened when the learner's function ran: its result, trace and leftovers."""

    result: Any
    trace: Trace
    leaked: list[asyncio.Task[Any]] = field(default_factory=list)

    @property
    def elapsed(self) -> float:
        return self.trace.elapsed


async def attempt(
    function: Callable[..., Awaitable[Any]], *args: Any, timeout: float = 60.0, **kwargs: Any
) -> Attempt:
    """Run ``function(*args, **kwargs)`` in a fresh trace and collect what it left behind.

    timeout: simulated seconds before the attempt counts as stuck. Tasks the function started
    and did not finish are cancelled here (so nothing keeps running) and reported as leaked.
    """
    __tracebackhide__ = True
    require_async(function)
    before = asyncio.all_tasks()
    current = asyncio.current_task()
    hint = ""
    result: Any = None
    with trace() as recorded:
        try:
            result = await asyncio.wait_for(function(*args, **kwargs), timeout / get_speed())
        except NotImplementedError:
            hint = "not done yet: replace `raise NotImplementedError` in the exercise cell with your code"
        except TimeoutError:
            hint = (f"your function was still running after {timeout:g} simulated seconds: "
                    "is something awaiting forever (a hang, a queue nobody fills, a missing timeout)?")
        except Exception as exc:
            hint = f"your function raised {type(exc).__name__}: {exc}"
        finally:
            # Taken the moment the function ends (returned or raised): whatever it started and
            # did not finish is a leak. Cancel it here so nothing keeps running after the check.
            leaked = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
            for task in leaked:
                task.cancel()
            if leaked:
                await asyncio.gather(*leaked, return_exceptions=True)
    if hint:
        fail(hint)  # outside the except block: no "During handling…" chain for the learner
    return Attempt(result, recorded, leaked)


def require_async(function: object) -> None:
    """Fail unless the learner passed an ``async def`` function itself (not a call of it)."""
    __tracebackhide__ = True
    if not callable(function):
        fail(f"pass your function itself, e.g. check(my_function), not {type(function).__name__}")
    if not asyncio.iscoroutinefunction(function):
        fail(f"{getattr(function, '__name__', 'your function')} must be an `async def` function")


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


def passed(message: str) -> None:
    """Tell the learner the exercise is done."""
    print(f"✅ {message}")
