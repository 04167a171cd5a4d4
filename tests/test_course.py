"""The course runner: which notebooks start first, and the order its table comes back in."""

from __future__ import annotations

import math
from pathlib import Path

import nbformat
import pytest

from asynclab.course import KERNEL_SECONDS, default_jobs, expected_seconds, run_course


def _notebook(path: Path, cells: list[tuple[str, float | None]]) -> Path:
    """A notebook whose code cells carry stored timings of the given seconds (None: never run)."""
    nb = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    for source, seconds in cells:
        cell = nbformat.v4.new_code_cell(source)  # type: ignore[no-untyped-call]
        if seconds is not None:
            end = f"2026-01-01T00:00:{seconds:09.6f}Z"
            cell.metadata["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00.000000Z",
                                          "shell.execute_reply": end}
        nb.cells.append(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)  # type: ignore[no-untyped-call]
    return path


def test_expected_seconds_adds_the_stored_cell_timings_to_a_kernels_start(tmp_path: Path) -> None:
    path = _notebook(tmp_path / "01_a.ipynb", [("1", 2.5), ("2", 0.5)])
    assert expected_seconds(path) == pytest.approx(KERNEL_SECONDS + 3.0)


def test_a_notebook_never_run_counts_as_the_longest(tmp_path: Path) -> None:
    assert expected_seconds(_notebook(tmp_path / "01_a.ipynb", [("1", None)])) == math.inf
    assert expected_seconds(tmp_path / "missing.ipynb") == math.inf


def test_the_default_is_one_notebook_per_core() -> None:
    import os

    assert default_jobs() == (os.cpu_count() or 1)


def test_the_longest_notebook_starts_first_and_the_table_keeps_course_order(tmp_path: Path) -> None:
    # Each notebook records when it started (a wall clock in a shared file); with one job they
    # run one after another, so the order of the lines is the order they were started in.
    log = tmp_path / "started.txt"
    record = f"open({str(log)!r}, 'a').write(NAME + chr(10))"
    short = _notebook(tmp_path / "00_short.ipynb", [(f"NAME = '00'\n{record}", 0.1)])
    solution = _notebook(tmp_path / "solutions" / "00_short-solutions.ipynb", [(f"NAME = '00s'\n{record}", 0.2)])
    long = _notebook(tmp_path / "01_long.ipynb", [(f"NAME = '01'\n{record}", 9.0)])
    runs = run_course(tmp_path, jobs=1)
    assert [run.path for run in runs] == [short, solution, long]
    assert all(run.ok for run in runs)
    assert log.read_text().split() == ["01", "00s", "00"]


@pytest.mark.parametrize("jobs", [0, -1, 1.5, True])
def test_run_course_refuses_a_jobs_count_that_is_not_a_positive_int(tmp_path: Path, jobs: object) -> None:
    _notebook(tmp_path / "00_a.ipynb", [("1", None)])
    with pytest.raises(ValueError, match="jobs must be an int >= 1"):
        run_course(tmp_path, jobs=jobs)  # type: ignore[arg-type]
