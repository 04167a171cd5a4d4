"""Checkers for notebook 15 · Real async backends.

    from asynclab.checks import lesson15
    await lesson15.check_search_all(search_all, postgres)
    await lesson15.check_answer_all(answer_all, redis_server)

Both run the learner's function against the real servers the notebook started (an
:class:`~asynclab.backends.EmbeddedPostgres`, an :class:`~asynclab.backends.EmbeddedRedis`),
read the trace for the concurrency and the servers themselves for what was left behind
(open connections, keys without a time to live).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from asynclab.backends import EmbeddedPostgres, EmbeddedRedis, PostgresVectorStore, need
from asynclab.checks import attempt, expect, expect_no_leaks, fail, passed, require_async, within
from asynclab.clock import WALL_SLACK, get_speed
from asynclab.services.llm import LLM, run_model
from asynclab.services.vectorstores import PgVectorStore

__all__ = [
    "CACHE_TTL",
    "DEADLINE",
    "QUESTIONS",
    "SEARCH_SECONDS",
    "TABLE",
    "check_answer_all",
    "check_search_all",
    "fewest_connections",
]

#: Exercise 1: each search holds its connection this many simulated seconds on the server.
SEARCH_SECONDS = 0.5
#: Exercise 1: every search must be done this many simulated seconds after the first one started.
DEADLINE = 1.8
#: The table the checker loads (the internal wiki, as PgVectorStore holds it).
TABLE = "kb_exercise"
QUESTIONS = (
    "How do I retry a failed LLM call?",
    "What is exponential backoff?",
    "What is reciprocal rank fusion?",
    "How does a connection pool limit concurrency?",
    "What went wrong in the last outage?",
    "How do we review a design?",
    "What is time to first token?",
    "How should a client handle 429 rate limit errors?",
    "What is a KV cache?",
    "How do I rerank retrieved documents?",
    "What is semantic caching?",
    "What is backpressure?",
)

#: Exercise 2: seconds an answer may stay in the cache.
CACHE_TTL = 3600
PROMPTS = (
    "What is time to first token?",
    "What is a KV cache?",
    "What is time to first token?",
    "What is backpressure?",
    "What is semantic caching?",
    "What is a KV cache?",
    "What is backpressure?",
    "What is reciprocal rank fusion?",
)
#: Exercise 2: these two are in the cache before the learner's function runs.
CACHED = {"What is a KV cache?": "(cached) A KV cache keeps keys and values.",
          "What is semantic caching?": "(cached) Reuse answers to similar questions."}


def fewest_connections(searches: int, seconds: float, deadline: float) -> int:
    """The smallest pool that finishes ``searches`` of ``seconds`` each within ``deadline``.

    A connection serves one search at a time, so within the deadline it serves
    ⌊deadline / seconds⌋ of them, one after another (its *waves*).
    """
    waves = math.floor(deadline / seconds + 1e-9)
    if waves < 1:
        raise ValueError(f"deadline must be at least one search long ({seconds:g} s), got {deadline:g}")
    return math.ceil(searches / waves)


async def _client_connections(connection: Any) -> int:
    """Client connections to the server other than ``connection`` itself."""
    return int(await connection.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
    ))


async def check_search_all(function: Callable[..., Awaitable[Any]], postgres: EmbeddedPostgres) -> None:
    """``search_all(dsn, make_store, questions, deadline)``: the fewest connections that meet the deadline."""
    __tracebackhide__ = True
    require_async(function)
    asyncpg = need("asyncpg")
    expect(isinstance(postgres, EmbeddedPostgres) and postgres.running,
           f"pass the running EmbeddedPostgres of the notebook, got {postgres!r:.80}")
    size = fewest_connections(len(QUESTIONS), SEARCH_SECONDS, DEADLINE)
    own = await asyncpg.connect(postgres.dsn)
    try:
        loader = await asyncpg.create_pool(postgres.dsn, min_size=1, max_size=1)
        try:
            await PostgresVectorStore(loader, table=TABLE).load()
        finally:
            await loader.close()
        before = await _client_connections(own)
        stores: list[PostgresVectorStore] = []

        def make_store(pool: Any) -> PostgresVectorStore:
            store = PostgresVectorStore(pool, table=TABLE, delay=SEARCH_SECONDS)
            stores.append(store)
            return store

        result = await attempt(function, postgres.dsn, make_store, list(QUESTIONS), DEADLINE)
        left_open = await _client_connections(own) - before
    finally:
        await own.close()
    expect_no_leaks(result)
    spans = result.trace.spans
    expect(bool(stores), "call make_store(pool) with your pool to get the store, then search it.")
    expect(len(spans) == len(QUESTIONS),
           f"expected {len(QUESTIONS)} searches, one per question; your function made {len(spans)}.")
    peak = result.trace.max_concurrency()
    first = min(span.queued for span in spans)
    last = max(span.end or 0.0 for span in spans)
    took = last - first
    if peak == 1:
        fail(f"your searches ran one at a time: {took:.2f} s for {len(QUESTIONS)} × {SEARCH_SECONDS:g} s. Open a "
             "pool (asyncpg.create_pool(dsn, min_size=n, max_size=n)) and start every search at once "
             "(a TaskGroup or gather): the pool hands out its n connections and queues the rest.")
    if peak < size:
        waves = math.ceil(len(QUESTIONS) / peak)
        fail(f"{peak} searches ran at once, so {len(QUESTIONS)} searches take {waves} rounds × {SEARCH_SECONDS:g} s = "
             f"{waves * SEARCH_SECONDS:.1f} s (measured: {took:.2f} s), past the {DEADLINE:g} s deadline. Within "
             f"{DEADLINE:g} s one connection serves ⌊{DEADLINE:g} / {SEARCH_SECONDS:g}⌋ searches: how many "
             "connections does that take?")
    if peak > size:
        fail(f"{peak} connections at once meet the deadline, but so would {size}: each connection is a server "
             f"process (memory, and max_connections is shared by every app). Within {DEADLINE:g} s one connection "
             f"serves ⌊{DEADLINE:g} / {SEARCH_SECONDS:g}⌋ searches one after another: size the pool for that.")
    # The rounds' real length: the slowest search (pg_sleep plus the real query and hand-off).
    longest = max(span.end - span.start for span in spans if span.end is not None)
    rounds = math.ceil(len(QUESTIONS) / size)
    expect(within(took, rounds * longest, rel=0.15) or took <= rounds * longest,
           f"{size} connections were used, but the searches took {took:.2f} s instead of about "
           f"{rounds} × {longest:.2f} s: start every search at once and let the pool queue them (no pool per "
           "search, no waiting between them).")
    expect(left_open == 0,
           f"{left_open} connection(s) to Postgres were still open after your function returned: close the pool "
           "(async with asyncpg.create_pool(...) as pool:, or await pool.close()).")
    expected = [[doc.id for doc, _ in PgVectorStore().nearest(q, 3)] for q in QUESTIONS]
    value = result.result
    expect(isinstance(value, (list, tuple)) and len(value) == len(QUESTIONS),
           f"return one list of hits per question, in the questions' order; got {value!r:.120}")
    got = [[getattr(hit, "id", hit) for hit in hits] for hits in value]
    wrong = [q for q, g, e in zip(QUESTIONS, got, expected, strict=True) if g != e]
    expect(not wrong, f"the hits for {wrong[0]!r} are not that question's: return them in the questions' order "
                      "(gather keeps it; with as_completed or a TaskGroup, index by position)." if wrong else "")
    passed(f"search_all: {len(QUESTIONS)} searches on a pool of {size}, {rounds} rounds × {SEARCH_SECONDS:g} s = "
           f"{rounds * SEARCH_SECONDS:g} s within the {DEADLINE:g} s deadline ({size - 1} connections: "
           f"{math.ceil(len(QUESTIONS) / (size - 1)) * SEARCH_SECONDS:g} s); measured {took:.2f} s with the real "
           "queries' time; pool closed.")


async def check_answer_all(function: Callable[..., Awaitable[Any]], redis_server: EmbeddedRedis) -> None:
    """``answer_all(llm, cache, prompts)``: cache-aside in Redis, each missing answer computed once, at once."""
    __tracebackhide__ = True
    require_async(function)
    redis_asyncio = need("redis.asyncio")
    expect(isinstance(redis_server, EmbeddedRedis) and redis_server.running,
           f"pass the running EmbeddedRedis of the notebook, got {redis_server!r:.80}")
    llm = LLM()
    cache = redis_asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        keys = [f"llm:{p}" for p in dict.fromkeys(PROMPTS)]
        await cache.delete(*keys)
        for prompt, answer in CACHED.items():
            await cache.set(f"llm:{prompt}", answer, ex=CACHE_TTL)
        missing = [p for p in dict.fromkeys(PROMPTS) if p not in CACHED]
        result = await attempt(function, llm, cache, list(PROMPTS))
        stored = {p: (await cache.get(f"llm:{p}"), await cache.ttl(f"llm:{p}")) for p in missing}
    finally:
        await cache.aclose()
    expect_no_leaks(result)
    spans = result.trace.by_service(llm.name)
    asked = [span.key.removeprefix("assistant:") for span in spans]
    recomputed = sorted({p for p in asked if p in CACHED})
    expect(not recomputed,
           f"you asked the LLM {recomputed[0]!r}, whose answer was in the cache: get every key first "
           f"(await cache.get(f'llm:{{prompt}}'), or cache.mget(...)) and only ask the LLM on a miss." if recomputed
           else "")
    twice = sorted({p for p in asked if asked.count(p) > 1})
    expect(not twice,
           f"{len(spans)} LLM calls for {len(missing)} missing answers: {twice[0]!r} was asked "
           f"{asked.count(twice[0]) if twice else 0} times. A prompt that comes twice in one batch is computed once: "
           "ask for each distinct missing prompt (dict.fromkeys keeps the order), then fill every position."
           if twice else "")
    expect(sorted(asked) == sorted(missing),
           f"the LLM should answer exactly the prompts missing from the cache, {missing}; it answered {asked}.")
    if result.trace.max_concurrency() <= 1 and len(missing) > 1:
        fail(f"the {len(missing)} LLM calls ran one after another ({result.elapsed:.2f} s): start them all at once "
             "(gather or a TaskGroup); Redis answers in a millisecond, the LLM in seconds.")
    latency = llm.latency.seconds()
    # The LLM calls overlap; Redis's real round trips (well under a millisecond each) add a little
    # wall time, ×speed here: about()'s slack plus 20 round trips of WALL_SLACK.
    expect(result.elapsed <= latency * 1.1 + 20 * WALL_SLACK * get_speed(),
           f"answer_all took {result.elapsed:.2f} s, but the missing answers at once take one LLM call "
           f"({latency:g} s): start every LLM call before awaiting the first.")
    value = result.result
    expect(isinstance(value, (list, tuple)) and len(value) == len(PROMPTS),
           f"return one answer per prompt, in the prompts' order ({len(PROMPTS)}); got {value!r:.120}")
    for prompt, got in zip(PROMPTS, value, strict=True):
        if prompt in CACHED:
            expect(got == CACHED[prompt],
                   f"for {prompt!r} return the cached answer {CACHED[prompt]!r}, got {got!r:.80}")
    for prompt in missing:
        text, ttl = stored[prompt]
        expect(text is not None,
               f"the answer to {prompt!r} is not in the cache afterwards: store it (await cache.set(key, answer, "
               f"ex={CACHE_TTL})), so the next ask is a hit.")
        expect(ttl > 0,
               f"the answer to {prompt!r} was stored without a time to live (ttl {ttl}): set ex={CACHE_TTL}, or the "
               "cache keeps stale answers forever and grows without bound.")
        positions = [got for p, got in zip(PROMPTS, value, strict=True) if p == prompt]
        answer = run_model("assistant", prompt)  # what llm.complete(prompt) returns, without its latency
        expect(text == answer, f"the cache holds {text!r:.60} for {prompt!r}: store the LLM's answer itself.")
        expect(all(got == answer for got in positions),
               f"for {prompt!r} return the LLM's answer, got {positions[0]!r:.80}")
    passed(f"answer_all: {len(PROMPTS)} prompts, {len(CACHED)} from the cache, {len(missing)} LLM calls at once in "
           f"{result.elapsed:.2f} s (one call: {latency:g} s); stored with a {CACHE_TTL} s TTL.")
