"""A watchdog process that stops a server and deletes its folder if the Python that started it dies.

    watchdog = Watchdog(server_pid, signal.SIGTERM, folder)   # after the server started
    ...
    watchdog.dismiss()                                         # before a normal stop

``atexit`` runs when Python exits normally, not when a Jupyter kernel is killed (a restart
that times out, a Run All that is interrupted, ``kill -9``). The watchdog is a tiny separate
process, in its own session so a signal to the kernel's process group does not reach it, that
waits for its stdin to close: that happens when the parent exits, however it exits. Then it
signals the server, waits for it to go, and removes the folder. A normal stop dismisses it first.

Introduced in notebook 15.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["Watchdog"]

_SCRIPT = r"""
import os, shutil, sys, time
pid, sig, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sys.stdin.buffer.read()          # returns when the parent closes the pipe: it stopped, or it died
try:
    os.kill(pid, sig)
except ProcessLookupError:
    pass
else:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        time.sleep(0.5)
shutil.rmtree(folder, ignore_errors=True)
"""


class Watchdog:
    """Stops process ``pid`` with ``sig`` and deletes ``folder`` when this Python process ends."""

    __slots__ = ("_process",)

    def __init__(self, pid: int, sig: signal.Signals, folder: Path) -> None:
        self._process: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-S", "-c", _SCRIPT, str(pid), str(int(sig)), str(folder)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # a signal to the kernel's process group must not reach it
        )

    def dismiss(self) -> None:
        """End the watchdog without it touching the server (before a normal stop); safe twice."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()
            if process.stdin is not None:
                process.stdin.close()
