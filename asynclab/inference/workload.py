"""A seeded workload: requests with mixed prompt and answer lengths arriving over time.

    requests = mixed_workload(200, rate=4.0, seed=0)     # 200 requests, 4 a second on average
    requests[0]                                          # Request(id=0, arrival=0.11, prompt_tokens=..., ...)

Arrivals are a Poisson process (gaps exponential, mean 1/rate). Prompts take 20–400 tokens;
answers are mixed like a chat service's: most are short (10–40 tokens), ``long_share`` of
them long (150–300 tokens). The same seed gives the same requests.

Introduced in notebook 14.
"""

from __future__ import annotations

from asynclab.inference.requests import Request
from asynclab.latency import check_count, seeded_random

__all__ = ["mixed_workload"]


def mixed_workload(
    n: int = 200,
    *,
    rate: float = 4.0,
    seed: int = 0,
    prompt_tokens: tuple[int, int] = (20, 400),
    short: tuple[int, int] = (10, 40),
    long: tuple[int, int] = (150, 300),
    long_share: float = 0.3,
) -> list[Request]:
    """``n`` requests arriving at ``rate`` a simulated second, with mixed lengths (see the module docstring)."""
    check_count(n, "n")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
        raise ValueError(f"rate must be a number of requests per simulated second > 0, got {rate!r}")
    if isinstance(long_share, bool) or not isinstance(long_share, (int, float)) or not 0 <= long_share <= 1:
        raise ValueError(f"long_share must be a fraction between 0 and 1, got {long_share!r}")
    for name, (low, high) in (("prompt_tokens", prompt_tokens), ("short", short), ("long", long)):
        if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
            raise ValueError(f"{name} must be a (low, high) pair of ints with 1 <= low <= high, got {(low, high)!r}")
    rng = seeded_random("inference-workload", seed)
    requests, moment = [], 0.0
    for index in range(n):
        moment += rng.expovariate(rate)
        answer = long if rng.random() < long_share else short
        requests.append(
            Request(
                id=index,
                arrival=round(moment, 6),
                prompt_tokens=rng.randint(*prompt_tokens),
                output_tokens=rng.randint(*answer),
            )
        )
    return requests
