from __future__ import annotations

import subprocess
import sys

import pytest
from matplotlib.colors import to_rgb

from asynclab.palette import (
    CANCELLED,
    FAILED,
    FALLBACK,
    SERVICE_COLOURS,
    colour_key,
    service_colour,
)


def test_the_course_services_have_fixed_distinct_colours() -> None:
    assert service_colour("pinecone") == SERVICE_COLOURS["pinecone"]
    assert len(set(SERVICE_COLOURS.values())) == len(SERVICE_COLOURS)
    for name in ("llm", "embeddings", "redis", "pgvector", "pinecone", "metadata", "weather", "news", "stock_price"):
        assert name in SERVICE_COLOURS


def test_no_service_looks_failed_or_cancelled() -> None:
    def close(a: str, b: str) -> bool:
        # Within 0.15 in every RGB channel reads as "the same colour" next to each other.
        return max(abs(x - y) for x, y in zip(to_rgb(a), to_rgb(b), strict=True)) < 0.15

    for colour in (*SERVICE_COLOURS.values(), *FALLBACK):
        assert not close(colour, FAILED), colour
        assert not close(colour, CANCELLED), colour
    assert not set(FALLBACK) & set(SERVICE_COLOURS.values())


def test_an_unknown_name_gets_the_same_fallback_colour_in_every_interpreter() -> None:
    here = service_colour("job 1 s")
    assert here in FALLBACK
    # str hashes are salted per process: a colour picked by hash() would change from run to run.
    elsewhere = subprocess.run(
        [sys.executable, "-c", "from asynclab.palette import service_colour; print(service_colour('job 1 s'))"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()
    assert elsewhere == here


def test_the_lessons_own_service_names_do_not_share_a_colour() -> None:
    # Lesson 02 puts three of these on one timeline; lesson 05's exercise adds two stores.
    for names in (["job 1 s", "job 2 s", "job 3 s"], ["archive", "elastic", "redis", "pgvector", "pinecone"]):
        assert len({service_colour(name) for name in names}) == len(names), names


def test_a_tool_call_is_coloured_by_its_tool() -> None:
    assert colour_key("tools", "news") == "news"
    assert colour_key("my-agent-tools", "weather") == "weather"
    assert colour_key("llm", "complete") == "llm"


def test_a_name_that_is_not_text_is_refused() -> None:
    with pytest.raises(TypeError, match="name must be a service name"):
        service_colour(3)  # type: ignore[arg-type]
