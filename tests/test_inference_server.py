"""InferenceServer: streams like LLM.stream, spans in the trace, the same batches as simulate(), no leftovers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from asynclab import LLM, Faults, ServiceUnavailable, stopwatch, trace
from asynclab.checks import attempt
from asynclab.inference import (
    ContinuousBatcher,
    DynamicBatcher,
    InferenceServer,
    Scheduler,
    StaticBatcher,
    mixed_workload,
    simulate,
)


async def test_a_stream_gives_the_same_tokens_as_the_llm_service(fast: float) -> None:
    server = InferenceServer()
    prompt = "Why do LLM apps wait?"
    tokens = [token async for token in server.stream(prompt)]
    assert tokens == [token async for token in LLM(stream_latency=None).stream(prompt)]
    assert await server.complete(prompt, max_tokens=3) == "".join(tokens[:3])


async def test_each_request_is_a_span_with_its_queueing_and_first_token(fast: float) -> None:
    server = InferenceServer(DynamicBatcher(max_queue_delay=0.5))
    with trace() as t:
        await server.complete("What is an embedding?")
    (span,) = t.spans
    assert span.name == "inference.stream" and span.outcome == "ok"
    # The batcher held it max_queue_delay = 0.5 s before the batch went (timer slack: 0.1 s).
    assert 0.45 <= span.wait <= 0.6
    assert span.first_token is not None and span.start < span.first_token <= span.end  # type: ignore[operator]


SCHEDULERS: dict[str, Callable[[], Scheduler]] = {
    "static": lambda: StaticBatcher(batch_size=8, timeout=0.5),
    "dynamic": DynamicBatcher,
    "continuous": ContinuousBatcher,
}


@pytest.mark.parametrize("kind", list(SCHEDULERS))
async def test_replaying_a_workload_measures_what_simulate_predicts(fast: float, kind: str) -> None:
    work = mixed_workload(20, rate=4.0, seed=3)
    expected = simulate(work, SCHEDULERS[kind]())
    measured = await InferenceServer(SCHEDULERS[kind]()).replay(work)
    # The engine keeps its own timeline of passes and replay stamps each request at its scheduled
    # arrival, so the batches are the simulation's; 10 % is for a client woken so late (a loaded
    # machine) that the engine had already started the pass it was due in. A wrong batch is more.
    assert measured.throughput == pytest.approx(expected.throughput, rel=0.1)
    assert measured.output_tokens == expected.output_tokens


async def test_concurrent_clients_fill_the_batch_and_one_at_a_time_clients_waste_it(fast: float) -> None:
    prompts = [f"Question {i}: what does batching buy a GPU?" for i in range(16)]
    together, alone = InferenceServer(), InferenceServer()
    with stopwatch() as concurrent:
        async with asyncio.TaskGroup() as group:
            for prompt in prompts:
                group.create_task(together.complete(prompt))
    with stopwatch() as sequential:
        for prompt in prompts:
            await alone.complete(prompt)
    assert together.report().mean_batch > 8 and alone.report().mean_batch == 1
    assert sequential.elapsed > 5 * concurrent.elapsed  # a batch of 16 costs little more than one sequence


async def test_breaking_off_a_stream_drops_the_request_and_the_engine_stops(fast: float) -> None:
    server = InferenceServer()
    with trace() as t:
        async for _ in server.stream("Tell me about vector stores."):
            break
        await asyncio.sleep(0.05)
    assert t.spans[0].outcome == "cancelled"
    assert server.engine.idle
    assert server._task is not None and server._task.done()


async def test_an_injected_fault_breaks_the_stream_half_way(fast: float) -> None:
    server = InferenceServer(faults=Faults(error_rate=1.0))
    received = []
    with pytest.raises(ServiceUnavailable, match="stream broke mid-answer"):
        async for token in server.stream("Why do LLM apps wait?"):
            received.append(token)
    assert len(received) > 0
    assert server.engine.idle


async def test_the_engine_task_is_the_servers_not_the_callers(fast: float) -> None:
    server = InferenceServer()

    async def first_token_only() -> str:
        stream = server.stream("hello there")
        token = await anext(stream)  # the engine is still running other passes for nobody
        other = asyncio.create_task(server.complete("and a second question"))  # the caller's own task
        await other
        await stream.aclose()
        return token

    result = await attempt(first_token_only)
    assert result.leaked == []  # the engine task is not counted as the caller's
    assert isinstance(result.result, str)


def test_the_batch_plot_draws_one_column_per_scheduler_with_padding_shown_for_blocks() -> None:
    from asynclab.inference.plots import plot_batches

    work = mixed_workload(20, rate=3.0, seed=1)
    fig = plot_batches([simulate(work, StaticBatcher(batch_size=8)), simulate(work, ContinuousBatcher())], until=10)
    top_static, top_continuous, bottom_static, bottom_continuous = fig.axes
    assert top_static.get_title().startswith("static") and top_continuous.get_title().startswith("continuous")
    assert [line.get_label() for line in bottom_static.get_lines()] == ["sequences in the pass", "rows computed"]
    assert [line.get_label() for line in bottom_continuous.get_lines()] == ["sequences in the pass"]
    assert bottom_static.get_xlabel() == "time (simulated seconds)"
    with pytest.raises(TypeError, match="reports must be a ServingReport"):
        plot_batches([])


def test_one_server_serves_one_event_loop_after_another() -> None:
    server = InferenceServer(DynamicBatcher(max_queue_delay=0.05))  # its engine waits on an event

    async def ask() -> str:
        # Wall seconds on purpose: an engine stuck on the first loop's event would hang, not fail.
        return await asyncio.wait_for(server.complete("What is an embedding?", max_tokens=3), 10)

    first = asyncio.run(ask())
    second = asyncio.run(ask())  # a new loop
    assert first == second and len(server.report().sequences) == 2
