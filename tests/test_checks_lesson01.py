"""Checkers of notebook 01: each passes the reference solution and fails wrong ones with its hint."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest

from asynclab import LLM, BlockingLLM, MetadataStore, PineconeStore
from asynclab.checks import ExerciseFailed, lesson01

# -- summarize_all: a blocking client inside async code ------------------------------------


async def summarize_all(llm: BlockingLLM, texts: list[str]) -> list[str]:
    return list(await asyncio.gather(*(asyncio.to_thread(llm.complete, t, model="summarizer") for t in texts)))


async def test_summaries_in_threads_at_once_pass(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson01.check_summarize_all(summarize_all)
    assert "✅ summarize_all keeps the loop free" in capsys.readouterr().out


async def test_calling_the_blocking_client_directly_reports_the_frozen_loop(fast: float) -> None:
    async def blocking(llm: BlockingLLM, texts: list[str]) -> list[str]:
        return [llm.complete(text, model="summarizer") for text in texts]

    # Four blocking calls of 1.0 s in a row: the heartbeat misses about 4 s (3.5 leaves room for timers).
    frozen = r"the event loop was frozen for (3\.[5-9]|4\.\d)\d s: a blocking call ran on it"
    with pytest.raises(ExerciseFailed, match=frozen):
        await lesson01.check_summarize_all(blocking)


async def test_threads_awaited_one_by_one_keep_the_loop_free_but_run_in_sequence(fast: float) -> None:
    async def one_by_one(llm: BlockingLLM, texts: list[str]) -> list[str]:
        return [await asyncio.to_thread(llm.complete, text, model="summarizer") for text in texts]

    with pytest.raises(ExerciseFailed, match=r"your 4 calls ran one after another: \d\.\d\d s, the sum \(4\.00 s\)"):
        await lesson01.check_summarize_all(one_by_one)


async def test_to_thread_without_await_returns_coroutines(fast: float) -> None:
    async def not_awaited(llm: BlockingLLM, texts: list[str]) -> list[Any]:
        return [asyncio.to_thread(llm.complete, text, model="summarizer") for text in texts]

    with pytest.raises(ExerciseFailed, match=r"your list holds coroutine objects \(to_thread\)"):
        await lesson01.check_summarize_all(not_awaited)


async def test_the_default_model_gives_answers_not_summaries(fast: float) -> None:
    async def wrong_model(llm: BlockingLLM, texts: list[str]) -> list[str]:
        return list(await asyncio.gather(*(asyncio.to_thread(llm.complete, text) for text in texts)))

    with pytest.raises(ExerciseFailed, match=r"Call llm.complete\(text, model='summarizer'\)"):
        await lesson01.check_summarize_all(wrong_model)


async def test_a_correct_answer_is_never_told_the_loop_froze(fast: float) -> None:
    """Solutions 01 was told "frozen for 2.0 s": a second heartbeat around attempt() timed its GC."""
    for _ in range(5):
        await lesson01.check_summarize_all(summarize_all)


# -- doc_card: forgotten awaits, and what may overlap -----------------------------------------


async def doc_card(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str) -> dict[str, Any]:
    top = (await store.search(question, k=1))[0]
    info, summary = await asyncio.gather(meta.get(top.id), llm.complete(top.text, model="summarizer"))
    return {"title": info["title"], "author": info["author"], "summary": summary}


async def test_the_awaited_and_overlapped_card_passes(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson01.check_doc_card(doc_card)
    assert "✅ doc_card awaits every call, and overlaps what can overlap" in capsys.readouterr().out


async def test_the_card_without_awaits_names_the_forgotten_coroutine(fast: float) -> None:
    async def forgetful(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str) -> dict[str, Any]:
        hits = store.search(question, k=1)
        top = hits[0]  # type: ignore[index]
        info = meta.get(top.id)
        summary = llm.complete(top.text, model="summarizer")
        return {"title": info["title"], "author": info["author"], "summary": summary}  # type: ignore[index]

    with pytest.raises(
        ExerciseFailed,
        match=r"TypeError: 'coroutine' object is not subscriptable\. "
        r".*\(coroutine 'VectorStore.search' was never awaited\)",
    ):
        await lesson01.check_doc_card(forgetful)


async def test_awaiting_everything_in_sequence_is_right_but_slow(fast: float) -> None:
    async def in_sequence(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str) -> dict[str, Any]:
        top = (await store.search(question, k=1))[0]
        info = await meta.get(top.id)
        summary = await llm.complete(top.text, model="summarizer")
        return {"title": info["title"], "author": info["author"], "summary": summary}

    with pytest.raises(ExerciseFailed, match=r"ran one after another: 2\.\d\d s\. .* to take 1\.80 s"):
        await lesson01.check_doc_card(in_sequence)


async def test_a_stray_call_that_is_never_awaited_is_caught(fast: float) -> None:
    async def stray(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str) -> dict[str, Any]:
        llm.complete(question)  # a leftover call: creates a coroutine that never runs
        return await doc_card(llm, store, meta, question)

    with pytest.raises(ExerciseFailed, match=r"never awaited \(coroutine 'LLM.complete' was never awaited\)"):
        await lesson01.check_doc_card(stray)


async def test_a_summary_awaited_but_of_the_wrong_text_is_a_wrong_result(fast: float) -> None:
    async def summary_of_question(
        llm: LLM, store: PineconeStore, meta: MetadataStore, question: str
    ) -> dict[str, Any]:
        top = (await store.search(question, k=1))[0]
        info, summary = await asyncio.gather(meta.get(top.id), llm.complete(question, model="summarizer"))
        return {"title": info["title"], "author": info["author"], "summary": summary}

    with pytest.raises(ExerciseFailed, match=r"card\['summary'\] should be"):
        await lesson01.check_doc_card(summary_of_question)


async def test_summaries_through_run_in_executor_pass_too(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 7: run_in_executor does not carry the trace's context into the thread; the calls still count."""
    async def summarize_in_executor(llm: BlockingLLM, texts: list[str]) -> list[str]:
        loop = asyncio.get_running_loop()
        calls = [loop.run_in_executor(None, functools.partial(llm.complete, t, model="summarizer")) for t in texts]
        return list(await asyncio.gather(*calls))

    await lesson01.check_summarize_all(summarize_in_executor)
    assert "✅ summarize_all keeps the loop free" in capsys.readouterr().out
