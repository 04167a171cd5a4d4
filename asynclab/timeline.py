"""How a trace is drawn: one row per call, coloured by service, styled by how the call ended.

    legend = draw_timeline(ax, t, "Three calls at once")   # bars, labels, axes on ``ax``
    add_legend(fig, legend)                                 # one legend under the figure

The picture language of every timeline in the course, used by :func:`asynclab.plot_timeline`
and :func:`asynclab.plot_timelines`:

- a bar per service call, in its service's colour (:mod:`asynclab.palette`), labelled with
  the operation and what it was about (model and prompt, document, query) and its attempt;
- time queued for a slot (``span.queued`` → ``span.start``) lighter and hatched before it;
- a failed call outlined in red and cross-hatched, a cancelled one faded with a grey dashed
  outline, a call still running faded with a dotted outline; "|" marks a stream's first token;
- calls that ended after the traced block drawn whole, the block's end a dashed vertical line;
- above :data:`ONE_ROW_EACH` calls, calls share lanes and are drawn as one collection per style.

Introduced in notebook 00.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import matplotlib
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from asynclab.clock import now
from asynclab.palette import CANCELLED, FAILED, colour_key, service_colour
from asynclab.tracing import Span, Trace

__all__ = [
    "ONE_ROW_EACH", "SECONDS", "Legend", "add_legend", "draw_timeline", "extent", "panel_rows", "ready", "span_label",
]

SECONDS = "time (simulated seconds)"
#: Above this many spans a timeline packs spans into shared lanes instead of one row each.
ONE_ROW_EACH = 40
#: Characters of a call's key (model and prompt, document id, query) shown in its row label.
KEY_CHARS = 30
#: Legend entries by key: "service:<name>" for a colour, a status name for a style.
Legend = dict[str, Artist]
#: Statuses in the legend, after the services, in this order.
_STATUS_ORDER = ("queued", "failed", "cancelled", "running", "first token", "block end")


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())  # newlines and runs of spaces: one space
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def span_label(span: Span) -> str:
    """A short row label that tells calls of one operation apart.

        span_label(span)   # 'llm.complete · summarizer: Large language models…'

    The key is what the request was about: ``model:prompt`` for the LLM, the document id,
    the query (after ``k:``), the texts of a batch; a retry says which attempt it was.
    """
    key = span.key
    if "\x1f" in key:  # a batch: its texts joined by the unit separator
        detail = f"{span.items} texts: {_short(key.split(chr(0x1F), 1)[0], KEY_CHARS - 11)}"
    else:
        head, colon, rest = key.partition(":")
        if colon and rest and head.isdigit():  # "5:query", "3:topic": a count (k, limit) first
            detail = _short(rest, KEY_CHARS)
        elif colon and rest and len(head) <= 16 and head.replace("-", "_").isidentifier():
            detail = f"{head}: {_short(rest, KEY_CHARS - len(head) - 2)}"  # "summarizer:prompt": a model
        else:
            detail = _short(key, KEY_CHARS)
    label = _short(span.name, 40) + (f" · {detail}" if detail else "")
    return label + (f" · attempt {span.attempt}" if span.attempt > 1 else "")


def _row_labels(spans: Sequence[Span]) -> list[str]:
    """Labels in row order; the same request made twice gets #2, #3 so no two rows read alike."""
    labels = [span_label(span) for span in spans]
    repeated = {label for label, count in Counter(labels).items() if count > 1}
    seen: Counter[str] = Counter()
    numbered = []
    for label in labels:
        seen[label] += 1
        numbered.append(f"{label} #{seen[label]}" if label in repeated else label)
    return numbered


def _lanes(spans: Sequence[Span], horizon: float) -> tuple[list[int], int]:
    """First-fit lanes: a span goes on the first lane that is free when it arrives."""
    if len(spans) <= ONE_ROW_EACH:
        return list(range(len(spans))), len(spans)
    lane_end: list[float] = []
    lanes = []
    for span in spans:
        end = span.end if span.end is not None else horizon
        for lane, busy_until in enumerate(lane_end):
            if busy_until <= span.queued:
                lane_end[lane] = end
                lanes.append(lane)
                break
        else:
            lane_end.append(end)
            lanes.append(len(lane_end) - 1)
    return lanes, len(lane_end)


