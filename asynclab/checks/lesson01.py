"""Checkers for notebook 01 · async/await.

    from asynclab.checks import lesson01
    await lesson01.check_summarize_all(summarize_all)   # a blocking client, moved off the loop
    await lesson01.check_doc_card(doc_card)             # forgotten awaits, and what can overlap

Introduced in notebook 01.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import warnings
from collections.abc import Callable
from typing import Any

from asynclab.checks import (
    Attempt,
    ExerciseFailed,
    attempt,
    close_coroutines,
    expect,
    expect_about,
    expect_no_leaks,
    fail,
    passed,
)
from asynclab.clock import get_speed
from asynclab.services import LLM, BlockingLLM, MetadataStore, PineconeStore
from asynclab.services.llm import run_model
from asynclab.text import load_corpus

__all__ = ["WatchedBlockingLLM", "check_doc_card", "check_summarize_all"]

#: Documents whose texts summarize_all gets (four calls: a frozen loop shows as 4 × the latency).
SUMMARY_DOCS = ("doc-081", "doc-082", "doc-090", "doc-091")
#: The blocking LLM's latency in the summarize_all check, simulated seconds.
SUMMARY_LATENCY = 1.0
#: Wall seconds that handing the calls to worker threads may cost on a busy machine.
THREAD_HANDOFF = 0.03
#: doc_card's question: its best hit is a document about running blocking code from async code.
CARD_QUESTION = "How do I run a blocking function without freezing the event loop?"


class WatchedBlockingLLM(BlockingLLM):
    """A :class:`BlockingLLM` that counts the calls made on a thread running an event loop.

    Such a call blocks the loop; counting it is exact, where a heartbeat's gap is only a timing.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.on_loop = 0

    def complete(self, prompt: str, *, model: str = "assistant") -> str:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass  # a worker thread: no loop here, blocking it is fine
        else:
            self.on_loop += 1
        return super().complete(prompt, model=model)




async def check_summarize_all(summarize_all: Callable[..., Any]) -> None:
    """Grade ``summarize_all(llm, texts) -> list[str]`` with a *blocking* LLM client.

    The summaries must come back in order, the calls must overlap (≈ one call, not four) and
    the event loop must stay free: a blocking call on the loop's thread fails the check first
    (attempt() sees it on the call's span; :class:`WatchedBlockingLLM` counts it too).
    """
    __tracebackhide__ = True
    docs = {doc.id: doc for doc in load_corpus()}
    texts = [docs[doc_id].text for doc_id in SUMMARY_DOCS]
    expected = [run_model("summarizer", text) for text in texts]  # also warms the model's cache
    llm = WatchedBlockingLLM(latency=SUMMARY_LATENCY)
    # attempt() watches the loop itself: a blocking call on the loop's thread fails it first,
    # with the hint to move the call into a thread (asyncio.to_thread).
    result = await attempt(summarize_all, llm, texts)
    summaries = result.result
    if inspect.iscoroutine(summaries):
        close_coroutines([summaries])
        fail("you returned a coroutine object, not the summaries: did you forget an `await`?")
    expect(isinstance(summaries, list) and len(summaries) == len(texts),
           f"return a list with one summary per text ({len(texts)}); you returned {summaries!r:.120}")
    forgotten = close_coroutines(summaries)
    expect(not forgotten,
           f"your list holds coroutine objects ({forgotten[0] if forgotten else ''}), not summaries: "
           "asyncio.to_thread(...) gives a coroutine; await it, e.g. with asyncio.gather(...)")
    total = SUMMARY_LATENCY * len(texts)
    if llm.on_loop:  # attempt() catches this first; kept as the exact, timing-free statement
        fail("the event loop was frozen: a blocking call ran on it. llm is a blocking client, so run each call "
             "in a worker thread: await asyncio.to_thread(llm.complete, text, model='summarizer')")
    if summaries != expected:
        if sorted(summaries) == sorted(expected):
            fail("these are the right summaries in the wrong order: return them in the order of texts "
                 "(asyncio.gather keeps the order it was given)")
        fail(f"the first summary should be {expected[0]!r:.80}; you returned {summaries[0]!r:.80}. "
             "Call llm.complete(text, model='summarizer') for each text.")
    calls = len(result.trace.spans)
    expect(calls == len(texts), f"expected {len(texts)} LLM calls, one per text, but your function made {calls}")
    peak = result.trace.max_concurrency()
    if peak == 1:
        fail(f"your {len(texts)} calls ran one after another: {result.elapsed:.2f} s, the sum ({total:.2f} s). "
             "The loop stayed free, but each to_thread call was awaited before the next started: "
             "start them all, then await them together with asyncio.gather(...)")
    if peak < len(texts):
        fail(f"your calls overlapped only partly (at most {peak} at once): {result.elapsed:.2f} s instead of "
             f"{SUMMARY_LATENCY:.2f} s. Start all of them before awaiting any.")
    # Looser than usual: the overlap is already proven above (all four calls in flight at once),
    # and four worker threads starting and taking the GIL cost 10-30 ms of wall time on a loaded
    # 2-core machine, × the speed in simulated seconds (0.6 s at speed 20). What is left to catch
    # is an extra wait of a whole call or more.
    allowed = 0.3 * SUMMARY_LATENCY + THREAD_HANDOFF * get_speed()
    expect(result.elapsed <= SUMMARY_LATENCY + allowed,
           f"your calls overlapped, but took {result.elapsed:.2f} s instead of {SUMMARY_LATENCY:.2f} s (one call): "
           "is something else waiting in your function?")
    expect_no_leaks(result)
    passed(f"summarize_all keeps the loop free (longest stall {result.froze:.2f} s) and runs the "
           f"{len(texts)} blocking calls in threads at once: {result.elapsed:.2f} s instead of {total:.2f} s.")


