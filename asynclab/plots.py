"""Pictures of time: a timeline of a trace, Σ-vs-max bars, scaling curves.

    fig = plot_timeline(t)                                   # who ran when
    fig = plot_timelines({"sync": t_sync, "async": t_async}) # the same calls, two ways
    fig = plot_sum_vs_max(sync=2.1, concurrent=1.2, durations=[1.2, 0.6, 0.3])
    fig = plot_scaling([1, 2, 4, 8], {"sync": [...], "async": [...]})

Every function returns the matplotlib ``Figure`` (Jupyter shows it) and never calls
``plt.show()``; every axis says its unit: simulated seconds. Timelines speak the course's
one picture language (:mod:`asynclab.timeline`): a service keeps its colour in every lesson
(:mod:`asynclab.palette`), each row names its call, queued time is hatched before the call,
failed and cancelled calls are outlined differently, and calls that ran on after the traced
block are drawn whole. Bad arguments are refused with the argument named, absurdly long
titles and labels included.

``import asynclab`` does not import this module (matplotlib takes half a second to load):
the first use of a plot function does.

Introduced in notebook 00; scaling curves in 02.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from numbers import Real

import matplotlib.pyplot as plt
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from asynclab.palette import CONCURRENT, FALLBACK, SEQUENTIAL
from asynclab.timeline import (
    ONE_ROW_EACH,
    SECONDS,
    Legend,
    add_legend,
    draw_timeline,
    extent,
    panel_rows,
    ready,
    span_label,
)
from asynclab.tracing import Trace

__all__ = [
    "MAX_LABEL",
    "ONE_ROW_EACH",
    "SECONDS",
    "plot_scaling",
    "plot_sum_vs_max",
    "plot_timeline",
    "plot_timelines",
    "span_label",
]

#: Titles, axis labels, panel and series names are one line: longer text belongs in the
#: notebook's prose (and matplotlib spends seconds laying out a 100 KB title).
MAX_LABEL = 200
#: Panels in one plot_timelines figure: more than this is a scroll, not a comparison.
MAX_PANELS = 20


# -- arguments ---------------------------------------------------------------------------------


def _check_label(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if len(value) > MAX_LABEL:
        raise ValueError(
            f"{name} must be at most {MAX_LABEL} characters, got {len(value):,} ({value[:40]!r}…): "
            "a title or label is one line, longer text belongs in the notebook's prose"
        )
    return value


def _check_title(value: object, name: str = "title") -> str | None:
    return None if value is None else _check_label(value, name)


def _check_number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {str(value)[:40]!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {number!r}")
    return number


def _check_numbers(values: object, name: str, what: str, *, seconds: bool = False) -> list[float]:
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a list of numbers, got {type(values).__name__}")
    numbers = [_check_number(value, f"{name}[{i}]") for i, value in enumerate(values)]
    if not numbers:
        raise ValueError(f"{name} must list at least one {what}")
    if seconds:
        for i, number in enumerate(numbers):
            if number < 0:
                raise ValueError(f"{name}[{i}] must be simulated seconds ≥ 0, got {number!r}")
    return numbers


def _check_trace(value: object, name: str) -> Trace:
    if not isinstance(value, Trace):
        raise TypeError(f"{name} must be a Trace (from `with trace() as t:`), got {type(value).__name__}")
    return value


def plot_timeline(recorded: Trace, title: str | None = None) -> Figure:
    """A Gantt chart of a trace: one bar per service call, overlapping calls on separate rows.

        with trace() as t:
            await asyncio.gather(llm.complete(q), store.search(q))
        plot_timeline(t, title="Two calls at once")
    """
    if not isinstance(recorded, Trace):
        raise TypeError(
            f"plot_timeline needs a Trace (from `with trace() as t:`), got {type(recorded).__name__}"
        )
    title = _check_title(title)
    fig = plt.figure(figsize=(10, 1.6 + 0.3 * panel_rows(recorded)), layout="constrained")
    add_legend(fig, draw_timeline(fig.add_subplot(), recorded, title))
    return ready(fig)


def plot_timelines(traces: Mapping[str, Trace], title: str | None = None) -> Figure:
    """Several traces stacked on one shared time axis, e.g. ``{"sync": t1, "async": t2}``."""
    if not isinstance(traces, Mapping):
        raise TypeError(
            "traces must be a dict of panel name to Trace, such as {'sync': t1, 'async': t2}; "
            f"got {type(traces).__name__}"
        )
    if not traces:
        raise ValueError("traces must hold at least one named Trace")
    if len(traces) > MAX_PANELS:
        raise ValueError(f"traces must hold at most {MAX_PANELS} traces (one panel each), got {len(traces)}")
    for name, recorded in traces.items():
        _check_label(name, "each name in traces")
        _check_trace(recorded, f"traces[{name!r}]")
    title = _check_title(title)
    heights = [panel_rows(t) for t in traces.values()]
    fig = plt.figure(figsize=(10, 1.5 + 0.45 * len(heights) + 0.3 * sum(heights)), layout="constrained")
    axes = fig.subplots(len(traces), 1, sharex=True, squeeze=False, height_ratios=heights)
    legend: Legend = {}
    for ax, (name, recorded) in zip(axes[:, 0], traces.items(), strict=True):
        legend.update(draw_timeline(ax, recorded, f"{name}: {recorded.elapsed:.2f} s"))
    # One time axis for all panels: it fits the longest panel, calls after a block's end included.
    axes[0, 0].set_xlim(0, max(max(extent(t)[1] for t in traces.values()), 1e-3) * 1.03)
    for ax in axes[:-1, 0]:
        ax.set_xlabel("")  # the shared time axis is labelled once, under the last panel
    fig.align_ylabels(axes[:, 0])
    if title:
        fig.suptitle(title)
    add_legend(fig, legend)
    return ready(fig)


# -- bars and curves ---------------------------------------------------------------------------


def plot_sum_vs_max(
    sync: float, concurrent: float, durations: Sequence[float], title: str | None = None
) -> Figure:
    """Measured sequential and concurrent totals next to the predictions Σ T_i and max T_i.

        plot_sum_vs_max(sequential.elapsed, concurrent.elapsed, durations=[1.2, 0.6, 0.3])
    """
    sync = _check_number(sync, "sync")
    concurrent = _check_number(concurrent, "concurrent")
    for name, value in (("sync", sync), ("concurrent", concurrent)):
        if value < 0:
            raise ValueError(f"{name} must be simulated seconds ≥ 0, got {value!r}")
    times = _check_numbers(durations, "durations", "call's simulated seconds", seconds=True)
    title = _check_title(title)
    total, longest = sum(times), max(times)
    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    # Measured bars solid, predicted ones light and hatched; each way keeps its colour.
    bars = ax.bar(
        ["sequential\n(measured)", "Σ T_i\n(predicted)", "concurrent\n(measured)", "max T_i\n(predicted)"],
        [sync, total, concurrent, longest],
        color=[SEQUENTIAL, to_rgba(SEQUENTIAL, 0.2), CONCURRENT, to_rgba(CONCURRENT, 0.2)],
        edgecolor=[SEQUENTIAL, SEQUENTIAL, CONCURRENT, CONCURRENT],
    )
    for bar in bars.patches[1::2]:
        bar.set_hatch("//")
    ax.bar_label(bars, fmt="%.2f s")
    ax.set_ylabel(SECONDS)
    ax.set_title(title or f"{len(times)} calls: sequential ≈ Σ, concurrent ≈ max")
    ax.set_ylim(0, max(sync, total, concurrent, longest, 1e-3) * 1.35)  # room for labels and legend
    # The bars are named on the axis; the legend says what solid and hatched mean.
    ax.legend(handles=[Patch(facecolor="dimgrey", label="measured (the traced run)"),
                       Patch(facecolor="white", edgecolor="dimgrey", hatch="//",
                             label="predicted from the calls' durations")],
              loc="upper right", fontsize="small")
    return ready(fig)


def plot_scaling(
    ns: Sequence[float],
    series: Mapping[str, Sequence[float]],
    title: str = "How total time grows with the number of calls",
    xlabel: str = "number of calls",
    ylabel: str = SECONDS,
) -> Figure:
    """One line per named series over ``ns``.

        plot_scaling([1, 2, 4], {"sync (measured)": [...], "Σ T_i (predicted)": [...]})

    A series whose name contains 'predicted' is dashed and takes the colour of the measured
    series just before it, so a prediction sits next to the measurement it predicts.
    """
    xs = _check_numbers(ns, "ns", "x value")
    if not isinstance(series, Mapping):
        raise TypeError(
            "series must be a dict of series name to y values, such as {'sync': [1, 2, 4]}; "
            f"got {type(series).__name__}"
        )
    if not series:
        raise ValueError("series must hold at least one named list of y values")
    title, xlabel, ylabel = (_check_label(title, "title"), _check_label(xlabel, "xlabel"),
                             _check_label(ylabel, "ylabel"))
    lines: list[tuple[str, list[float]]] = []
    for name, ys in series.items():
        _check_label(name, "each name in series")
        values = _check_numbers(ys, f"series[{name!r}]", "y value")
        if len(values) != len(xs):
            raise ValueError(f"series[{name!r}] has {len(values)} values but ns has {len(xs)}")
        lines.append((name, values))
    colours = iter((SEQUENTIAL, CONCURRENT, *FALLBACK))
    colour = SEQUENTIAL
    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    for i, (name, ys) in enumerate(lines):
        predicted = "predicted" in name
        if not predicted or i == 0 or "predicted" in lines[i - 1][0]:
            colour = next(colours, "black")
        ax.plot(xs, ys, "--" if predicted else "-", marker=None if predicted else "o", color=colour, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return ready(fig)