def extent(recorded: Trace) -> tuple[float, float]:
    """(end of the traced block, end of the last call) in seconds since the block started."""
    block_end = recorded.end if recorded.end is not None else now()
    last = max((s.end for s in recorded.spans if s.end is not None), default=block_end)
    return block_end - recorded.start, max(block_end, last) - recorded.start


#: How a call ended → (label in the legend, bar style). Face colours are the service's.
_STATUS: dict[str, tuple[str | None, dict[str, object]]] = {
    "ok": (None, {"edgecolor": "black", "linewidth": 0.5}),
    "failed": ("failed (raised an error)", {"edgecolor": FAILED, "linewidth": 1.8, "hatch": "xx"}),
    "cancelled": ("cancelled", {"edgecolor": CANCELLED, "linewidth": 1.5, "linestyle": "--"}),
    "running": ("still running when drawn", {"edgecolor": "black", "linewidth": 1.0, "linestyle": ":"}),
}


def _status(span: Span) -> str:
    if span.outcome in ("ok", "cancelled", "running"):
        return span.outcome
    return "failed"


def _bars(ax: Axes, lanes: Sequence[int], lefts: Sequence[float], widths: Sequence[float], packed: bool,
          faces: Sequence[tuple[float, float, float, float]], style: dict[str, object]) -> None:
    """Draw bars: a patch each while every call has its row (easy to inspect), one collection
    in a packed picture (10,000 patches take seconds to add and draw, one collection 0.1 s)."""
    if not packed:
        ax.barh(lanes, widths, height=0.8, left=lefts, color=faces, **style)  # type: ignore[arg-type]
        return
    half = 0.5  # thin lanes touch: gaps of a pixel between them would stripe the picture
    boxes = [[(x, y - half), (x + w, y - half), (x + w, y + half), (x, y + half)]
             for y, x, w in zip(lanes, lefts, widths, strict=True)]
    ax.add_collection(PolyCollection(boxes, facecolors=faces, **style), autolim=False)  # type: ignore[arg-type]


def _colour(span: Span, alpha: float = 1.0) -> tuple[float, float, float, float]:
    return to_rgba(service_colour(colour_key(span.service, span.operation)), alpha)


