"""``python -m asynclab``: every bad argument or environment is one line on stderr and exit status 2.

Run as subprocesses, as a learner runs them: a traceback or a hidden file would show only there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _run(*args: str, speed: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "ASYNCLAB_SPEED"}
    if speed is not None:
        env["ASYNCLAB_SPEED"] = speed
    return subprocess.run([sys.executable, "-m", "asynclab", *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=cwd)


def _one_line_error(done: subprocess.CompletedProcess[str], command: str) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"python -m asynclab {command}: error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("out", "words"),
    [
        ("", "--out must be a file path such as 'timeline.png', got ''"),
        (".png", "--out must be a file name ending in .png, .svg, .pdf, got '.png'"),
        ("timeline", "--out must be a file name ending in .png, .svg, .pdf, got 'timeline'"),
        ("/dev/null/x.png", "--out: cannot save '/dev/null/x.png', '/dev/null' is not a folder"),
        ("/dev/null/deeper/x.png", "'/dev/null' is not a folder"),
    ],
)
def test_demo_refuses_an_out_path_it_cannot_write_before_running(tmp_path: Path, out: str, words: str) -> None:
    # `--out ""` wrote a hidden ".png" in the current folder; /dev/null/x.png ended in a traceback.
    done = _run("demo", "--speed", "1000", "--out", out, cwd=tmp_path)
    assert words in _one_line_error(done, "demo")
    assert done.stdout == ""  # refused before measuring anything
    assert list(tmp_path.iterdir()) == []


def test_demo_refuses_a_folder_as_out(tmp_path: Path) -> None:
    (tmp_path / "pics.png").mkdir()
    done = _run("demo", "--speed", "1000", "--out", str(tmp_path / "pics.png"))
    assert "is a folder" in _one_line_error(done, "demo")


def test_demo_makes_the_folders_of_a_new_out_path(tmp_path: Path) -> None:
    out = tmp_path / "new" / "folder" / "timeline.svg"
    done = _run("demo", "--speed", "200", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_text().lstrip().startswith("<?xml")


def test_course_only_refuses_a_lesson_that_does_not_exist() -> None:
    # Ended in a traceback from find_notebooks.
    line = _one_line_error(_run("course", "--only", "99"), "course")
    assert "--only: no lesson numbered 99 in " in line and "the lessons are 00, 01" in line


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("course", "--only", "x"), "argument --only: lesson numbers are like 00 or 2, got 'x'"),
        (("course", "--jobs", "0"), "argument --jobs: jobs must be an int >= 1"),
        (("serve", "--host", ""), "argument --host: host must be an IP address"),
        (("serve", "--port", "65536"), "argument --port: port must be an int from 0 (any free port) to 65535"),
        (("demo", "--speed", "1e18"), "argument --speed: speed must be a number from 0.001 to 1,000,000"),
        (("lab", "--speed", "nan"), "got 'nan'"),
    ],
)
def test_bad_options_are_usage_errors(args: tuple[str, ...], words: str) -> None:
    done = _run(*args)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert words in done.stderr


@pytest.mark.parametrize("command", ["demo", "course", "lab", "serve"])
@pytest.mark.parametrize("speed", ["fast", "0", "1e18", "nan"])
def test_a_bad_asynclab_speed_is_one_line_and_exit_2_for_every_command(command: str, speed: str) -> None:
    # Raised while importing asynclab: a traceback for every command, even --help's neighbours.
    line = _one_line_error(_run(command, speed=speed), command)
    assert f"ASYNCLAB_SPEED must be a number from 0.001 to 1,000,000 (simulated seconds per wall second), " \
           f"got '{speed}'" in line


def test_help_still_works_with_a_bad_asynclab_speed() -> None:
    done = _run("--help", speed="fast")
    assert done.returncode == 0 and "demo" in done.stdout


def test_serve_stops_on_ctrl_c_without_a_traceback() -> None:
    # uvicorn shuts down on SIGINT and then raises it again: the learner saw a KeyboardInterrupt
    # traceback under "Finished server process" before _serve caught it.
    import signal
    import subprocess
    import sys
    import time

    server = subprocess.Popen([sys.executable, "-m", "asynclab", "serve", "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert server.stdout is not None
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("startup complete" in line for line in lines):
            lines.append(server.stdout.readline())
        server.send_signal(signal.SIGINT)
        out, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert "Finished server process" in out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    assert server.returncode == 130
