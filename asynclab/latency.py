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
import numbers
import random
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "MAX_SIGMA",
    "Batched",
    "Fixed",
    "Jittered",
    "Latency",
    "Streamed",
    "as_latency",
    "check_duration",
    "seeded_random",
]

#: The widest lognormal spread :class:`Jittered` takes. Real services show 0.2-1.5; at 5 a
#: 3-sigma call already takes 3 million times the median.
MAX_SIGMA = 5.0

#: The largest standard normal draw ``random.gauss`` can make (Box-Muller on 53-bit floats:
#: sqrt(2·53·ln 2) ≈ 8.57), so a Jittered model's longest possible call is known up front.
_MAX_GAUSS = 8.6


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


def check_duration(value: object, model: object, key: str = "", n: int = 1) -> float:
    """What a latency model returned for one call, checked: a finite number of simulated seconds >= 0.

    A NaN, an infinity or a negative duration would make the call hang or end at once without
    a word, so it fails the call instead, naming the model and the request.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"latency model {model!r} returned {type(value).__name__} {value!r} for request {str(key)[:40]!r}"
            f" (n={n}): it must return a number of simulated seconds >= 0"
        )
    seconds = float(value)
    if not 0.0 <= seconds < math.inf:  # NaN fails every comparison
        raise ValueError(
            f"latency model {model!r} returned {value!r} for request {str(key)[:40]!r} (n={n}):"
            " it must return a finite number of simulated seconds >= 0"
        )
    return seconds


def _check_n(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int >= 0 (items in the call), got {type(n).__name__} {n!r}")
    if n < 0:
        raise ValueError(f"n must be an int >= 0 (items in the call), got {n!r}")
    return n


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
        if self.sigma > MAX_SIGMA:
            raise ValueError(f"sigma must be from 0 to {MAX_SIGMA:g} (0.3 is typical), got {sigma!r}")
        if isinstance(tail_rate, bool) or not isinstance(tail_rate, (int, float)) or not (
            0.0 <= tail_rate <= 1.0
        ):
            raise ValueError(f"tail_rate must be a number between 0 and 1, got {tail_rate!r}")
        self.tail_rate = float(tail_rate)
        factor = check_seconds(tail_factor, "tail_factor")
        if factor < 1:
            raise ValueError(f"tail_factor must be >= 1, got {tail_factor!r}")
        self.tail_factor = factor
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
        self.seed = seed
        longest = self.median * math.exp(self.sigma * _MAX_GAUSS) * self.tail_factor
        if not math.isfinite(longest):
            raise ValueError(
                f"median={median!r}, sigma={sigma!r} and tail_factor={tail_factor!r} can draw a duration"
                " too large for a float: make them smaller"
            )

    def seconds(self, key: str = "", n: int = 1) -> float:
        rng = seeded_random("jitter", self.seed, key)
        value = self.median * math.exp(self.sigma * rng.gauss(0.0, 1.0))
        if rng.random() < self.tail_rate:
            value *= self.tail_factor
        return value  # finite and >= 0: the constructor bounded the longest draw

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
        """The whole stream of ``n`` tokens (n >= 0; 0 and 1 both cost the first token)."""
        steps = max(_check_n(n) - 1, 0)
        try:
            value = self.first_token + self.per_token * steps
        except OverflowError:  # an int too large for a float
            value = math.inf
        return check_duration(value, self, key, n)

    def __repr__(self) -> str:
        return f"Streamed(first_token={self.first_token:g}, per_token={self.per_token:g})"


class Batched:
    """Work that grows with the batch: ``base + per_item·n``, so one batch beats n calls."""

    __slots__ = ("base", "per_item")

    def __init__(self, base: float = 0.1, per_item: float = 0.02) -> None:
        self.base = check_seconds(base, "base")
        self.per_item = check_seconds(per_item, "per_item")

    def seconds(self, key: str = "", n: int = 1) -> float:
        """One call carrying ``n`` items (n >= 0)."""
        try:
            value = self.base + self.per_item * _check_n(n)
        except OverflowError:  # an int too large for a float
            value = math.inf
        return check_duration(value, self, key, n)

    def __repr__(self) -> str:
        return f"Batched(base={self.base:g}, per_item={self.per_item:g})"


class _Checked:
    """A latency model written outside asynclab, with every answer checked by :func:`check_duration`.

    It stands in for the model (its repr and attributes are the model's): asynclab's own
    models check themselves, anybody else's could return NaN, a negative or a string.
    """

    __slots__ = ("model", "name")

    def __init__(self, model: Latency, name: str) -> None:
        self.model = model
        self.name = name

    def seconds(self, key: str = "", n: int = 1) -> float:
        value = self.model.seconds(key, n)
        try:
            return check_duration(value, self.model, key, n)
        except (TypeError, ValueError) as exc:
            if self.name == "latency":
                raise
            raise type(exc)(f"{self.name}: {exc}") from None  # which of a service's models

    def __getattr__(self, attribute: str) -> Any:
        if attribute in _Checked.__slots__:  # not set yet (copy, pickle): no recursion
            raise AttributeError(attribute)
        return getattr(self.model, attribute)

    def __repr__(self) -> str:
        return repr(self.model)


_OWN_MODELS = (Fixed, Jittered, Streamed, Batched)


def as_latency(value: object, name: str = "latency") -> Latency:
    """Accept a number (a :class:`Fixed` duration) or any latency model.

    A model of your own (any object with a ``seconds(key, n)`` method) has what it returns
    checked at every call: a NaN, infinite or negative duration fails the call with a ValueError
    naming the model, instead of hanging it or ending it at once.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Fixed(check_seconds(value, name))
    if type(value) in _OWN_MODELS or isinstance(value, _Checked):
        return value  # type: ignore[return-value]  # one of the four classes above
    if isinstance(value, Latency) and callable(value.seconds):
        return _Checked(value, name)
    raise TypeError(
        f"{name} must be a number of simulated seconds or a latency model"
        f" (Fixed, Jittered, Streamed, Batched, or an object with a seconds(key, n) method),"
        f" got {type(value).__name__} {value!r}"
    )
