"""Open the course in JupyterLab, on lesson 00, at a chosen speed.

    python -m asynclab lab                               # speed 1: the waits feel real
    python -m asynclab lab --speed 5 --no-browser --port 8890
    python -m asynclab lab --ServerApp.token=secret       # any other option goes to JupyterLab

Every argument this command does not know is passed on to ``jupyter lab`` unchanged. Its two
defaults (serve the course's ``notebooks/``, open lesson 00) are left out when the arguments
set them (``--ServerApp.root_dir=...``, ``--LabApp.default_url=...``): JupyterLab refuses an
option given twice. JupyterLab's kernels inherit ``ASYNCLAB_SPEED`` from it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["ROOT_REFUSED", "allows_root", "jupyter_lab_command", "main", "running_as_root"]

#: What ``main`` prints (one line, on stderr) when started as root without ``--allow-root``.
ROOT_REFUSED = (
    "error: running as root: JupyterLab needs --allow-root for that (fine in a container), "
    "e.g. python -m asynclab lab --allow-root; or run it as a normal user"
)

_TRUE = {"true", "1", "yes"}


def running_as_root() -> bool:
    """True on a POSIX system when the effective user is root (Windows has no such user)."""
    geteuid = getattr(os, "geteuid", None)
    return geteuid is not None and geteuid() == 0


def allows_root(jupyter_args: Sequence[str]) -> bool:
    """Whether ``jupyter_args`` already tell JupyterLab that running as root is fine."""
    for arg in jupyter_args:
        if arg == "--allow-root":
            return True
        name, _, value = arg.partition("=")
        if name in ("--ServerApp.allow_root", "--NotebookApp.allow_root") and value.lower() in _TRUE:
            return True
    return False


def _sets(jupyter_args: Sequence[str], *names: str) -> bool:
    """Whether ``jupyter_args`` give one of the options ``names`` (``--name value`` or ``--name=value``)."""
    return any(arg.split("=", 1)[0] in names for arg in jupyter_args)


def jupyter_lab_command(notebooks: Path, jupyter_args: Sequence[str] = ()) -> list[str]:
    """The ``jupyter lab`` command line: serve ``notebooks``, open its first lesson, then ``jupyter_args``."""
    lessons = sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))
    if not lessons:
        raise ValueError(f"notebooks must be a directory with lessons (NN_title.ipynb), got {str(notebooks)!r}")
    command = [sys.executable, "-m", "jupyter", "lab"]
    if not _sets(jupyter_args, "--ServerApp.root_dir", "--notebook-dir", "--ServerApp.notebook_dir"):
        command.append(f"--ServerApp.root_dir={notebooks}")
    if not _sets(jupyter_args, "--LabApp.default_url"):
        # /lab/tree/<file> opens that file in JupyterLab: the URL JupyterLab prints and opens,
        # and where / redirects to.
        command.append(f"--LabApp.default_url=/lab/tree/{lessons[0].name}")
    if not _sets(jupyter_args, "--MappingKernelManager.transport_encryption") and _has_curve():
        # CurveZMQ keys per kernel, as `python -m asynclab course` does (course.kernel_config):
        # no "Kernel is running over TCP without encryption" warning for every notebook opened.
        command.append("--MappingKernelManager.transport_encryption=auto")
    return [*command, *jupyter_args]


def _has_curve() -> bool:
    import zmq

    return bool(zmq.has("curve"))


def main(speed: float, jupyter_args: Sequence[str], notebooks: Path | None = None) -> int:
    """Start JupyterLab in the foreground (this process becomes it, so Ctrl-C reaches it).

    Returns 2 without starting anything when run as root without ``--allow-root``: Jupyter
    itself would refuse after starting, with a log line a newcomer may not read as the reason.
    """
    if running_as_root() and not allows_root(jupyter_args):
        print(ROOT_REFUSED, file=sys.stderr)
        return 2
    if notebooks is None:
        from asynclab.course import default_dir

        notebooks = default_dir()
    command = jupyter_lab_command(notebooks, jupyter_args)
    env = {**os.environ, "ASYNCLAB_SPEED": f"{speed:g}"}
    print(f"asynclab: JupyterLab at speed {speed:g} (ASYNCLAB_SPEED for its kernels); Ctrl-C to stop", flush=True)
    if os.name == "posix":
        # Become JupyterLab: one process, signals go straight to it, and its shutdown (which
        # stops the kernels) is not cut short by a parent that dies on Ctrl-C first.
        os.execve(command[0], command, env)
    with subprocess.Popen(command, env=env) as process:  # pragma: no cover - Windows has no exec
        while True:
            try:
                return process.wait()
            except KeyboardInterrupt:  # JupyterLab got the Ctrl-C too: let it stop its kernels
                continue
