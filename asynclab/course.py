"""Run the course headless: every lesson and solution notebook, top to bottom, in a fresh kernel.

    python -m asynclab course                  # run everything at speed 20, print a table
    python -m asynclab course --only 02 03     # just some lessons (and their solutions)
    python -m asynclab course --write          # store the outputs in the notebooks

Each notebook runs in its own kernel with ``ASYNCLAB_SPEED`` set, so simulated seconds pass
``speed`` times faster than wall seconds. Exercise stubs are tagged ``raises-exception`` and
may fail; any other failing cell fails the notebook and the command exits non-zero.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = [
    "NotebookRun", "default_jobs", "expected_seconds", "find_notebooks", "kernel_config", "run_course", "run_notebook",
]

#: The default course speed: a 1.2 s LLM call takes 60 ms, timings stay readable and honest.
COURSE_SPEED = 20.0

#: Wall seconds a notebook costs before its first cell: a kernel starts, imports, shuts down.
KERNEL_SECONDS = 1.5


def default_jobs() -> int:
    """One notebook per core, plus one.

    A notebook spends about half its time waiting on simulated seconds, so one more kernel than
    cores fills that time. Measured on 2 cores, quiet, all 34 notebooks: 2 jobs 90 s; 3 jobs
    60-70 s; 4 jobs 53-61 s (34 of 34 in 2 runs, after full garbage collections stopped landing
    in timed blocks). More kernels wake each other's timers later, so the default keeps a margin;
    a claim that still fails beside the others runs again alone (:func:`run_course`).
    """
    return (os.cpu_count() or 1) + 1


@dataclass(frozen=True)
class NotebookRun:
    path: Path
    ok: bool
    wall: float
    simulated: float
    error: str = ""
    #: When the notebook failed a timing claim with other notebooks running and passed when run
    #: again alone: the first run's error (the run above is the second one).
    first_error: str = ""
    #: The class name of the error that failed it ("" when it passed).
    kind: str = ""


def default_dir() -> Path:
    """``notebooks/`` of the checkout this package was installed from, else ``./notebooks``."""
    here = Path(__file__).resolve().parent.parent / "notebooks"
    return here if here.is_dir() else Path.cwd() / "notebooks"


def find_notebooks(directory: Path, only: Sequence[str] = ()) -> list[Path]:
    """Lessons in number order, each followed by its solutions; ``only`` filters by number."""
    if not directory.is_dir():
        raise ValueError(f"notebook directory {str(directory)!r} does not exist")
    found = []
    for lesson in sorted(directory.glob("[0-9][0-9]_*.ipynb")):
        if only and lesson.name[:2] not in only:
            continue
        found.append(lesson)
        found.extend(sorted((directory / "solutions").glob(f"{lesson.name[:2]}_*.ipynb")))
    if only and not found:
        raise ValueError(f"no notebook numbered {', '.join(only)} in {directory}")
    return found


def _cell_seconds(cell: Any) -> float:
    """Wall seconds a cell ran, from the timestamps nbclient records (``record_timing``)."""
    timing = cell.get("metadata", {}).get("execution", {})
    try:
        start = datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
    except (KeyError, TypeError, AttributeError):
        return 0.0
    return max((end - start).total_seconds(), 0.0)


def expected_seconds(path: Path) -> float:
    """How long a notebook ran last time, from the cell timings stored with its outputs.

    Used only to start the longest notebooks first, so that the short ones fill the cores at
    the end rather than one long notebook running alone; a notebook without stored timings
    (never run with ``--write``) counts as long, so it starts early.
    """
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    except (OSError, ValueError):
        return math.inf
    seconds = [_cell_seconds(cell) for cell in nb.cells if cell.cell_type == "code"]
    return KERNEL_SECONDS + sum(seconds) if any(seconds) else math.inf


def _failure(report: str) -> str:
    """The error line of a failed cell, with the source line it failed on (an assert says what).

    IPython marks the failing line with ``---->``; where its traceback has no such line, the
    line number of ``Cell In[N], line L`` is looked up in the cell's source, which nbclient puts
    at the top of the report between two rules of dashes.
    """
    raw = [re.sub(r"\x1b\[[0-9;]*m", "", line).rstrip() for line in report.strip().splitlines()]
    lines = [line for line in raw if line.strip()]
    if not lines:
        return ""
    failed_at = [line.split("---->", 1)[1].strip().split(maxsplit=1)[-1] for line in lines if "---->" in line]
    if not failed_at:
        numbers = re.findall(r"Cell In\[\d+\], line (\d+)", "\n".join(lines))
        rules = [i for i, line in enumerate(raw) if set(line) == {"-"} and len(line) >= 10]
        if numbers and len(rules) >= 2:
            source = raw[rules[0] + 1:rules[1]]
            number = int(numbers[-1])
            failed_at = [source[number - 1].strip()] if 0 < number <= len(source) else []
    where = f" at `{failed_at[-1]}`" if failed_at else ""
    return f"{lines[-1]}{where}"


def kernel_config() -> Any:
    """Config for one kernel the course starts (a fresh one per kernel): Unix sockets where there are any.

    Over TCP, jupyter_client picks five free ports in this process and the kernel binds them a
    moment later; kernels started at once from several processes can pick the same port, and
    the loser dies before its first reply ("Address already in use", seen with 4 notebooks at
    once). Over IPC there are no ports to race for and nothing listens on the network, which
    also silences ipykernel's "Kernel is running over TCP without encryption". Each kernel gets
    socket paths of its own in Jupyter's runtime folder (jupyter_client's default, ``kernel-ipc-N``
    in the working folder, is one name for every kernel), removed when the kernel shuts down.
    Elsewhere (Windows) kernels use TCP with CurveZMQ keys of their own when pyzmq can make them.
    """
    import zmq
    from jupyter_core.paths import jupyter_runtime_dir
    from traitlets.config import Config

    config = Config()
    if os.name == "posix":
        runtime = jupyter_runtime_dir()
        os.makedirs(runtime, exist_ok=True)
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = os.path.join(runtime, f"asynclab-{uuid.uuid4().hex[:12]}-ipc")
    else:
        config.KernelManager.transport_encryption = "auto" if zmq.has("curve") else "disabled"
    return config


def run_notebook(path: Path, speed: float = COURSE_SPEED, write: bool = False, timeout: int = 300) -> NotebookRun:
    """Execute one notebook in a fresh kernel; simulated time = Σ cell wall time × speed."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    os.environ["ASYNCLAB_SPEED"] = f"{speed:g}"  # the kernel inherits it
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=True,
                            resources={"metadata": {"path": str(path.parent)}}, config=kernel_config())
    started = time.perf_counter()
    error = kind = ""
    try:
        client.execute()
    except CellExecutionError as exc:
        error, kind = _failure(str(exc)) or repr(exc), exc.ename
    except Exception as exc:  # a dead kernel or a timeout: report it, never hide it
        error, kind = f"{type(exc).__name__}: {exc}", type(exc).__name__
    wall = time.perf_counter() - started
    simulated = sum(_cell_seconds(cell) for cell in nb.cells if cell.cell_type == "code") * speed
    if write and not error:
        nbformat.write(nb, path)  # type: ignore[no-untyped-call]
    return NotebookRun(path, not error, wall, simulated, error, kind=kind)


