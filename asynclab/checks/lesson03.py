"""Checkers for notebook 03 · Parallel LLM calls.

    from asynclab.checks import lesson03
    await lesson03.check_analyze(analyze)              # three models on one text, at once
    await lesson03.check_analyze_many(analyze_many)    # many texts, at most `limit` calls in flight
    await lesson03.check_classify_all(classify_all)    # a limit, a deadline per call, partial failure

Introduced in notebook 03.
"""

from __future__ import annotations

import heapq
import inspect
import math
from collections.abc import Callable
from typing import Any, NoReturn

from asynclab.checks import (
    Attempt,
    ExerciseFailed,
    attempt,
    expect,
    expect_concurrent,
    expect_no_leaks,
    fail,
    passed,
    within,
)
from asynclab.faults import Faults
from asynclab.services import LLM
from asynclab.text import TOPICS, load_corpus

__all__ = [
    "FIELDS",
    "REVIEWS",
    "check_analyze",
    "check_analyze_many",
    "check_classify_all",
    "classify_all_setup",
    "texts_for_analyze_many",
    "texts_for_classify_all",
]

#: What each field of the analysis comes from: field -> model.
FIELDS = {"summary": "summarizer", "sentiment": "sentiment", "topic": "classifier"}

#: The texts check_analyze sends: a happy and an unhappy customer.
REVIEWS = (
    "Our support chatbot used to keep customers waiting eight seconds before a single word appeared. "
    "Last week we made it stream tokens and run the vector search, the order lookup and the policy "
    "check concurrently. Customers love the change: answers start in under a second and the bot feels "
    "fast and helpful. The prompt and the model are the same; only the waiting is gone.",
    "The new release is a disappointment. Every answer now takes twenty seconds, the app freezes while "
    "it waits for the model, and half of the requests fail with timeouts. Support has not replied to "
    "our ticket.",
)

#: check_analyze's LLM: every call takes this many simulated seconds.
ANALYZE_LATENCY = 0.6
#: check_analyze_many: 8 texts × 3 models = 24 calls of 0.5 s with at most 6 in flight: 4 waves, 2.0 s.
MANY_LATENCY = 0.5
MANY_LIMIT = 6


def texts_for_analyze_many() -> list[str]:
    """Eight documents of the knowledge base, one per topic."""
    first: dict[str, str] = {}
    for doc in load_corpus():
        first.setdefault(doc.topic, doc.text)
    return [first[topic] for topic in TOPICS]


async def _reference(text: str) -> dict[str, str]:
    """The right analysis, from an instant (zero-latency) copy of the same LLM."""
    llm = LLM(latency=0)
    return {field: await llm.complete(text, model=model) for field, model in FIELDS.items()}


def _expect_analysis(got: Any, want: dict[str, str], where: str) -> None:
    """``got`` is the dict ``want``; else a hint naming the first wrong field and its model."""
    __tracebackhide__ = True
    if inspect.iscoroutine(got):
        got.close()
        fail(f"{where} is a coroutine object, not a dict: did you forget an `await`?")
    expect(isinstance(got, dict),
           f"{where} should be a dict with keys {sorted(FIELDS)}; it is {type(got).__name__} {got!r:.100}")
    missing, extra = sorted(set(FIELDS) - set(got)), sorted(set(got) - set(FIELDS))
    expect(not missing and not extra,
           f"{where} should have exactly the keys {sorted(FIELDS)}; missing {missing}, unexpected {extra}")
    for field, model in FIELDS.items():
        value = got[field]
        if inspect.iscoroutine(value):
            value.close()
            fail(f"{where}[{field!r}] is a coroutine object: a call was never awaited")
        if value != want[field]:
            source = next((f"model={m!r}" for f, m in FIELDS.items() if want[f] == value), None)
            mixed = f" (that is what {source} answers)" if source else ""
            fail(f"{where}[{field!r}] is {value!r:.80}{mixed}, but it should be what "
                 f"llm.complete(text, model={model!r}) answers: {want[field]!r:.80}")


