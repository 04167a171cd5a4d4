"""``python -m asynclab lab``: options pass through to JupyterLab, lesson 00 opens, root is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from labserver import children, lab_server

import asynclab.lab
from asynclab.__main__ import main
from asynclab.course import default_dir
from asynclab.lab import ROOT_REFUSED, allows_root, jupyter_lab_command, running_as_root


class Exec(Exception):
    """Raised by the fake os.execve: the command main would have become."""


@pytest.fixture
def execve(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record what ``lab`` would exec instead of replacing the test process with JupyterLab."""
    calls: list[Any] = []

    def fake(path: str, argv: list[str], env: dict[str, str]) -> None:
        calls.append((path, argv, env))
        raise Exec

    monkeypatch.setattr(os, "execve", fake)
    monkeypatch.setattr(os, "name", "posix")
    return calls


def test_lab_as_root_without_allow_root_exits_2_with_one_line_of_its_own(
    monkeypatch: pytest.MonkeyPatch, execve: list[Any], capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(asynclab.lab, "running_as_root", lambda: True)
    assert main(["lab", "--no-browser"]) == 2
    assert capsys.readouterr().err == ROOT_REFUSED + "\n"
    assert execve == []  # JupyterLab never started
    assert "--allow-root" in ROOT_REFUSED and "\n" not in ROOT_REFUSED


def test_lab_passes_every_option_it_does_not_know_to_jupyter_lab_in_order(
    monkeypatch: pytest.MonkeyPatch, execve: list[Any],
) -> None:
    monkeypatch.setattr(asynclab.lab, "running_as_root", lambda: True)
    given = ["--no-browser", "--port", "8890", "--ServerApp.token=abc", "--allow-root"]
    with pytest.raises(Exec):
        main(["lab", given[0], "--speed", "5", *given[1:]])
    [(path, argv, env)] = execve
    assert path == sys.executable and argv[1:4] == ["-m", "jupyter", "lab"]
    assert argv[-len(given):] == given
    assert env["ASYNCLAB_SPEED"] == "5"


def test_lab_opens_lesson_00_of_the_course_notebooks_at_speed_1_by_default(execve: list[Any]) -> None:
    with pytest.raises(Exec):
        main(["lab", "--allow-root"])
    [(_, argv, env)] = execve
    assert f"--ServerApp.root_dir={default_dir()}" in argv
    assert "--LabApp.default_url=/lab/tree/00_why-async.ipynb" in argv
    assert env["ASYNCLAB_SPEED"] == "1"


def test_other_commands_still_reject_options_they_do_not_know(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["course", "--no-browser"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --no-browser" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "allowed"), [
    (["--allow-root"], True),
    (["--no-browser", "--ServerApp.allow_root=True"], True),
    (["--ServerApp.allow_root=false"], False),
    (["--no-browser", "--port", "8890"], False),
])
def test_allows_root_reads_the_flag_and_the_config_option(args: list[str], allowed: bool) -> None:
    assert allows_root(args) is allowed


def test_jupyter_lab_command_leaves_out_a_default_the_arguments_set(tmp_path: Path) -> None:
    # JupyterLab refuses an option given twice ("root_dir only accepts one value").
    (tmp_path / "00_first.ipynb").write_text("{}")
    command = jupyter_lab_command(tmp_path, ["--ServerApp.root_dir", "/elsewhere", "--LabApp.default_url=/lab"])
    assert sum(arg.startswith("--ServerApp.root_dir") for arg in command) == 1
    assert sum(arg.startswith("--LabApp.default_url") for arg in command) == 1
    assert command[-3:] == ["--ServerApp.root_dir", "/elsewhere", "--LabApp.default_url=/lab"]


def test_jupyter_lab_command_rejects_a_folder_without_lessons(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"notebooks must be a directory with lessons .*got '.*'"):
        jupyter_lab_command(tmp_path)


@pytest.mark.skipif(not running_as_root(), reason="only root is refused")
def test_the_real_command_as_root_prints_our_message_and_exits_2() -> None:
    result = subprocess.run([sys.executable, "-m", "asynclab", "lab", "--no-browser"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == ROOT_REFUSED


def _get(url: str, headers: dict[str, str] | None = None, data: bytes | None = None) -> Any:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the kernel's environment from /proc (Linux)")
def test_the_lab_command_serves_lesson_00_headless_and_its_kernels_get_the_speed_quietly(tmp_path: Path) -> None:
    with lab_server(tmp_path, speed=3) as server:
        # / sends the browser to lesson 00
        opener = urllib.request.build_opener(_NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(server.url("/"), timeout=30)
        assert redirect.value.code == 302
        assert redirect.value.headers["Location"].startswith("/lab/tree/00_why-async.ipynb")
        assert _get(server.url("/api/contents/00_why-async.ipynb?content=0"))["type"] == "notebook"
        # a kernel started by JupyterLab inherits ASYNCLAB_SPEED from the lab command
        kernel = _get(f"{server.base}/api/kernels", {"Authorization": f"token {server.token}"},
                      json.dumps({"name": "python3"}).encode())
        assert kernel["name"] == "python3"
        [pid] = [pid for pid in children(server.process.pid)
                 if b"ipykernel_launcher" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert b"ASYNCLAB_SPEED=3" in environ
        # Once the kernel answers (through the connection file the server wrote for it), it
        # has bound its sockets and logged its start-up warnings, if any.
        client = BlockingKernelClient(connection_file=str(server.runtime / f"kernel-{kernel['id']}.json"))
        client.load_connection_file()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=60)
        finally:
            client.stop_channels()
        assert "Kernel is running over TCP without encryption" not in server.log.read_text()
    # lab_server checked on leaving that the server, its kernel and its port are gone
    assert server.process.returncode is not None
