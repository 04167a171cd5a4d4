"""The error types services raise, and the fault plan that makes them fail on purpose.

    llm = LLM(faults=Faults(error_rate=0.2, seed=7))          # 20 % of requests fail
    llm = LLM(faults=Faults(fail_first=2))                     # every request fails twice, then works
    llm = LLM(faults=Faults(hang_rate=0.1))                    # 10 % never answer until cancelled
    llm = LLM(faults=Faults(rate_limit=RateLimit(5, per=1.0))) # the 6th call within 1 s gets a 429

Whether a request fails is decided by (seed, service, operation, request key, attempt),
never by call order, so retrying the same request is attempt 2 and can succeed, and the same
run fails the same requests however its tasks interleave.

Introduced in notebook 11 (errors in 05 and 06, rate limits in 12).
"""

from __future__ import annotations

import math
from collections import deque

from asynclab.clock import now
from asynclab.latency import check_count, seeded_random

__all__ = [
    "Faults",
    "NotFound",
    "RateLimit",
    "RateLimited",
    "ServiceError",
    "ServiceUnavailable",
]


class ServiceError(Exception):
    """Base of every failure a simulated service reports."""

    status = 500

    def __init__(self, message: str, *, service: str = "", operation: str = "") -> None:
        super().__init__(message)
        self.service = service
        self.operation = operation


class ServiceUnavailable(ServiceError):
    """An injected, transient failure (HTTP 503): retrying the same request may work."""

    status = 503


class NotFound(ServiceError):
    """The request named something the service does not have (HTTP 404)."""

    status = 404


class RateLimited(ServiceError):
    """Too many calls in the window (HTTP 429); wait ``retry_after`` simulated seconds."""

    status = 429

    def __init__(self, message: str, *, retry_after: float, service: str = "", operation: str = "") -> None:
        super().__init__(message, service=service, operation=operation)
        self.retry_after = retry_after


def _check_rate(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number between 0 and 1, got {type(value).__name__} {value!r}")
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    return float(value)


class RateLimit:
    """At most ``calls`` accepted calls in any window of ``per`` simulated seconds.

    One instance is one budget: give the same instance to several services and they share it,
    like several clients on one API key.
    """

    __slots__ = ("_accepted", "calls", "per")

    def __init__(self, calls: int, per: float = 1.0) -> None:
        self.calls = check_count(calls, "calls")
        if isinstance(per, bool) or not isinstance(per, (int, float)):
            raise TypeError(f"per must be a number of simulated seconds > 0, got {type(per).__name__}")
        if not math.isfinite(per) or per <= 0:
            raise ValueError(f"per must be a finite number of simulated seconds > 0, got {per!r}")
        self.per = float(per)
        self._accepted: deque[float] = deque()

    def acquire(self) -> float:
        """Accept a call now (returns 0.0) or say how long to wait before retrying."""
        t = now()
        while self._accepted and self._accepted[0] <= t - self.per:
            self._accepted.popleft()
        if len(self._accepted) < self.calls:
            self._accepted.append(t)
            return 0.0
        return self._accepted[0] + self.per - t

    def __repr__(self) -> str:
        return f"RateLimit({self.calls} per {self.per:g} s, {len(self._accepted)} in window)"


class Faults:
    """A seeded plan of failures for one service.

    error_rate: fraction of requests that fail with :class:`ServiceUnavailable` after taking
    their latency. hang_rate: fraction that never answer until cancelled (use a timeout).
    fail_first: every request fails this many attempts before it works (for retry lessons).
    rate_limit: a :class:`RateLimit`; calls beyond it raise :class:`RateLimited` at once.
    """

    __slots__ = ("active", "error_rate", "fail_first", "hang_rate", "rate_limit", "seed")

    def __init__(
        self,
        error_rate: float = 0.0,
        hang_rate: float = 0.0,
        *,
        fail_first: int = 0,
        rate_limit: RateLimit | None = None,
        seed: int = 0,
    ) -> None:
        self.error_rate = _check_rate(error_rate, "error_rate")
        self.hang_rate = _check_rate(hang_rate, "hang_rate")
        if self.error_rate + self.hang_rate > 1:
            raise ValueError(
                f"error_rate + hang_rate must be at most 1, got {error_rate!r} + {hang_rate!r}"
            )
        self.fail_first = check_count(fail_first, "fail_first", minimum=0)
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):
            raise TypeError(f"rate_limit must be a RateLimit or None, got {type(rate_limit).__name__}")
        self.rate_limit = rate_limit
        self.seed = seed
        #: False for a plan that never fails a call, so the hot path can skip it.
        self.active = bool(self.error_rate or self.hang_rate or self.fail_first)

    def decide(self, service: str, operation: str, key: str, attempt: int) -> str:
        """``"ok"``, ``"error"`` or ``"hang"`` for this attempt of this request."""
        if attempt <= self.fail_first:
            return "error"
        if not (self.error_rate or self.hang_rate):
            return "ok"
        draw = seeded_random("fault", self.seed, service, operation, key, attempt).random()
        if draw < self.error_rate:
            return "error"
        if draw < self.error_rate + self.hang_rate:
            return "hang"
        return "ok"

    def __repr__(self) -> str:
        parts = [
            f"{name}={getattr(self, name)!r}"
            for name in ("error_rate", "hang_rate", "fail_first", "rate_limit")
            if getattr(self, name)
        ]
        return f"Faults({', '.join(parts)})"
