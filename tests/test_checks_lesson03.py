"""The notebook 03 checkers pass the reference solutions and fail each wrong one with its hint."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from asynclab import LLM
from asynclab.checks import ExerciseFailed, lesson03

MODELS = {"summary": "summarizer", "sentiment": "sentiment", "topic": "classifier"}

# -- analyze(llm, text) ------------------------------------------------------------------------


async def analyze(llm: LLM, text: str) -> dict[str, str]:
    summary, sentiment, topic = await asyncio.gather(
        llm.complete(text, model="summarizer"),
        llm.complete(text, model="sentiment"),
        llm.complete(text, model="classifier"),
    )
    return {"summary": summary, "sentiment": sentiment, "topic": topic}


async def analyze_one_model_after_another(llm: LLM, text: str) -> dict[str, str]:
    return {field: await llm.complete(text, model=model) for field, model in MODELS.items()}


async def analyze_with_swapped_models(llm: LLM, text: str) -> dict[str, str]:
    summary, sentiment, topic = await asyncio.gather(
        llm.complete(text, model="summarizer"),
        llm.complete(text, model="classifier"),
        llm.complete(text, model="sentiment"),
    )
    return {"summary": summary, "sentiment": sentiment, "topic": topic}


async def analyze_with_the_default_model(llm: LLM, text: str) -> dict[str, str]:
    answers = await asyncio.gather(*(llm.complete(f"{field} of: {text}") for field in MODELS))
    return dict(zip(MODELS, answers, strict=True))


async def analyze_then_translate_in_the_background(llm: LLM, text: str) -> dict[str, str]:
    result = await analyze(llm, text)
    asyncio.create_task(llm.complete(f"Translate: {result['summary']}"))  # noqa: RUF006 - the leak under test
    return result


async def test_analyze_with_gather_passes(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson03.check_analyze(analyze)
    assert "✅ analyze returns the right summary, sentiment and topic" in capsys.readouterr().out


async def test_analyze_one_model_after_another_fails_with_the_sum(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"your 3 calls ran one after another: \d\.\d\d s, the sum \(1\.80 s\)"):
        await lesson03.check_analyze(analyze_one_model_after_another)


async def test_analyze_with_swapped_models_names_the_field_and_the_model(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"your dict\['sentiment'\] is 'llm' \(that is what model='classifier'"):
        await lesson03.check_analyze(analyze_with_swapped_models)


async def test_analyze_with_the_default_model_is_told_which_model_to_ask(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"\['summary'\] .* llm.complete\(text, model='summarizer'\)"):
        await lesson03.check_analyze(analyze_with_the_default_model)


async def test_analyze_leaving_a_call_running_fails(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"returned while 1 task\(s\) it started were still running"):
        await lesson03.check_analyze(analyze_then_translate_in_the_background)


# -- analyze_many(llm, texts, limit) -----------------------------------------------------------


async def analyze_many(llm: LLM, texts: Sequence[str], limit: int) -> list[dict[str, str]]:
    semaphore = asyncio.Semaphore(limit)

    async def call(text: str, model: str) -> str:
        async with semaphore:
            return await llm.complete(text, model=model)

    async def one(text: str) -> dict[str, str]:
        answers = await asyncio.gather(*(call(text, model) for model in MODELS.values()))
        return dict(zip(MODELS, answers, strict=True))

    return list(await asyncio.gather(*(one(text) for text in texts)))


async def analyze_many_without_a_limit(llm: LLM, texts: Sequence[str], limit: int) -> list[dict[str, str]]:
    return list(await asyncio.gather(*(analyze(llm, text) for text in texts)))


async def analyze_many_one_permit_per_text(llm: LLM, texts: Sequence[str], limit: int) -> list[dict[str, str]]:
    semaphore = asyncio.Semaphore(limit)

    async def one(text: str) -> dict[str, str]:
        async with semaphore:
            return await analyze(llm, text)

    return list(await asyncio.gather(*(one(text) for text in texts)))


async def analyze_many_text_by_text(llm: LLM, texts: Sequence[str], limit: int) -> list[dict[str, str]]:
    return [await analyze(llm, text) for text in texts]


async def analyze_many_with_a_hard_coded_limit(llm: LLM, texts: Sequence[str], limit: int) -> list[dict[str, str]]:
    return await analyze_many(llm, texts, 2)


async def analyze_many_in_finish_order(llm: LLM, texts: Sequence[str], limit: int) -> list[dict[str, str]]:
    results = await analyze_many(llm, texts, limit)
    return results[::-1]


async def test_analyze_many_with_one_semaphore_around_each_call_passes(
    fast: float, capsys: pytest.CaptureFixture[str]
) -> None:
    await lesson03.check_analyze_many(analyze_many)
    assert "✅ analyze_many analyzes 8 texts in order, never more than 6 calls at once" in capsys.readouterr().out


async def test_analyze_many_without_a_limit_is_told_nothing_held_the_calls_back(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match="all 24 calls were in flight at once, but the limit is 6"):
        await lesson03.check_analyze_many(analyze_many_without_a_limit)


async def test_analyze_many_with_a_permit_per_text_is_told_the_limit_counts_calls(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"18 calls were in flight .* one permit covered a whole text"):
        await lesson03.check_analyze_many(analyze_many_one_permit_per_text)


async def test_analyze_many_text_by_text_is_too_sequential(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"kept within the limit but took \d\.\d\d s.* = 2\.00 s\. It ran too"):
        await lesson03.check_analyze_many(analyze_many_text_by_text)


async def test_analyze_many_ignoring_the_given_limit_is_too_sequential(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"at most 2 calls at once\): start every call at once"):
        await lesson03.check_analyze_many(analyze_many_with_a_hard_coded_limit)


async def test_analyze_many_out_of_order_is_told_about_text_order(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match="every analysis is there, but not in text order"):
        await lesson03.check_analyze_many(analyze_many_in_finish_order)


def test_analyze_many_gets_one_text_per_topic() -> None:
    texts = lesson03.texts_for_analyze_many()
    assert len(texts) == len(set(texts)) == 8
