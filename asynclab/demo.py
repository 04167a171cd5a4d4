"""The seed example, measured: one AI request done one step after another, then concurrently.

    python -m asynclab demo --speed 50

A request needs an LLM call (1.2 s), a vector search (0.6 s) and a metadata fetch (0.3 s).
Awaited one after another they take the sum, 2.1 s; started together they take the longest,
1.2 s. Both are measured, drawn on one timeline and saved as a PNG.

Introduced in notebook 00.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from asynclab.clock import at_speed, get_speed
from asynclab.plots import plot_timelines
from asynclab.services import LLM, MetadataStore, VectorStore
from asynclab.tracing import Trace, trace

__all__ = ["DemoResult", "answer_concurrently", "answer_sequentially", "check_picture_path", "run_demo"]

QUESTION = "Why does my LLM app spend most of its time waiting?"

#: The picture formats the timeline can be saved in (matplotlib picks it from the suffix).
PICTURE_SUFFIXES = (".png", ".svg", ".pdf")


def check_picture_path(path: object, name: str = "png") -> Path:
    """Where a timeline may be saved: a file name ending in .png, .svg or .pdf in a folder that
    exists or can be made. Checked before the demo runs, so a bad path costs no waiting."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a file path such as 'timeline.png', got {type(path).__name__} {path!r:.60}")
    text = os.fspath(path)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{name} must be a file path such as 'timeline.png', got {text!r:.60}")
    target = Path(text)
    if target.suffix.lower() not in PICTURE_SUFFIXES:  # ".png" alone is a hidden file with no suffix
        raise ValueError(f"{name} must be a file name ending in {', '.join(PICTURE_SUFFIXES)}, got {text!r}")
    if target.is_dir():
        raise ValueError(f"{name} must be a file, but {text!r} is a folder")
    for folder in target.parents:  # the nearest folder that exists must be one, and writable
        if folder.exists():
            if not folder.is_dir():
                raise ValueError(f"{name}: cannot save {text!r}, {str(folder)!r} is not a folder")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise ValueError(f"{name}: cannot save {text!r}, the folder {str(folder)!r} is not writable")
            break
    return target


async def answer_sequentially(llm: LLM, store: VectorStore, meta: MetadataStore, question: str) -> str:
    """Each await finishes before the next call starts: the times add up."""
    answer = await llm.complete(question)
    hits = await store.search(question, k=3)
    info = await meta.get(hits[0].id)
    return f"{answer} [source: {info['title']}]"


async def answer_concurrently(llm: LLM, store: VectorStore, meta: MetadataStore, question: str) -> str:
    """All three calls start at once; the request waits only for the slowest.

    (The metadata fetch needs no search result here: it looks up the document the app pinned.)
    """
    answer, _hits, info = await asyncio.gather(
        llm.complete(question), store.search(question, k=3), meta.get("doc-001")
    )
    return f"{answer} [source: {info['title']}]"


@dataclass(frozen=True)
class DemoResult:
    sequential: Trace
    concurrent: Trace
    durations: tuple[float, ...]
    png: Path | None


async def _measure() -> tuple[Trace, Trace, tuple[float, ...]]:
    llm, store, meta = LLM(), VectorStore(), MetadataStore()
    with trace() as sequential:
        await answer_sequentially(llm, store, meta, QUESTION)
    with trace() as concurrent:
        await answer_concurrently(llm, store, meta, QUESTION)
    # The prediction comes from the latency models, not from the measurement it is checked against.
    durations = tuple(service.latency.seconds() for service in (llm, store, meta))
    return sequential, concurrent, durations


def run_demo(speed: float | None = None, png: Path | str | None = None) -> DemoResult:
    """Measure both ways at ``speed`` and save the timeline to ``png`` (None: no picture).

        result = run_demo(speed=50, png=Path("timeline.png"))
        result.sequential.elapsed, result.concurrent.elapsed      # ≈ 2.1 and 1.2

    speed: as for ``set_speed`` (None: the current speed). png: see :func:`check_picture_path`.
    """
    png = None if png is None else check_picture_path(png)
    with at_speed(speed if speed is not None else get_speed()):
        sequential, concurrent, durations = asyncio.run(_measure())
    if png is not None:
        import matplotlib.pyplot as plt

        fig = plot_timelines(
            {"one after another": sequential, "concurrently (asyncio.gather)": concurrent},
            title="The seed example: LLM 1.2 s + vector search 0.6 s + metadata 0.3 s",
        )
        png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(png, dpi=110)
        plt.close(fig)
    return DemoResult(sequential, concurrent, durations, png)


def main(speed: float | None = None, out: str = "asynclab-demo.png") -> int:
    """``python -m asynclab demo``: a bad ``--out`` is a one-line error with exit status 2."""
    try:
        png = check_picture_path(out, "--out")
    except (TypeError, ValueError) as exc:
        print(f"python -m asynclab demo: error: {exc}", file=sys.stderr)
        return 2
    try:
        result = run_demo(speed, png)
    except OSError as exc:  # the folder could not be made, or the file written
        print(f"python -m asynclab demo: error: --out: cannot save {out!r}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    total, longest = sum(result.durations), max(result.durations)
    print(f"speed: {get_speed() if speed is None else speed:g} simulated seconds per wall second")
    print(f"{'way':<28}{'measured':>10}{'predicted':>11}")
    print(f"{'one after another':<28}{result.sequential.elapsed:>8.2f} s{total:>9.2f} s  (Σ of calls)")
    print(f"{'concurrently (gather)':<28}{result.concurrent.elapsed:>8.2f} s{longest:>9.2f} s  (max of calls)")
    print(f"timeline: {result.png.resolve() if result.png else '-'}")
    return 0