async def _card_reference(question: str) -> dict[str, Any]:
    """The right card, from instant (zero-latency) copies of the services."""
    top = (await PineconeStore(latency=0).search(question, k=1))[0]
    info = await MetadataStore(latency=0).get(top.id)
    summary = await LLM(latency=0).complete(top.text, model="summarizer")
    return {"title": info["title"], "author": info["author"], "summary": summary}


def _never_awaited(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "was never awaited" in str(w.message)]


async def check_doc_card(doc_card: Callable[..., Any]) -> None:
    """Grade ``doc_card(llm, store, meta, question) -> {"title", "author", "summary"}``.

    Every call must be awaited (no coroutine left un-run), the card must be right, and after
    the search the metadata fetch and the summary must overlap: 0.6 + max(0.3, 1.2) = 1.8 s.
    """
    __tracebackhide__ = True
    expected = await _card_reference(CARD_QUESTION)
    llm, store, meta = LLM(), PineconeStore(), MetadataStore()
    search, fetch, summarize = (s.latency.seconds() for s in (store, meta, llm))
    hint = ""
    result: Attempt | None = None
    forgotten: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = await attempt(doc_card, llm, store, meta, CARD_QUESTION)
        except ExerciseFailed as failed:
            hint = failed.hint
        if result is not None and isinstance(result.result, dict):
            forgotten = close_coroutines(result.result.values())
        gc.collect()  # a coroutine object that was never awaited warns when it is destroyed
    unawaited = _never_awaited(caught)
    named = f" ({unawaited[0]})" if unawaited else ""
    if hint and "'coroutine' object" in hint:
        fail(f"{hint}. A coroutine object stands where you expected a result{named}: "
             "put `await` in front of the call that made it.")
    if hint or result is None:
        fail(hint)  # outside the except block, so the learner sees the hint, not a chained traceback
    assert result is not None
    card = result.result
    if inspect.iscoroutine(card):
        close_coroutines([card])
        fail("you returned a coroutine object, not the card: did you forget an `await`?")
    expect(isinstance(card, dict), f"return a dict with title, author and summary; you returned {card!r:.120}")
    expect(not forgotten,
           f"your card holds coroutine objects ({', '.join(forgotten)}), not results: put `await` in front "
           "of those calls")
    expect(not unawaited, f"your function made a call it never awaited{named}: await it, or remove it")
    for key, value in expected.items():
        expect(key in card, f"the card needs a {key!r} entry; yours has {sorted(card)}")
        expect(card[key] == value, f"card[{key!r}] should be {value!r:.80}; you returned {card[key]!r:.80}")
    expect_no_leaks(result)
    spans = {name: result.trace.by_service(name) for name in (store.name, meta.name, llm.name)}
    for name, found in spans.items():
        expect(len(found) == 1, f"the {name} service was called {len(found)} times; call it exactly once")
    fetched, summarized = spans[meta.name][0], spans[llm.name][0]
    assert fetched.end is not None and summarized.end is not None
    best = search + max(fetch, summarize)
    if fetched.start >= summarized.end or summarized.start >= fetched.end:
        fail(f"every await is right, but the metadata fetch and the summary ran one after another: "
             f"{result.elapsed:.2f} s. Both need only the top hit, not each other: after the search, run them "
             f"together with asyncio.gather(...) to take {best:.2f} s.")
    expect_about(result.elapsed, best,
                 "your card took {measured:.2f} s; search, then metadata and summary together take "
                 "{expected:.2f} s. Is something else waiting in your function?")
    passed(f"doc_card awaits every call, and overlaps what can overlap: {result.elapsed:.2f} s "
           f"(search {search:.1f} s, then max({fetch:.1f}, {summarize:.1f}) s) instead of "
           f"{search + fetch + summarize:.2f} s.")
