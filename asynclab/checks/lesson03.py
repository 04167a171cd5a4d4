"""Checkers for notebook 03 · Parallel LLM calls.

    from asynclab.checks import lesson03
    await lesson03.check_analyze(analyze)              # three models on one text, at once
    await lesson03.check_analyze_many(analyze_many)    # many texts, at most `limit` calls in flight

Introduced in notebook 03.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from asynclab.checks import Attempt, attempt, expect, expect_concurrent, expect_no_leaks, fail, passed, within
from asynclab.services import LLM
from asynclab.text import TOPICS, load_corpus

__all__ = ["FIELDS", "REVIEWS", "check_analyze", "check_analyze_many", "texts_for_analyze_many"]

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

