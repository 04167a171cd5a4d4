"""The GPU's economics: one forward pass over a batch of n sequences costs a + b·n seconds.

    gpu = GPUModel()                        # a = 0.03 s, b = 0.0008 s per sequence
    gpu.step_cost(decode=1)                 # 0.0308 s: one token for one sequence
    gpu.step_cost(decode=32)                # 0.0556 s: one token for each of 32 sequences
    gpu.throughput(32) / gpu.throughput(1)  # ≈ 18× the tokens per second

``a`` is what every pass pays whatever the batch (reading the weights from memory), ``b`` what
each sequence in the batch adds. A *decode* step makes one token for every sequence in the
batch; a *prefill* reads a prompt of p tokens and makes the first token (``prefill_per_token``
per prompt token). Prefill and decode may share one pass: its cost adds up. ``max_batch_size``
caps the sequences of one pass, ``kv_tokens`` the tokens the KV cache holds (prompts plus what
was generated so far, summed over the running sequences).

Introduced in notebook 14.
"""

from __future__ import annotations

from dataclasses import dataclass

from asynclab.latency import check_count, check_seconds

__all__ = ["GPUModel"]


@dataclass(frozen=True, slots=True)
class GPUModel:
    """The cost of a forward pass and the limits of one GPU (simulated seconds, tokens)."""

    a: float = 0.03
    b: float = 0.0008
    prefill_per_token: float = 0.0002
    max_batch_size: int = 32
    kv_tokens: int = 8192

    def __post_init__(self) -> None:
        check_seconds(self.a, "a")
        check_seconds(self.b, "b")
        check_seconds(self.prefill_per_token, "prefill_per_token")
        check_count(self.max_batch_size, "max_batch_size")
        check_count(self.kv_tokens, "kv_tokens")
        if self.a + self.b <= 0:
            raise ValueError(f"a + b must be > 0 (a pass takes time), got a={self.a!r}, b={self.b!r}")

    def step_cost(self, decode: int = 0, prefill_tokens: int = 0) -> float:
        """Simulated seconds of one pass: ``decode`` sequences make a token, ``prefill_tokens`` are read."""
        check_count(decode, "decode", minimum=0)
        check_count(prefill_tokens, "prefill_tokens", minimum=0)
        if decode == 0 and prefill_tokens == 0:
            raise ValueError("a pass needs decode >= 1 or prefill_tokens >= 1, got both 0")
        if decode > self.max_batch_size:
            raise ValueError(f"decode must be at most max_batch_size={self.max_batch_size}, got {decode}")
        return self.a + self.b * decode + self.prefill_per_token * prefill_tokens

    def throughput(self, n: int) -> float:
        """Tokens per simulated second when every decode step carries ``n`` sequences: n / (a + b·n)."""
        return n / self.step_cost(decode=n)