def draw_timeline(ax: Axes, recorded: Trace, title: str | None) -> Legend:
    """Draw one trace on ``ax``; return the legend entries it needs."""
    spans = sorted(recorded.spans, key=lambda s: (s.queued, s.start))
    t0 = recorded.start
    block_end, last_end = extent(recorded)
    lanes, n_lanes = _lanes(spans, t0 + last_end)
    rows = list(zip(lanes, spans, strict=True))
    packed = len(spans) > ONE_ROW_EACH
    legend: Legend = {}
    for span in spans:  # one entry per service (or tool), in the order they first appear
        key = colour_key(span.service, span.operation)
        label = _short(span.name if key != span.service else span.service, 40)
        if f"service:{label}" not in legend:
            legend[f"service:{label}"] = Patch(color=service_colour(key), label=label)

    # One drawing call per style, not one per span: 10,000 calls draw in well under a second.
    queued = [(lane, s) for lane, s in rows if s.wait > 1e-9]
    if queued:  # before the call: the service's colour, lighter and hatched
        faces = [_colour(s, 0.3) for _, s in queued]
        # Packed lanes are a pixel or two high: no hatch would show, and hatching thousands of
        # bars takes seconds, so there queued time is only lighter.
        hatch = None if packed else "///"
        _bars(ax, [lane for lane, _ in queued], [s.queued - t0 for _, s in queued], [s.wait for _, s in queued],
              packed, faces, {"edgecolor": [face[:3] for face in faces], "linewidth": 0, "hatch": hatch})
        legend["queued"] = Patch(facecolor=to_rgba("grey", 0.3), edgecolor="grey", linewidth=0,
                                 hatch=hatch, label="queued, waiting for a slot")
    for status, (status_label, style) in _STATUS.items():
        group = [(lane, s) for lane, s in rows if _status(s) == status]
        if not group:
            continue
        if status == "ok" and packed:
            # Thin lanes: black outlines would paint the bars black; on a few thick lanes a thin
            # white edge keeps calls that follow each other apart.
            style = {"linewidth": 0.6, "edgecolor": "white"} if n_lanes <= 20 else {"linewidth": 0}
        alpha = 0.45 if status in ("cancelled", "running") else 1.0  # faded: the call did not finish
        starts = [s.start - t0 for _, s in group]
        ends = [s.end - t0 if s.end is not None else last_end for _, s in group]
        _bars(ax, [lane for lane, _ in group], starts, [end - start for start, end in zip(starts, ends, strict=True)],
              packed, [_colour(s, alpha) for _, s in group], style)
        if status_label is not None:
            legend[status] = Patch(facecolor=to_rgba("lightgrey", alpha), label=status_label,
                                   **style)  # type: ignore[arg-type]

    tokens = [(s.first_token - t0, lane) for lane, s in rows if s.first_token is not None]
    if tokens:
        ax.plot(*zip(*tokens, strict=True), linestyle="", marker="|", color="black", markersize=12)
        legend["first token"] = Line2D([], [], color="black", marker="|", linestyle="", markersize=12,
                                       label="first token")
    if last_end > block_end + 1e-9:  # calls ran on after the block: draw them whole, mark the block's end
        ax.axvline(block_end, color="black", linestyle=(0, (4, 2)), linewidth=1.2)
        legend["block end"] = Line2D([], [], color="black", linestyle=(0, (4, 2)), linewidth=1.2,
                                     label="end of the traced block")

    if not spans:
        ax.text(0.5, 0.5, "no service calls were recorded in this trace", transform=ax.transAxes,
                ha="center", va="center", color="grey")
        ax.set_yticks([])
    elif len(spans) <= ONE_ROW_EACH:
        ax.set_yticks(range(len(spans)), _row_labels(spans), fontsize="small" if len(spans) > 12 else None)
        ax.set_ylabel("service call")
    else:
        ax.set_ylabel(f"lane ({len(spans)} calls in {n_lanes} lane{'s' if n_lanes > 1 else ''})")
        if n_lanes <= 10:
            ax.set_yticks(range(n_lanes))
        else:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # whole lanes only
    ax.set_ylim(max(n_lanes, 1) - 0.5, -0.5)  # first call on top, time reads left to right
    ax.set_xlabel(SECONDS)
    ax.set_xlim(0, (last_end if spans else max(last_end, 1.0)) * 1.03)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title or f"{len(spans)} calls took {recorded.elapsed:.2f} s (Σ of calls {recorded.busy:.2f} s)")
    return legend


def panel_rows(recorded: Trace) -> int:
    """How many rows of height a trace's panel gets: one per call; packed, one per lane (3 to 20)."""
    if len(recorded.spans) <= ONE_ROW_EACH:
        return max(len(recorded.spans), 3)
    spans = sorted(recorded.spans, key=lambda s: (s.queued, s.start))
    _, n_lanes = _lanes(spans, recorded.start + extent(recorded)[1])
    return min(max(n_lanes, 3), 20)  # a few calls after one another are not a 20-row block


def ready(fig: Figure) -> Figure:
    """Hand a finished figure to the notebook, drawn once rather than twice.

    Under Jupyter's inline backend a new figure is drawn twice at the end of its cell: pyplot's
    post-execute hook draws every stale figure on its canvas (``draw_idle`` draws at once on a
    canvas with no screen), then the backend draws it again into the PNG it shows. The first
    draw is thrown away, and it is a third of a plot's CPU. A figure that is marked not stale
    skips it; anything the learner changes afterwards marks it stale again. Other backends
    (a script, ``%matplotlib widget``) draw as they always do.
    """
    if "inline" in matplotlib.get_backend():
        fig.stale = False
    return fig


def add_legend(fig: Figure, legend: Legend) -> None:
    """Services first (in order of appearance), then the statuses present, below the plot.

    Below and across the width: a legend never hides a bar, and the bars keep the width the
    row labels on the left leave them. Matplotlib fills a legend column by column; the entries
    are reordered so that it reads row by row.
    """
    handles = [artist for key, artist in legend.items() if key.startswith("service:")]
    handles += [legend[key] for key in _STATUS_ORDER if key in legend]
    if not handles:
        return
    ncols = min(len(handles), 6)
    nrows = math.ceil(len(handles) / ncols)
    by_column = [handles[row * ncols + col] for col in range(ncols) for row in range(nrows)
                 if row * ncols + col < len(handles)]
    fig.legend(handles=by_column, loc="outside lower center", fontsize="small", ncols=ncols, frameon=False)
