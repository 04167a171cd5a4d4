from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import matplotlib.pyplot as plt
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

import asynclab
from asynclab import (
    LLM,
    Faults,
    MetadataStore,
    Streamed,
    plot_scaling,
    plot_sum_vs_max,
    plot_timeline,
    plot_timelines,
    service_colour,
    trace,
)
from asynclab.palette import CANCELLED, CONCURRENT, FAILED, SEQUENTIAL
from asynclab.plots import MAX_LABEL, ONE_ROW_EACH, span_label
from asynclab.tracing import Span, Trace


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def _span(
    service: str, operation: str, key: str, queued: float, start: float, end: float | None,
    outcome: str = "ok", attempt: int = 1,
) -> Span:
    span = Span(service, operation, key, attempt)
    span.queued, span.start, span.end, span.outcome = queued, start, end, outcome
    return span


def _trace(*spans: Span, end: float | None = None) -> Trace:
    """A trace built by hand: exact times, so the pictures can be checked to the pixel."""
    recorded = Trace()
    recorded.start = 0.0
    recorded.end = max((s.end or 0.0 for s in spans), default=0.0) if end is None else end
    recorded.spans.extend(spans)
    return recorded


def _rows(ax: Axes) -> dict[str, list[Rectangle]]:
    """The bars drawn on each labelled row (queued part and call), left to right."""
    labels = [tick.get_text() for tick in ax.get_yticklabels()]
    rows: dict[str, list[Rectangle]] = {label: [] for label in labels}
    for patch in ax.patches:
        assert isinstance(patch, Rectangle)
        rows[labels[round(patch.get_y() + patch.get_height() / 2)]].append(patch)
    return {label: sorted(bars, key=lambda bar: bar.get_x()) for label, bars in rows.items()}


def _legend_texts(fig: Figure) -> list[str]:
    return [text.get_text() for legend in fig.legends for text in legend.get_texts()]


# -- one picture language ----------------------------------------------------------------------


def test_a_service_keeps_its_colour_in_every_figure_whatever_the_order() -> None:
    first = _trace(_span("pinecone", "search", "5:q", 0, 0, 0.6), _span("llm", "complete", "assistant:q", 0, 0, 1.2))
    second = _trace(
        _span("llm", "complete", "assistant:q", 0, 0, 1.2),
        _span("redis", "search", "5:q", 0, 0, 0.2),
        _span("pinecone", "search", "5:q", 0, 0.1, 0.7),
    )
    rows_a, rows_b = _rows(plot_timeline(first).axes[0]), _rows(plot_timeline(second).axes[0])
    pinecone, llm = "pinecone.search · q", "llm.complete · assistant: q"
    call_a, call_b = rows_a[pinecone][-1], rows_b[pinecone][-1]  # the call, after any queued part
    assert call_a.get_facecolor() == call_b.get_facecolor() == to_rgba(service_colour("pinecone"))
    assert rows_a[llm][-1].get_facecolor() == rows_b[llm][-1].get_facecolor() != call_b.get_facecolor()


def test_the_three_tools_get_their_own_colours() -> None:
    t = _trace(*(_span("tools", tool, "x", 0, 0, 0.5) for tool in ("weather", "news", "stock_price")))
    fig = plot_timeline(t)
    colours = {bars[0].get_facecolor() for bars in _rows(fig.axes[0]).values()}
    assert len(colours) == 3
    assert {"tools.weather", "tools.news", "tools.stock_price"} <= set(_legend_texts(fig))


def test_queued_time_is_its_own_lighter_hatched_patch_before_the_call() -> None:
    t = _trace(_span("llm", "complete", "assistant:a", 0.0, 0.0, 0.4),
               _span("llm", "complete", "assistant:b", 0.0, 0.4, 0.8))  # waited 0.4 s for the one slot
    fig = plot_timeline(t)
    rows = _rows(fig.axes[0])
    assert len(rows["llm.complete · assistant: a"]) == 1  # served at once: no queued patch
    queued, call = rows["llm.complete · assistant: b"]
    assert (queued.get_x(), queued.get_width()) == pytest.approx((0.0, 0.4))
    assert (call.get_x(), call.get_width()) == pytest.approx((0.4, 0.4))
    assert queued.get_hatch() and not call.get_hatch()
    assert queued.get_facecolor()[3] < 0.5 < call.get_facecolor()[3] == 1.0
    assert "queued, waiting for a slot" in _legend_texts(fig)


