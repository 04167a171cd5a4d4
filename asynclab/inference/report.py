"""What a scheduler did with a workload: throughput, time to first token, latency, GPU busy time.

    report = simulate(workload, ContinuousBatcher())
    report.throughput            # output tokens per simulated second
    report.ttft(0.99)            # p99 time to first token, simulated seconds
    print(table([static, dynamic, continuous]))

Introduced in notebook 14.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from asynclab.inference.engine import StepRecord
from asynclab.inference.requests import Sequence
from asynclab.queueing import percentile

__all__ = ["ServingReport", "table"]


@dataclass(frozen=True, slots=True)
class ServingReport:
    """The sequences a scheduler served and the passes it ran, with the measures that matter."""

    scheduler: str
    sequences: tuple[Sequence, ...]
    steps: tuple[StepRecord, ...]

    def __post_init__(self) -> None:
        if not self.sequences:
            raise ValueError("a report needs at least one served request, got none")
        unfinished = [seq.id for seq in self.sequences if seq.finished is None]
        if unfinished:
            raise ValueError(f"requests {unfinished[:5]} have not finished: a report counts finished work only")

    @property
    def start(self) -> float:
        return min(seq.arrival for seq in self.sequences)

    @property
    def end(self) -> float:
        return max(seq.finished or 0.0 for seq in self.sequences)

    @property
    def makespan(self) -> float:
        """From the first arrival to the last token (simulated seconds)."""
        return self.end - self.start

    @property
    def output_tokens(self) -> int:
        return sum(seq.generated for seq in self.sequences)

    @property
    def throughput(self) -> float:
        """Output tokens per simulated second over the makespan."""
        return self.output_tokens / self.makespan

    def ttft(self, p: float = 0.5) -> float:
        """The ``p`` percentile of time to first token (simulated seconds)."""
        return percentile([seq.ttft for seq in self.sequences], p)

    def latency(self, p: float = 0.5) -> float:
        """The ``p`` percentile of latency, arrival to last token (simulated seconds)."""
        return percentile([seq.latency for seq in self.sequences], p)

    @property
    def busy_fraction(self) -> float:
        """The share of the makespan the GPU spent in forward passes."""
        return sum(step.duration for step in self.steps) / self.makespan

    @property
    def mean_batch(self) -> float:
        """Real sequences per pass, on average (padding rows not counted)."""
        return sum(len(step.members) for step in self.steps) / len(self.steps)

    @property
    def padding(self) -> float:
        """The share of computed decode rows that held no running sequence (static and dynamic blocks)."""
        rows = sum(step.rows for step in self.steps)
        real = sum(min(len(step.members), step.rows) for step in self.steps)
        return 0.0 if rows == 0 else (rows - real) / rows

    @property
    def preemptions(self) -> int:
        return sum(seq.preemptions for seq in self.sequences)

    def summary(self) -> dict[str, float | str]:
        """The report's measures, one dict (a row of :func:`table`)."""
        return {
            "scheduler": self.scheduler,
            "tokens/s": round(self.throughput, 1),
            "ttft p50": round(self.ttft(0.5), 3),
            "ttft p99": round(self.ttft(0.99), 3),
            "latency p50": round(self.latency(0.5), 3),
            "latency p99": round(self.latency(0.99), 3),
            "busy": round(self.busy_fraction, 3),
            "mean batch": round(self.mean_batch, 1),
            "preemptions": self.preemptions,
        }

    def __repr__(self) -> str:
        return (
            f"<ServingReport {self.scheduler}: {len(self.sequences)} requests, {self.throughput:.0f} tokens/s, "
            f"ttft p99 {self.ttft(0.99):.2f} s, latency p99 {self.latency(0.99):.2f} s, busy {self.busy_fraction:.0%}>"
        )


def table(reports: Iterable[ServingReport]) -> str:
    """The reports' summaries as an aligned text table, one row per report."""
    rows = [report.summary() for report in reports]
    if not rows:
        raise ValueError("reports must hold at least one ServingReport, got none")
    columns = list(rows[0])
    cells = [[str(row[column]) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    lines = ["  ".join(column.rjust(width) for column, width in zip(columns, widths, strict=True))]
    lines += ["  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(lines)
