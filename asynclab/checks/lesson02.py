"""Checkers for notebook 02 · Running tasks concurrently.

    from asynclab.checks import lesson02
    await lesson02.check_brief(brief)                  # TaskGroup + timeout: one optional part, a deadline
    await lesson02.check_first_answer(first_answer)    # as_completed: first success, cancel the rest
    await lesson02.check_fetch_all(fetch_all)          # gather: answers in prompt order, all at once

``check_fetch_all`` grades the ordered-results pattern of the lesson's ``gather`` section; it
was the first exercise of the first edition and stays for anyone who wants to try it.

Introduced in notebook 02.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from asynclab.checks import (
    Attempt,
    attempt,
    describe_error,
    expect,
    expect_concurrent,
    fail,
    passed,
    require_async,
    within,
)
from asynclab.faults import Faults, NotFound, ServiceError
from asynclab.latency import Jittered
from asynclab.services import LLM, MetadataStore, PineconeStore

__all__ = [
    "BRIEF_SCENARIOS",
    "PROMPTS",
    "SCENARIOS",
    "check_brief",
    "check_fetch_all",
    "check_first_answer",
    "replicas",
]

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


# -- what the learner's function did: returned or raised ------------------------------------------


@dataclass
class _Outcome:
    """What the learner's function returned, or the error it raised (``raised`` is not None)."""

    value: Any = None
    raised: BaseException | None = None