def test_failed_cancelled_and_ok_calls_are_drawn_differently_with_a_legend() -> None:
    t = _trace(
        _span("redis", "search", "5:q", 0, 0, 0.2, outcome="ServiceUnavailable"),
        _span("redis", "search", "5:q", 0.2, 0.2, 0.4, attempt=2),
        _span("pinecone", "search", "5:q", 0, 0, 1.0, outcome="cancelled"),
    )
    fig = plot_timeline(t)
    rows = _rows(fig.axes[0])
    failed = rows["redis.search · q"][0]
    retried = rows["redis.search · q · attempt 2"][0]
    cancelled = rows["pinecone.search · q"][0]
    assert failed.get_edgecolor() == to_rgba(FAILED) and failed.get_hatch()
    assert cancelled.get_edgecolor() == to_rgba(CANCELLED) and cancelled.get_linestyle() == "--"
    assert retried.get_edgecolor() == to_rgba("black") and not retried.get_hatch()
    assert cancelled.get_facecolor()[3] < 1.0  # faded: the call never finished
    legend = _legend_texts(fig)
    assert {"failed (raised an error)", "cancelled"} <= set(legend)
    assert legend.index("redis") < legend.index("pinecone") < legend.index("failed (raised an error)")


def test_the_legend_lists_only_what_the_picture_shows() -> None:
    fig = plot_timeline(_trace(_span("llm", "complete", "assistant:q", 0, 0, 1.2)))
    assert _legend_texts(fig) == ["llm"]


def test_a_call_that_ended_after_the_block_is_drawn_whole_and_the_block_end_marked() -> None:
    t = _trace(_span("metadata", "get", "doc-999", 0, 0, 0.3, outcome="NotFound"),
               _span("llm", "complete", "sentiment:x", 0, 0, 3.0), end=0.3)
    fig = plot_timeline(t)
    ax = fig.axes[0]
    assert ax.get_xlim()[1] >= 3.0
    assert _rows(ax)["llm.complete · sentiment: x"][0].get_width() == pytest.approx(3.0)
    block_end = [line for line in ax.get_lines() if list(line.get_xdata()) == [0.3, 0.3]]
    assert len(block_end) == 1
    assert "end of the traced block" in _legend_texts(fig)
    # Stacked panels share one axis, long enough for the latest call in any of them.
    short = _trace(_span("llm", "complete", "assistant:q", 0, 0, 1.0))
    stacked = plot_timelines({"short": short, "ran on": t})
    assert stacked.axes[0].get_xlim()[1] >= 3.0


async def test_a_real_call_left_running_after_the_block_is_not_clipped(fast: float) -> None:
    llm, meta = LLM(latency=0.6), MetadataStore(latency=0.1)
    with trace() as t:
        task = asyncio.create_task(llm.complete("ran on"))
        await meta.get("doc-001")
    await task
    (ran_on,) = t.by_service("llm")
    assert t.end is not None and ran_on.end is not None
    assert ran_on.end > t.end  # the case under test: the call outlived its block
    assert plot_timeline(t).axes[0].get_xlim()[1] >= ran_on.end - t.start


def test_rows_tell_calls_of_one_operation_apart() -> None:
    t = _trace(
        _span("llm", "complete", "summarizer:Large language models read text", 0, 0, 1),
        _span("llm", "complete", "sentiment:Large language models read text", 0, 0, 1),
        _span("llm", "complete", "summarizer:Time to first token measures", 0, 0, 1),
        _span("metadata", "get", "doc-001", 0, 0, 1),
        _span("metadata", "get", "doc-001", 0, 0, 1),
        _span("embeddings", "embed_batch", "first text\x1fsecond\x1fthird", 0, 0, 1),
        _span("llm", "complete", "assistant:" + "why " * 100, 0, 0, 1),
    )
    t.spans[5].items = 3
    labels = [tick.get_text() for tick in plot_timeline(t).axes[0].get_yticklabels()]
    assert len(set(labels)) == len(labels)
    assert labels[0].startswith("llm.complete · summarizer: Large language") and labels[0].endswith("…")
    assert labels[1].startswith("llm.complete · sentiment: Large language")
    assert labels[3:5] == ["metadata.get · doc-001 #1", "metadata.get · doc-001 #2"]
    assert labels[5] == "embeddings.embed_batch · 3 texts: first text"
    assert max(len(label) for label in labels) <= 60  # a long prompt is cut, not a row label of 400 characters


