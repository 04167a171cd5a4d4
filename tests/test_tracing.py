from __future__ import annotations

import asyncio

import pytest

from asynclab import LLM, MetadataStore, VectorStore, current_trace, trace
from asynclab.tracing import Trace

# At TEST_SPEED (20) a timer firing ~5 ms late (a busy or shared 2-core VM) reads as 0.1 simulated seconds.
ABS = 0.1


async def test_every_service_call_becomes_a_span_with_its_story(fast: float) -> None:
    llm, store, meta = LLM(), VectorStore(), MetadataStore()
    with trace() as t:
        await asyncio.gather(llm.complete("What is RAG?"), store.search("What is RAG?"), meta.get("doc-001"))
    assert [s.name for s in t.spans] == ["llm.complete", "vectorstore.search", "metadata.get"]
    for span, expected in zip(t.spans, [1.2, 0.6, 0.3], strict=True):
        assert span.outcome == "ok"
        assert span.attempt == 1
        assert span.end is not None
        assert span.duration == pytest.approx(expected, rel=0.05, abs=ABS)
        assert span.wait == pytest.approx(0.0, abs=ABS)
    assert t.elapsed == pytest.approx(1.2, rel=0.05, abs=ABS)
    assert t.busy == pytest.approx(2.1, rel=0.05, abs=3 * ABS)
    assert t.max_concurrency() == 3
    assert "3 spans" in repr(t)


async def test_calls_outside_a_trace_are_not_recorded(fast: float) -> None:
    llm = LLM(latency=0.1)
    assert current_trace() is None
    await llm.complete("hello")
    with trace() as t:
        await llm.complete("hello again")
    assert len(t) == 1


async def test_an_enclosing_trace_also_sees_the_inner_spans(fast: float) -> None:
    llm = LLM(latency=0.1)
    with trace() as outer:
        await llm.complete("one")
        with trace() as inner:
            await llm.complete("two")
    assert len(inner) == 1
    assert len(outer) == 2
    assert current_trace() is None


async def test_tasks_started_inside_the_block_record_into_it(fast: float) -> None:
    llm = LLM(latency=0.2)
    with trace() as t:
        tasks = [asyncio.create_task(llm.complete(f"q{i}")) for i in range(5)]
        await asyncio.gather(*tasks)
    assert len(t) == 5
    assert t.max_concurrency() == 5


async def test_back_to_back_calls_do_not_count_as_overlapping(fast: float) -> None:
    llm = LLM(latency=0.2)
    with trace() as t:
        for i in range(3):
            await llm.complete(f"q{i}")
    assert t.max_concurrency() == 1


def test_an_empty_trace_has_no_concurrency() -> None:
    assert Trace().max_concurrency() == 0
