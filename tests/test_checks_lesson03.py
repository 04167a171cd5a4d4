"""The notebook 03 checkers pass the reference solutions and fail each wrong one with its hint."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from asynclab import LLM, ServiceError, timeout
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


# -- classify_all(llm, texts, limit, seconds) ----------------------------------------------------


async def classify_all(llm: LLM, texts: Sequence[str], limit: int, seconds: float) -> list[str | None]:
    semaphore = asyncio.Semaphore(limit)

    async def one(text: str) -> str | None:
        async with semaphore:  # the deadline starts once the call holds a permit
            try:
                async with timeout(seconds):
                    return await llm.complete(text, model="classifier")
            except (ServiceError, TimeoutError):
                return None

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(text)) for text in texts]
    return [task.result() for task in tasks]


async def classify_all_with_the_deadline_around_the_permit(
    llm: LLM, texts: Sequence[str], limit: int, seconds: float
) -> list[str | None]:
    semaphore = asyncio.Semaphore(limit)

    async def one(text: str) -> str | None:
        try:
            async with timeout(seconds), semaphore:  # the wait for a permit eats the deadline
                return await llm.complete(text, model="classifier")
        except (ServiceError, TimeoutError):
            return None

    return list(await asyncio.gather(*(one(text) for text in texts)))


async def classify_all_without_a_limit(llm: LLM, texts: Sequence[str], limit: int, seconds: float) -> list[str | None]:
    return await classify_all(llm, texts, len(texts), seconds)


async def classify_all_one_by_one(llm: LLM, texts: Sequence[str], limit: int, seconds: float) -> list[str | None]:
    return [(await classify_all(llm, [text], 1, seconds))[0] for text in texts]


async def classify_all_without_catching(llm: LLM, texts: Sequence[str], limit: int, seconds: float) -> list[str]:
    semaphore = asyncio.Semaphore(limit)

    async def one(text: str) -> str:
        async with semaphore, timeout(seconds):
            return await llm.complete(text, model="classifier")

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(text)) for text in texts]
    return [task.result() for task in tasks]


async def classify_all_catching_only_service_errors(
    llm: LLM, texts: Sequence[str], limit: int, seconds: float
) -> list[str | None]:
    semaphore = asyncio.Semaphore(limit)

    async def one(text: str) -> str | None:
        async with semaphore, timeout(seconds):
            try:
                return await llm.complete(text, model="classifier")
            except ServiceError:
                return None

    return list(await asyncio.gather(*(one(text) for text in texts)))


async def classify_all_without_a_deadline(
    llm: LLM, texts: Sequence[str], limit: int, seconds: float
) -> list[str | None]:
    return await classify_all(llm, texts, limit, 1000.0)


async def classify_all_with_a_longer_deadline(
    llm: LLM, texts: Sequence[str], limit: int, seconds: float
) -> list[str | None]:
    return await classify_all(llm, texts, limit, 2 * seconds)


async def classify_all_returning_the_errors(
    llm: LLM, texts: Sequence[str], limit: int, seconds: float
) -> list[object]:
    semaphore = asyncio.Semaphore(limit)

    async def one(text: str) -> str:
        async with semaphore, timeout(seconds):
            return await llm.complete(text, model="classifier")

    return list(await asyncio.gather(*(one(text) for text in texts), return_exceptions=True))


async def classify_all_retrying(llm: LLM, texts: Sequence[str], limit: int, seconds: float) -> list[str | None]:
    first = await classify_all(llm, texts, limit, seconds)
    again = await classify_all(llm, [t for t, got in zip(texts, first, strict=True) if got is None], limit, seconds)
    retried = iter(again)
    return [got if got is not None else next(retried) for got in first]


async def classify_all_leaving_a_call_behind(
    llm: LLM, texts: Sequence[str], limit: int, seconds: float
) -> list[str | None]:
    results = await classify_all(llm, texts, limit, seconds)
    asyncio.create_task(llm.complete("one more", model="classifier"))  # noqa: RUF006 - the leak under test
    return results


async def test_classify_all_with_the_deadline_inside_the_permit_passes(
    fast: float, capsys: pytest.CaptureFixture[str]
) -> None:
    await lesson03.check_classify_all(classify_all)
    assert "✅ classify_all: 8 topics and 4 None" in capsys.readouterr().out


async def test_classify_all_with_the_deadline_around_the_permit_is_told_to_move_it_inside(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"cancelled after only 0\.\d\d s in service.*put the timeout inside"):
        await lesson03.check_classify_all(classify_all_with_the_deadline_around_the_permit)


async def test_classify_all_without_a_limit_is_told_nothing_held_the_calls_back(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match="all 12 calls were in flight at once, but the limit is 4"):
        await lesson03.check_classify_all(classify_all_without_a_limit)


async def test_classify_all_one_by_one_is_too_sequential(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"answers are right but took \d\.\d\d s.*takes 1\.80 s"):
        await lesson03.check_classify_all(classify_all_one_by_one)


async def test_classify_all_without_catching_is_told_one_failure_ended_everything(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"one failed call ended your whole function.*ServiceUnavailable"):
        await lesson03.check_classify_all(classify_all_without_catching)


async def test_classify_all_catching_only_service_errors_is_told_about_timeout_error(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match="raised TimeoutError and it ended your whole function"):
        await lesson03.check_classify_all(classify_all_catching_only_service_errors)


async def test_classify_all_without_a_deadline_is_told_a_call_hung(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match="never returned: a call hung"):
        await lesson03.check_classify_all(classify_all_without_a_deadline)


async def test_classify_all_with_a_longer_deadline_is_told_to_use_seconds(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"held its permit for 1\.\d\d s, but each call gets only 0\.8 s"):
        await lesson03.check_classify_all(classify_all_with_a_longer_deadline)


async def test_classify_all_returning_the_errors_is_told_to_turn_them_into_none(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"results\[0\] is the error TimeoutError\(\), not None"):
        await lesson03.check_classify_all(classify_all_returning_the_errors)


async def test_classify_all_retrying_failures_is_told_to_report_them(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"results\[0\] is 'llm', but its call hung.*it should be None"):
        await lesson03.check_classify_all(classify_all_retrying)


async def test_classify_all_leaving_a_call_running_fails(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"returned while 1 task\(s\) it started were still running"):
        await lesson03.check_classify_all(classify_all_leaving_a_call_behind)


def test_classify_all_fates_are_two_failures_and_two_hangs_one_in_the_first_wave() -> None:
    llm, texts, limit, _ = lesson03.classify_all_setup()
    fates = [llm.faults.decide("llm", "complete", f"classifier:{text}", 1) for text in texts]
    assert fates.count("error") == 2 and fates.count("hang") == 2
    assert "hang" in fates[:limit]  # what makes a deadline around the permit wait show
