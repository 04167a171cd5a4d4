"""A local Ray cluster on loopback only, started and stopped by a notebook, with nothing left behind.

    with LocalRay(num_cpus=2) as cluster:        # 4-6 s on the course's 2-core machine
        @ray.remote
        def square(x: int) -> int: return x * x
        assert ray.get(square.remote(3)) == 9    # in async code: await square.remote(3)
    # stopped: no Ray process left, nothing listening, its folder deleted

The cluster is what ``ray start --head --block`` starts (a GCS, a raylet, Ray's two agents and
``num_cpus`` workers), run as one child process in its own session, with all its files in a
temporary folder. This process then connects to it with ``ray.init(address=cluster.address)``,
as a driver connects to a real cluster: on a cluster the code stays the same, only the address
changes. What keeps it local, small and fast (measured on the course's 2-core VM: 4-6 s and
~680 MB for 2 CPUs, where a plain ``ray.init()`` takes 10-19 s, ~850 MB and listens on 0.0.0.0):

* node address ``127.0.0.1``: Ray's servers bind to loopback only when the node address is
  exactly ``127.0.0.1`` (else to every interface), and Ray swaps ``127.0.0.1`` for the machine's
  routable address unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (its "local only" mode);
* no autoscaler monitor and no log monitor (two processes, ~180 MB), no drain at stop;
* a token: Ray's authentication with a random token kept in the folder, so other users of the
  machine cannot run code in the cluster through its loopback ports (the Unix sockets of the
  embedded Postgres and Redis are the user's only, too);
* a lazy ``rfc3987_syntax`` first on the path of the cluster's processes: each of them imports
  jsonschema, which imports that package, which compiles a grammar (1.2 s of CPU, 3/4 of
  ``import ray``). The stand-in loads the real package on first use: IRI checks stay the same.

While the cluster runs, this process's environment carries the settings a second driver needs
(``cluster.env``), so a subprocess can ``ray.init(address=cluster.address)`` too. Starting and
stopping block (seconds): ``async with`` does both in a worker thread.

Introduced in notebook 16.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from asynclab.backends.extras import need
from asynclab.backends.lifecycle import EmbeddedServer

__all__ = ["LocalRay"]

#: Wall seconds to wait for the cluster to come up: ~4 s when quiet, up to ~20 s on a busy 2-core machine.
START_TIMEOUT = 60.0
#: Wall seconds ``ray start`` gets to stop its processes after SIGTERM before they are all killed.
STOP_GRACE = 5.0
#: Bounds of the arguments (a typo like ``num_cpus=200`` would start 200 worker processes).
MAX_CPUS = 32
MIN_OBJECT_STORE_MB, MAX_OBJECT_STORE_MB = 75, 8192  # 75 MB is Ray's own minimum

_LAZY_RFC3987 = '''"""Stand-in from asynclab's LocalRay: the real package, loaded on first use, not at import."""
import importlib.machinery as _machinery
import sys as _sys

_here = __path__[0].rsplit("/", 1)[0]
_real = _machinery.PathFinder.find_spec(__name__, [p for p in _sys.path if p.rstrip("/") != _here])
if _real is None or not _real.submodule_search_locations:
    raise ImportError("rfc3987_syntax is not installed")
__path__[:] = list(_real.submodule_search_locations)  # submodules load from the real package


def is_valid_syntax(term, value):
    from rfc3987_syntax.syntax_helpers import is_valid_syntax as real
    return real(term, value)


def __getattr__(name):
    from rfc3987_syntax import syntax_helpers
    return getattr(syntax_helpers, name)
