"""HTTP overhead: N concurrent LLM completions made directly, through ASGITransport, and over a real server.

    .venv/bin/python benchmarks/http.py                  # N = 100 at speed 1, pool test with 500
    .venv/bin/python benchmarks/http.py --speed 5 --n 500

All paths run in one process, at the same speed, one after the other, best of ``--repeat``:

- direct: ``await llm.complete(p)`` N times with ``asyncio.gather``;
- asgi: the same through ``ServiceClient(app=create_app(llm))``, httpx's in-process transport;
- server: the same through a real uvicorn server on 127.0.0.1 (``BackgroundServer``), with a
  pool as large as N so that only HTTP itself is measured.

Client and server share this process, so "CPU ms/call" (process time, every thread) is the
whole cost of one HTTP round trip on this machine. The pool section then sends 500 concurrent
calls through the real server with httpx's default limits (100 connections: the calls go in
waves), with raised limits (one wave, but httpcore's pool scans every connection for every
request, so its CPU cost grows with the square of the pool), and over 5 clients of 100
connections each.

The SDK section does what a learner does at work: ``python -m asynclab serve`` in its own
process (as the README shows; the SDK's client then has this process to itself, as it would
beside a real provider), and the official ``openai`` package (one ``AsyncOpenAI`` with its
defaults) against its ``/v1`` API: the time to the first streamed chunk (median of 10 streams,
one at a time) over the model's time to first token, and N concurrent chat completions through
the SDK over N direct ``llm.chat`` calls in this process (best of 3, or of ``--repeat``).
"CPU ms/call" there is this process's: the client's side only.

The last lines are ``http_overhead_ratio=<server time / direct time>``,
``sdk_ttft_ratio=<first chunk via the SDK / the model's time to first token>`` and
``sdk_overhead_ratio=<N calls via the SDK / N direct llm.chat calls>``.
"""

from __future__ import annotations

import os
import sys

# This file is named like the standard library's ``http`` package, and Python puts the script's
# folder first on the import path: without this, httpx's ``import http.client`` finds this file.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import itertools  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import AsyncIterator, Awaitable, Callable  # noqa: E402

import httpx  # noqa: E402
import openai  # noqa: E402
from openai import AsyncOpenAI  # noqa: E402

from asynclab import LLM, at_speed, get_speed, now  # noqa: E402
from asynclab.client import ServiceClient  # noqa: E402
from asynclab.server import create_app  # noqa: E402
from asynclab.serving import BackgroundServer  # noqa: E402

PROMPT = "What is time to first token?"
CHAT = [{"role": "user", "content": PROMPT}]


class Run:
    """One timed fan-out: wall seconds, simulated seconds and CPU seconds (all threads)."""

    __slots__ = ("cpu", "sim", "wall")

    def __init__(self, wall: float, sim: float, cpu: float) -> None:
        self.wall, self.sim, self.cpu = wall, sim, cpu


async def fan_out(n: int, call: Callable[[], Awaitable[object]]) -> Run:
    gc.collect()
    wall, sim, cpu = time.perf_counter(), now(), time.process_time()
    await asyncio.gather(*(call() for _ in range(n)))
    return Run(time.perf_counter() - wall, now() - sim, time.process_time() - cpu)


async def best(repeat: int, n: int, call: Callable[[], Awaitable[object]]) -> Run:
    await fan_out(min(n, 20), call)  # warm up: connections, caches, first-use code paths
    runs = [await fan_out(n, call) for _ in range(repeat)]
    return min(runs, key=lambda run: run.wall)


async def through_pools(url: str, n: int, limits: httpx.Limits | None, clients: int = 1) -> tuple[Run, int]:
    """N calls spread over ``clients`` clients: calls beyond a pool's connections wait (in waves)."""
    async with contextlib.AsyncExitStack() as stack:
        pool = [await stack.enter_async_context(ServiceClient(base_url=url, limits=limits)) for _ in range(clients)]
        turn = itertools.cycle(pool)
        run = await fan_out(n, lambda: next(turn).complete(PROMPT))
        connections = sum(client.limits.max_connections or n for client in pool)
        return run, math.ceil(n / connections)


async def first_chunk(client: AsyncOpenAI) -> float:
    """Simulated seconds from the request to the first streamed chunk with content."""
    start = now()
    stream = await client.chat.completions.create(model="assistant", messages=CHAT, stream=True)  # type: ignore[arg-type]
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    elapsed = now() - start
    await stream.close()  # the server cancels the rest of the answer
    return elapsed


@contextlib.asynccontextmanager
async def served_elsewhere(speed: float) -> AsyncIterator[str]:
    """``python -m asynclab serve`` on a free port in a child process, for as long as the block runs."""
    with tempfile.TemporaryFile("w+") as log:  # a file, not a pipe: the access log never blocks it
        command = [sys.executable, "-m", "asynclab", "serve", "--port", "0", "--speed", f"{speed:g}"]
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            url = None
            deadline = time.monotonic() + 20
            while url is None:
                if child.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"python -m asynclab serve did not start:\n{log.read()}")
                await asyncio.sleep(0.05)
                log.seek(0)
                found = re.search(r"asynclab services on (http://\S+) ", log.read())
                url = found.group(1) if found else None
            async with httpx.AsyncClient() as http:  # the port is bound before uvicorn listens on it
                while time.monotonic() < deadline:
                    with contextlib.suppress(httpx.TransportError):
                        if (await http.get(f"{url}/health")).status_code == 200:
                            break
                    await asyncio.sleep(0.05)
            yield url
        finally:
            child.send_signal(signal.SIGINT)  # Ctrl-C: uvicorn shuts down gracefully
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