#: Errors that a busy machine can cause in a correct notebook: a timing claim's assert, or an
#: exercise check whose timing a late timer pushed over its tolerance (its message is the hint,
#: so the class is read from the kernel's report). Anything else is real.
RERUN_ERRORS = frozenset({"AssertionError", "ExerciseFailed"})


def run_course(
    directory: Path | None = None,
    only: Sequence[str] = (),
    speed: float = COURSE_SPEED,
    write: bool = False,
    jobs: int | None = None,
    rerun: bool = True,
) -> list[NotebookRun]:
    """Run every notebook, ``jobs`` at a time (longest first), printing each as it finishes.

    With ``rerun``, a notebook that failed an assert or a check while others ran beside it runs
    once more at the end, alone: more kernels than cores sometimes wake one late by more than a
    claim's tolerance. If it passes then, its run says so (``first_error``) and the table marks
    it; a notebook that fails alone too, or fails any other way, fails the course.
    Returns the runs in course order (each lesson, then its solutions).
    """
    paths = find_notebooks(directory or default_dir(), only)
    jobs = default_jobs() if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1 (notebooks run at once), got {jobs!r}")
    longest_first = sorted(paths, key=expected_seconds, reverse=True)
    runs: dict[Path, NotebookRun] = {}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_notebook, path, speed, write) for path in longest_first]
        for future in as_completed(futures):
            run = future.result()
            runs[run.path] = run
            status = "ok" if run.ok else "FAILED"
            print(f"[{len(runs):>2}/{len(paths)}] {_name(run.path):<56} {status:<6} "
                  f"{run.wall:5.1f} s wall", flush=True)
    again = [run for run in runs.values() if not run.ok and run.kind in RERUN_ERRORS] if jobs > 1 else []
    for first in sorted(again, key=lambda run: paths.index(run.path)) if rerun else []:
        second = run_notebook(first.path, speed, write)
        if second.ok:
            second = replace(second, first_error=first.error)
        runs[first.path] = second
        print(f"[again] {_name(first.path):<56} {'ok' if second.ok else 'FAILED':<6} {second.wall:5.1f} s wall, "
              "alone", flush=True)
    return [runs[path] for path in paths]


def _name(path: Path) -> str:
    return f"{path.parent.name}/{path.name}" if path.parent.name == "solutions" else path.name


def print_table(runs: Sequence[NotebookRun], speed: float) -> None:
    print()
    width = max(len(_name(run.path)) for run in runs) + 2 if runs else 10
    print(f"{'notebook':<{width}}{'status':<8}{'wall s':>8}{'simulated s*':>14}")
    for run in runs:
        status = ("ok†" if run.first_error else "ok") if run.ok else "FAILED"
        print(f"{_name(run.path):<{width}}{status:<8}{run.wall:>8.1f}{run.simulated:>14.1f}")
    print("* the cells' run time × speed: simulated waiting plus CPU work (imports, plots) at that speed")
    again = [run for run in runs if run.first_error]
    if again:
        print("† failed beside the other notebooks and passed when run again alone (its time is the second run's):")
        for run in again:
            print(f"  {_name(run.path)}: {run.first_error}")
    failed = [run for run in runs if not run.ok]
    print(f"{len(runs) - len(failed)} passed, {len(failed)} failed  (speed {speed:g})"
          + (f", {len(again)} of them on a second run" if again else ""))
    for run in failed:
        print(f"  {_name(run.path)}: {run.error}", file=sys.stderr)


def main(
    only: Sequence[str] = (), speed: float = COURSE_SPEED, write: bool = False, jobs: int | None = None,
    rerun: bool = True,
) -> int:
    started = time.perf_counter()
    runs = run_course(only=only, speed=speed, write=write, jobs=jobs, rerun=rerun)
    print_table(runs, speed)
    print(f"course wall time: {time.perf_counter() - started:.1f} s")
    return 0 if runs and all(run.ok for run in runs) else 1
