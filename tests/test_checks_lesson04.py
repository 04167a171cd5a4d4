"""The notebook 04 checkers pass the reference solutions and fail wrong ones with their hints."""

from __future__ import annotations

import contextlib

import pytest

from asynclab import LLM, sleep, stopwatch
from asynclab.checks import ExerciseFailed, lesson04

# -- collect_with_ttft -------------------------------------------------------------------------


async def collect_with_ttft(llm: LLM, prompt: str) -> tuple[str, float, float]:
    """The reference solution (as in the solutions notebook)."""
    tokens: list[str] = []
    ttft = 0.0
    with stopwatch() as sw:
        async for token in llm.stream(prompt):
            if not tokens:
                ttft = sw.elapsed
            tokens.append(token)
    return "".join(tokens), ttft, sw.elapsed


async def test_collect_with_ttft_passes_the_reference(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson04.check_collect_with_ttft(collect_with_ttft)
    assert "✅ collect_with_ttft" in capsys.readouterr().out


async def test_collect_with_ttft_refuses_complete_with_a_hint_to_stream(fast: float) -> None:
    async def with_complete(llm: LLM, prompt: str) -> tuple[str, float, float]:
        with stopwatch() as sw:
            text = await llm.complete(prompt)
        return text, sw.elapsed, sw.elapsed

    with pytest.raises(ExerciseFailed, match=r"called llm.complete\(...\): that waits for the whole answer"):
        await lesson04.check_collect_with_ttft(with_complete)


async def test_collect_with_ttft_catches_a_ttft_read_after_the_loop(fast: float) -> None:
    async def late_ttft(llm: LLM, prompt: str) -> tuple[str, float, float]:
        with stopwatch() as sw:
            tokens = [token async for token in llm.stream(prompt)]
        return "".join(tokens), sw.elapsed, sw.elapsed

    with pytest.raises(ExerciseFailed, match="you read the stopwatch after the loop"):
        await lesson04.check_collect_with_ttft(late_ttft)


async def test_collect_with_ttft_explains_tokens_joined_with_spaces(fast: float) -> None:
    async def spaced(llm: LLM, prompt: str) -> tuple[str, float, float]:
        tokens: list[str] = []
        ttft = 0.0
        with stopwatch() as sw:
            async for token in llm.stream(prompt):
                if not tokens:
                    ttft = sw.elapsed
                tokens.append(token)
        return " ".join(tokens), ttft, sw.elapsed  # tokens already carry their leading spaces

    with pytest.raises(ExerciseFailed, match=r"join them with ''.join\(tokens\)"):
        await lesson04.check_collect_with_ttft(spaced)


# -- stream_until ------------------------------------------------------------------------------


async def stream_until(llm: LLM, prompt: str, stop_word: str) -> str:
    """The reference solution (as in the solutions notebook)."""
    text = []
    async with contextlib.aclosing(llm.stream(prompt)) as stream:
        async for token in stream:
            if token.strip() == stop_word:
                break
            text.append(token)
    return "".join(text)


async def test_stream_until_passes_the_reference(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson04.check_stream_until(stream_until)
    out = capsys.readouterr().out
    assert "✅ stream_until" in out and "ended 'cancelled'" in out and "in_flight == 0" in out


async def test_stream_until_also_passes_an_explicit_aclose(fast: float) -> None:
    async def with_aclose(llm: LLM, prompt: str, stop_word: str) -> str:
        text = []
        stream = llm.stream(prompt)
        try:
            async for token in stream:
                if token.strip() == stop_word:
                    break
                text.append(token)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        return "".join(text)

    await lesson04.check_stream_until(with_aclose)


async def test_stream_until_says_a_bare_break_leaves_the_stream_open(fast: float) -> None:
    async def bare_break(llm: LLM, prompt: str, stop_word: str) -> str:
        text = []
        async for token in llm.stream(prompt):
            if token.strip() == stop_word:
                break
            text.append(token)
        return "".join(text)

    with pytest.raises(ExerciseFailed, match=r"stream was still open when your function returned.*aclosing"):
        await lesson04.check_stream_until(bare_break)


async def test_stream_until_catches_reading_the_whole_answer_then_cutting(fast: float) -> None:
    async def read_all(llm: LLM, prompt: str, stop_word: str) -> str:
        tokens = [token async for token in llm.stream(prompt)]
        cut = next(i for i, token in enumerate(tokens) if token.strip() == stop_word)
        return "".join(tokens[:cut])

    with pytest.raises(ExerciseFailed, match=r"you read the whole answer \(29 tokens"):
        await lesson04.check_stream_until(read_all)


async def test_stream_until_wants_the_stop_word_left_out(fast: float) -> None:
    async def with_stop_word(llm: LLM, prompt: str, stop_word: str) -> str:
        text = []
        async with contextlib.aclosing(llm.stream(prompt)) as stream:
            async for token in stream:
                text.append(token)
                if token.strip() == stop_word:
                    break
        return "".join(text)

    with pytest.raises(ExerciseFailed, match="your text ends with the stop word 'backoff'"):
        await lesson04.check_stream_until(with_stop_word)


async def test_collect_with_ttft_that_waits_between_tokens_is_told_to_read_as_they_come(fast: float) -> None:
    async def slow_reader(llm: LLM, prompt: str) -> tuple[str, float, float]:
        tokens: list[str] = []
        ttft = 0.0
        with stopwatch() as sw:
            async for token in llm.stream(prompt):
                if not tokens:
                    ttft = sw.elapsed
                tokens.append(token)
                await sleep(0.1)  # extra work per token: the stream is read slower than it comes
        return "".join(tokens), ttft, sw.elapsed

    with pytest.raises(ExerciseFailed, match=r"the stream took \d\.\d\d s, but 22 tokens take 1\.45 s"):
        await lesson04.check_collect_with_ttft(slow_reader)


async def test_stream_until_that_waits_after_the_stop_word_is_told_so(fast: float) -> None:
    async def waits_after(llm: LLM, prompt: str, stop_word: str) -> str:
        text = await stream_until(llm, prompt, stop_word)
        await sleep(1.0)  # anything else awaited before returning
        return text

    with pytest.raises(ExerciseFailed, match=r"stream_until took 1\.\d\d s, but reading up to token 11 takes 0\.80 s"):
        await lesson04.check_stream_until(waits_after)
