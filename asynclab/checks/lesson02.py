"""Checkers for notebook 02 · Running tasks concurrently.

    from asynclab.checks import lesson02
    await lesson02.check_fetch_all(fetch_all)          # gather: answers in prompt order, all at once
    await lesson02.check_first_answer(first_answer)    # as_completed: first success, cancel the rest

Introduced in notebook 02.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from asynclab.checks import Attempt, ExerciseFailed, attempt, expect, expect_concurrent, fail, passed, within
from asynclab.faults import Faults
from asynclab.latency import Jittered
from asynclab.services import LLM

__all__ = ["PROMPTS", "check_fetch_all", "check_first_answer", "replicas"]

#: The questions check_fetch_all asks; with the checker's jittered LLM they finish in another
#: order than they are asked (0.50, 0.82, 0.17, 0.49, 0.76, 0.37 simulated seconds).
PROMPTS = (
    "What is time to first token?",
    "Why does batching embeddings help?",
    "What is a vector database?",
    "How does asyncio.gather work?",
    "What is prompt injection?",
    "What is an AI agent?",
)

#: The question check_first_answer sends to every replica.
QUESTION = "How does asyncio.gather work?"

#: Replica latencies (simulated seconds) in check_first_answer: us is the fastest, asia the slowest.
REPLICA_LATENCY = {"llm-eu": 0.8, "llm-us": 0.3, "llm-asia": 2.0}


class _Run:
    """An :class:`Attempt`, with the tasks still running at the very moment the function returned.

    :func:`attempt` counts them in the same step as the return: a task that was only cancelled
    (not awaited) is still running then, and counts as left running.
    """

    def __init__(self, result: Attempt) -> None:
        self.attempt = result
        self.running = result.running_at_return
        self.cancelled = result.cancelling_at_return


async def _attempt(function: Callable[..., Any], *args: Any) -> _Run:
    __tracebackhide__ = True
    return _Run(await attempt(function, *args))


def _expect_no_coroutines(value: Any, what: str) -> None:
    """Close coroutine objects returned instead of results (no 'never awaited' warning), and say so."""
    __tracebackhide__ = True
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    names = []
    for item in values:
        if inspect.iscoroutine(item) or isinstance(item, asyncio.Future):
            names.append(type(item).__name__)
            if inspect.iscoroutine(item):
                item.close()
    expect(not names, f"{what} holds {names[0] if names else ''} objects, not answers: a call was never "
                      "awaited. Await the tasks (or asyncio.gather) and return their results.")


async def check_fetch_all(fetch_all: Callable[..., Any]) -> None:
    """Grade ``fetch_all(llm, prompts) -> list[str]``: every answer, in prompt order, all at once."""
    __tracebackhide__ = True
    prompts = list(PROMPTS)
    llm = LLM(latency=Jittered(0.5, sigma=0.5, seed=0))
    run = await _attempt(fetch_all, llm, prompts)
    reference = LLM(latency=0)
    expected = [await reference.complete(prompt) for prompt in prompts]
    result = run.attempt
    if run.running:
        fail(f"your function returned while {run.running} call(s) were still running. Await every "
             "task you create before returning: `return await asyncio.gather(*tasks)`.")
    answers = result.result
    _expect_no_coroutines(answers, "your list")
    expect(isinstance(answers, (list, tuple)),
           f"return a list of answers (one str per prompt); you returned {type(answers).__name__} {answers!r:.80}")
    expect(len(answers) == len(prompts),
           f"you returned {len(answers)} answers for {len(prompts)} prompts: one answer per prompt")
    if list(answers) != expected:
        if sorted(map(str, answers)) == sorted(expected):
            finished = [span.key.partition(":")[2] for span in sorted(result.trace.spans, key=lambda s: s.end or 0)]
            if [expected[prompts.index(p)] for p in finished if p in prompts] == list(answers):
                fail("every answer is there, but in the order the calls FINISHED, not the order of the "
                     "prompts. asyncio.gather returns results in the order you passed the awaitables, "
                     "whichever finishes first; as_completed gives finish order.")
            fail("every answer is there, but not in prompt order: answers[i] must answer prompts[i]. "
                 "asyncio.gather returns results in the order you passed the awaitables.")
        index = next(i for i, (got, want) in enumerate(zip(answers, expected, strict=True)) if got != want)
        fail(f"answers[{index}] is {answers[index]!r:.80}, but llm.complete({prompts[index]!r}) answers "
             f"{expected[index]!r:.80}. Ask each prompt once with llm.complete(prompt) (the default model).")
    durations = [span.duration for span in result.trace.spans]
    expect_concurrent(result, calls=len(prompts), longest=max(durations), total=sum(durations))
    passed(f"fetch_all returns all {len(prompts)} answers in prompt order in {result.elapsed:.2f} s, the "
           f"slowest call ({max(durations):.2f} s), not the sum ({sum(durations):.2f} s).")


def replicas(fastest_fails: bool = False, failing: Iterable[str] = ()) -> list[LLM]:
    """Three replicas of the same LLM in three regions; the named ones (or the fastest) are broken."""
    broken = set(failing) | ({min(REPLICA_LATENCY, key=REPLICA_LATENCY.__getitem__)} if fastest_fails else set())
    return [LLM(name=name, latency=seconds, faults=Faults(error_rate=1.0) if name in broken else None)
            for name, seconds in REPLICA_LATENCY.items()]


#: The races check_first_answer runs: which replicas are broken in each.
SCENARIOS: dict[str, tuple[str, ...]] = {
    "three healthy replicas": (),
    "the fastest replica (llm-us) down": ("llm-us",),
    "the two fastest replicas (llm-us, llm-eu) down": ("llm-us", "llm-eu"),
}


def _expect_nothing_left_running(run: _Run) -> None:
    __tracebackhide__ = True
    if not run.running:
        return
    if run.cancelled == run.running:
        fail(f"you cancelled the slower calls but returned before they finished cancelling ({run.running} "
             "still running): cancel() only asks. Await them after cancelling, e.g. "
             "`await asyncio.gather(*others, return_exceptions=True)`.")
    fail(f"you returned the first answer but left {run.running} slower call(s) running: nobody "
         "wants their answers, and they hold a connection and cost money. Cancel the other tasks "
         "(task.cancel()) and await them before returning.")


async def _one_scenario(first_answer: Callable[..., Any], scenario: str) -> Attempt:
    __tracebackhide__ = True
    failing = SCENARIOS[scenario]
    services = replicas(failing=failing)
    latency = dict(REPLICA_LATENCY)
    healthy = {name: s for name, s in latency.items() if name not in failing}
    winner = min(healthy, key=healthy.__getitem__)
    try:
        run = await _attempt(first_answer, services, QUESTION)
    except ExerciseFailed as exc:
        if failing and "ServiceUnavailable" in exc.hint:
            fail(f"with {scenario}, your function raised the ServiceUnavailable of a failed replica. A failed call "
                 "is not an answer: wrap each `await` of as_completed's results in try/except ServiceError and "
                 "wait for the next one.")
        raise
    _expect_nothing_left_running(run)
    expected = await LLM(latency=0).complete(QUESTION)
    result = run.attempt
    answer = result.result
    _expect_no_coroutines(answer, "what you returned")
    if failing and isinstance(answer, BaseException):
        fail(f"with {scenario}, you returned the error of a failed replica ({type(answer).__name__}), not an "
             "answer: skip failed calls and return the first one that succeeds.")
    expect(answer == expected,
           f"return the answer itself (a str), what any replica's complete(prompt) says: {expected!r:.80}; "
           f"you returned {answer!r:.80}")
    started = {span.service: span.queued - result.trace.start for span in result.trace.spans}
    late = sorted(name for name in latency if name not in started or not within(started[name], 0.0))
    if late:
        when = ", ".join(f"{n} at {started[n]:.2f} s" if n in started else f"{n} never" for n in late)
        fail(f"with {scenario}, not every replica was asked at the start ({when}): you held a replica back. Race "
             "every replica from the start: then a failure costs nothing, and the fastest healthy one wins.")
    slowest = max(latency.values())
    if within(result.elapsed, slowest) and healthy[winner] < slowest:
        fail(f"you got the right answer, but after {result.elapsed:.2f} s, the SLOWEST replica ({slowest:.2f} s): "
             "you waited for all of them (gather waits for every task). Take the first one to finish "
             "with asyncio.as_completed and cancel the rest.")
    expect(within(result.elapsed, healthy[winner]),
           f"with {scenario}, your function took {result.elapsed:.2f} s; the first answer that succeeds comes from "
           f"{winner} after {healthy[winner]:.2f} s. Start all replicas at once and return as soon as one succeeds.")
    return result


async def check_first_answer(first_answer: Callable[..., Any]) -> None:
    """Grade ``first_answer(services, prompt) -> str`` on three races.

    Three replicas (0.8, 0.3, 2.0 s), all asked at once: 1. all healthy: the answer arrives after
    ≈ 0.3 s, the fastest, and no call is left running; 2. the fastest fails: the answer comes
    from the next one (≈ 0.8 s), the error is not raised; 3. the two fastest fail: the slowest
    answers (≈ 2.0 s), which it can only do in time if it was asked at the start.
    """
    __tracebackhide__ = True
    times = [(await _one_scenario(first_answer, scenario)).elapsed for scenario in SCENARIOS]
    passed(f"first_answer returns the fastest replica's answer after {times[0]:.2f} s, skips a failed replica "
           f"({times[1]:.2f} s with llm-us down; {times[2]:.2f} s with two down) and leaves nothing running.")