async def check_analyze(analyze: Callable[..., Any]) -> None:
    """Grade ``analyze(llm, text) -> {"summary", "sentiment", "topic"}`` on two texts.

    Each field must be the answer of its model (summarizer, sentiment, classifier) and the three
    calls must overlap: ≈ 0.6 s per text, the latency of one call, not 1.8 s.
    """
    __tracebackhide__ = True
    timings = []
    for number, text in enumerate(REVIEWS, start=1):
        llm = LLM(latency=ANALYZE_LATENCY)
        result = await attempt(analyze, llm, text)
        expect_no_leaks(result)
        _expect_analysis(result.result, await _reference(text), f"for text {number}, your dict")
        models = sorted(span.key.partition(":")[0] for span in result.trace.spans)
        expect(models == sorted(FIELDS.values()),
               f"call each of the three models once; your function called {models}")
        expect_concurrent(result, calls=3, longest=ANALYZE_LATENCY, total=3 * ANALYZE_LATENCY)
        timings.append(result.elapsed)
    passed(f"analyze returns the right summary, sentiment and topic, with the three calls at once: "
           f"{' and '.join(f'{t:.2f} s' for t in timings)} instead of {3 * ANALYZE_LATENCY:.1f} s each.")


def _expect_within_limit(result: Attempt, limit: int, calls: int) -> None:
    __tracebackhide__ = True
    peak = result.trace.max_concurrency()
    if peak <= limit:
        return
    if peak >= calls:
        fail(f"all {peak} calls were in flight at once, but the limit is {limit}: nothing held them back. "
             "Create ONE asyncio.Semaphore(limit) and hold it around each call: "
             "`async with semaphore: return await llm.complete(...)`.")
    if peak % len(FIELDS) == 0 and peak <= len(FIELDS) * limit:
        fail(f"{peak} calls were in flight at once, but the limit is {limit}: it looks like one permit "
             f"covered a whole text ({len(FIELDS)} calls). The limit counts LLM calls: hold the semaphore "
             "around each llm.complete, not around analyzing a text.")
    fail(f"{peak} calls were in flight at once, but the limit is {limit}. Use ONE asyncio.Semaphore(limit), "
         "shared by every call (not a new one per text or per call), around each llm.complete.")


async def check_analyze_many(analyze_many: Callable[..., Any]) -> None:
    """Grade ``analyze_many(llm, texts, limit) -> list[dict]`` on 8 texts with limit 6.

    The results must be the analyses in text order; at most ``limit`` LLM calls may be in flight at
    once; and the limit must be used fully: 24 calls of 0.5 s, 6 at a time, take
    ceil(24 / 6) × 0.5 = 2.0 s.
    """
    __tracebackhide__ = True
    texts = texts_for_analyze_many()
    llm = LLM(latency=MANY_LATENCY)
    result = await attempt(analyze_many, llm, texts, MANY_LIMIT)
    expect_no_leaks(result)
    calls = len(texts) * len(FIELDS)
    _expect_within_limit(result, MANY_LIMIT, calls)
    answers = result.result
    if inspect.iscoroutine(answers):
        answers.close()
        fail("you returned a coroutine object, not the results: did you forget an `await`?")
    expect(isinstance(answers, (list, tuple)) and len(answers) == len(texts),
           f"return a list with one analysis (dict) per text, {len(texts)} in all; you returned {answers!r:.100}")
    wanted = [await _reference(text) for text in texts]
    if list(answers) != wanted and sorted(map(repr, answers)) == sorted(map(repr, wanted)):
        fail("every analysis is there, but not in text order: results[i] must analyze texts[i]. "
             "asyncio.gather returns results in the order of its arguments.")
    for index, (got, want) in enumerate(zip(answers, wanted, strict=True)):
        _expect_analysis(got, want, f"results[{index}]")
    spans = len(result.trace.spans)
    expect(spans == calls, f"expected {calls} LLM calls ({len(texts)} texts × {len(FIELDS)} models), "
                           f"your function made {spans}: call each model once per text")
    ideal = math.ceil(calls / MANY_LIMIT) * MANY_LATENCY
    if not within(result.elapsed, ideal):
        fail(f"your function kept within the limit but took {result.elapsed:.2f} s. With {MANY_LIMIT} calls in "
             f"flight at all times, {calls} calls of {MANY_LATENCY:g} s take ceil({calls}/{MANY_LIMIT}) × "
             f"{MANY_LATENCY:g} = {ideal:.2f} s. It ran too sequentially (at most "
             f"{result.trace.max_concurrency()} calls at once): start every call at once (one gather over all "
             "texts) and let the semaphore hold back the extra ones.")
    passed(f"analyze_many analyzes {len(texts)} texts in order, never more than {MANY_LIMIT} calls at once, "
           f"in {result.elapsed:.2f} s = ceil({calls}/{MANY_LIMIT}) × {MANY_LATENCY:g} s.")



