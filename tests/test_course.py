"""The course runner: which notebooks start first, and the order its table comes back in."""

from __future__ import annotations

import math
import os
from pathlib import Path

import nbformat
import pytest

from asynclab.course import (
    KERNEL_SECONDS,
    _failure,
    default_jobs,
    expected_seconds,
    kernel_config,
    print_table,
    run_course,
)


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


def test_the_default_is_one_notebook_per_core_plus_one() -> None:
    import os

    assert default_jobs() == (os.cpu_count() or 1) + 1


def test_a_failure_names_the_line_ipython_marks() -> None:
    report = ("An error occurred while executing the following cell:\n------------------\nx = 1\nassert x < 0\n"
              "------------------\n\n\x1b[31mAssertionError\x1b[39m  Traceback (most recent call last)\n"
              "Cell In[3], line 2\n      1 x = 1\n\x1b[32m----> \x1b[39m\x1b[32m2\x1b[39m assert x < 0\n\n"
              "AssertionError: \n")
    assert _failure(report) == "AssertionError: at `assert x < 0`"


def test_a_failure_without_an_arrow_finds_its_line_in_the_cell_source() -> None:
    # The cell's source heads nbclient's report; "Cell In[N], line L" counts blank lines too.
    report = ("An error occurred while executing the following cell:\n------------------\nx = 1\n\n"
              "assert x == 1\nassert x < 0  # why\n------------------\n\n"
              "AssertionError  Traceback (most recent call last)\nCell In[7], line 4\n\nAssertionError: \n")
    assert _failure(report) == "AssertionError: at `assert x < 0  # why`"
    assert _failure("ValueError: bad") == "ValueError: bad"  # nothing to point at: the error alone


@pytest.mark.skipif(os.name != "posix", reason="Unix sockets: kernels elsewhere use TCP")
def test_kernels_started_at_once_talk_over_sockets_of_their_own_and_leave_none(tmp_path: Path) -> None:
    # Over TCP, kernels started at once from several processes could pick the same port and one
    # died before its first reply (seen with 4 notebooks at once). Over IPC each kernel has its
    # own socket paths in Jupyter's runtime folder, removed when it shuts down.
    from jupyter_core.paths import jupyter_runtime_dir

    first, second = kernel_config().KernelManager, kernel_config().KernelManager
    assert first.transport == second.transport == "ipc" and first.ip != second.ip
    assert Path(first.ip).parent == Path(jupyter_runtime_dir())
    paths = [_notebook(tmp_path / f"{i:02d}_k.ipynb", [(f"assert 6 * 7 == 42  # kernel {i}", 0.1)]) for i in range(4)]
    runs = run_course(tmp_path, jobs=4)
    assert [run.ok for run in runs] == [True] * 4, [run.error for run in runs]
    assert [run.path for run in runs] == paths
    assert not list(Path(jupyter_runtime_dir()).glob("asynclab-*-ipc*"))


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


def test_a_notebook_that_fails_an_assert_beside_others_runs_again_alone_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Fails its first run (no marker yet), passes the second: what a timing claim does when a third
    # kernel on 2 cores wakes it late. The table marks it, with the first run's error.
    marker = tmp_path / "ran-once"
    flaky = _notebook(tmp_path / "00_flaky.ipynb", [(
        f"import pathlib\nfirst = not pathlib.Path({str(marker)!r}).exists()\n"
        f"pathlib.Path({str(marker)!r}).touch()\nassert not first, 'late'", 0.1)])
    steady = _notebook(tmp_path / "01_steady.ipynb", [("assert True", 0.1)])
    runs = run_course(tmp_path, jobs=2)
    assert [run.ok for run in runs] == [True, True]
    assert runs[0].path == flaky and runs[0].first_error == "AssertionError: late at `assert not first, 'late'`"
    assert runs[1].path == steady and runs[1].first_error == ""
    print_table(runs, 20)
    out = capsys.readouterr().out
    assert "[again] 00_flaky.ipynb" in out and "ok†" in out
    assert "2 passed, 0 failed  (speed 20), 1 of them on a second run" in out


def test_only_a_failed_claim_runs_again_and_never_with_rerun_off_or_one_job(tmp_path: Path) -> None:
    count = tmp_path / "runs.txt"
    record = f"open({str(count)!r}, 'a').write('x')"
    _notebook(tmp_path / "00_broken.ipynb", [(f"{record}\nraise ValueError('a real bug')", 0.1)])
    _notebook(tmp_path / "01_claim.ipynb", [(f"{record}\nassert False, 'always'", 0.1)])
    runs = run_course(tmp_path, jobs=2)
    assert [run.ok for run in runs] == [False, False]
    assert runs[0].error.startswith("ValueError") and runs[1].error.startswith("AssertionError")
    assert count.read_text() == "xxx"  # the assert ran twice, the ValueError once
    count.unlink()
    run_course(tmp_path, jobs=2, rerun=False)
    run_course(tmp_path, jobs=1)  # alone already: nothing to learn from a second run
    assert count.read_text() == "xxxx"


def test_a_check_that_fails_beside_others_runs_again_too(tmp_path: Path) -> None:
    # An exercise check renders its hint, not its class: the class comes from the kernel's report.
    marker = tmp_path / "ran-once"
    _notebook(tmp_path / "00_check.ipynb", [(
        "import pathlib\nfrom asynclab.checks import ExerciseFailed\n"
        f"first = not pathlib.Path({str(marker)!r}).exists()\npathlib.Path({str(marker)!r}).touch()\n"
        "if first:\n    raise ExerciseFailed('a batch went out late')", 0.1)])
    _notebook(tmp_path / "01_steady.ipynb", [("assert True", 0.1)])
    runs = run_course(tmp_path, jobs=2)
    assert [run.ok for run in runs] == [True, True]
    assert "a batch went out late" in runs[0].first_error