async def through_sdk(url: str, llm: LLM, n: int, repeat: int) -> tuple[float, float]:
    """The SDK path: (time to first chunk / the model's, N SDK calls / N direct llm.chat calls)."""
    model_ttft = llm.stream_latency.first_token
    async with AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client:
        await first_chunk(client)  # warm up: the connection, the SDK's models
        ttfts = [await first_chunk(client) for _ in range(10)]
        # Best of 3 at least: on a shared 2-core machine one run in a few lands on a busy moment.
        direct = await best(max(repeat, 3), n, lambda: llm.chat(CHAT))
        sdk = await best(max(repeat, 3), n, lambda: client.chat.completions.create(model="assistant", messages=CHAT))  # type: ignore[arg-type]
    ttft = statistics.median(ttfts)
    reply = await llm.chat(CHAT)
    print(f"\nThe official SDK (openai {openai.__version__}, one AsyncOpenAI) against /v1 of"
          " `python -m asynclab serve`")
    print(f"time to first streamed chunk: median {ttft:.3f} s (min {min(ttfts):.3f}, max {max(ttfts):.3f})"
          f" vs the model's {model_ttft:g} s")
    print(f"{n} concurrent chat completions of {reply.usage.completion_tokens} tokens ({llm.stream_latency!r})")
    print(f"{'path':<8} {'wall s':>8} {'sim s':>7} {'calls/s':>9} {'CPU ms/call':>12} {'extra ms/call':>14}")
    for name, run in (("direct", direct), ("sdk", sdk)):
        extra = (run.wall - direct.wall) / n * 1000
        cpu = run.cpu / n * 1000
        print(f"{name:<8} {run.wall:>8.3f} {run.sim:>7.2f} {n / run.wall:>9.0f} {cpu:>12.2f} {extra:>14.2f}")
    return ttft / model_ttft, sdk.wall / direct.wall


async def main_async(n: int, pool_n: int, repeat: int) -> dict[str, float]:
    llm = LLM()
    app = create_app(llm=llm)
    wide = httpx.Limits(max_connections=max(n, pool_n), max_keepalive_connections=max(n, pool_n))
    runs: dict[str, Run] = {}
    async with BackgroundServer(app) as server:
        runs["direct"] = await best(repeat, n, lambda: llm.complete(PROMPT))
        async with ServiceClient(app=app) as asgi:
            runs["asgi"] = await best(repeat, n, lambda: asgi.complete(PROMPT))
        async with ServiceClient(base_url=server.url, limits=wide) as real:
            runs["server"] = await best(repeat, n, lambda: real.complete(PROMPT))

        direct = runs["direct"]
        print(f"\n{n} concurrent completions of {llm.latency!r} simulated s")
        print(f"{'path':<8} {'wall s':>8} {'sim s':>7} {'calls/s':>9} {'CPU ms/call':>12} "
              f"{'extra ms/call':>14} {'vs direct':>10}")
        for name, run in runs.items():
            extra = (run.wall - direct.wall) / n * 1000
            print(f"{name:<8} {run.wall:>8.3f} {run.sim:>7.2f} {n / run.wall:>9.0f} {run.cpu / n * 1000:>12.2f} "
                  f"{extra:>14.2f} {run.wall / direct.wall:>9.2f}×")

        print(f"\n{pool_n} concurrent completions through the real server: httpx's connection pool")
        print(f"{'limits':<34} {'waves':>6} {'wall s':>8} {'sim s':>7} {'calls/s':>9}")
        shards = math.ceil(pool_n / 100)
        for label, limits, clients in (
            ("default (max_connections=100)", None, 1),
            (f"raised (max_connections={pool_n})", wide, 1),
            (f"{shards} clients × default limits", None, shards),
        ):
            run, waves = await through_pools(server.url, pool_n, limits, clients)
            print(f"{label:<34} {waves:>6} {run.wall:>8.3f} {run.sim:>7.2f} {pool_n / run.wall:>9.0f}")
    async with served_elsewhere(get_speed()) as url:
        sdk_ttft, sdk_overhead = await through_sdk(url, llm, n, repeat)
    return {
        "http_overhead_ratio": runs["server"].wall / direct.wall,
        "sdk_ttft_ratio": sdk_ttft,
        "sdk_overhead_ratio": sdk_overhead,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second (1)")
    parser.add_argument("--n", type=int, default=100, help="concurrent calls per path (100: httpx's default pool)")
    parser.add_argument("--pool-n", type=int, default=500, help="concurrent calls for the pool test (500)")
    parser.add_argument("--repeat", type=int, default=1, help="best of this many runs per path (1)")
    args = parser.parse_args()
    print(f"HTTP overhead at speed {args.speed:g}, python {sys.version.split()[0]}, httpx {httpx.__version__}")
    with at_speed(args.speed):
        ratios = asyncio.run(main_async(args.n, args.pool_n, args.repeat))
    print()
    for name, ratio in ratios.items():
        print(f"{name}={ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
