"""The error types services raise, and the fault plan that makes them fail on purpose.

    llm = LLM(faults=Faults(error_rate=0.2, seed=7))          # 20 % of requests fail
    llm = LLM(faults=Faults(fail_first=2))                     # every request fails twice, then works
    llm = LLM(faults=Faults(hang_rate=0.1))                    # 10 % never answer until cancelled
    llm = LLM(faults=Faults(rate_limit=RateLimit(5, per=1.0))) # the 6th call within 1 s gets a 429
    budget = RateLimit(calls=500, per=60, tokens=30_000)       # a provider's RPM and TPM

Whether a request fails is decided by (seed, service, operation, request key, attempt),
never by call order, so retrying the same request is attempt 2 and can succeed, and the same
run fails the same requests however its tasks interleave.

Introduced in notebook 11 (errors in 05 and 06, rate limits in 12).
"""

from __future__ import annotations

import math
import re
import threading
from collections import deque
from typing import NamedTuple

from asynclab.clock import TIMER_LEAD, get_speed, now
from asynclab.latency import check_count, seeded_random

__all__ = [
    "Budget",
    "Faults",
    "NotFound",
    "RateLimit",
    "RateLimited",
    "RequestTooLarge",
    "ServiceError",
    "ServiceUnavailable",
    "format_duration",
    "parse_duration",
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


class RequestTooLarge(ServiceError):
    """One request needs more tokens than the rate limit allows in a whole window (HTTP 413).

    Waiting cannot help, so this is not a :class:`RateLimited` (a retry loop would spin for
    ever): shorten the prompt, or give the budget more ``tokens``.
    """

    status = 413


class Budget(NamedTuple):
    """What is left of one kind of budget: ``requests`` or ``tokens`` per window.

    reset: simulated seconds until the whole ``limit`` is available again (everything counted
    in the window has left it), as providers' ``x-ratelimit-reset-*`` headers say; 0 when
    nothing is counted.
    """

    kind: str
    limit: int
    remaining: int
    reset: float


class RateLimited(ServiceError):
    """Too many requests or tokens in the window (HTTP 429); wait ``retry_after`` simulated seconds.

        except RateLimited as exc:
            exc.kind, exc.remaining, exc.reset   # "tokens", 120, 41.5
            exc.headers()                        # {"Retry-After": "3", "x-ratelimit-remaining-tokens": "120", …}

    retry_after: simulated seconds until this request would be accepted. kind: the budget that
    refused, ``"requests"`` or ``"tokens"``; limit, remaining, reset: that budget's state (see
    :class:`Budget`; None when unknown, e.g. a 429 from a server that did not say).
    budgets: every budget of the limit at the moment of refusal, by kind.
    """

    status = 429

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        service: str = "",
        operation: str = "",
        kind: str = "requests",
        budgets: dict[str, Budget] | None = None,
    ) -> None:
        super().__init__(message, service=service, operation=operation)
        self.retry_after = retry_after
        self.kind = kind
        self.budgets = dict(budgets or {})
        refused = self.budgets.get(kind)
        self.limit = None if refused is None else refused.limit
        self.remaining = None if refused is None else refused.remaining
        self.reset = None if refused is None else refused.reset

    def headers(self) -> dict[str, str]:
        """The HTTP headers of this 429, in the format OpenAI's API uses.

        ``Retry-After`` is whole (simulated) seconds, rounded up so a client that waits that
        long is never early; ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` for each
        kind the limit has, the reset as a duration such as ``"1s"``, ``"250ms"`` or ``"6m0s"``.
        """
        headers = {"Retry-After": str(max(1, math.ceil(self.retry_after)))}
        for kind, budget in self.budgets.items():
            headers[f"x-ratelimit-limit-{kind}"] = str(budget.limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(budget.remaining)
            headers[f"x-ratelimit-reset-{kind}"] = format_duration(budget.reset)
        return headers


def format_duration(seconds: float) -> str:
    """A duration the way ``x-ratelimit-reset-*`` headers write it (Go's format), rounded up to 1 ms.

        format_duration(0.25)   # "250ms"
        format_duration(1)      # "1s"
        format_duration(360)    # "6m0s"
        format_duration(61.5)   # "1m1.5s"
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"seconds must be a number >= 0, got {type(seconds).__name__} {seconds!r}")
    if not (0 <= seconds < math.inf):
        raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
    # round() first: 0.1 * 1000 is 100.00000000000001, which must not become 101 ms.
    ms = math.ceil(round(seconds * 1000, 6))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest // 1000}" + (f".{rest % 1000:03d}".rstrip("0") if rest % 1000 else "")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``"6m0s"``, ``"1.5s"`` or ``"12ms"`` (an ``x-ratelimit-reset-*`` value).

        parse_duration("6m0s")   # 360.0
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str such as '6m0s', got {type(text).__name__} {text!r}")
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(number + unit for number, unit in parts) != text.strip():
        raise ValueError(f"text must be a duration such as '1s', '250ms' or '6m0s', got {text!r}")
    return sum(float(number) * _UNIT[unit] for number, unit in parts)


def _check_rate(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number between 0 and 1, got {type(value).__name__} {value!r}")
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    return float(value)


class RateLimit:
    """At most ``calls`` requests and ``tokens`` tokens in any window of ``per`` simulated seconds.

        RateLimit(5, per=1.0)                          # 5 requests per second
        RateLimit(calls=500, per=60, tokens=30_000)    # a provider's RPM and TPM
        RateLimit(tokens=10_000, per=60)               # tokens only

    Either limit may be None (unlimited); at least one is given. A request counts its tokens
    when it is admitted (providers reserve the estimate at request time); a refused request
    counts nothing. One instance is one budget: give the same instance to several services and
    they share it, like several clients on one API key (and several event loops or threads:
    it is thread-safe). ``status()`` says what is left.
    """

    __slots__ = ("_lock", "_requests", "_tokens", "_used", "calls", "per", "tokens")

    def __init__(self, calls: int | None = None, per: float = 1.0, *, tokens: int | None = None) -> None:
        if calls is None and tokens is None:
            raise TypeError(
                "RateLimit needs calls= (requests per window), tokens= (tokens per window) or both, got neither"
            )
        self.calls = None if calls is None else check_count(calls, "calls")
        self.tokens = None if tokens is None else check_count(tokens, "tokens")
        if isinstance(per, bool) or not isinstance(per, (int, float)):
            raise TypeError(f"per must be a number of simulated seconds > 0, got {type(per).__name__}")
        if not math.isfinite(per) or per <= 0:
            raise ValueError(f"per must be a finite number of simulated seconds > 0, got {per!r}")
        self.per = float(per)
        self._requests: deque[float] = deque()  # when each request in the window was admitted
        self._tokens: deque[tuple[float, int]] = deque()  # (when, how many tokens)
        self._used = 0  # tokens in the window: the sum over self._tokens
        self._lock = threading.Lock()  # a kernel loop and a server thread may share one budget

    def acquire(self, tokens: int = 0) -> float:
        """Admit a request of ``tokens`` tokens now (returns 0.0) or say how long to wait before retrying.

        Raises :class:`RequestTooLarge` when ``tokens`` exceeds the whole token limit.
        """
        with self._lock:
            refusal = self._take(self._check_tokens(tokens), now())
        return 0.0 if refusal is None else refusal[1]

    def admit(self, tokens: int = 0, *, service: str = "", operation: str = "") -> None:
        """Admit a request of ``tokens`` tokens now, or raise :class:`RateLimited` saying which budget refused.

        Raises :class:`RequestTooLarge` when ``tokens`` exceeds the whole token limit.
        """
        count = self._check_tokens(tokens, service, operation)
        with self._lock:
            t = now()
            refusal = self._take(count, t)
            if refusal is None:
                return
            budgets = self._status(t)
        kind, wait = refusal
        if kind == "requests":
            what = f"more than {self.calls} requests in {self.per:g} s"
        else:
            left = budgets["tokens"].remaining
            what = f"{count} tokens asked, {left} of {self.tokens} left in {self.per:g} s"
        name = f"{service}.{operation}" if service else "request"
        raise RateLimited(
            f"{name} rate limited ({kind}): {what}; retry after {wait:.2f} s",
            retry_after=wait,
            service=service,
            operation=operation,
            kind=kind,
            budgets=budgets,
        )

    def status(self) -> dict[str, Budget]:
        """What is left now, by kind (``"requests"``, ``"tokens"``; only the kinds this limit has).

            limit.status()["tokens"].remaining    # 29_880
        """
        with self._lock:
            return self._status(now())

    # -- the sliding window, always under self._lock --------------------------------------------

    def _check_tokens(self, tokens: object, service: str = "", operation: str = "") -> int:
        count = check_count(tokens, "tokens", minimum=0)
        if self.tokens is not None and count > self.tokens:
            name = f"{service}.{operation}" if service else "the request"
            raise RequestTooLarge(
                f"{name} needs {count} tokens, more than the rate limit allows in a whole window"
                f" ({self.tokens} tokens per {self.per:g} s): it can never be admitted; shorten the"
                " prompt or raise the limit's tokens",
                service=service,
                operation=operation,
            )
        return count

    def _expire(self, t: float) -> None:
        # A request leaves the window ``per`` seconds after it was admitted, forgiving the
        # TIMER_LEAD by which asynclab.sleep aims early: a client that waits exactly its
        # ``retry_after`` must never be refused again because its timer fired 0.8 ms early.
        horizon = t - self.per + TIMER_LEAD * get_speed()
        requests, tokens = self._requests, self._tokens
        while requests and requests[0] <= horizon:
            requests.popleft()
        while tokens and tokens[0][0] <= horizon:
            self._used -= tokens.popleft()[1]

    def _take(self, count: int, t: float) -> tuple[str, float] | None:
        """Count a request of ``count`` tokens at ``t``, or return (the kind that refused, wait)."""
        self._expire(t)
        waits = []
        if self.calls is not None and len(self._requests) >= self.calls:
            # Room again when enough of the oldest requests have left the window.
            waits.append((self._requests[len(self._requests) - self.calls] + self.per - t, "requests"))
        if self.tokens is not None and self._used + count > self.tokens:
            excess, freed = self._used + count - self.tokens, 0
            for when, n in self._tokens:  # the oldest first: free tokens until this request fits
                freed += n
                if freed >= excess:
                    waits.append((when + self.per - t, "tokens"))
                    break
        if waits:
            wait, kind = max(waits)  # both refused: the longer wait decides
            return kind, wait
        if self.calls is not None:
            self._requests.append(t)
        if self.tokens is not None and count:
            self._tokens.append((t, count))
            self._used += count
        return None

    def _status(self, t: float) -> dict[str, Budget]:
        self._expire(t)
        budgets = {}
        if self.calls is not None:
            reset = self._requests[-1] + self.per - t if self._requests else 0.0
            budgets["requests"] = Budget("requests", self.calls, self.calls - len(self._requests), reset)
        if self.tokens is not None:
            reset = self._tokens[-1][0] + self.per - t if self._tokens else 0.0
            budgets["tokens"] = Budget("tokens", self.tokens, self.tokens - self._used, reset)
        return budgets

    def __repr__(self) -> str:
        limits = [f"{self.calls} requests"] if self.calls is not None else []
        limits += [f"{self.tokens} tokens"] if self.tokens is not None else []
        used = [f"{len(self._requests)} requests"] if self.calls is not None else []
        used += [f"{self._used} tokens"] if self.tokens is not None else []
        return f"RateLimit({' and '.join(limits)} per {self.per:g} s; {', '.join(used)} in window)"
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
