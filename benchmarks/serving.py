"""Serving: static, dynamic and continuous batching on the same seeded workload at three arrival rates.

    .venv/bin/python benchmarks/serving.py                 # 300 requests per run, rates 1, 2, 4 a second
    .venv/bin/python benchmarks/serving.py --n 500 --speed 50

Each scheduler serves the same requests (mixed prompt and answer lengths, ``mixed_workload``)
on the same simulated GPU (a pass costs a + b·n, 32 sequences, 8192 KV-cache tokens). The table
comes from ``simulate``: the engine in virtual time, deterministic. Then the engine is run for
real on the event loop (``InferenceServer.replay``, at ``--speed``) for a smaller workload, and
its measured throughput is compared with the simulation's: ≈ 1, the same engine, with each
request stamped at its scheduled arrival (a client woken late by a busy loop would otherwise
miss a batch and wait for the whole next one, which matters most for static batching).

The last line is ``continuous_vs_static_throughput=<continuous tokens/s / static tokens/s>`` at
the highest rate, where the GPU is saturated and the scheduler alone decides the throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from asynclab.clock import at_speed
from asynclab.inference import (
    ContinuousBatcher,
    DynamicBatcher,
    GPUModel,
    InferenceServer,
    Scheduler,
    ServingReport,
    StaticBatcher,
    mixed_workload,
    simulate,
)


def schedulers() -> list[Scheduler]:
    return [
        StaticBatcher(batch_size=32, timeout=2.0),
        DynamicBatcher(max_batch_size=32, max_queue_delay=0.1),
        ContinuousBatcher(max_num_seqs=32),
    ]


def row(rate: float, report: ServingReport) -> str:
    return (
        f"{rate:>5g} {report.scheduler:>11} {report.throughput:>9.1f} "
        f"{report.ttft(0.5):>9.2f} {report.ttft(0.99):>9.2f} {report.latency(0.5):>9.2f} {report.latency(0.99):>9.2f} "
        f"{report.busy_fraction:>6.0%} {report.mean_batch:>6.1f} {report.padding:>8.0%} {report.preemptions:>6}"
    )


async def on_the_loop(n: int, rate: float) -> list[tuple[str, float, float]]:
    work = mixed_workload(n, rate=rate, seed=1)
    results = []
    for scheduler, again in zip(schedulers(), schedulers(), strict=True):
        measured = await InferenceServer(scheduler).replay(work)
        predicted = simulate(work, again)
        results.append((scheduler.name, measured.throughput, predicted.throughput))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="requests per simulated run (300)")
    parser.add_argument("--rates", type=float, nargs=3, default=[1.0, 2.0, 4.0], help="arrivals per second (1 2 4)")
    parser.add_argument("--speed", type=float, default=40.0, help="speed of the run on the event loop (40)")
    parser.add_argument("--loop-n", type=int, default=40, help="requests in the run on the event loop (40)")
    args = parser.parse_args()
    gpu = GPUModel()
    print(f"Serving {args.n} requests, mixed lengths, GPU a={gpu.a} s + b={gpu.b} s per sequence, "
          f"max batch {gpu.max_batch_size}, KV cache {gpu.kv_tokens} tokens (simulated seconds)")
    print(f"{'rate':>5} {'scheduler':>11} {'tokens/s':>9} {'ttft p50':>9} {'ttft p99':>9} {'lat p50':>9} "
          f"{'lat p99':>9} {'busy':>6} {'batch':>6} {'padding':>8} {'preempt':>6}")
    ratios: dict[float, float] = {}
    started = time.perf_counter()
    for rate in args.rates:
        work = mixed_workload(args.n, rate=rate, seed=0)
        reports = {report.scheduler: report for report in (simulate(work, s, gpu) for s in schedulers())}
        for report in reports.values():
            print(row(rate, report))
        ratios[rate] = reports["continuous"].throughput / reports["static"].throughput
    print(f"(simulated in {time.perf_counter() - started:.2f} s of wall time)")
    print()
    print(f"The same engine on the event loop: {args.loop_n} requests at rate {args.rates[1]:g}, speed {args.speed:g}")
    started = time.perf_counter()
    with at_speed(args.speed):
        checks = asyncio.run(on_the_loop(args.loop_n, args.rates[1]))
    for name, measured, predicted in checks:
        ratio = measured / predicted
        print(f"{name:>11}: measured {measured:7.1f} tokens/s, simulated {predicted:7.1f}, ratio {ratio:.3f}")
    print(f"(ran in {time.perf_counter() - started:.2f} s of wall time)")
    print()
    for rate, ratio in ratios.items():
        print(f"continuous_vs_static_throughput_at_{rate:g}={ratio:.3f}")
    print(f"continuous_vs_static_throughput={ratios[args.rates[-1]]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
