"""asynclab: learn asynchronous processing for AI applications against simulated services.

    from asynclab import LLM, PineconeStore, MetadataStore, trace, plot_timeline

    llm, store, meta = LLM(), PineconeStore(), MetadataStore()
    with trace() as t:
        answer, hits, info = await asyncio.gather(
            llm.complete(question), store.search(question), meta.get("doc-001"))
    t.elapsed              # ≈ 1.2 simulated seconds: the longest call, not the sum (2.1 s)
    plot_timeline(t)

Times are simulated seconds; ``ASYNCLAB_SPEED`` (or :func:`set_speed`) runs them faster.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asynclab.batching import MicroBatcher
from asynclab.clock import (
    Stopwatch,
    Timeout,
    about,
    at_speed,
    get_speed,
    now,
    set_speed,
    sleep,
    stopwatch,
    timeout,
    wait_for,
)
from asynclab.faults import (
    Budget,
    Faults,
    NotFound,
    RateLimit,
    RateLimited,
    RequestTooLarge,
    ServiceError,
    ServiceUnavailable,
)
from asynclab.fusion import rrf
from asynclab.inference import (
    ContinuousBatcher,
    DynamicBatcher,
    GPUModel,
    InferenceServer,
    ServingReport,
    StaticBatcher,
    mixed_workload,
    simulate,
)
from asynclab.latency import Batched, Fixed, Jittered, Streamed
from asynclab.limiter import SimulatedLimiter
from asynclab.palette import service_colour
from asynclab.pipeline import Outcome, Step, run_pipeline
from asynclab.queueing import Exponential, erlang_c, offer_load, poisson_arrivals
from asynclab.reranker import rerank
from asynclab.services import (
    LLM,
    BlockingEmbeddings,
    BlockingLLM,
    Embeddings,
    Hit,
    MetadataStore,
    PgVectorStore,
    PineconeStore,
    RedisStore,
    Service,
    Tools,
    VectorStore,
    vector_store,
)
from asynclab.text import Document, load_corpus
from asynclab.tracing import Span, Trace, current_trace, trace
from asynclab.worktime import Timed, timed

if TYPE_CHECKING:  # imported on first use (see __getattr__): matplotlib takes half a second to load
    from asynclab.diagrams import plot_event_loop
    from asynclab.plots import plot_scaling, plot_sum_vs_max, plot_timeline, plot_timelines

#: Public names whose module is imported only when a name is first used.
_LAZY = {name: "asynclab.plots" for name in ("plot_scaling", "plot_sum_vs_max", "plot_timeline", "plot_timelines")}
_LAZY["plot_event_loop"] = "asynclab.diagrams"  # the event loop and a task's life (notebook 01)

if not TYPE_CHECKING:  # hidden from mypy, so a misspelt name is still an error there

    def __getattr__(name: str) -> object:
        """``asynclab.plot_timeline`` and ``from asynclab import plot_timeline`` import plotting now."""
        if name in _LAZY:
            import importlib

            value = getattr(importlib.import_module(_LAZY[name]), name)
            globals()[name] = value  # found directly from now on
            return value
        raise AttributeError(f"module 'asynclab' has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*globals(), *_LAZY})


__version__ = "0.1.0"

__all__ = [
    "LLM",
    "Batched",
    "BlockingEmbeddings",
    "BlockingLLM",
    "Budget",
    "ContinuousBatcher",
    "Document",
    "DynamicBatcher",
    "Embeddings",
    "Exponential",
    "Faults",
    "Fixed",
    "GPUModel",
    "Hit",
    "InferenceServer",
    "Jittered",
    "MetadataStore",
    "MicroBatcher",
    "NotFound",
    "Outcome",
    "PgVectorStore",
    "PineconeStore",
    "RateLimit",
    "RateLimited",
    "RedisStore",
    "RequestTooLarge",
    "Service",
    "ServiceError",
    "ServiceUnavailable",
    "ServingReport",
    "SimulatedLimiter",
    "Span",
    "StaticBatcher",
    "Step",
    "Stopwatch",
    "Streamed",
    "Timed",
    "Timeout",
    "Tools",
    "Trace",
    "VectorStore",
    "about",
    "at_speed",
    "current_trace",
    "erlang_c",
    "get_speed",
    "load_corpus",
    "mixed_workload",
    "now",
    "offer_load",
    "plot_event_loop",
    "plot_scaling",
    "plot_sum_vs_max",
    "plot_timeline",
    "plot_timelines",
    "poisson_arrivals",
    "rerank",
    "rrf",
    "run_pipeline",
    "service_colour",
    "set_speed",
    "simulate",
    "sleep",
    "stopwatch",
    "timed",
    "timeout",
    "trace",
    "vector_store",
    "wait_for",
]