def test_a_span_label_marks_the_attempt_and_drops_a_count_prefix() -> None:
    assert span_label(_span("tools", "news", "3:ai chips", 0, 0, 1, attempt=2)) == "tools.news · ai chips · attempt 2"
    assert span_label(_span("x", "op", "", 0, 0, 1)) == "x.op"


def test_many_calls_are_packed_into_lanes_with_one_collection_per_style() -> None:
    spans = [_span("llm", "complete", f"assistant:q{i}", wave, wave, wave + 0.1)
             for wave in (0, 1, 2) for i in range(30)]
    spans[0].outcome = "ServiceUnavailable"
    fig = plot_timeline(_trace(*spans))
    ax = fig.axes[0]
    assert len(spans) > ONE_ROW_EACH
    assert "90 calls in 30 lanes" in ax.get_ylabel()
    assert not ax.patches  # not one artist per call...
    ok, failed = ax.collections  # ...but one collection per style
    assert (len(ok.get_paths()), len(failed.get_paths())) == (89, 1)
    assert failed.get_hatch() and to_rgba(FAILED) in [tuple(c) for c in failed.get_edgecolor()]


def test_ten_thousand_calls_draw_in_seconds_not_minutes() -> None:
    spans = []
    for i in range(10_000):
        wait = 0.05 if i % 3 == 0 else 0.0
        spans.append(_span("llm", "complete", f"assistant:q{i}", i * 0.001, i * 0.001 + wait, i * 0.001 + wait + 0.1,
                           outcome="ok" if i % 50 else "ServiceUnavailable"))
    started = time.perf_counter()
    fig = plot_timeline(_trace(*spans))
    fig.canvas.draw()
    # ~0.6 s on the course machine; a patch per call took 12 s (hatching every queued bar
    # another 4 s). 6 s leaves 10× for a loaded machine and still fails the slow way.
    assert time.perf_counter() - started < 6.0


async def test_a_real_trace_draws_streams_queues_and_failures(fast: float) -> None:
    flaky = LLM(latency=0.3, faults=Faults(fail_first=1))
    meta = MetadataStore(latency=0.2, capacity=1)
    with trace() as t:
        await asyncio.gather(flaky.complete("q"), meta.get("doc-001"), meta.get("doc-002"), return_exceptions=True)
        async for _ in LLM(stream_latency=Streamed(0.1, 0.01)).stream("What is an event loop?"):
            pass
    fig = plot_timeline(t)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "time (simulated seconds)"
    assert "4 calls took" in ax.get_title()
    labels = [tick.get_text() for tick in ax.get_yticklabels()]
    assert labels == ["llm.complete · assistant: q", "metadata.get · doc-001", "metadata.get · doc-002",
                      "llm.stream · assistant: What is an event l…"]
    assert _legend_texts(fig) == ["llm", "metadata", "queued, waiting for a slot", "failed (raised an error)",
                                  "first token"]
    fig.canvas.draw()


def test_an_empty_trace_says_so() -> None:
    ax = plot_timeline(_trace()).axes[0]
    assert any("no service calls" in text.get_text() for text in ax.texts)


def test_timelines_share_one_time_axis_and_one_legend() -> None:
    a = _trace(_span("llm", "complete", "assistant:x", 0, 0, 0.2),
               _span("llm", "complete", "assistant:y", 0.2, 0.2, 0.4))
    b = _trace(_span("llm", "complete", "assistant:x", 0, 0, 0.2), _span("pinecone", "search", "3:y", 0, 0, 0.2))
    fig = plot_timelines({"sync": a, "async": b}, title="two ways")
    assert [ax.get_title().split(":")[0] for ax in fig.axes] == ["sync", "async"]
    assert fig.axes[0].get_shared_x_axes().joined(fig.axes[0], fig.axes[1])
    assert [ax.get_xlabel() for ax in fig.axes] == ["", "time (simulated seconds)"]
    assert len(fig.legends) == 1 and _legend_texts(fig) == ["llm", "pinecone"]


# -- bars and curves ---------------------------------------------------------------------------