# -- classify_all(llm, texts, limit, seconds): a limit, a deadline per call, partial failure ------

#: check_classify_all: 12 texts, at most 4 calls in flight, each call 0.5 s, each given 0.8 s.
CLASSIFY_LATENCY = 0.5
CLASSIFY_LIMIT = 4
CLASSIFY_SECONDS = 0.8
#: With this seed the 12 calls' fates are: text 0 hangs, 3 fails, 5 hangs, 10 fails; the rest answer.
#: A hang in the first wave is what makes a deadline that counts the wait for a permit visible.
CLASSIFY_FAULTS = {"error_rate": 0.2, "hang_rate": 0.15, "seed": 177}


def texts_for_classify_all() -> list[str]:
    """Twelve documents of the knowledge base, every tenth."""
    return [doc.text for doc in load_corpus()[::10][:12]]


def classify_all_setup() -> tuple[LLM, list[str], int, float]:
    """The checker's arguments: ``(llm, texts, limit, seconds)``, to try an answer by hand."""
    llm = LLM(latency=CLASSIFY_LATENCY, faults=Faults(**CLASSIFY_FAULTS))  # type: ignore[arg-type]
    return llm, texts_for_classify_all(), CLASSIFY_LIMIT, CLASSIFY_SECONDS


def _fates(llm: LLM, texts: list[str]) -> list[str]:
    return [llm.faults.decide(llm.name, "complete", f"classifier:{text}", 1) for text in texts]


def _ideal_time(fates: list[str], limit: int, latency: float, seconds: float) -> float:
    """The semaphore's schedule: each call, in text order, takes the first free permit."""
    free = [0.0] * limit
    end = 0.0
    for fate in fates:
        start = heapq.heappop(free)
        finish = start + (seconds if fate == "hang" else latency)
        heapq.heappush(free, finish)
        end = max(end, finish)
    return end


def _fail_attempt(hint: str, seconds: float) -> NoReturn:
    """The attempt failed: say it in this exercise's words where we can."""
    __tracebackhide__ = True
    if hint.startswith("your function was still running"):
        fail(f"your function never returned: a call hung (it never answers) and nothing stopped it. Give each "
             f"call its own deadline: `async with asynclab.timeout(seconds):` around `await llm.complete(...)`, "
             f"inside the permit, and return None when it expires ({seconds:g} s here).")
    if hint.startswith("your function raised") and "TimeoutError" in hint:
        fail("a call that ran out of time raised TimeoutError and it ended your whole function. Catch it around "
             "each call (`except TimeoutError: return None`) so one slow call costs one answer, not all of them.")
    if hint.startswith("your function raised") and "ServiceUnavailable" in hint:
        fail("one failed call ended your whole function (" + hint.removeprefix("your function raised ") + "). A "
             "TaskGroup cancels the other calls when one fails, and gather passes the first error on: catch the "
             "error inside each call (`except ServiceError: return None`) so a failure costs one answer.")
    raise ExerciseFailed(hint)


