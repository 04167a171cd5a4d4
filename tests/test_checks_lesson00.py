"""Checkers of notebook 00: each passes the reference solution and fails wrong ones with its hint."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest

from asynclab import LLM, MetadataStore, PineconeStore, ServiceError
from asynclab.checks import ExerciseFailed, lesson00

Result = tuple[str, list[str], dict[str, Any]]
T = TypeVar("T")


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


# -- partial failure: optional metadata, required answer and hits -----------------------------


async def optional(call: Awaitable[T]) -> T | None:
    """The value of an optional call, or None when its service fails."""
    try:
        return await call
    except ServiceError:
        return None


async def resilient(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str, doc_id: str) -> Any:
    async with asyncio.TaskGroup() as tg:
        answer = tg.create_task(llm.complete(question))
        hits = tg.create_task(store.search(question, k=3))
        info = tg.create_task(optional(meta.get(doc_id)))
    return answer.result(), [hit.id for hit in hits.result()], info.result()


async def test_a_task_group_with_optional_metadata_passes(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson00.check_partial_failure(resilient)
    out = capsys.readouterr().out
    assert "✅ handle_request survives a failing metadata store and fails fast" in out
    assert "LLM call cancelled" in out


async def test_cancelling_the_other_tasks_by_hand_passes_too(fast: float) -> None:
    """The alternative of the solutions: plain gather, and the leftovers cancelled in `finally`."""
    async def by_hand(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str, doc_id: str) -> Any:
        tasks: list[asyncio.Task[Any]] = [
            asyncio.create_task(llm.complete(question)), asyncio.create_task(store.search(question, k=3)),
            asyncio.create_task(optional(meta.get(doc_id)))]
        try:
            answer, hits, info = await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return answer, [hit.id for hit in hits], info

    await lesson00.check_partial_failure(by_hand)


async def test_awaiting_each_call_in_its_own_try_is_sequential(fast: float) -> None:
    async def careful(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str, doc_id: str) -> Any:
        answer = await llm.complete(question)
        hits = await store.search(question, k=3)
        try:
            info = await meta.get(doc_id)
        except ServiceError:
            info = None
        return answer, [hit.id for hit in hits], info

    with pytest.raises(ExerciseFailed, match=r"your three calls ran one after another: 2\.\d\d s, the sum \(2\.10 s\)"):
        await lesson00.check_partial_failure(careful)


async def test_the_optional_call_awaited_after_the_others_overlaps_only_partly(fast: float) -> None:
    async def meta_last(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str, doc_id: str) -> Any:
        answer, hits = await asyncio.gather(llm.complete(question), store.search(question, k=3))
        return answer, [hit.id for hit in hits], await optional(meta.get(doc_id))

    with pytest.raises(ExerciseFailed, match=r"overlapped only partly \(at most 2 at once\)"):
        await lesson00.check_partial_failure(meta_last)


async def test_a_plain_gather_fails_the_whole_request_when_the_metadata_fails(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"when the metadata store failed, your function raised "
                                             r"ServiceUnavailable from metadata\.get.*metadata is optional"):
        await lesson00.check_partial_failure(handle_request)


async def test_a_task_group_without_the_optional_wrapper_is_told_to_catch_inside_the_task(fast: float) -> None:
    async def grouped(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str, doc_id: str) -> Any:
        async with asyncio.TaskGroup() as tg:
            answer = tg.create_task(llm.complete(question))
            hits = tg.create_task(store.search(question, k=3))
            info = tg.create_task(meta.get(doc_id))
        return answer.result(), [hit.id for hit in hits.result()], info.result()

    with pytest.raises(ExerciseFailed, match=r"raised 1 error\(s\) inside a TaskGroup: ServiceUnavailable from "
                                             r"metadata\.get.*caught inside its own task"):
        await lesson00.check_partial_failure(grouped)


async def test_the_error_object_returned_as_metadata_is_a_wrong_result(fast: float) -> None:
    async def error_as_value(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str, doc_id: str) -> Any:
        answer, hits, info = await asyncio.gather(
            llm.complete(question), store.search(question, k=3), meta.get(doc_id), return_exceptions=True)
        return answer, [hit.id for hit in hits], info  # type: ignore[union-attr]

    with pytest.raises(ExerciseFailed, match=r"your metadata is the error object itself \(ServiceUnavailable.*"
                                             r"return_exceptions=True"):
        await lesson00.check_partial_failure(error_as_value)


async def test_an_empty_dict_instead_of_none_is_a_wrong_result(fast: float) -> None:
    async def empty(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str, doc_id: str) -> Any:
        answer, hits, info = await resilient(llm, store, meta, question, doc_id)
        return answer, hits, info or {}

    with pytest.raises(ExerciseFailed, match=r"metadata should be None; you returned \{\}"):
        await lesson00.check_partial_failure(empty)


async def test_a_gather_with_the_optional_wrapper_leaves_the_llm_call_running_when_the_search_fails(
    fast: float,
) -> None:
    async def gathered(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str, doc_id: str) -> Any:
        answer, hits, info = await asyncio.gather(
            llm.complete(question), store.search(question, k=3), optional(meta.get(doc_id)))
        return answer, [hit.id for hit in hits], info

    with pytest.raises(ExerciseFailed, match=r"when the search failed at 0\.60 s, your function raised at once but "
                                             r"left 1 call\(s\) running \(LLM\.complete\).*TaskGroup"):
        await lesson00.check_partial_failure(gathered)


async def test_waiting_for_every_call_before_raising_fails_slowly(fast: float) -> None:
    async def patient(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str, doc_id: str) -> Any:
        answer, hits, info = await asyncio.gather(
            llm.complete(question), store.search(question, k=3), meta.get(doc_id), return_exceptions=True)
        for required in (answer, hits):
            if isinstance(required, BaseException):
                raise required
        return answer, [hit.id for hit in hits], None if isinstance(info, BaseException) else info  # type: ignore[union-attr]

    with pytest.raises(ExerciseFailed, match=r"the search failed at 0\.60 s, but your function raised only at "
                                             r"1\.\d\d s: it waited for the LLM's answer"):
        await lesson00.check_partial_failure(patient)


async def test_swallowing_the_search_error_is_told_to_let_it_through(fast: float) -> None:
    async def swallow(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str, doc_id: str) -> Any:
        async with asyncio.TaskGroup() as tg:
            answer = tg.create_task(llm.complete(question))
            hits = tg.create_task(optional(store.search(question, k=3)))
            info = tg.create_task(optional(meta.get(doc_id)))
        return answer.result(), [hit.id for hit in hits.result() or []], info.result()

    with pytest.raises(ExerciseFailed, match=r"when the vector store failed, your function returned \(.* instead "
                                             r"of failing\. Without search hits"):
        await lesson00.check_partial_failure(swallow)


async def test_using_an_error_object_as_hits_names_the_error_to_raise(fast: float) -> None:
    async def unchecked(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str, doc_id: str) -> Any:
        answer, hits, info = await asyncio.gather(
            llm.complete(question), store.search(question, k=3), optional(meta.get(doc_id)), return_exceptions=True)
        return answer, [hit.id for hit in hits], info  # type: ignore[union-attr]

    with pytest.raises(ExerciseFailed, match=r"your function raised TypeError: 'ServiceUnavailable' object is not "
                                             r"iterable, but the error to report is the search's"):
        await lesson00.check_partial_failure(unchecked)


async def test_a_blocking_pause_in_the_optional_call_reports_the_frozen_loop(fast: float) -> None:
    async def pause_then_none(call: Awaitable[Any]) -> Any:
        try:
            return await call
        except ServiceError:
            time.sleep(0.15)  # a "pause before giving up", blocking the loop: 3 simulated s at speed 20
            return None

    async def frozen(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str, doc_id: str) -> Any:
        async with asyncio.TaskGroup() as tg:
            answer = tg.create_task(llm.complete(question))
            hits = tg.create_task(store.search(question, k=3))
            info = tg.create_task(pause_then_none(meta.get(doc_id)))
        return answer.result(), [hit.id for hit in hits.result()], info.result()

    with pytest.raises(ExerciseFailed, match=r"the event loop was frozen for \d\.\d\d s .*time\.sleep"):
        await lesson00.check_partial_failure(frozen)


async def test_the_partial_failure_stub_says_it_is_not_done(fast: float) -> None:
    async def stub(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str, doc_id: str) -> Result:
        raise NotImplementedError

    with pytest.raises(ExerciseFailed, match="not done yet"):
        await lesson00.check_partial_failure(stub)


async def test_a_call_of_the_function_instead_of_the_function_is_named(fast: float) -> None:
    coroutine = resilient(LLM(), PineconeStore(), MetadataStore(), "q", "doc-001")
    with pytest.raises(ExerciseFailed, match=r"pass your function itself, e\.g\. check\(resilient\)"):
        await lesson00.check_partial_failure(coroutine)  # type: ignore[arg-type]


async def test_another_wait_after_the_failure_is_caught(fast: float) -> None:
    async def lingering(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str, doc_id: str) -> Any:
        try:
            return await resilient(llm, store, meta, question, doc_id)
        except ExceptionGroup:
            await asyncio.sleep(0.8 / fast)  # "let things settle": 0.8 simulated seconds before raising
            raise

    with pytest.raises(ExerciseFailed, match=r"your request took 1\.\d\d s to fail instead of 0\.60 s"):
        await lesson00.check_partial_failure(lingering)
