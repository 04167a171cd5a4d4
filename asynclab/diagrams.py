"""A picture of the machine: the event loop and the life of a task, in one diagram.

    fig = plot_event_loop()                          # created → scheduled → running → waiting → …
    fig = plot_event_loop(highlight="scheduled")     # where asyncio.create_task leaves a new task

A task is created, scheduled (in the loop's ready queue), run until its next ``await``, parked
while what it awaits is not ready, scheduled again when it is, and ends done (a result or an
exception) or cancelled. The three middle states are the event loop's cycle; the diagram draws
them inside one box, "one thread", because only one task runs at a time. Cancelled is drawn as
timelines draw a cancelled call (grey, dashed: :data:`asynclab.palette.CANCELLED`).

``import asynclab`` does not import this module (matplotlib takes half a second to load): the
first use of :func:`plot_event_loop` does.

Introduced in notebook 01; shown again in 02.
"""

from __future__ import annotations

from collections.abc import Iterable

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from asynclab.palette import CANCELLED, CONCURRENT
from asynclab.timeline import ready

__all__ = ["STATES", "TRANSITIONS", "plot_event_loop"]

#: A task's states, in the order a task meets them; "done" and "cancelled" are the two ends.
STATES: tuple[str, ...] = ("created", "scheduled", "running", "waiting", "done", "cancelled")

#: What each state means, in the words the lessons use (the second line of each box).
_MEANING = {
    "created": "a coroutine object:\nnothing has run yet",
    "scheduled": "in the loop's ready\nqueue, waiting its turn",
    "running": "its code runs on the\nloop's thread, up to\nthe next await",
    "waiting": "paused at an await on\nsomething not ready;\nother tasks run",
    "done": "returned a result\nor raised an error",
    "cancelled": "cancel() ended it:\nCancelledError was\nraised at its await",
}

#: Where each box sits (centre, in axes fractions) and how it is filled.
_CENTRE = {
    "created": (0.08, 0.50),
    "scheduled": (0.345, 0.50),
    "running": (0.615, 0.77),
    "waiting": (0.615, 0.23),
    "done": (0.91, 0.77),
    "cancelled": (0.91, 0.23),
}
_FILL: dict[str, tuple[float, float, float, float]] = {
    "created": to_rgba("white"),
    "scheduled": to_rgba(CONCURRENT, 0.10),
    "running": to_rgba(CONCURRENT, 0.30),
    "waiting": to_rgba(CONCURRENT, 0.10),
    "done": to_rgba("white"),
    "cancelled": to_rgba(CANCELLED, 0.12),
}
_BOX_WIDTH, _BOX_HEIGHT = 0.14, 0.25

#: (from, to, label, where the label goes (axes fractions), curvature of the arrow).
TRANSITIONS: tuple[tuple[str, str, str, tuple[float, float], float], ...] = (
    ("created", "scheduled", "create_task(),\ngather, TaskGroup", (0.195, 0.60), 0.0),
    ("scheduled", "running", "the loop picks\nthe next ready task", (0.405, 0.83), -0.25),
    ("running", "waiting", "await on something\nnot ready: the task\nhands the thread back", (0.505, 0.50), 0.0),
    ("waiting", "scheduled", "what it awaited is done\n(an answer, a timer):\nready again", (0.405, 0.155), -0.25),
    ("running", "done", "return / raise", (0.7625, 0.83), 0.0),
    ("waiting", "cancelled", "task.cancel()", (0.7625, 0.17), 0.0),
)


def _check_highlight(highlight: str | Iterable[str] | None) -> frozenset[str]:
    if highlight is None:
        return frozenset()
    names = [highlight] if isinstance(highlight, str) else highlight
    if not isinstance(names, Iterable):
        raise TypeError(f"highlight must be a state name, a list of them or None, got {type(highlight).__name__}")
    chosen = []
    for name in names:
        if name not in STATES:
            raise ValueError(f"highlight names a task state, one of {', '.join(STATES)}; got {name!r}")
        chosen.append(name)
    return frozenset(chosen)


