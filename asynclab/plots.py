"""Pictures of time: a timeline of a trace, Σ-vs-max bars, scaling curves.

    fig = plot_timeline(t)                                   # who ran when
    fig = plot_timelines({"sync": t_sync, "async": t_async}) # the same calls, two ways
    fig = plot_sum_vs_max(sync=2.1, concurrent=1.2, durations=[1.2, 0.6, 0.3])
    fig = plot_scaling([1, 2, 4, 8], {"sync": [...], "async": [...]})

Every function returns the matplotlib ``Figure`` (Jupyter shows it) and never calls
``plt.show()``; every axis says its unit: simulated seconds.

Introduced in notebook 00; scaling curves in 02.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from asynclab.tracing import Span, Trace

__all__ = ["plot_scaling", "plot_sum_vs_max", "plot_timeline", "plot_timelines"]

SECONDS = "time (simulated seconds)"
#: tab10 without its red: red outlines mark failed and cancelled calls.
_PALETTE = [plt.get_cmap("tab10")(i) for i in range(10) if i != 3]
#: Above this many spans a timeline packs spans into shared lanes instead of one row each.
ONE_ROW_EACH = 40


def _lanes(spans: Sequence[Span]) -> tuple[list[int], int]:
    """First-fit lanes: a span goes on the first lane that is free when it arrives."""
    if len(spans) <= ONE_ROW_EACH:
        return list(range(len(spans))), len(spans)
    lane_end: list[float] = []
    lanes = []
    for span in spans:
        end = span.end if span.end is not None else span.start
        for lane, busy_until in enumerate(lane_end):
            if busy_until <= span.queued:
                lane_end[lane] = end
                lanes.append(lane)
                break
        else:
            lane_end.append(end)
            lanes.append(len(lane_end) - 1)
    return lanes, len(lane_end)


def _draw_timeline(ax: Axes, recorded: Trace, title: str | None) -> None:
    spans = sorted(recorded.spans, key=lambda s: (s.queued, s.start))
    t0 = recorded.start
    services = sorted({span.name for span in spans})
    colours = {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(services)}
    lanes, n_lanes = _lanes(spans)
    failed = False
    queued = False
    for span, lane in zip(spans, lanes, strict=True):
        end = span.end if span.end is not None else recorded.end or span.start
        if span.wait > 1e-9:
            queued = True
            ax.barh(lane, span.wait, left=span.queued - t0, color=colours[span.name], alpha=0.25,
                    hatch="//", edgecolor=colours[span.name])
        ok = span.outcome == "ok"
        failed |= not ok
        ax.barh(lane, end - span.start, left=span.start - t0, color=colours[span.name],
                edgecolor="black" if ok else "red", linewidth=0.5 if ok else 2.0)
        if span.first_token is not None:
            ax.plot(span.first_token - t0, lane, marker="|", color="black", markersize=12)
    if len(spans) <= ONE_ROW_EACH:
        labels = [f"{s.name} (attempt {s.attempt})" if s.attempt > 1 else s.name for s in spans]
        ax.set_yticks(range(len(spans)), labels)
        ax.set_ylabel("service call")
    else:
        ax.set_ylabel(f"lane ({len(spans)} calls in {n_lanes} lanes)")
    ax.invert_yaxis()  # first call on top, time reads left to right
    ax.set_xlabel(SECONDS)
    ax.set_xlim(left=0)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title or (
        f"{len(spans)} calls took {recorded.elapsed:.2f} s (Σ of calls {recorded.busy:.2f} s)"
    ))
    handles: list[Artist] = [Patch(color=colours[name], label=name) for name in services]
    if queued:
        handles.append(Patch(facecolor="white", edgecolor="grey", hatch="//", label="queued (at capacity)"))
    if failed:
        handles.append(Patch(facecolor="white", edgecolor="red", linewidth=2, label="failed / cancelled"))
    if any(s.first_token is not None for s in spans):
        handles.append(Line2D([], [], color="black", marker="|", linestyle="", markersize=12,
                              label="first token"))
    if handles:
        # Outside the axes, so the legend never hides a bar.
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")


def plot_timeline(recorded: Trace, title: str | None = None) -> Figure:
    """A Gantt chart of a trace: one bar per service call, overlapping calls on separate rows."""
    if not isinstance(recorded, Trace):
        raise TypeError(f"plot_timeline needs a Trace (from `with trace() as t:`), got {type(recorded).__name__}")
    rows = min(len(recorded.spans), ONE_ROW_EACH)
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.32 * max(rows, 3)), layout="constrained")
    _draw_timeline(ax, recorded, title)
    return fig


def plot_timelines(traces: Mapping[str, Trace], title: str | None = None) -> Figure:
    """Several traces stacked on one shared time axis, e.g. ``{"sync": t1, "async": t2}``."""
    if not traces:
        raise ValueError("traces must hold at least one named Trace")
    for name, recorded in traces.items():
        if not isinstance(recorded, Trace):
            raise TypeError(f"traces[{name!r}] must be a Trace, got {type(recorded).__name__}")
    heights = [max(min(len(t.spans), ONE_ROW_EACH), 2) for t in traces.values()]
    fig, axes = plt.subplots(len(traces), 1, sharex=True, squeeze=False, layout="constrained",
                             figsize=(9, 1.0 + 0.4 * sum(heights)), height_ratios=heights)
    for ax, (name, recorded) in zip(axes[:, 0], traces.items(), strict=True):
        _draw_timeline(ax, recorded, f"{name}: {recorded.elapsed:.2f} s")
    # The panels share one time axis: make it fit the longest trace, not the last one drawn.
    axes[0, 0].set_xlim(0, max(t.elapsed for t in traces.values()) * 1.03)
    if title:
        fig.suptitle(title)
    return fig


def plot_sum_vs_max(
    sync: float, concurrent: float, durations: Sequence[float], title: str | None = None
) -> Figure:
    """Measured sequential and concurrent totals next to the predictions Σ T_i and max T_i."""
    if not durations:
        raise ValueError("durations must list at least one call's simulated seconds")
    total, longest = sum(durations), max(durations)
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    bars = ax.bar(
        ["sequential\n(measured)", "Σ T_i\n(predicted)", "concurrent\n(measured)", "max T_i\n(predicted)"],
        [sync, total, concurrent, longest],
        color=["tab:red", "mistyrose", "tab:blue", "lightsteelblue"],
        edgecolor=["tab:red", "tab:red", "tab:blue", "tab:blue"],
    )
    ax.bar_label(bars, fmt="%.2f s")
    ax.set_ylabel(SECONDS)
    ax.set_title(title or f"{len(durations)} calls: sequential ≈ Σ, concurrent ≈ max")
    ax.legend(handles=[Patch(color="tab:red", label="sequential (measured)"),
                       Patch(color="mistyrose", label="Σ T_i (predicted)"),
                       Patch(color="tab:blue", label="concurrent (measured)"),
                       Patch(color="lightsteelblue", label="max T_i (predicted)")],
              fontsize="small", loc="upper right")
    ax.set_ylim(0, max(sync, total, concurrent, longest) * 1.2)
    return fig


def plot_scaling(
    ns: Sequence[float],
    series: Mapping[str, Sequence[float]],
    title: str = "How total time grows with the number of calls",
    xlabel: str = "number of calls",
    ylabel: str = SECONDS,
) -> Figure:
    """One line per named series over ``ns``; dashed lines for names containing 'predicted'."""
    if not ns:
        raise ValueError("ns must list at least one x value")
    if not series:
        raise ValueError("series must hold at least one named list of y values")
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    for name, ys in series.items():
        if len(ys) != len(ns):
            raise ValueError(f"series[{name!r}] has {len(ys)} values but ns has {len(ns)}")
        style = "--" if "predicted" in name else "-"
        ax.plot(ns, ys, style, marker="o" if style == "-" else None, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig
