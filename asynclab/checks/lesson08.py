"""Checkers for notebook 08 · An async FastAPI endpoint.

    from asynclab.checks import lesson08
    await lesson08.check_brief_app(make_brief_app)        # 20 requests at once through ASGITransport
    await lesson08.check_compare_app(make_compare_app)    # a real server; the client leaves mid-stream

The first runs the learner's app in process, so the checker's trace sees every service call
inside every request. The second needs a real server (ASGITransport buffers a stream), so it
reads the LLM's ``in_flight`` count and the events' arrival times instead of a trace.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from asynclab.checks import attempt, build_app, expect, expect_no_leaks, fail, passed, require_app_factory
from asynclab.clock import sleep, stopwatch
from asynclab.latency import Streamed
from asynclab.services import LLM, PineconeStore, Tools
from asynclab.services.llm import run_model
from asynclab.serving import BackgroundServer
from asynclab.text import tokenize
from asynclab.tracing import Span

__all__ = ["check_brief_app", "check_compare_app"]

#: Exercise 1: search 0.6 s and weather 0.5 s: at once 0.6 s, one after the other 1.1 s.
SEARCH_LATENCY = 0.6
WEATHER_LATENCY = 0.5
REQUESTS = 20

#: Exercise 2: the assistant's 18 tokens take 0.3 + 17 · 0.1 = 2.0 s, the summarizer's 6 take 0.8 s.
COMPARE_LATENCY = Streamed(first_token=0.3, per_token=0.1)
COMPARE_PROMPT = "Why do AI apps wait?"
MODELS = ("assistant", "summarizer")
LEAVE_AFTER = 3  # token events read before the checker's client disconnects
LEAVES = 3  # disconnects; each costs ~0.5 simulated s when the producers stop
#: Simulated seconds the server gets to stop its producers after the client leaves (50 ms of wall
#: time at speed 20, for a busy machine), less than the 1.5 s the assistant's stream would still
#: run if nobody stopped it.
STOP_GRACE = 1.0


def _lifespan(app: Any) -> AbstractAsyncContextManager[Any]:
    """The app's lifespan (ASGITransport runs none): a learner may make clients there."""
    router = getattr(app, "router", None)
    context = getattr(router, "lifespan_context", None)
    return context(app) if context is not None else nullcontext()


# -- exercise 1 ----------------------------------------------------------------------------------


def _question(i: int) -> str:
    return f"Question {i}: how do I cache embeddings?"


async def _twenty(app: Any) -> list[tuple[int, Any]]:
    async with _lifespan(app), httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
        replies = await asyncio.gather(*(
            client.post("/brief", json={"question": _question(i), "city": f"Town {i}"}) for i in range(REQUESTS)
        ))
    out: list[tuple[int, Any]] = []
    for reply in replies:
        try:
            out.append((reply.status_code, reply.json()))
        except ValueError:
            out.append((reply.status_code, reply.text))
    return out


def _overlap(a: Span, b: Span) -> bool:
    return a.start < (b.end or a.start) and b.start < (a.end or b.start)


async def check_brief_app(make_brief_app: object) -> None:
    """``make_brief_app(store, tools)``: POST /brief runs search and weather at once; 20 requests at once."""
    __tracebackhide__ = True
    factory = require_app_factory(make_brief_app, "make_brief_app", "check_brief_app", "FastAPI() with your route")
    store, tools = PineconeStore(latency=SEARCH_LATENCY), Tools(latency={"weather": WEATHER_LATENCY})
    app = build_app(factory, "make_brief_app(...)", store, tools, returns="the app (FastAPI(...) with your route)")
    result = await attempt(_twenty, app)
    expect_no_leaks(result)
    fast_store, fast_tools = PineconeStore(latency=0), Tools(latency=0)
    for i, (status, body) in enumerate(result.result):
        if status == 404:
            fail("POST /brief answered 404: add a route `@router.post(\"/brief\")` (or `@app.post`) to the app.")
        expect(status == 200, f"POST /brief answered {status}: {body!s:.300}")
        expected = {
            "sources": [hit.id for hit in await fast_store.search(_question(i), k=3)],
            "weather": await fast_tools.weather(f"Town {i}"),
        }
        if body != expected:
            fail(f"request {i} got the wrong body.\n  expected: {expected!r:.300}\n  got:      {body!r:.300}\n"
                 "Return {\"sources\": [hit.id for hit in hits], \"weather\": weather} for the question and city "
                 "of that request (search with k=3).")
    spans = result.trace.spans
    searches = {span.key.partition(":")[2]: span for span in spans if span.operation == "search"}
    weathers = {span.key: span for span in spans if span.operation == "weather"}
    expect(len(searches) == REQUESTS and len(weathers) == REQUESTS,
           f"expected one store.search and one tools.weather per request ({REQUESTS} each), got "
           f"{len(searches)} searches and {len(weathers)} weather calls")
    overlapped = sum(_overlap(searches[_question(i)], weathers[f"Town {i}"]) for i in range(REQUESTS))
    if overlapped < REQUESTS:
        fail(f"inside each request the search and the weather call ran one after another "
             f"({REQUESTS - overlapped} of {REQUESTS} requests): {SEARCH_LATENCY + WEATHER_LATENCY:.1f} s instead "
             f"of {SEARCH_LATENCY:.1f} s. Start both before awaiting either (asyncio.TaskGroup or gather).")
    peak = result.trace.max_concurrency()
    if peak <= 2:
        fail(f"your requests were served one at a time ({result.elapsed:.2f} s for {REQUESTS}): something in the "
             "app serialises them, such as a lock held across the awaits. Each request should only await its "
             "own calls.")
    # Not "elapsed ≈ 0.6 s": each request crosses the ASGI stack in the checker's loop, and twenty
    # of them cost ~40 ms of CPU (0.8 simulated s at speed 20). The trace's peak is exact instead:
    # 40 calls at once when all 20 requests overlap; at least half of them is the bar.
    expect(peak >= REQUESTS,
           f"only {peak} service calls ran at once ({result.elapsed:.2f} s for {REQUESTS} requests): something "
           "limits how many requests your app serves at a time. Each request should only await its own calls.")
    passed(f"make_brief_app: {REQUESTS} requests in {result.elapsed:.2f} s, search and weather overlapped in each, "
           f"{peak} service calls at once.")


# -- exercise 2 ----------------------------------------------------------------------------------


def _expected_tokens() -> dict[str, list[str]]:
    return {model: tokenize(run_model(model, COMPARE_PROMPT)) for model in MODELS}


async def _read(url: str, leave_after: int | None) -> tuple[list[tuple[str, Any, float]], int]:
    """The events (name, data, arrival time) from GET /compare, and the HTTP status."""
    events: list[tuple[str, Any, float]] = []
    async with httpx.AsyncClient(base_url=url, timeout=None) as client:
        with stopwatch() as sw:
            async with aconnect_sse(client, "GET", "/compare", params={"prompt": COMPARE_PROMPT}) as source:
                status = source.response.status_code
                if status != 200:
                    await source.response.aread()
                    return [("error", source.response.text, sw.elapsed)], status
                async for event in source.aiter_sse():
                    try:
                        data = json.loads(event.data)
                    except ValueError:
                        data = event.data
                    events.append((event.event, data, sw.elapsed))
                    if leave_after is not None and len(events) >= leave_after:
                        break  # the user leaves: leaving the blocks closes the connection
    return events, status