'''


class LocalRay(EmbeddedServer):
    """A Ray cluster of ``num_cpus`` workers on this machine, this process connected to it.

        async with LocalRay(num_cpus=2) as cluster:      # or cluster = LocalRay().start() ... cluster.stop()
            refs = [embed_chunk.remote(chunk) for chunk in chunks]
            vectors = await asyncio.gather(*refs)

    ``num_cpus``: the CPUs Ray schedules tasks on (1-32), one worker process each, started at
    once. ``object_store_mb``: Ray's shared memory for results (75-8192; more spills to the
    folder). ``worker_logs=True``: ``print`` in tasks and actors shows here (one more process).
    ``address`` is the GCS address (``127.0.0.1:port``) a second driver connects to, with
    ``cluster.env`` in its environment; ``pids`` the cluster's processes; ``pid`` ``ray start``'s.
    """

    __slots__ = ("_address", "_connected", "_process", "_saved", "num_cpus", "object_store_mb", "worker_logs")

    def __init__(self, num_cpus: int = 2, *, object_store_mb: int = 100, worker_logs: bool = False) -> None:
        super().__init__()
        self.num_cpus = _int_in("num_cpus", num_cpus, 1, MAX_CPUS)
        self.object_store_mb = _int_in("object_store_mb", object_store_mb, MIN_OBJECT_STORE_MB, MAX_OBJECT_STORE_MB)
        if not isinstance(worker_logs, bool):
            raise TypeError(f"worker_logs must be True or False; got {worker_logs!r}")
        self.worker_logs = worker_logs
        self._process: subprocess.Popen[bytes] | None = None
        self._address: str | None = None
        self._connected = False
        self._saved: dict[str, Any] | None = None

    @property
    def running(self) -> bool:
        return self._address is not None and self._process is not None and self._process.poll() is None

    @property
    def address(self) -> str:
        """``127.0.0.1:port`` of the cluster's GCS: what ``ray.init(address=...)`` takes."""
        if self._address is None:
            raise RuntimeError("this LocalRay is not running: call start() or use `with LocalRay()`")
        return self._address

    @property
    def pid(self) -> int:
        """The ``ray start`` process; every process of the cluster is in its session."""
        self.address  # noqa: B018  # raises when not running
        assert self._process is not None
        return self._process.pid

    @property
    def pids(self) -> list[int]:
        """The cluster's processes now: ``ray start``, GCS, raylet, agents, workers (one per actor, too)."""
        return _session(self.pid)

    @property
    def env(self) -> dict[str, str]:
        """What a second driver's environment needs to connect (this process has it while running)."""
        self.address  # noqa: B018
        assert self.folder is not None
        return _driver_env(self.folder)

    def start(self) -> LocalRay:
        """Start the cluster and connect this process to it. Blocks ~4 s (up to ~20 s on a busy machine)."""
        if self._process is not None:
            raise RuntimeError(f"this LocalRay is already running at {self._address}")
        ray = need("ray")
        if ray.is_initialized():
            raise RuntimeError("Ray is already initialised in this process (ray.init() ran, or another LocalRay "
                               "is running): call ray.shutdown() or stop that cluster first")
        self.folder = Path(tempfile.mkdtemp(prefix="asynclab-ray-"))
        try:
            self._process = self._launch()
            self._guard(self._process.pid, signal.SIGTERM)  # at once: a kernel killed while Ray starts leaves nothing
            self._address = self._wait_for_address()
            self._connect(ray)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self) -> subprocess.Popen[bytes]:
        assert self.folder is not None
        (self.folder / "auth_token").write_text(secrets.token_hex(32))
        (self.folder / "auth_token").chmod(0o600)
        env = {**os.environ, **_driver_env(self.folder), "RAY_USAGE_STATS_ENABLED": "0",
               "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}  # no 0.5-30 s drain at SIGTERM (it is for Ray Serve)
        env.pop("RAY_ADDRESS", None)
        if _installed("rfc3987_syntax"):
            lazy = self.folder / "python" / "rfc3987_syntax"
            lazy.mkdir(parents=True)
            (lazy / "__init__.py").write_text(_LAZY_RFC3987)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(lazy.parent), env.get("PYTHONPATH")]))
        command = [
            sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
            "--node-ip-address=127.0.0.1", "--port=0",  # loopback only; a free port for the GCS
            f"--num-cpus={self.num_cpus}", "--num-gpus=0", f"--object-store-memory={self.object_store_mb << 20}",
            f"--temp-dir={self.folder}", "--disable-usage-stats",
            "--include-dashboard=false", "--dashboard-host=127.0.0.1", "--no-monitor",
            f"--include-log-monitor={str(self.worker_logs).lower()}", "--log-style=record", "--log-color=false",
        ]
        with open(self.folder / "ray-start.log", "wb") as log:
            return subprocess.Popen(
                command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the kernel does not reach it; _session() finds all of it
            )

    def _wait_for_address(self) -> str:
        """The GCS address ``ray start`` writes once the whole node is up (raylet registered)."""
        assert self.folder is not None and self._process is not None
        written = self.folder / "ray_current_cluster"
        deadline, seen = time.monotonic() + START_TIMEOUT, ""
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"ray start exited with code {self._process.returncode}: {self._log_tail()}")
            text = written.read_text().strip() if written.exists() else ""
            if text and text == seen:  # the same twice, 20 ms apart: written in full
                if not re.fullmatch(r"127\.0\.0\.1:\d+", text):
                    raise RuntimeError(f"the cluster started on {text!r}, not on 127.0.0.1: {self._log_tail()}")
                return text
            if time.monotonic() > deadline:
                raise TimeoutError(f"Ray did not start within {START_TIMEOUT:g} s: {self._log_tail()}")
            seen = text
            time.sleep(0.02)

    def _connect(self, ray: Any) -> None:
        """``ray.init(address=...)`` with this process set up as the cluster's driver (restored by stop)."""
        assert self.folder is not None
        constants: Any = need("ray._private.ray_constants")  # private: the module-level flag, see below
        self._saved = {"env": {name: os.environ.get(name) for name in _driver_env(self.folder)},
                       "flag": getattr(constants, "ENABLE_RAY_CLUSTER", True)}
        os.environ.update(_driver_env(self.folder))
        constants.ENABLE_RAY_CLUSTER = False  # its env var is read when ray is imported, maybe already
        _reload_auth_settings()
        quiet = _DropRecord("SIGTERM handler is not set")  # Ray's warning when init runs in a worker thread
        logging.getLogger("ray._private.worker").addFilter(quiet)
        self._connected = True  # from here on stop() calls ray.shutdown(), also if init fails half-way
        try:
            ray.init(address=self._address, log_to_driver=self.worker_logs, logging_level=logging.WARNING)
        finally:
            logging.getLogger("ray._private.worker").removeFilter(quiet)
        node_ip = ray.util.get_node_ip_address()
        if node_ip != "127.0.0.1":  # Ray binds its servers to loopback only for exactly this address
            raise RuntimeError(f"this Ray connected as node {node_ip}, not 127.0.0.1: its servers would "
                               f"listen on every interface (Ray {ray.__version__} is not supported)")

    def _stop_process(self) -> None:
        """Disconnect; SIGTERM to ``ray start`` (it stops its node); after STOP_GRACE, SIGKILL what is left."""
        if self._connected:
            self._connected = False
            need("ray").shutdown()
        if self._saved is not None:
            saved, self._saved = self._saved, None
            for name, value in saved["env"].items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            constants: Any = need("ray._private.ray_constants")
            constants.ENABLE_RAY_CLUSTER = saved["flag"]
            _reload_auth_settings()
        process, self._process, self._address = self._process, None, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # Workers and agents are the raylet's children and may still be on their way out: they keep
        # the session of ray start (now gone), so they are found, and killed, by it.
        _kill_and_wait(_session(process.pid))

    def _log_tail(self, lines: int = 8) -> str:
        try:
            assert self.folder is not None
            return " | ".join((self.folder / "ray-start.log").read_text().splitlines()[-lines:])
        except (OSError, AssertionError):
            return "(no log)"

    def __repr__(self) -> str:
        if not self.running:
            return "<LocalRay stopped>"
        return f"<LocalRay address={self._address} {self.num_cpus} CPU{'s' if self.num_cpus != 1 else ''}>"


def _int_in(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int from {low} to {high}; got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be an int from {low} to {high}; got {value!r}")
    return value


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _driver_env(folder: Path) -> dict[str, str]:
    """Keep 127.0.0.1 as the node address (Ray's local-only mode) and authenticate with the folder's token."""
    return {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(folder / "auth_token")}


def _reload_auth_settings() -> None:
    """Make Ray's C++ side re-read RAY_AUTH_MODE and the token (both are read once, then cached).

    The same two calls Ray makes when ``ray.init()`` turns token authentication on. An older Ray
    without token authentication has neither, and needs nothing.
    """
    raylet = need("ray._raylet")
    config, loader = getattr(raylet, "Config", None), getattr(raylet, "AuthenticationTokenLoader", None)
    if config is not None and loader is not None:
        config.initialize("")
        loader.instance().reset_cache()


def _session(sid: int) -> list[int]:
    """Every live process whose session is ``sid`` (read from /proc: Linux, as Ray itself needs here)."""
    return sorted(pid for pid in _pids() if (fields := _stat(pid)) and fields[0] != "Z" and int(fields[3]) == sid)


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/pid/stat after the name (state, ppid, pgrp, session, ...); None once it is gone."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _kill_and_wait(pids: list[int], wait: float = 5.0) -> None:
    """SIGKILL the processes ``ray start`` left behind and wait until they are gone (zombies count as gone)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and any((fields := _stat(pid)) and fields[0] != "Z" for pid in pids):
        time.sleep(0.02)


class _DropRecord(logging.Filter):
    def __init__(self, start: str) -> None:
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.start)
