"""Latency models: how many simulated seconds a service call takes.

    Fixed(1.2).seconds()                         # 1.2, every time
    Jittered(1.2, sigma=0.3).seconds("key")      # lognormal around 1.2, the same for the same key
    Streamed(first_token=0.35, per_token=0.03)   # time to first token, then each next token
    Batched(base=0.1, per_item=0.02).seconds(n=32)  # a + b·n: batching pays

Randomness comes from a seed and the request itself, never from call order (DESIGN
decision 3), so a run gives the same latencies however tasks interleave.

Introduced in notebook 00; ``Streamed`` in 04, ``Batched`` in 09.
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Protocol, runtime_checkable

__all__ = ["Batched", "Fixed", "Jittered", "Latency", "Streamed", "as_latency", "seeded_random"]


def seeded_random(*parts: object) -> random.Random:
    """A ``random.Random`` seeded from the given parts with a stable hash (not ``hash()``)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def check_seconds(value: object, name: str) -> float:
    """Validate a simulated duration: a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name} must be a number of simulated seconds >= 0, got {type(value).__name__} {value!r}"
        )
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of simulated seconds >= 0, got {value!r}")
    return float(value)


def check_count(value: object, name: str, minimum: int = 1) -> int:
    """Validate a whole-number argument such as ``n`` or ``k``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


@runtime_checkable
class Latency(Protocol):
    """Anything that says how long a call takes, in simulated seconds."""

    def seconds(self, key: str = "", n: int = 1) -> float:
        """Duration of one call for request ``key`` carrying ``n`` items."""
        ...


class Fixed:
    """Always the same duration: the clearest model for a first lesson."""

    __slots__ = ("value",)

    def __init__(self, seconds: float) -> None:
        self.value = check_seconds(seconds, "seconds")

    def seconds(self, key: str = "", n: int = 1) -> float:
        return self.value

    def __repr__(self) -> str:
        return f"Fixed({self.value:g})"


class Jittered:
    """Lognormal around a median, with a heavy tail, seeded by the request.

    median: the typical duration. sigma: spread of the lognormal (0.3 ≈ ±35 % for most
    calls). tail_rate / tail_factor: that fraction of calls takes ``tail_factor`` times longer,
    the slow outliers real services show (p99). seed: varies the draw between services.
    """

    __slots__ = ("median", "seed", "sigma", "tail_factor", "tail_rate")

    def __init__(
        self,
        median: float,
        sigma: float = 0.3,
        *,
        tail_rate: float = 0.0,
        tail_factor: float = 4.0,
        seed: int = 0,
    ) -> None:
        self.median = check_seconds(median, "median")
        self.sigma = check_seconds(sigma, "sigma")
        if isinstance(tail_rate, bool) or not isinstance(tail_rate, (int, float)) or not (
            0.0 <= tail_rate <= 1.0
        ):
            raise ValueError(f"tail_rate must be a number between 0 and 1, got {tail_rate!r}")
        self.tail_rate = float(tail_rate)
        factor = check_seconds(tail_factor, "tail_factor")
        if factor < 1:
            raise ValueError(f"tail_factor must be >= 1, got {tail_factor!r}")
        self.tail_factor = factor
        self.seed = seed

    def seconds(self, key: str = "", n: int = 1) -> float:
        rng = seeded_random("jitter", self.seed, key)
        value = self.median * math.exp(self.sigma * rng.gauss(0.0, 1.0))
        if rng.random() < self.tail_rate:
            value *= self.tail_factor
        return value

    def __repr__(self) -> str:
        tail = f", tail_rate={self.tail_rate:g}" if self.tail_rate else ""
        return f"Jittered(median={self.median:g}, sigma={self.sigma:g}{tail})"


class Streamed:
    """A token stream: time to first token, then ``per_token`` for each next token.

    ``seconds(n=tokens)`` is the whole stream: first_token + per_token·(n - 1).
    """

    __slots__ = ("first_token", "per_token")

    def __init__(self, first_token: float = 0.35, per_token: float = 0.03) -> None:
        self.first_token = check_seconds(first_token, "first_token")
        self.per_token = check_seconds(per_token, "per_token")

    def seconds(self, key: str = "", n: int = 1) -> float:
        return self.first_token + self.per_token * max(n - 1, 0)

    def __repr__(self) -> str:
        return f"Streamed(first_token={self.first_token:g}, per_token={self.per_token:g})"


class Batched:
    """Work that grows with the batch: ``base + per_item·n``, so one batch beats n calls."""

    __slots__ = ("base", "per_item")

    def __init__(self, base: float = 0.1, per_item: float = 0.02) -> None:
        self.base = check_seconds(base, "base")
        self.per_item = check_seconds(per_item, "per_item")

    def seconds(self, key: str = "", n: int = 1) -> float:
        return self.base + self.per_item * n

    def __repr__(self) -> str:
        return f"Batched(base={self.base:g}, per_item={self.per_item:g})"


def as_latency(value: object, name: str = "latency") -> Latency:
    """Accept a number (a :class:`Fixed` duration) or any latency model."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Fixed(check_seconds(value, name))
    if isinstance(value, Latency):
        return value
    raise TypeError(
        f"{name} must be a number of simulated seconds or a latency model"
        f" (Fixed, Jittered, Streamed, Batched), got {type(value).__name__} {value!r}"
    )
