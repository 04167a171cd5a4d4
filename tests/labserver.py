"""Start the course's own lab command (``python -m asynclab lab``) for a test, and stop it cleanly.

Nothing of the user's Jupyter setup is read or written: the server gets its own config,
runtime, settings, workspaces and IPython directories under a temporary folder, and serves a
copy of the notebooks, so running cells (and JupyterLab's autosave, switched off here anyway)
cannot change the course's files. Used by tests/test_lab.py and tests/test_browser.py.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from asynclab.course import default_dir
from asynclab.lab import running_as_root

#: Settings a test server starts with (JUPYTERLAB_SETTINGS_DIR): no autosave, so nothing is
#: written back; no "official Jupyter news?" toast over the page (and no request for news).
SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
}


@dataclass(frozen=True)
class LabServer:
    process: subprocess.Popen[bytes]
    port: int
    token: str
    notebooks: Path  # the copy it serves
    runtime: Path  # JUPYTER_RUNTIME_DIR: the kernels' connection files
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        """``path`` on the server, with the token (it logs the browser in)."""
        return f"{self.base}{path}{'&' if '?' in path else '?'}token={self.token}"

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc; [] elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has stopped; only its exit status waits to be collected


@contextmanager
def lab_server(tmp: Path, speed: float, extra: Sequence[str] = ()) -> Iterator[LabServer]:
    """Run ``python -m asynclab lab`` headless on 127.0.0.1 until the block ends, then stop it.

    On leaving, the server gets SIGTERM (what Ctrl-C does, without the question), must stop
    within 30 s with every kernel it started, and must free its port; a server that does not
    is killed and the block raises.
    """
    notebooks = tmp / "notebooks"
    shutil.copytree(default_dir(), notebooks, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    settings = tmp / "lab-settings"
    for name, values in SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    env = {**os.environ,
           "JUPYTER_CONFIG_DIR": str(tmp / "jupyter-config"),
           "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter-runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "lab-workspaces"),
           "IPYTHONDIR": str(tmp / "ipython")}
    env.pop("MPLBACKEND", None)  # scripts/check sets Agg; JupyterLab's kernels draw inline plots
    port, token = free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "asynclab", "lab", "--speed", f"{speed:g}", "--no-browser",
               "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={notebooks}", *extra]
    if running_as_root():
        command.append("--allow-root")
    log = tmp / "lab.log"
    with log.open("wb") as out:
        # Its own session: if it must be killed, its whole process group goes with it.
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = LabServer(process, port, token, notebooks, tmp / "jupyter-runtime", log)
    try:
        _wait_until_ready(server)
        yield server
    finally:
        _stop(server)


def _wait_until_ready(server: LabServer, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the lab command exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url("/api/status"), timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"JupyterLab did not answer on port {server.port} within {timeout:g} s:\n{server.log_tail()}")


def _stop(server: LabServer) -> None:
    kernels = children(server.process.pid)
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()
        raise RuntimeError(f"JupyterLab did not stop within 30 s of SIGTERM (killed):\n{server.log_tail()}") from None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(pid) for pid in kernels):
        time.sleep(0.1)
    left = [pid for pid in kernels if alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)  # a kernel this server started and left behind
    if left:
        raise RuntimeError(f"JupyterLab stopped but left processes {left} running (killed)")
    if port_is_open(server.port):
        raise RuntimeError(f"port {server.port} still open after JupyterLab stopped")