def _capturing(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function``, returning an :class:`_Outcome` instead of raising, for checks where raising is right.

    A CancelledError counts as raised by the learner's code (``task.result()`` of a task their
    TaskGroup cancelled). ``task.cancelling()`` cannot tell it from the attempt's own deadline:
    on Python 3.11 a TaskGroup that absorbed a child's error leaves its parent task "cancelling"
    (fixed in 3.12). Catching it is safe either way: when the deadline cancels the answer, the
    attempt has already decided it was stuck and says so, whatever the function returns then.
    """

    async def outcome(*args: Any) -> _Outcome:
        try:
            return _Outcome(value=await function(*args))
        except (Exception, asyncio.CancelledError) as error:
            return _Outcome(raised=error)

    return outcome


def _errors_in(error: BaseException | None) -> list[BaseException]:
    """The errors inside ``error``: the leaves of exception groups, and the causes they were raised from."""
    found: list[BaseException] = []
    seen: set[int] = set()
    pending = [error] if error is not None else []
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        else:
            found.append(current)
        if current.__cause__ is not None:
            pending.append(current.__cause__)
    return found


def _said(outcome: _Outcome) -> str:
    """The error the function raised, in plain words (nothing if it returned)."""
    if outcome.raised is None:
        return f"nothing (it returned {outcome.value!r:.40})"
    return describe_error(outcome.raised)


def _expect_started(outcome: _Outcome) -> None:
    __tracebackhide__ = True
    if isinstance(outcome.raised, NotImplementedError):
        fail("not done yet: replace `raise NotImplementedError` in the exercise cell with your code")


def _left_running(result: Attempt, when: str) -> None:
    """Fail when calls were still running at the moment the function returned or raised."""
    __tracebackhide__ = True
    if not result.running_at_return:
        return
    names = sorted({t.get_coro().__qualname__ for t in result.leaked if t.get_coro() is not None})  # type: ignore[union-attr]
    which = f" ({', '.join(names[:3])})" if names else ""
    fail(f"{when}, your function ended while {result.running_at_return} call(s) it started were still "
         f"running{which}: nobody will use them, and they hold connections. asyncio.gather without "
         "return_exceptions raises the first error and leaves the others running; a TaskGroup (or "
         "`async with asynclab.timeout(...)` around one) cancels them and waits until they have stopped.")


# -- exercise 1: brief(llm, store, meta, question, doc_id, seconds) ----------------------------------

#: The question and the open document of check_brief (the document exists; doc-999 does not).
BRIEF_QUESTION = "Why does batching embeddings help?"
BRIEF_DOC = "doc-033"
MISSING_DOC = "doc-999"
#: The deadline of the healthy scenarios, and of the one where the LLM is too slow for it.
ROOMY_DEADLINE = 3.0  # room for a sequential answer (2.1 s) to be told it is sequential
TIGHT_DEADLINE = 1.5
SLOW_LLM = 2.0

#: The four requests check_brief makes, by name.
BRIEF_SCENARIOS = (
    "all three parts found",
    "a missing document",
    "the vector store down",
    "an LLM slower than the deadline",
)


@dataclass
class _Brief:
    """One scenario of check_brief: its services, the document and the deadline."""

    llm: LLM
    store: PineconeStore
    meta: MetadataStore
    doc_id: str
    seconds: float


def _brief_services(scenario: str) -> _Brief:
    if scenario not in BRIEF_SCENARIOS:
        raise ValueError(f"scenario must be one of {BRIEF_SCENARIOS}, got {scenario!r}")
    llm = LLM(latency=SLOW_LLM) if scenario == BRIEF_SCENARIOS[3] else LLM()
    store = PineconeStore(faults=Faults(error_rate=1.0)) if scenario == BRIEF_SCENARIOS[2] else PineconeStore()
    doc_id = MISSING_DOC if scenario == BRIEF_SCENARIOS[1] else BRIEF_DOC
    seconds = TIGHT_DEADLINE if scenario == BRIEF_SCENARIOS[3] else ROOMY_DEADLINE
    return _Brief(llm, store, MetadataStore(), doc_id, seconds)


async def _expected_brief(doc_id: str) -> tuple[str, list[str], dict[str, Any] | None]:
    """What a right answer returns, computed instantly (latency 0, outside the learner's trace)."""
    answer = await LLM(latency=0).complete(BRIEF_QUESTION)
    hits = [hit.id for hit in await PineconeStore(latency=0).search(BRIEF_QUESTION, k=3)]
    try:
        info: dict[str, Any] | None = await MetadataStore(latency=0).get(doc_id)
    except NotFound:
        info = None
    return answer, hits, info


def _expect_brief_value(value: Any, scenario: str, expected: tuple[str, list[str], dict[str, Any] | None]) -> None:
    __tracebackhide__ = True
    _expect_no_coroutines(value, "what you returned")
    expect(isinstance(value, tuple) and len(value) == 3,
           f"with {scenario}, return the tuple (answer, hits, info); you returned {type(value).__name__} "
           f"{value!r:.80}")
    answer, hits, info = value
    want_answer, want_hits, want_info = expected
    expect(answer == want_answer,
           f"with {scenario}, answer is {answer!r:.60}, but llm.complete(question) says {want_answer!r:.60}: "
           "the answer must be the LLM's, with the default model.")
    got_hits = [getattr(hit, "id", hit) for hit in hits] if isinstance(hits, list) else hits
    expect(got_hits == want_hits,
           f"with {scenario}, hits are {got_hits!r:.80}, but store.search(question, k=3) finds {want_hits}: "
           "return the store's list of hits as it is.")
    if want_info is None:
        expect(info is None,
               f"with {scenario}, info is {info!r:.60}: a document that does not exist has no metadata; "
               "return None in its place.")
    else:
        expect(info == want_info,
               f"with {scenario}, info is {info!r:.60}, but meta.get(doc_id) gives {want_info!r:.60}.")


def _cancelled_siblings(result: Attempt) -> list[str]:
    return sorted(span.service for span in result.trace.spans if span.outcome == "cancelled")


async def _brief_scenario(brief: Callable[..., Any], scenario: str) -> Attempt:
    __tracebackhide__ = True
    setup = _brief_services(scenario)
    result = await attempt(_capturing(brief), setup.llm, setup.store, setup.meta, BRIEF_QUESTION,
                           setup.doc_id, setup.seconds)
    outcome: _Outcome = result.result
    _expect_started(outcome)
    errors = _errors_in(outcome.raised)
    expected = await _expected_brief(setup.doc_id)
    llm_seconds = setup.llm.latency.seconds()

    if scenario == BRIEF_SCENARIOS[2]:  # the search fails after 0.6 s: the error must reach the caller
        _left_running(result, f"with {scenario}")
        if outcome.raised is None:
            fail(f"with {scenario}, your function returned {outcome.value!r:.60} instead of raising: it swallowed "
                 "the store's ServiceUnavailable. Only a missing document (NotFound from meta.get) is expected; "
                 "let every other error reach the caller (a TaskGroup raises it in an ExceptionGroup).")
        expect(any(isinstance(e, ServiceError) and e.service == "pinecone" for e in errors),
               f"with {scenario}, your function raised {_said(outcome)}, not the store's "
               "ServiceUnavailable: let the error itself reach the caller (in an ExceptionGroup is fine).")
        return result

    if scenario == BRIEF_SCENARIOS[3]:  # the LLM needs 2.0 s, the deadline is 1.5 s
        _left_running(result, f"with {scenario}")
        if outcome.raised is None and within(result.elapsed, llm_seconds):
            fail(f"with {scenario}, your function took {result.elapsed:.2f} s, past the deadline of "
                 f"{setup.seconds:g} s: put the whole group inside `async with asynclab.timeout(seconds):` "
                 "(simulated seconds; asyncio.timeout counts wall seconds, which the notebook's speed stretches).")
        if outcome.raised is None:
            fail(f"with {scenario}, your function returned {outcome.value!r:.60} after {result.elapsed:.2f} s "
                 "instead of raising TimeoutError: it swallowed the deadline. A brief without its answer is not "
                 "a brief; let TimeoutError reach the caller.")
        expect(any(isinstance(e, TimeoutError) for e in errors),
               f"with {scenario}, your function raised {_said(outcome)}; when the deadline passes "
               "it should raise TimeoutError, which `async with asynclab.timeout(seconds):` does for you.")
        expect(within(result.elapsed, setup.seconds),
               f"with {scenario}, TimeoutError came after {result.elapsed:.2f} s; the deadline was "
               f"{setup.seconds:g} s: start the deadline when the function starts, around all three calls.")
        return result

    # Scenarios 0 and 1: a brief comes back, all three calls at once.
    if scenario == BRIEF_SCENARIOS[1] and outcome.raised is not None:
        if any(isinstance(e, NotFound) for e in errors):
            fail(f"with {scenario}, your function raised {_said(outcome)}. A missing document is "
                 "not a failure of the brief: catch NotFound around meta.get, inside the task that reads it, and "
                 "return None as info.")
        if _cancelled_siblings(result) or isinstance(outcome.raised, asyncio.CancelledError):
            cancelled = ", ".join(_cancelled_siblings(result))
            fail(f"with {scenario}, your TaskGroup cancelled the other calls ({cancelled}) "
                 "when the metadata read failed, so the answer was lost: an `except*` around the group runs only "
                 "after the group has cancelled every sibling. Catch NotFound inside the task that reads the "
                 "metadata (a small coroutine that returns None), so the group never sees it.")
    if outcome.raised is not None:
        fail(f"with {scenario}, your function raised {_said(outcome)}")
    if scenario == BRIEF_SCENARIOS[1] and _cancelled_siblings(result):
        fail(f"with {scenario}, the calls {', '.join(_cancelled_siblings(result))} were cancelled, so the answer "
             "could not be complete: catch NotFound inside the metadata task, not around the TaskGroup.")
    _left_running(result, f"with {scenario}")
    _expect_brief_value(outcome.value, scenario, expected)
    durations = [span.duration for span in result.trace.spans]
    expect_concurrent(result, calls=3, longest=llm_seconds, total=sum(durations))
    return result


async def check_brief(brief: Callable[..., Any]) -> None:
    """Grade ``brief(llm, store, meta, question, doc_id, seconds) -> (answer, hits, info)`` on four requests.

    1. all three parts found: the answer, three hits and the metadata after ≈ 1.2 s (the LLM),
       not 2.1 s (the sum); 2. a missing document: info is None and the answer and hits still
       come (a TaskGroup must not cancel them); 3. the vector store down: the error reaches the
       caller and nothing is left running; 4. an LLM of 2.0 s with a deadline of 1.5 s:
       TimeoutError after ≈ 1.5 s, nothing left running.
    """
    __tracebackhide__ = True
    require_async(brief)
    times = [(await _brief_scenario(brief, scenario)).elapsed for scenario in BRIEF_SCENARIOS]
    passed(f"brief returns all three parts in {times[0]:.2f} s (the LLM's 1.2 s, not the sum 2.1 s), info=None "
           f"for a missing document in {times[1]:.2f} s, the store's failure raised after {times[2]:.2f} s and "
           f"TimeoutError at the {TIGHT_DEADLINE:g} s deadline ({times[3]:.2f} s), with nothing left running.")


# -- gather: fetch_all(llm, prompts) ----------------------------------------------------------------


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
    result = await attempt(fetch_all, llm, prompts)
    reference = LLM(latency=0)
    expected = [await reference.complete(prompt) for prompt in prompts]
    if result.running_at_return:
        fail(f"your function returned while {result.running_at_return} call(s) were still running. Await every "
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


# -- exercise 2: first_answer(services, prompt) ------------------------------------------------------


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
    "every replica down": ("llm-us", "llm-eu", "llm-asia"),
}


def _expect_nothing_left_running(result: Attempt) -> None:
    __tracebackhide__ = True
    running, cancelled = result.running_at_return, result.cancelling_at_return
    if not running:
        return
    if cancelled == running:
        fail(f"you cancelled the slower calls but returned before they finished cancelling ({running} "
             "still running): cancel() only asks. Await them after cancelling, e.g. "
             "`await asyncio.gather(*others, return_exceptions=True)`.")
    fail(f"you returned the first answer but left {running} slower call(s) running: nobody "
         "wants their answers, and they hold a connection and cost money. Cancel the other tasks "
         "(task.cancel()) and await them before returning.")


async def _all_down(first_answer: Callable[..., Any], scenario: str) -> Attempt:
    """Every replica fails: the caller must get every replica's error, in an ExceptionGroup."""
    __tracebackhide__ = True
    result = await attempt(_capturing(first_answer), replicas(failing=SCENARIOS[scenario]), QUESTION)
    outcome: _Outcome = result.result
    _expect_started(outcome)
    _expect_nothing_left_running(result)
    if outcome.raised is None:
        fail(f"with {scenario}, your function returned {outcome.value!r:.60}: no replica answered, so there is no "
             "answer to return. Raise an ExceptionGroup of the replicas' errors: "
             "`raise ExceptionGroup('every replica failed', errors)`.")
    failed = {e.service for e in _errors_in(outcome.raised) if isinstance(e, ServiceError)}
    if isinstance(outcome.raised, ServiceError):
        fail(f"with {scenario}, your function raised only {outcome.raised.service}'s error; the errors of "
             f"{', '.join(sorted(set(REPLICA_LATENCY) - {outcome.raised.service}))} were lost. Keep every error "
             "and `raise ExceptionGroup('every replica failed', errors)`, so the caller sees why each one failed.")
    expect(isinstance(outcome.raised, BaseExceptionGroup) and failed == set(REPLICA_LATENCY),
           f"with {scenario}, your function raised {_said(outcome)}. Raise an ExceptionGroup "
           f"that holds each replica's ServiceError ({', '.join(REPLICA_LATENCY)}): "
           "`raise ExceptionGroup('every replica failed', errors)`.")
    slowest = max(REPLICA_LATENCY.values())
    expect(within(result.elapsed, slowest),
           f"with {scenario}, your function raised after {result.elapsed:.2f} s; the last replica fails after "
           f"{slowest:.2f} s: ask every replica at the start and raise when the last one has failed.")
    return result


async def _no_replicas(first_answer: Callable[..., Any]) -> None:
    """An empty list: refused with a ValueError that says so, not an UnboundLocalError."""
    __tracebackhide__ = True
    result = await attempt(_capturing(first_answer), [], QUESTION)
    outcome: _Outcome = result.result
    _expect_started(outcome)
    if outcome.raised is None:
        fail(f"with no replicas at all (services=[]), your function returned {outcome.value!r:.60}. There is no "
             "answer to give: refuse the call with a ValueError that says services must hold at least one replica.")
    expect(isinstance(outcome.raised, ValueError),
           f"with no replicas at all (services=[]), your function raised {_said(outcome)}. "
           "Check the list first and raise a clear ValueError ('services must hold at least one replica').")


async def _one_scenario(first_answer: Callable[..., Any], scenario: str) -> Attempt:
    __tracebackhide__ = True
    failing = SCENARIOS[scenario]
    latency = dict(REPLICA_LATENCY)
    healthy = {name: s for name, s in latency.items() if name not in failing}
    winner = min(healthy, key=healthy.__getitem__)
    result = await attempt(_capturing(first_answer), replicas(failing=failing), QUESTION)
    outcome: _Outcome = result.result
    _expect_started(outcome)
    if outcome.raised is not None:
        if failing and any(isinstance(e, ServiceError) for e in _errors_in(outcome.raised)):
            fail(f"with {scenario}, your function raised the {type(outcome.raised).__name__} of a failed replica. "
                 "A failed call is not an answer: wrap each `await` of as_completed's results in try/except "
                 "ServiceError and wait for the next one.")
        fail(f"your function raised {_said(outcome)}")
    _expect_nothing_left_running(result)
    expected = await LLM(latency=0).complete(QUESTION)
    answer = outcome.value
    _expect_no_coroutines(answer, "what you returned")
    if failing and isinstance(answer, BaseException):
        fail(f"with {scenario}, you returned the error of a failed replica ({type(answer).__name__}), not an "
             "answer: skip failed calls and return the first one that succeeds.")
    expect(answer == expected,
           f"return the answer itself (a str), what any replica's complete(prompt) says: {expected!r:.80}; "
           f"you returned {answer!r:.80}")
    # When each replica was asked, from the first call (not from the trace's start: on a busy machine
    # the function itself may start a few milliseconds late, times the speed, which is nobody's fault).
    asked = {span.service: span.queued for span in result.trace.spans}
    first = min(asked.values(), default=result.trace.start)
    started = {name: moment - first for name, moment in asked.items()}
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
    """Grade ``first_answer(services, prompt) -> str`` on four races and an empty list.

    Three replicas (0.8, 0.3, 2.0 s), all asked at once: 1. all healthy: the answer arrives after
    ≈ 0.3 s, the fastest, and no call is left running; 2. the fastest fails: the answer comes
    from the next one (≈ 0.8 s), the error is not raised; 3. the two fastest fail: the slowest
    answers (≈ 2.0 s), which it can only do in time if it was asked at the start; 4. all three
    fail: an ExceptionGroup of the three errors after ≈ 2.0 s. Then ``services=[]``: a ValueError.
    """
    __tracebackhide__ = True
    require_async(first_answer)
    *races, all_down = SCENARIOS
    times = [(await _one_scenario(first_answer, scenario)).elapsed for scenario in races]
    down = (await _all_down(first_answer, all_down)).elapsed
    await _no_replicas(first_answer)
    passed(f"first_answer returns the fastest replica's answer after {times[0]:.2f} s, skips a failed replica "
           f"({times[1]:.2f} s with llm-us down; {times[2]:.2f} s with two down), raises every replica's error "
           f"when all fail ({down:.2f} s), refuses an empty list and leaves nothing running.")
