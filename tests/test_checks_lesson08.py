"""The notebook 08 checkers pass the reference solutions and fail wrong ones with their hints."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel

from asynclab import LLM, Tools, VectorStore
from asynclab.checks import ExerciseFailed, lesson08

# -- make_brief_app ------------------------------------------------------------------------------


class Brief(BaseModel):
    question: str
    city: str


def make_brief_app(store: VectorStore, tools: Tools) -> FastAPI:
    """The reference solution (as in the solutions notebook)."""
    router = APIRouter()

    @router.post("/brief")
    async def brief(body: Brief) -> dict[str, Any]:
        async with asyncio.TaskGroup() as tg:
            hits = tg.create_task(store.search(body.question, k=3))
            weather = tg.create_task(tools.weather(body.city))
        return {"sources": [hit.id for hit in hits.result()], "weather": weather.result()}

    app = FastAPI()
    app.include_router(router)
    return app


async def test_brief_app_passes_the_reference(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson08.check_brief_app(make_brief_app)
    assert "✅ make_brief_app" in capsys.readouterr().out


async def test_brief_app_catches_calls_one_after_another_inside_a_request(fast: float) -> None:
    def sequential(store: VectorStore, tools: Tools) -> FastAPI:
        app = FastAPI()

        @app.post("/brief")
        async def brief(body: Brief) -> dict[str, Any]:
            hits = await store.search(body.question, k=3)
            return {"sources": [hit.id for hit in hits], "weather": await tools.weather(body.city)}

        return app

    with pytest.raises(ExerciseFailed, match="inside each request the search and the weather call ran one after"):
        await lesson08.check_brief_app(sequential)


async def test_brief_app_catches_requests_served_one_at_a_time(fast: float) -> None:
    def locked(store: VectorStore, tools: Tools) -> FastAPI:
        app = FastAPI()
        lock = asyncio.Lock()

        @app.post("/brief")
        async def brief(body: Brief) -> dict[str, Any]:
            async with lock, asyncio.TaskGroup() as tg:
                hits = tg.create_task(store.search(body.question, k=3))
                weather = tg.create_task(tools.weather(body.city))
            return {"sources": [hit.id for hit in hits.result()], "weather": weather.result()}

        return app

    with pytest.raises(ExerciseFailed, match="your requests were served one at a time"):
        await lesson08.check_brief_app(locked)


async def test_brief_app_catches_a_blocking_call_in_the_handler(fast: float) -> None:
    def blocking(store: VectorStore, tools: Tools) -> FastAPI:
        app = FastAPI()

        @app.post("/brief")
        async def brief(body: Brief) -> dict[str, Any]:
            time.sleep(0.05)  # 1 simulated second at speed 20, on the loop
            async with asyncio.TaskGroup() as tg:
                hits = tg.create_task(store.search(body.question, k=3))
                weather = tg.create_task(tools.weather(body.city))
            return {"sources": [hit.id for hit in hits.result()], "weather": weather.result()}

        return app

    with pytest.raises(ExerciseFailed, match="the event loop was frozen"):
        await lesson08.check_brief_app(blocking)


async def test_brief_app_catches_a_wrong_body(fast: float) -> None:
    def titles(store: VectorStore, tools: Tools) -> FastAPI:
        app = FastAPI()

        @app.post("/brief")
        async def brief(body: Brief) -> dict[str, Any]:
            hits, weather = await asyncio.gather(store.search(body.question, k=3), tools.weather(body.city))
            return {"sources": [hit.title for hit in hits], "weather": weather}

        return app

    with pytest.raises(ExerciseFailed, match="got the wrong body"):
        await lesson08.check_brief_app(titles)


async def test_brief_app_refuses_an_async_factory(fast: float) -> None:
    async def factory(store: VectorStore, tools: Tools) -> FastAPI:
        return make_brief_app(store, tools)

    with pytest.raises(ExerciseFailed, match="make it a plain `def` that returns"):
        await lesson08.check_brief_app(factory)


# -- make_compare_app ----------------------------------------------------------------------------

MODELS = ("assistant", "summarizer")


def make_compare_app(llm: LLM) -> FastAPI:
    """The reference solution (as in the solutions notebook): a dependency owns the merged stream."""

    async def merged(prompt: str) -> AsyncIterator[dict[str, str]]:
        queue: asyncio.Queue[dict[str, str] | None] = asyncio.Queue()

        async def produce(model: str) -> None:
            try:
                async with contextlib.aclosing(llm.stream(prompt, model=model)) as stream:  # type: ignore[type-var]
                    async for token in stream:
                        await queue.put({"model": model, "token": token})
            finally:
                queue.put_nowait(None)  # this model is done

        async with asyncio.TaskGroup() as tg:  # closing this generator cancels both producers
            for model in MODELS:
                tg.create_task(produce(model))
            finished = 0
            while finished < len(MODELS):
                item = await queue.get()
                if item is None:
                    finished += 1
                else:
                    yield item

    async def both_streams(prompt: str) -> AsyncIterator[AsyncIterator[dict[str, str]]]:
        stream = merged(prompt)
        try:
            yield stream
        finally:
            await stream.aclose()  # runs when the response ends, a disconnect included

    app = FastAPI()

    @app.get("/compare", response_class=EventSourceResponse)
    # Depends as the default, not in Annotated: this module's annotations are strings (from
    # __future__), and FastAPI cannot resolve a name local to this function from them.
    async def compare(
        tokens: AsyncIterator[dict[str, str]] = Depends(both_streams),  # noqa: B008
    ) -> AsyncIterator[ServerSentEvent]:
        async for item in tokens:
            yield ServerSentEvent(event="token", data=item)
        yield ServerSentEvent(event="done", data={})

    return app


async def test_compare_app_passes_the_reference(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson08.check_compare_app(make_compare_app)
    assert "✅ make_compare_app" in capsys.readouterr().out


async def test_compare_app_catches_streams_one_after_another(fast: float) -> None:
    def sequential(llm: LLM) -> FastAPI:
        app = FastAPI()

        @app.get("/compare", response_class=EventSourceResponse)
        async def compare(prompt: str) -> AsyncIterator[ServerSentEvent]:
            for model in MODELS:
                async for token in llm.stream(prompt, model=model):
                    yield ServerSentEvent(event="token", data={"model": model, "token": token})
            yield ServerSentEvent(event="done", data={})

        return app

    with pytest.raises(ExerciseFailed, match="the two streams ran one after the other"):
        await lesson08.check_compare_app(sequential)


async def test_compare_app_catches_producers_left_running(fast: float) -> None:
    def detached(llm: LLM) -> FastAPI:
        app = FastAPI()
        background: set[asyncio.Task[None]] = set()

        @app.get("/compare", response_class=EventSourceResponse)
        async def compare(prompt: str) -> AsyncIterator[ServerSentEvent]:
            queue: asyncio.Queue[dict[str, str] | None] = asyncio.Queue()

            async def produce(model: str) -> None:
                async for token in llm.stream(prompt, model=model):
                    await queue.put({"model": model, "token": token})
                await queue.put(None)

            for model in MODELS:  # tasks nobody cancels when the client leaves
                task = asyncio.create_task(produce(model))
                background.add(task)
                task.add_done_callback(background.discard)
            finished = 0
            while finished < len(MODELS):
                item = await queue.get()
                if item is None:
                    finished += 1
                else:
                    yield ServerSentEvent(event="token", data=item)
            yield ServerSentEvent(event="done", data={})

        return app

    with pytest.raises(ExerciseFailed, match="kept producing tokens for nobody"):
        await lesson08.check_compare_app(detached)


async def test_compare_app_catches_a_missing_model(fast: float) -> None:
    def one_model(llm: LLM) -> FastAPI:
        app = FastAPI()

        @app.get("/compare", response_class=EventSourceResponse)
        async def compare(prompt: str) -> AsyncIterator[ServerSentEvent]:
            async for token in llm.stream(prompt):
                yield ServerSentEvent(event="token", data={"model": "assistant", "token": token})
            yield ServerSentEvent(event="done", data={})

        return app

    with pytest.raises(ExerciseFailed, match="the summarizer's tokens differ"):
        await lesson08.check_compare_app(one_model)
