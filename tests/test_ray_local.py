"""LocalRay starts a Ray cluster on loopback only, runs tasks and async actors, and leaves nothing behind."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the 'ray' extra is not installed (pip install 'asynclab[ray]')")
psutil = pytest.importorskip("psutil", reason="the tests read sockets and processes with psutil (the 'backends' extra)")

from asynclab.backends import LocalRay, ray_local  # noqa: E402


def sockets(pids: list[int]) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every listening TCP socket and every bound UDP socket of these processes."""
    found = []
    for pid in pids:
        try:
            connections = psutil.Process(pid).net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        found += [(c.laddr.ip, c.laddr.port, pid) for c in connections if c.status == psutil.CONN_LISTEN or not c.raddr]
    return found


def loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)  # a dual-stack socket shows 127.0.0.1 as ::ffff:127.0.0.1
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def session_members(sid: int) -> list[int]:
    """The live processes in the session of ``ray start`` (the cluster), found with psutil, not with LocalRay."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == sid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def wait_until(condition: Callable[[], object], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def test_bad_arguments_name_the_argument_the_value_and_what_is_allowed() -> None:
    with pytest.raises(ValueError, match=r"num_cpus must be an int from 1 to 32; got 0"):
        LocalRay(num_cpus=0)
    with pytest.raises(ValueError, match=r"num_cpus must be an int from 1 to 32; got 200"):
        LocalRay(num_cpus=200)
    with pytest.raises(TypeError, match=r"num_cpus must be an int from 1 to 32; got 2.5"):
        LocalRay(num_cpus=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"object_store_mb must be an int from 75 to 8192; got 10"):
        LocalRay(object_store_mb=10)
    with pytest.raises(TypeError, match=r"worker_logs must be True or False; got 'yes'"):
        LocalRay(worker_logs="yes")  # type: ignore[arg-type]
    cluster = LocalRay()
    assert repr(cluster) == "<LocalRay stopped>"
    with pytest.raises(RuntimeError, match="not running"):
        _ = cluster.address
    cluster.stop()  # stopping what never started is fine


def test_a_start_that_fails_stops_ray_start_and_deletes_the_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not ray.is_initialized()
    launched: list[subprocess.Popen[bytes]] = []
    launch = LocalRay._launch
    monkeypatch.setattr(LocalRay, "_launch", lambda self: launched.append(launch(self)) or launched[-1])
    monkeypatch.setattr(ray_local, "START_TIMEOUT", 0.2)  # ray start needs seconds: this start times out
    cluster = LocalRay(num_cpus=1)
    with pytest.raises(TimeoutError, match=r"Ray did not start within 0.2 s"):
        cluster.start()
    (process,) = launched
    assert process.poll() is not None and not session_members(process.pid)
    folder = Path(next(arg for arg in process.args if arg.startswith("--temp-dir=")).split("=", 1)[1])
    assert folder.name.startswith("asynclab-ray-") and not folder.exists()
    assert cluster.folder is None and not cluster.running and not ray.is_initialized()


@pytest.fixture(scope="class")
def cluster() -> Iterator[tuple[LocalRay, list[int]]]:
    """One cluster for the tests of a class (starting one takes seconds), and the ports this driver opened."""
    ours = set(sockets([os.getpid()]))  # listeners this test process had before Ray (from other tests)
    local = LocalRay(num_cpus=2).start()
    try:
        yield local, [port for _, port, _ in set(sockets([os.getpid()])) - ours]
    finally:
        local.stop()


class TestOneCluster:
    """Tests that share one cluster; it stops after the last of them, before the tests that start their own."""

    async def test_a_remote_task_and_an_async_actor_with_max_concurrency_run_and_refs_are_awaitable(
        self, cluster: tuple[LocalRay, list[int]]
    ) -> None:
        @ray.remote
        def square(x: int) -> int:
            return x * x

        @ray.remote(max_concurrency=2)
        class Napper:
            async def nap(self, seconds: float) -> tuple[float, float]:
                start = time.monotonic()
                await asyncio.sleep(seconds)
                return start, time.monotonic()

        assert await square.remote(7) == 49  # an ObjectRef awaited in asyncio code
        assert ray.get([square.remote(i) for i in range(10)]) == [i * i for i in range(10)]
        napper = Napper.remote()
        spans = await asyncio.gather(*[napper.nap.remote(0.3) for _ in range(4)])
        # At each call's start, how many calls were running (its own included): the actor's own clock,
        # so the count does not depend on how fast this machine is. max_concurrency=2: never more than
        # 2 at once, and the 4 calls do overlap two by two (one at a time would give 1).
        running = [sum(start <= s < end for start, end in spans) for s, _ in spans]
        assert max(running) == 2, spans

    def test_every_socket_of_the_cluster_and_of_this_driver_is_on_loopback(
        self, cluster: tuple[LocalRay, list[int]]
    ) -> None:
        local, driver_ports = cluster
        found = sockets(local.pids)
        gcs_port = int(local.address.rsplit(":", 1)[1])
        assert gcs_port in {port for _, port, _ in found}  # the GCS listens, so the scan does see the cluster
        assert driver_ports, "this process, Ray's driver, listens too (its core worker)"
        outside = [s for s in found if not loopback(s[0])]
        outside += [s for s in sockets([os.getpid()]) if s[1] in driver_ports and not loopback(s[0])]
        assert outside == [], f"listening beyond loopback: {outside}"

    def test_it_shows_its_address_and_refuses_a_second_start_in_the_same_process(
        self, cluster: tuple[LocalRay, list[int]]
    ) -> None:
        local, _ = cluster
        assert re.fullmatch(r"<LocalRay address=127\.0\.0\.1:\d+ 2 CPUs>", repr(local))
        assert local.address == ray.get_runtime_context().gcs_address
        with pytest.raises(RuntimeError, match="already running"):
            local.start()
        with pytest.raises(RuntimeError, match="Ray is already initialised in this process"):
            LocalRay(num_cpus=1).start()  # one driver per process: Ray's rule

    def test_iri_checks_in_the_cluster_give_the_answers_they_give_here(
        self, cluster: tuple[LocalRay, list[int]]
    ) -> None:
        pytest.importorskip("rfc3987_syntax", reason="without rfc3987_syntax there is no stand-in to test")
        local, _ = cluster

        def check() -> tuple[str, list[bool]]:
            import jsonschema
            import rfc3987_syntax

            validator = jsonschema.Draft202012Validator({"format": "iri"}, format_checker=jsonschema.FormatChecker())
            samples = ["http://例え.jp/päth?q=1", "http://exa mple.com/", "relative/path"]
            return str(rfc3987_syntax.__file__), [validator.is_valid(sample) for sample in samples]

        there_file, there = ray.get(ray.remote(check).remote())
        assert local.folder is not None and there_file.startswith(str(local.folder))  # the stand-in answered
        here_file, here = check()
        assert not here_file.startswith(str(local.folder))  # ... and the real package here
        assert there == here == [True, False, False]

    def test_a_second_driver_in_a_subprocess_connects_with_the_address(
        self, cluster: tuple[LocalRay, list[int]]
    ) -> None:
        local, _ = cluster
        assert all(os.environ.get(name) == value for name, value in local.env.items())  # inherited by subprocesses
        script = (
            "import ray\n"
            f"ray.init(address={local.address!r}, logging_level='WARNING')\n"
            "print(ray.get(ray.remote(lambda: 'answered by the cluster').remote()))\n"
        )
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout.strip() == "answered by the cluster"


async def test_async_with_starts_off_the_loop_and_stop_leaves_no_process_listener_or_folder() -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    async with LocalRay(num_cpus=1) as cluster:
        took = time.monotonic() - started
        pid, folder = cluster.pid, cluster.folder
        members = session_members(pid)
        ports = {port for _, port, _ in sockets(members)}
        assert folder is not None and folder.is_dir()
        assert len(members) >= 5, members  # ray start, GCS, raylet, agents, a worker: all in one session
        assert all(loopback(address) for address, _, _ in sockets(members))
        assert await ray.remote(lambda: 42).remote() == 42
    ticker.cancel()
    # The loop kept turning while Ray started in a worker thread: a 50 ms ticker ticked at least half
    # as often as it could (a start run on the loop would have blocked it: ~0 ticks).
    assert ticks >= 0.5 * took / 0.05, (ticks, took)
    assert wait_until(lambda: not session_members(pid), 10), f"left running: {session_members(pid)}"
    listening = {c.laddr.port for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
    assert not ports & listening, f"still listening on {ports & listening}"
    assert not folder.exists()
    assert not ray.is_initialized()
    assert "RAY_AUTH_TOKEN_PATH" not in os.environ  # the driver settings are undone
    assert repr(cluster) == "<LocalRay stopped>"
    cluster.stop()  # twice is fine


def test_a_cluster_whose_python_is_killed_is_stopped_and_deleted_by_the_watchdog() -> None:
    # A kernel killed with SIGKILL runs no atexit: the watchdog must stop ray start, which stops the rest.
    script = (
        "import json, os, signal, ray\n"
        "from asynclab.backends import LocalRay\n"
        "cluster = LocalRay(num_cpus=1).start()\n"
        "assert ray.get(ray.remote(lambda: 1).remote()) == 1\n"
        "print(json.dumps([cluster.pid, cluster.pids, str(cluster.folder)]), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == -9, run.stderr[-2000:]
    pid, pids, folder = json.loads(run.stdout.splitlines()[-1])
    assert len(pids) >= 5, pids
    # The watchdog gives ray start 10 s to stop before it kills it; ray start needs ~0.5 s.
    assert wait_until(lambda: not session_members(pid), 15), f"left running: {session_members(pid)}"
    assert wait_until(lambda: not Path(folder).exists(), 5), f"{folder} is still there"
