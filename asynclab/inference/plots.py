"""The batch's membership over time: who is in each forward pass, who waits, what is padding.

    fig = plot_batches(report)                 # one report: requests down, simulated seconds across
    fig = plot_batches([static, continuous])   # side by side, same axes

Top panel: one row per request; a thin grey line from its arrival to its first pass (queued),
a coloured bar for each pass it is in (the colour of its scheduler's row in the figure). Bottom
panel: the sequences in each pass and, for a fixed block, the rows computed (padding is the
gap between the two lines). Returns the matplotlib ``Figure``; imports matplotlib on first use.

Introduced in notebook 14.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from asynclab.inference.report import ServingReport
from asynclab.palette import service_colour
from asynclab.timeline import ready

__all__ = ["plot_batches"]

#: One colour per scheduler, so a lesson's table, bars and timelines agree.
SCHEDULER_COLOURS = {"static": "#8c564b", "dynamic": "#ff7f0e", "continuous": service_colour("inference")}


def scheduler_colour(name: str) -> str:
    """The colour of a scheduler in every plot of lesson 14 (unknown names: the service palette)."""
    return SCHEDULER_COLOURS.get(name, service_colour(name))


def plot_batches(reports: ServingReport | Sequence[ServingReport], *, until: float | None = None) -> Figure:
    """Draw each report's batch membership and batch size per pass (see the module docstring).

    until: draw only up to this simulated time after the first arrival (a long run is a blur).
    """
    group = [reports] if isinstance(reports, ServingReport) else list(reports)
    if not group or not all(isinstance(report, ServingReport) for report in group):
        raise TypeError("reports must be a ServingReport or a non-empty list of them")
    if until is not None and (isinstance(until, bool) or not isinstance(until, (int, float)) or until <= 0):
        raise ValueError(f"until must be a number of simulated seconds > 0 or None, got {until!r}")
    fig, axes = plt.subplots(
        2, len(group), figsize=(5.2 * len(group), 5.6), squeeze=False, sharex="col",
        gridspec_kw={"height_ratios": [3, 1.3]},
    )
    for column, report in enumerate(group):
        top, bottom = axes[0][column], axes[1][column]
        origin = report.start
        end = report.end - origin if until is None else until
        colour = scheduler_colour(report.scheduler)
        shown = [seq for seq in report.sequences if seq.arrival - origin <= end]
        runs: dict[int, list[tuple[float, float]]] = {seq.id: [] for seq in shown}
        steps = [step for step in report.steps if step.start - origin <= end]
        for step in steps:
            for member in step.members:
                if member in runs:
                    spans = runs[member]
                    start = step.start - origin
                    if spans and abs(spans[-1][0] + spans[-1][1] - start) < 1e-9:
                        spans[-1] = (spans[-1][0], spans[-1][1] + step.duration)  # one bar per stay
                    else:
                        spans.append((start, step.duration))
        # Two collections per panel (one call each), not one artist per request: fast for hundreds of rows.
        width = max(0.5, min(6.0, 230.0 / max(len(shown), 1)))  # line width in points: ~80 % of a row
        queued = [(row, seq.arrival - origin, seq.admitted - origin) for row, seq in enumerate(shown)
                  if seq.admitted is not None]
        if queued:
            at, froms, tos = zip(*queued, strict=True)
            top.hlines(at, froms, tos, color="#bbbbbb", lw=0.8)
        bars = [(row, start, start + length) for row, seq in enumerate(shown) for start, length in runs[seq.id]]
        if bars:
            at, froms, tos = zip(*bars, strict=True)
            top.hlines(at, froms, tos, color=colour, lw=width)
        top.set_xlim(0, end)
        top.set_ylim(len(shown) - 0.5, -0.5)
        top.set_ylabel("request (in arrival order)")
        top.set_title(
            f"{report.scheduler}: {report.throughput:.0f} tokens/s, busy {report.busy_fraction:.0%}", fontsize=10
        )
        starts = [step.start - origin for step in steps]
        members = [len(step.members) for step in steps]
        bottom.step(starts, members, where="post", color=colour, label="sequences in the pass")
        if any(step.rows > len(step.members) for step in steps):
            rows = [step.rows for step in steps]
            bottom.step(starts, rows, where="post", color="#888888", ls="--", label="rows computed")
        bottom.set_xlabel("time (simulated seconds)")
        bottom.set_ylabel("batch size")
        bottom.set_ylim(bottom=0)
        bottom.legend(loc="upper right", fontsize=8)
    fig.suptitle("Who is in each forward pass (grey line: queued; bar: in the batch)")
    fig.tight_layout()
    return ready(fig)
