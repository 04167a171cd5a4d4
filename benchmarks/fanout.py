"""Fan-out overhead: N simulated 0.1 s service calls through asynclab vs N bare asyncio sleeps.

    .venv/bin/python benchmarks/fanout.py            # N = 1,000, 10,000, 100,000 at speed 1
    .venv/bin/python benchmarks/fanout.py --speed 10 --sizes 1000 10000

Both sides run in the same process, at the same speed, in one event loop each, one after the
other, best of ``--repeat`` runs. The asynclab side goes through everything a lesson uses: a
``MetadataStore`` call (span, fault plan, latency model, deadline sleep, a real lookup) inside
``with trace():``, so every call is also recorded. The last line is
``ratio_10k=<asynclab time / bare time>``; the target is ≤ 1.3.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import sys
import time

from asynclab import MetadataStore, at_speed, trace

CALL = 0.1  # simulated seconds per call


async def bare(n: int, speed: float) -> None:
    await asyncio.gather(*(asyncio.sleep(CALL / speed) for _ in range(n)))


async def through_asynclab(n: int) -> int:
    meta = MetadataStore(latency=CALL)
    with trace() as t:
        await asyncio.gather(*(meta.get("doc-001") for _ in range(n)))
    return len(t.spans)


def timed(run: object) -> float:
    gc.collect()
    started = time.perf_counter()
    asyncio.run(run)  # type: ignore[arg-type]
    return time.perf_counter() - started


def max_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux: the process's peak resident memory so far.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=5, help="best of this many runs (N < 100k)")
    args = parser.parse_args()

    print(f"fan-out of N calls of {CALL} simulated s at speed {args.speed:g} "
          f"(ideal wall time {CALL / args.speed * 1000:.0f} ms), python {sys.version.split()[0]}")
    print(f"{'N':>8} {'bare s':>9} {'asynclab s':>11} {'ratio':>7} {'µs/call extra':>14} {'peak RSS MiB':>13}")
    ratios = {}
    with at_speed(args.speed):
        for n in args.sizes:
            repeat = 1 if n >= 100_000 else args.repeat
            bare_s = min(timed(bare(n, args.speed)) for _ in range(repeat))
            ours_s = min(timed(through_asynclab(n)) for _ in range(repeat))
            ratios[n] = ours_s / bare_s
            extra = (ours_s - bare_s) / n * 1e6
            print(f"{n:>8} {bare_s:>9.3f} {ours_s:>11.3f} {ratios[n]:>7.2f} {extra:>14.1f} {max_rss_mib():>13.0f}")
    if 10_000 in ratios:
        verdict = "met" if ratios[10_000] <= 1.3 else "MISSED"
        print(f"target ratio_10k <= 1.3: {verdict}")
        print(f"ratio_10k={ratios[10_000]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
