"""Bad input to the embedding service and to blocking clients, refused with a message naming it."""

from __future__ import annotations

import time
from typing import Any

import pytest

from asynclab import BlockingEmbeddings, BlockingLLM, Embeddings, at_speed, clock
from asynclab.text import MAX_DIM


@pytest.mark.parametrize(
    ("dim", "error", "message"),
    [
        (10**18, ValueError, rf"dim must be an int from 1 to {MAX_DIM} \(real models use 256-4096\), got 10{{18}}"),
        (MAX_DIM + 1, ValueError, rf"dim must be an int from 1 to {MAX_DIM}"),
        (0, ValueError, r"dim must be an int from 1 to \d+ .*got 0$"),
        (-3, ValueError, r"got -3$"),
        (256.0, TypeError, rf"dim must be an int from 1 to {MAX_DIM}, got float 256.0"),
        (True, TypeError, r"got bool True"),
    ],
)
@pytest.mark.parametrize("kind", [Embeddings, BlockingEmbeddings])
def test_an_embedding_size_out_of_range_is_refused_when_the_service_is_made(
    kind: type, dim: object, error: type, message: str
) -> None:
    # Embeddings(dim=10**18) used to be accepted, then tried to allocate exabytes on the first call.
    with pytest.raises(error, match=message.replace("10{18}", "1" + "0" * 18)):
        kind(dim=dim)


def test_the_largest_allowed_size_embeds() -> None:
    assert BlockingEmbeddings(dim=MAX_DIM, latency=0).embed("hello").shape == (MAX_DIM,)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"How do I stream?", r"text must be a str, got bytes b'How do I stream\?'"),
        ({"text": "hi"}, r"text must be a str, got dict \{'text': 'hi'\}"),
        (["hi"], r"text must be a str, got list \['hi'\]"),
        (None, r"text must be a str, got NoneType None"),
    ],
)
async def test_embed_names_text_when_it_is_not_a_str(text: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        await Embeddings(latency=0).embed(text)
    with pytest.raises(TypeError, match=message):
        BlockingEmbeddings(latency=0).embed(text)


@pytest.mark.parametrize(
    ("texts", "error", "message"),
    [
        ("abc", TypeError, r"texts must be a list of str, got str 'abc' \(use embed\(\) for one text\)"),
        (b"abc", TypeError, r"texts must be a list of str, got bytes b'abc'$"),
        ({"a": 1}, TypeError, r"texts must be a list of str, got dict"),
        ([], ValueError, r"texts must hold at least one text, got an empty list"),
        (["ok", b"no"], TypeError, r"texts\[1\] must be a str, got bytes b'no'"),
        (["ok", "  "], ValueError, r"texts\[1\] must be a non-empty str"),
    ],
)
async def test_embed_batch_refuses_a_str_and_anything_but_a_list_of_texts(
    texts: Any, error: type, message: str
) -> None:
    # embed_batch("abc") would embed "a", "b" and "c": a str is a sequence, but never a batch.
    with pytest.raises(error, match=message):
        await Embeddings(latency=0).embed_batch(texts)
    with pytest.raises(error, match=message):
        BlockingEmbeddings(latency=0).embed_batch(texts)


@pytest.mark.parametrize("client", [BlockingEmbeddings(latency=1e18), BlockingLLM(latency=1e18)])
def test_a_blocking_client_with_a_huge_latency_blocks_instead_of_overflowing(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # time.sleep(1e18) raises OverflowError ("timestamp too large"). The call must block, as any
    # blocking call does; the fake sleep records the waits and ends it after two of them.
    waits: list[float] = []

    def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            raise KeyboardInterrupt  # the learner interrupts the kernel

    monkeypatch.setattr(time, "sleep", fake_sleep)
    call = client.embed if isinstance(client, BlockingEmbeddings) else client.complete
    with at_speed(1), pytest.raises(KeyboardInterrupt):
        call("What is a token?")
    assert waits == [clock._LONGEST_BLOCK] * 2
    assert client.in_flight == 0