def test_sum_vs_max_shows_measured_solid_and_predicted_hatched() -> None:
    fig = plot_sum_vs_max(sync=2.12, concurrent=1.21, durations=[1.2, 0.6, 0.3])
    ax = fig.axes[0]
    assert [patch.get_height() for patch in ax.patches] == pytest.approx([2.12, 2.1, 1.21, 1.2])
    assert [bool(patch.get_hatch()) for patch in ax.patches] == [False, True, False, True]
    edges = [to_rgba(colour) for colour in (SEQUENTIAL, SEQUENTIAL, CONCURRENT, CONCURRENT)]
    assert [patch.get_edgecolor() for patch in ax.patches] == edges
    assert ax.get_ylabel() == "time (simulated seconds)"
    assert len(ax.get_legend().get_texts()) == 2


def test_a_scaling_curve_draws_a_prediction_dashed_in_the_colour_of_its_measurement() -> None:
    fig = plot_scaling([1, 2, 4], {"sync": [1, 2, 4], "Σ predicted": [1, 2, 4], "async": [1, 1, 1],
                                   "predicted max": [1, 1, 1]})
    lines = fig.axes[0].get_lines()
    assert [line.get_linestyle() for line in lines] == ["-", "--", "-", "--"]
    assert lines[0].get_color() == lines[1].get_color() != lines[2].get_color() == lines[3].get_color()
    assert fig.axes[0].get_legend() is not None


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: plot_timeline([]), TypeError, "plot_timeline needs a Trace"),
        (lambda: plot_timelines({}), ValueError, "traces must hold at least one named Trace"),
        (lambda: plot_timelines({"a": 1}), TypeError, r"traces\['a'\] must be a Trace .*got int"),
        (lambda: plot_timelines([Trace()]), TypeError, "traces must be a dict of panel name to Trace.*got list"),
        (lambda: plot_timelines(3), TypeError, "traces must be a dict .*got int"),
        (lambda: plot_timelines("sync"), TypeError, "traces must be a dict .*got str"),
        (lambda: plot_timelines({1: Trace()}), TypeError, "each name in traces must be a str, got int"),
        (lambda: plot_timelines({str(i): Trace() for i in range(21)}), ValueError, "at most 20 traces"),
        (lambda: plot_sum_vs_max(1, 1, []), ValueError, "durations must list at least one"),
        (lambda: plot_sum_vs_max("2", 1, [1]), TypeError, "sync must be a number, got str"),
        (lambda: plot_sum_vs_max(1, float("nan"), [1]), ValueError, "concurrent must be a finite number"),
        (lambda: plot_sum_vs_max(1, 1, [1, -2]), ValueError, r"durations\[1\] must be simulated seconds ≥ 0"),
        (lambda: plot_sum_vs_max(1, 1, 1.2), TypeError, "durations must be a list of numbers, got float"),
        (lambda: plot_scaling([1, 2], {"a": [1]}), ValueError, r"series\['a'\] has 1 values but ns has 2"),
        (lambda: plot_scaling([], {"a": []}), ValueError, "ns must list at least one x value"),
        (lambda: plot_scaling("124", {"a": [1, 2, 4]}), TypeError, "ns must be a list of numbers, got str"),
        (lambda: plot_scaling(4, {"a": [1]}), TypeError, "ns must be a list of numbers, got int"),
        (lambda: plot_scaling([1, 2], [[1, 2]]), TypeError, "series must be a dict of series name to y.*got list"),
        (lambda: plot_scaling([1, 2], "ab"), TypeError, "series must be a dict .*got str"),
        (lambda: plot_scaling([1, 2], {"a": "12"}), TypeError, r"series\['a'\] must be a list of numbers, got str"),
        (lambda: plot_scaling([1, True], {"a": [1, 2]}), TypeError, r"ns\[1\] must be a number, got bool"),
        (lambda: plot_scaling([1, 2], {"a": [1, float("inf")]}), ValueError, r"series\['a'\]\[1\] must be a finite"),
        (lambda: plot_scaling([1], {"a": [1]}, title=None), TypeError, "title must be a str, got NoneType"),
        (lambda: plot_timeline(Trace(), title=7), TypeError, "title must be a str, got int"),
    ],
)
def test_bad_plot_input_is_refused_naming_the_argument(call: Callable[[], object], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        call()


ABSURD = "x" * 1_000_000


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: plot_timeline(Trace(), title=ABSURD), "title"),
        (lambda: plot_timelines({"a": Trace()}, title=ABSURD), "title"),
        (lambda: plot_timelines({ABSURD: Trace()}), "each name in traces"),
        (lambda: plot_sum_vs_max(1, 1, [1], title=ABSURD), "title"),
        (lambda: plot_scaling([1], {"a": [1]}, title=ABSURD), "title"),
        (lambda: plot_scaling([1], {"a": [1]}, xlabel=ABSURD), "xlabel"),
        (lambda: plot_scaling([1], {"a": [1]}, ylabel=ABSURD), "ylabel"),
        (lambda: plot_scaling([1], {ABSURD: [1]}), "each name in series"),
    ],
)
def test_an_absurdly_long_label_is_refused_at_once(call: Callable[[], object], name: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ValueError, match=rf"^{name} must be at most {MAX_LABEL} characters, got 1,000,000"):
        call()
    # Laying such a title out took seconds; refusing it is a length check. 0.5 s is ~100× the
    # check's cost, slack for a loaded machine, and far below the seconds the layout took.
    assert time.perf_counter() - started < 0.5