def _box(ax: Axes, state: str, faded: bool, strong: bool) -> FancyBboxPatch:
    x, y = _CENTRE[state]
    cancelled = state == "cancelled"
    box = FancyBboxPatch(
        (x - _BOX_WIDTH / 2, y - _BOX_HEIGHT / 2), _BOX_WIDTH, _BOX_HEIGHT,
        boxstyle="round,pad=0.008,rounding_size=0.02", transform=ax.transAxes,
        # Faded boxes keep their shape at a third of the ink, fills included.
        facecolor=to_rgba(_FILL[state], _FILL[state][3] * (0.35 if faded else 1.0)),
        edgecolor=to_rgba(CANCELLED if cancelled else "#333333", 0.35 if faded else 1.0),
        linestyle="--" if cancelled else "-", linewidth=3.0 if strong else 1.3, zorder=2,
    )
    ax.add_patch(box)
    colour = "#333333" if not faded else "#aaaaaa"
    ax.text(x, y + _BOX_HEIGHT / 2 - 0.035, state, transform=ax.transAxes, ha="center", va="top",
            fontsize=13, fontweight="bold", color=colour, zorder=3)
    ax.text(x, y - 0.03, _MEANING[state], transform=ax.transAxes, ha="center", va="center",
            fontsize=9.5, color=colour, linespacing=1.25, zorder=3)
    return box


def plot_event_loop(highlight: str | Iterable[str] | None = None, title: str | None = None) -> Figure:
    """The event loop's cycle and a task's life, created → scheduled → running → waiting → done/cancelled.

        fig = plot_event_loop()                                  # the whole machine
        fig = plot_event_loop(highlight=["running", "waiting"])  # two states stand out, the rest fade

    highlight: one state name or several (see :data:`STATES`) drawn with a thick outline while the
    others fade; None draws every state alike. title: one line over the diagram.
    """
    chosen = _check_highlight(highlight)
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, got {type(title).__name__}")
    fig, ax = plt.subplots(figsize=(13, 5.4), layout="constrained")
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    # The loop: one thread runs the ready tasks one at a time; the three states inside are its cycle.
    ax.add_patch(FancyBboxPatch(
        (0.255, 0.035), 0.45, 0.93, boxstyle="round,pad=0.005,rounding_size=0.03", transform=ax.transAxes,
        facecolor=to_rgba(CONCURRENT, 0.03), edgecolor=CONCURRENT, linestyle=(0, (6, 4)), linewidth=1.2, zorder=0,
    ))
    ax.text(0.48, 0.965, "the event loop: one thread, one task running at a time, switching only at await",
            transform=ax.transAxes, ha="center", va="center", fontsize=10.5, color=CONCURRENT, style="italic",
            bbox={"boxstyle": "square,pad=0.3", "facecolor": "white", "edgecolor": "none"})
    boxes = {state: _box(ax, state, faded=bool(chosen) and state not in chosen, strong=state in chosen)
             for state in STATES}
    for start, end, label, (lx, ly), bend in TRANSITIONS:
        (x0, y0), (x1, y1) = _CENTRE[start], _CENTRE[end]
        ax.annotate(
            "", xy=(x1, y1), xytext=(x0, y0), xycoords="axes fraction", textcoords="axes fraction",
            arrowprops={"arrowstyle": "-|>", "mutation_scale": 20, "linewidth": 1.6, "color": "#333333",
                        "connectionstyle": f"arc3,rad={bend}", "patchA": boxes[start], "patchB": boxes[end],
                        "shrinkA": 2, "shrinkB": 2},
            zorder=1,
        )
        ax.text(lx, ly, label, transform=ax.transAxes, ha="center", va="center", fontsize=9.5,
                linespacing=1.2, zorder=4,
                bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.9})
    ax.set_title(title if title is not None else "The event loop and the life of a task", fontsize=14)
    return ready(fig)
