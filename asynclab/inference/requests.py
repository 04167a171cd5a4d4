"""A generation request and its progress through the server: arrival, admission, tokens, finish.

    request = Request(id=0, arrival=0.5, prompt_tokens=120, output_tokens=40)
    seq = Sequence(request)          # what the engine tracks while it is served
    seq.ttft, seq.latency            # simulated seconds, once it has finished

Introduced in notebook 14.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asynclab.latency import check_count, check_seconds

__all__ = ["Request", "Sequence"]


@dataclass(frozen=True, slots=True)
class Request:
    """What a client asks for: ``prompt_tokens`` in, ``output_tokens`` out, arriving at ``arrival`` (simulated s)."""

    id: int
    arrival: float
    prompt_tokens: int
    output_tokens: int

    def __post_init__(self) -> None:
        check_count(self.id, "id", minimum=0)
        check_seconds(self.arrival, "arrival")
        check_count(self.prompt_tokens, "prompt_tokens")
        check_count(self.output_tokens, "output_tokens")


@dataclass(slots=True, eq=False)
class Sequence:
    """One request being served: the tokens made so far and when each came out."""

    request: Request
    generated: int = 0
    admitted: float | None = None  # the first time it joined a batch
    finished: float | None = None
    preemptions: int = 0
    token_times: list[float] = field(default_factory=list)
    cancelled: bool = False

    @property
    def id(self) -> int:
        return self.request.id

    @property
    def arrival(self) -> float:
        return self.request.arrival

    @property
    def done(self) -> bool:
        return self.finished is not None or self.cancelled

    @property
    def kv_tokens(self) -> int:
        """Tokens this sequence holds in the KV cache while it runs: its prompt and what it generated."""
        return self.request.prompt_tokens + self.generated

    @property
    def first_token(self) -> float | None:
        return self.token_times[0] if self.token_times else None

    @property
    def ttft(self) -> float:
        """Time to first token: from arrival to the first token (simulated seconds)."""
        if not self.token_times:
            raise ValueError(f"request {self.id} has made no token yet")
        return self.token_times[0] - self.arrival

    @property
    def latency(self) -> float:
        """From arrival to the last token (simulated seconds)."""
        if self.finished is None:
            raise ValueError(f"request {self.id} has not finished")
        return self.finished - self.arrival

    def __repr__(self) -> str:
        return (
            f"Sequence(id={self.id}, {self.generated}/{self.request.output_tokens} tokens, "
            f"arrival={self.arrival:.2f}, finished={self.finished})"
        )