async def check_compare_app(make_compare_app: object) -> None:
    """``make_compare_app(llm)``: GET /compare streams two models at once over SSE; stops when the client leaves."""
    __tracebackhide__ = True
    factory = require_app_factory(make_compare_app, "make_compare_app", "check_compare_app",
                                  "FastAPI() with your route")
    expected = _expected_tokens()
    llm = LLM(stream_latency=COMPARE_LATENCY)
    app = build_app(factory, "make_compare_app(...)", llm, returns="the app (FastAPI(...) with your route)")
    async with BackgroundServer(app) as server:
        events, status = await _read(server.url, None)
        if status == 404:
            fail("GET /compare answered 404: add `@router.get(\"/compare\", response_class=EventSourceResponse)`.")
        expect(status == 200, f"GET /compare answered {status}: {events[0][1]!s:.300}")
        tokens = [(name, data) for name, data, _ in events if name == "token"]
        got: dict[str, list[str]] = {model: [] for model in MODELS}
        for _, data in tokens:
            if not (isinstance(data, dict) and data.get("model") in got and isinstance(data.get("token"), str)):
                fail(f"each token event's data must be {{\"model\": ..., \"token\": ...}} for model 'assistant' or "
                     f"'summarizer'; got {data!r:.120}. Yield ServerSentEvent(event=\"token\", data={{...}}).")
            got[data["model"]].append(data["token"])
        for model in MODELS:
            if got[model] != expected[model]:
                fail(f"the {model}'s tokens differ from llm.stream(prompt, model={model!r}):\n"
                     f"  expected {''.join(expected[model])!r}\n  got      {''.join(got[model])!r}\n"
                     "Send every token of both streams, each once, in its stream's order.")
        expect(bool(events) and events[-1][0] == "done",
               f"the stream must end with one `done` event after the tokens; the last event was {events[-1][:2]!r:.80}")
        whole = events[-1][2]
        longest = max(COMPARE_LATENCY.seconds(n=len(t)) for t in expected.values())
        total = sum(COMPARE_LATENCY.seconds(n=len(t)) for t in expected.values())
        order = [data["model"] for _, data in tokens]
        first_done = min(max(i for i, m in enumerate(order) if m == model) for model in MODELS)
        if len(set(order[: first_done + 1])) < 2:
            fail(f"the two streams ran one after the other ({whole:.2f} s, about the sum {total:.2f} s): start both "
                 "before reading either, e.g. one task per stream feeding an asyncio.Queue, inside a TaskGroup.")
        # No "whole ≈ the longer stream" check: each event crosses real HTTP in this process, and on a
        # busy machine 24 events cost more CPU than the 0.8 s that separates at-once from one-after-the-
        # other. Interleaving (above) is the evidence that both streams ran at once.
        expect(llm.in_flight == 0, f"after `done`, {llm.in_flight} LLM stream(s) were still open: close every stream")

        # Leaving is repeated: whether a generator FastAPI abandons is closed depends on where the
        # cancellation lands (section 6), so one disconnect can let an unowned producer pass by luck.
        still = leave = 0
        while not still and leave < LEAVES:
            leave += 1
            await _read(server.url, LEAVE_AFTER)
            for _ in range(20):  # up to STOP_GRACE: the server notices the closed connection, then cancels
                if llm.in_flight == 0:
                    break
                await sleep(STOP_GRACE / 20)
            still = llm.in_flight
    if still:
        fail(f"the client left after {LEAVE_AFTER} events (disconnect {leave} of {LEAVES}), but {still} LLM "
             "stream(s) kept producing tokens for nobody. When the client leaves, FastAPI cancels the task that "
             "iterates your generator but never closes the generator: if it is waiting at a `yield` then, nothing "
             "inside it is cancelled. Give the producers an owner that always runs: a dependency with `yield` "
             "(`Depends`) that makes the merged stream and, after its `yield`, calls `await stream.aclose()` "
             "(section 6); a TaskGroup inside the merged stream then cancels both producers.")
    passed(f"make_compare_app: {sum(map(len, expected.values()))} tokens from two models in {whole:.2f} s "
           f"(at once: {longest:.2f} s; one after the other: {total:.2f} s); after the client left, "
           "llm.in_flight == 0.")
