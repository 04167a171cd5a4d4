from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Any

import pytest

from asynclab import LLM, MetadataStore, VectorStore, current_trace, stopwatch, trace
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


# -- full garbage collections wait while a measurement runs ----------------------------------------


def _full_collections_while(make_garbage_in: Callable[[], Any]) -> int:
    """How many full (oldest-generation) collections Python ran while the function made garbage."""
    full = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(1)

    gc.callbacks.append(seen)
    try:
        make_garbage_in()
    finally:
        gc.callbacks.remove(seen)
    return len(full)


def _cycles(n: int = 300_000) -> None:
    # Cycles the young collections free, and survivors that the oldest generation piles up: at
    # (700, 10, 10) enough for full collections (CPython runs one once survivors since the last
    # are a quarter of the long-lived objects).
    kept = []
    for i in range(n):
        a: list[Any] = []
        a.append(a)
        if i % 2:
            kept.append([i])


def test_no_full_collection_runs_inside_a_trace_and_young_ones_still_do() -> None:
    # A full collection of a notebook kernel stops the loop ~0.12 s: 2.4 simulated s at speed 20,
    # inside whatever was being measured (lesson 12's limiter read 7.5/s instead of 9.6/s).
    assert gc.isenabled()
    assert _full_collections_while(_cycles) > 0  # the same garbage outside a trace: full collections

    def in_trace() -> None:
        with trace():
            young_before = gc.get_stats()[0]["collections"]
            _cycles()
            assert gc.get_stats()[0]["collections"] > young_before  # the young generation is still collected

    assert _full_collections_while(in_trace) == 0


def test_the_collectors_thresholds_come_back_when_the_last_overlapping_measurement_ends() -> None:
    saved = gc.get_threshold()
    gc.set_threshold(500, 7, 9)  # whatever the user had set
    try:
        first, second = trace(), stopwatch()
        first.__enter__()
        second.__enter__()
        assert gc.get_threshold() == (500, 7, 2**30)
        first.__exit__(None, None, None)  # overlapping, not nested: the first ends first
        assert gc.get_threshold() == (500, 7, 2**30)
        second.__exit__(None, None, None)
        assert gc.get_threshold() == (500, 7, 9)
        second.__exit__(None, None, None)  # an extra exit changes nothing
        assert gc.get_threshold() == (500, 7, 9)
    finally:
        gc.set_threshold(*saved)