async def check_classify_all(classify_all: Callable[..., Any]) -> None:
    """Grade ``classify_all(llm, texts, limit, seconds) -> list[str | None]``.

    12 texts, limit 4, 0.5 s per call, ``seconds`` = 0.8: two calls fail (ServiceUnavailable) and
    two hang. The result is the classifier's topic per text, None where the call failed or ran out
    of its ``seconds`` *in service* (the wait for a permit does not count); never more than 4 calls
    in flight, and the limit used fully (the semaphore's schedule, ≈ 1.8 s).
    """
    __tracebackhide__ = True
    llm, texts, limit, seconds = classify_all_setup()
    fates = _fates(llm, texts)
    ideal = _ideal_time(fates, limit, CLASSIFY_LATENCY, seconds)
    failure = None
    try:  # a sequential answer takes 6.6 s: the timeout (6 × 1.8 s) leaves it room to be told so
        result = await attempt(classify_all, llm, texts, limit, seconds, timeout=6 * ideal)
    except ExerciseFailed as error:
        failure = error.hint
    if failure is not None:
        _fail_attempt(failure, seconds)  # outside the except block: no "During handling…" chain
    expect_no_leaks(result)
    _expect_within_limit(result, limit, len(texts))
    answers = result.result
    if inspect.iscoroutine(answers):
        answers.close()
        fail("you returned a coroutine object, not the results: did you forget an `await`?")
    expect(isinstance(answers, (list, tuple)) and len(answers) == len(texts),
           f"return a list with one topic (or None) per text, {len(texts)} in all; you returned {answers!r:.100}")
    reference = LLM(latency=0)
    spans = {span.key.partition(":")[2]: span for span in result.trace.spans if span.key.startswith("classifier:")}
    for index, (got, fate, text) in enumerate(zip(answers, fates, texts, strict=True)):
        if isinstance(got, BaseException):
            fail(f"results[{index}] is the error {type(got).__name__}({got}), not None: gather(return_exceptions=True) "
                 "hands errors back as values. Turn each failure into None.")
        if fate != "ok":
            why = ("failed (ServiceUnavailable)" if fate == "error"
                   else f"hung, and should have been stopped after {seconds:g} s")
            expect(got is None, f"results[{index}] is {got!r:.40}, but its call {why}: it should be None. "
                                "(Retrying is lesson 11's subject: here, report the failure as None.)")
            continue
        want = await reference.complete(text, model="classifier")
        if got is None:
            span = spans.get(text)
            if span is None:
                raise ExerciseFailed(
                    f"results[{index}] is None, but its call would have answered: it was never sent. Its deadline "
                    "ran out while it waited for a permit: put `asynclab.timeout(seconds)` INSIDE "
                    "`async with semaphore:`, so only the time in service counts.")
            if span.outcome == "cancelled":
                fail(f"results[{index}] is None: its call was cancelled after only {span.duration:.2f} s in service, "
                     f"but it had {seconds:g} s (an answer takes {CLASSIFY_LATENCY:g} s). If your timeout encloses "
                     "`async with semaphore:`, the wait for a permit eats the deadline: put the timeout inside.")
            fail(f"results[{index}] is None, but its call answered {want!r}: return the answer of each call that "
                 "succeeded.")
        expect(got == want, f"results[{index}] is {got!r:.40}, but llm.complete(texts[{index}], model='classifier') "
                            f"answers {want!r}: return the classifier's topic, in text order.")
    hung = [span for span in result.trace.spans if span.outcome == "cancelled"]
    # 1.5 ×: a late timer on a busy machine adds tens of ms at most; a deadline of its own is off by far more.
    overlong = [span for span in hung if span.duration > 1.5 * seconds]
    if overlong:
        fail(f"a hanging call held its permit for {overlong[0].duration:.2f} s, but each call gets only "
             f"{seconds:g} s: use the `seconds` argument as the timeout.")
    # 30 %: a stalled machine must never fail a right answer, and the nearest wrong schedule (half the
    # permits used) takes 1.8 × as long, one text after another 3.7 ×.
    if not within(result.elapsed, ideal, rel=0.3):
        fail(f"the answers are right but took {result.elapsed:.2f} s; with {limit} calls in flight at all times it "
             f"takes {ideal:.2f} s (the semaphore's schedule, at most {result.trace.max_concurrency()} calls ran at "
             "once). Start every call at once (a TaskGroup or gather over all texts) and let the semaphore hold "
             "back the extra ones.")
    failed = sum(fate != "ok" for fate in fates)
    passed(f"classify_all: {len(texts) - failed} topics and {failed} None (2 failures, 2 calls stopped after "
           f"{seconds:g} s in service), never more than {limit} calls at once, in {result.elapsed:.2f} s "
           f"(the schedule: {ideal:.2f} s).")
