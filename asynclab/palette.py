"""One colour per service across the course, and the styles that mark how a call ended.

    service_colour("pinecone")      # '#2ca02c' in every plot of every lesson
    service_colour("my-cache")      # an unknown name: the same colour every time, from its name

A service's colour comes from its name, never from the order in which services appear in a
trace, so Pinecone is green in lesson 05 and green in lesson 15. The three tools of
:class:`~asynclab.services.Tools` are coloured by the tool (weather, news, stock_price), since
an agent lesson shows them side by side. Red and grey are kept out of the service colours:
a red, cross-hatched outline marks a failed call and a grey, dashed one a cancelled call.

This module needs no matplotlib: colours are hex strings, so a lesson drawing its own chart
(``plt.bar(names, seconds, color=[service_colour(n) for n in names])``) can use them too.

Introduced in notebook 00 with the first timeline.
"""

from __future__ import annotations

import zlib

__all__ = [
    "CANCELLED",
    "CONCURRENT",
    "FAILED",
    "FALLBACK",
    "SEQUENTIAL",
    "SERVICE_COLOURS",
    "TOOLS",
    "colour_key",
    "service_colour",
]

#: The course's services and tools. Neighbours in a lesson get far-apart colours: the three
#: stores of lesson 05 (orange, brown, green) beside the LLM (blue); the tools of lesson 06
#: (gold, pink, teal) beside the LLM. A new service gets its entry here, not a colour per lesson.
SERVICE_COLOURS: dict[str, str] = {
    "llm": "#1f77b4",  # blue
    "embeddings": "#9467bd",  # purple
    "redis": "#ff7f0e",  # orange
    "pgvector": "#8c564b",  # brown
    "pinecone": "#2ca02c",  # green
    "vectorstore": "#17becf",  # cyan: the generic store of the seed example
    "metadata": "#bcbd22",  # olive
    "tools": "#7570b3",  # slate: a tools service's operations other than the three tools
    "weather": "#e6ab02",  # gold
    "news": "#e377c2",  # pink
    "stock_price": "#1b9e77",  # teal
    "http": "#393b79",  # indigo: calls made over HTTP to the course server
    "inference": "#637939",  # dark olive: the simulated inference server
}

#: Operations coloured by their own name whatever their service is called: the tools.
TOOLS = frozenset({"weather", "news", "stock_price"})

#: Colours for names not listed above (a learner's ``LLM(name="job 1 s")``): none is red,
#: grey or one of the service colours, so an unknown service never looks failed or cancelled.
FALLBACK: tuple[str, ...] = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#b07aa1",
    "#76b7b2",
    "#edc948",
    "#66c2a5",
    "#ff9da7",
    "#5254a3",
    "#8ca252",
    "#bd9e39",
    "#a55194",
    "#6baed6",
    "#fd8d3c",
    "#74c476",
    "#9e9ac8",
)

#: How a call ended, drawn the same way in every timeline.
FAILED = "#d62728"  # red outline, cross-hatched: the call raised
CANCELLED = "#7f7f7f"  # grey dashed outline, faded: the call was cancelled

#: Sum-vs-max bars and other sequential/concurrent comparisons: one colour for each way.
SEQUENTIAL = "#b35806"  # burnt orange: one call after another
CONCURRENT = "#542788"  # deep purple: the calls at once


def service_colour(name: str) -> str:
    """The hex colour of a service (or tool) called ``name``: fixed for the course's services,
    otherwise picked from :data:`FALLBACK` by a checksum of the name (the same in every run)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a service name (str), got {type(name).__name__}")
    known = SERVICE_COLOURS.get(name)
    if known is not None:
        return known
    # crc32, not hash(): str hashes change from one interpreter run to the next.
    return FALLBACK[zlib.crc32(name.encode("utf-8", "surrogatepass")) % len(FALLBACK)]


def colour_key(service: str, operation: str) -> str:
    """Which name a call is coloured by: the tool for a tool call, otherwise the service."""
    return operation if operation in TOOLS else service