def test_a_label_of_the_allowed_length_is_drawn() -> None:
    fig = plot_timeline(Trace(), title="t" * MAX_LABEL)
    assert fig.axes[0].get_title() == "t" * MAX_LABEL


# -- import stays light ------------------------------------------------------------------------


def test_importing_asynclab_does_not_import_matplotlib_until_a_plot_is_asked_for() -> None:
    code = (
        "import sys, asynclab\n"
        "assert 'matplotlib' not in sys.modules, 'import asynclab loaded matplotlib'\n"
        "assert 'asynclab.plots' not in sys.modules\n"
        "from asynclab import plot_timeline\n"
        "assert 'matplotlib.pyplot' in sys.modules and plot_timeline.__module__ == 'asynclab.plots'\n"
        "assert asynclab.plot_scaling is sys.modules['asynclab.plots'].plot_scaling\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60)


def test_the_lazy_plot_functions_are_public_listed_and_unknown_names_still_fail() -> None:
    for name in ("plot_timeline", "plot_timelines", "plot_sum_vs_max", "plot_scaling"):
        assert name in asynclab.__all__ and name in dir(asynclab)
        assert getattr(asynclab, name).__module__ == "asynclab.plots"
    with pytest.raises(AttributeError, match="has no attribute 'plot_timelime'"):
        asynclab.plot_timelime  # type: ignore[attr-defined]  # noqa: B018


async def test_many_calls_in_one_lane_make_a_short_panel_with_one_lane_tick(fast: float) -> None:
    """Packed timelines get one row of height per lane (3 to 20), not a 20-row block for one lane."""
    from asynclab.timeline import panel_rows

    llm = LLM(latency=0.01)
    with trace() as t:
        for i in range(50):
            await llm.complete(f"q{i}")
    assert panel_rows(t) == 3
    fig = plot_timeline(t)
    assert list(fig.axes[0].get_yticks()) == [0]


def test_a_package_figure_is_drawn_once_under_jupyters_inline_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """The inline backend shows the figure (one PNG) without pyplot's throw-away draw before it."""
    import nbformat
    from nbclient import NotebookClient

    from asynclab.course import kernel_config

    cell = (
        "import matplotlib.pyplot as plt\n"
        "from asynclab import Trace, plot_timeline\n"
        "draws = []\n"
        "fig = plot_timeline(Trace(), title='empty')\n"
        "fig.canvas.mpl_connect('draw_event', lambda event: draws.append(event.name))\n"
        "plain, ax = plt.subplots()   # a learner's own figure: pyplot draws it as always\n"
        "plain_draws = []\n"
        "plain.canvas.mpl_connect('draw_event', lambda event: plain_draws.append(event.name))\n"
    )
    nb = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    nb.cells = [nbformat.v4.new_code_cell(cell), nbformat.v4.new_code_cell("print(len(draws), len(plain_draws))")]  # type: ignore[no-untyped-call]
    # The kernel inherits this process's environment: scripts/check exports MPLBACKEND=Agg.
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    NotebookClient(nb, kernel_name="python3", config=kernel_config()).execute()
    shown = [out for out in nb.cells[0].outputs if "image/png" in out.get("data", {})]
    assert len(shown) == 2  # both figures are shown
    # Saving the PNG draws twice (constrained layout without rendering, then the pixels); the
    # learner's figure is also drawn once before that by pyplot's hook, the package's is not.
    ours, theirs = map(int, nb.cells[1].outputs[0]["text"].split())
    assert (ours, theirs) == (2, 3)
