from __future__ import annotations

import asyncio

import matplotlib.pyplot as plt
import pytest

from asynclab import (
    LLM,
    Faults,
    MetadataStore,
    Streamed,
    plot_scaling,
    plot_sum_vs_max,
    plot_timeline,
    plot_timelines,
    trace,
)
from asynclab.tracing import Trace


async def _mixed_trace() -> Trace:
    flaky = LLM(latency=0.3, faults=Faults(fail_first=1))
    meta = MetadataStore(latency=0.2, capacity=1)
    with trace() as t:
        await asyncio.gather(
            flaky.complete("q"), meta.get("doc-001"), meta.get("doc-002"), return_exceptions=True
        )
        async for _ in LLM(stream_latency=Streamed(0.1, 0.01)).stream("What is an event loop?"):
            pass
    return t


async def test_a_timeline_draws_one_bar_per_call_with_units_and_legend(fast: float) -> None:
    t = await _mixed_trace()
    fig = plot_timeline(t)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "time (simulated seconds)"
    assert "calls took" in ax.get_title()
    labels = [tick.get_text() for tick in ax.get_yticklabels()]
    assert labels == ["llm.complete", "metadata.get", "metadata.get", "llm.stream"]
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert {"llm.complete", "metadata.get", "queued (at capacity)", "failed / cancelled", "first token"} <= set(legend)
    fig.canvas.draw()
    plt.close(fig)


async def test_many_calls_are_packed_into_lanes(fast: float) -> None:
    llm = LLM(latency=0.1)
    with trace() as t:
        for _ in range(3):
            await asyncio.gather(*(llm.complete(f"q{i}") for i in range(30)))
    fig = plot_timeline(t)
    assert "90 calls in 30 lanes" in fig.axes[0].get_ylabel()
    plt.close(fig)


async def test_timelines_share_one_time_axis(fast: float) -> None:
    llm = LLM(latency=0.2)
    with trace() as a:
        await llm.complete("x")
        await llm.complete("y")
    with trace() as b:
        await asyncio.gather(llm.complete("x"), llm.complete("y"))
    fig = plot_timelines({"sync": a, "async": b}, title="two ways")
    assert [ax.get_title().split(":")[0] for ax in fig.axes] == ["sync", "async"]
    assert fig.axes[0].get_shared_x_axes().joined(fig.axes[0], fig.axes[1])
    plt.close(fig)


def test_sum_vs_max_shows_measured_and_predicted_bars() -> None:
    fig = plot_sum_vs_max(sync=2.12, concurrent=1.21, durations=[1.2, 0.6, 0.3])
    ax = fig.axes[0]
    heights = [patch.get_height() for patch in ax.patches]
    assert heights == pytest.approx([2.12, 2.1, 1.21, 1.2])
    assert ax.get_ylabel() == "time (simulated seconds)"
    assert len(ax.get_legend().get_texts()) == 4
    plt.close(fig)


def test_a_scaling_curve_has_one_line_per_series() -> None:
    fig = plot_scaling([1, 2, 4], {"sync": [1, 2, 4], "async": [1, 1, 1], "predicted max": [1, 1, 1]})
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 3
    assert ax.get_lines()[2].get_linestyle() == "--"
    plt.close(fig)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: plot_timeline([]), TypeError, "plot_timeline needs a Trace"),
        (lambda: plot_timelines({}), ValueError, "traces must hold at least one named Trace"),
        (lambda: plot_timelines({"a": 1}), TypeError, r"traces\['a'\] must be a Trace, got int"),
        (lambda: plot_sum_vs_max(1, 1, []), ValueError, "durations must list at least one"),
        (lambda: plot_scaling([1, 2], {"a": [1]}), ValueError, r"series\['a'\] has 1 values but ns has 2"),
        (lambda: plot_scaling([], {"a": []}), ValueError, "ns must list at least one x value"),
    ],
)
def test_bad_plot_input_is_refused(call: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        call()  # type: ignore[operator]
