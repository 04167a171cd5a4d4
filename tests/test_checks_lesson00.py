"""Checkers of notebook 00: each passes the reference solution and fails wrong ones with its hint."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from asynclab import LLM, MetadataStore, PineconeStore
from asynclab.checks import ExerciseFailed, lesson00

Result = tuple[str, list[str], dict[str, Any]]


async def handle_request(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str, doc_id: str) -> Result:
    answer, hits, info = await asyncio.gather(llm.complete(question), store.search(question, k=3), meta.get(doc_id))
    return answer, [hit.id for hit in hits], info


async def test_the_reference_handle_request_passes(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson00.check_handle_request(handle_request)
    assert "✅ handle_request is right and concurrent" in capsys.readouterr().out


async def test_three_awaits_in_a_row_fail_with_the_sum(fast: float) -> None:
    async def one_after_another(
        llm: LLM, store: PineconeStore, meta: MetadataStore, question: str, doc_id: str
    ) -> Result:
        answer = await llm.complete(question)
        hits = await store.search(question, k=3)
        info = await meta.get(doc_id)
        return answer, [hit.id for hit in hits], info

    with pytest.raises(ExerciseFailed, match=r"your three calls ran one after another: 2\.\d\d s, the sum \(2\.10 s\)"):
        await lesson00.check_handle_request(one_after_another)


async def test_awaiting_the_llm_before_gathering_the_rest_fails_as_partial_overlap(fast: float) -> None:
    async def partly(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str, doc_id: str) -> Result:
        answer = await llm.complete(question)
        hits, info = await asyncio.gather(store.search(question, k=3), meta.get(doc_id))
        return answer, [hit.id for hit in hits], info

    with pytest.raises(ExerciseFailed, match=r"overlapped only partly \(at most 2 at once\)"):
        await lesson00.check_handle_request(partly)


async def test_returning_hit_objects_instead_of_ids_is_a_wrong_result(fast: float) -> None:
    async def hits_not_ids(
        llm: LLM, store: PineconeStore, meta: MetadataStore, question: str, doc_id: str
    ) -> tuple[str, Any, Any]:
        return tuple(await asyncio.gather(llm.complete(question), store.search(question, k=3), meta.get(doc_id)))  # type: ignore[return-value]

    with pytest.raises(ExerciseFailed, match=r"doc_ids should be the hits' ids.*use \[hit.id for hit in hits\]"):
        await lesson00.check_handle_request(hits_not_ids)


async def test_metadata_of_a_search_hit_instead_of_the_open_document_is_wrong(fast: float) -> None:
    async def wrong_doc(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str, doc_id: str) -> Result:
        answer, hits = await asyncio.gather(llm.complete(question), store.search(question, k=3))
        return answer, [hit.id for hit in hits], await meta.get(hits[0].id)

    with pytest.raises(ExerciseFailed, match=r"metadata is for 'doc-\d+', a search hit"):
        await lesson00.check_handle_request(wrong_doc)


async def test_calls_that_were_never_awaited_are_named(fast: float) -> None:
    async def forgot(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str, doc_id: str) -> Any:
        return llm.complete(question), store.search(question, k=3), meta.get(doc_id)

    with pytest.raises(ExerciseFailed, match=r"coroutine objects \(LLM.complete, VectorStore.search"):
        await lesson00.check_handle_request(forgot)


async def test_the_stub_says_it_is_not_done(fast: float) -> None:
    async def stub(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str, doc_id: str) -> Result:
        raise NotImplementedError

    with pytest.raises(ExerciseFailed, match="not done yet"):
        await lesson00.check_handle_request(stub)


def predict_times(stages: list[list[float]]) -> tuple[float, float]:
    return sum(sum(stage) for stage in stages), sum(max(stage) for stage in stages)


async def test_the_reference_predictions_pass_and_show_the_measurements(
    fast: float, capsys: pytest.CaptureFixture[str]
) -> None:
    await lesson00.check_predict_times(predict_times)
    out = capsys.readouterr().out
    assert "✅ predict_times matches the model and the measurements" in out
    assert "2.10 /" in out and "1.80 /" in out  # the RAG plan: Σ 2.1 s, 0.6 + max(0.3, 1.2) = 1.8 s


async def test_max_of_all_calls_ignores_dependent_stages(fast: float) -> None:
    def flat(stages: list[list[float]]) -> tuple[float, float]:
        every = [seconds for stage in stages for seconds in stage]
        return sum(every), max(every)

    with pytest.raises(ExerciseFailed, match=r"^RAG .*the slowest call overall\. But a stage needs"):
        await lesson00.check_predict_times(flat)


async def test_a_wrong_sequential_prediction_is_explained(fast: float) -> None:
    def max_for_both(stages: list[list[float]]) -> tuple[float, float]:
        t_async = sum(max(stage) for stage in stages)
        return t_async, t_async

    with pytest.raises(ExerciseFailed, match=r"T_sync = 1\.20 s\. One after another.*Σ of all calls"):
        await lesson00.check_predict_times(max_for_both)


async def test_predictions_must_be_a_pair_of_numbers(fast: float) -> None:
    def one_number(stages: list[list[float]]) -> float:
        return 2.1

    with pytest.raises(ExerciseFailed, match=r"return a tuple of two numbers \(t_sync, t_async\)"):
        await lesson00.check_predict_times(one_number)


async def test_passing_the_result_of_a_call_instead_of_the_function_names_the_mistake(fast: float) -> None:
    def predict_times(stages: list[list[float]]) -> tuple[float, float]:
        return 0.0, 0.0

    with pytest.raises(ExerciseFailed, match=r"pass your function itself, check_predict_times\(predict_times\), not "
                                             r"what a call of it returned \(tuple"):
        await lesson00.check_predict_times(predict_times([[1.0]]))  # type: ignore[arg-type]
