"""Lesson 16's checkers: the reference answers pass, each usual mistake fails with its own hint."""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Response
from pydantic import BaseModel

from asynclab.checks import ExerciseFailed, lesson16
from asynclab.checks.lesson16 import CANDIDATES, WORKERS
from asynclab.reranker import rerank

# -- exercise 1 ----------------------------------------------------------------------------------


class Submit(BaseModel):
    text: str


def jobs_app(work: Any, *, workers: int = WORKERS, await_in_post: bool = False, status_code: int = 202,
             location: bool = True, catch: bool = True, swallow: bool = False, cancel: bool = True,
             task_per_job: bool = False, running: bool = True, not_found: bool = True,
             hang: bool = False) -> FastAPI:
    """The reference answer, with one mistake switched on by each keyword."""

    async def run(job: dict[str, Any], text: str) -> None:
        if running:
            job["status"] = "running"
        if not catch:
            job["result"] = await work(text)  # an error ends the worker
            job["status"] = "done"
            return
        try:
            job["result"] = await work(text)
            job["status"] = "done"
        except Exception as exc:
            if swallow:
                job["status"] = "done"
            else:
                job.update(status="failed", error=str(exc))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        app.state.jobs = {}
        app.state.queue = asyncio.Queue()

        async def worker() -> None:
            while True:
                job_id, text = await app.state.queue.get()
                await run(app.state.jobs[job_id], text)

        if hang:
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(worker())
                yield  # and never cancelled: the group waits for them forever
            return
        tasks = [asyncio.create_task(worker()) for _ in range(0 if task_per_job else workers)]
        app.state.tasks = set()
        yield
        if cancel:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    app = FastAPI(lifespan=lifespan)

    @app.post("/jobs", status_code=status_code)
    async def submit(body: Submit, response: Response) -> dict[str, Any]:
        job_id = uuid.uuid4().hex
        job = app.state.jobs[job_id] = {"id": job_id, "status": "queued"}
        if location:
            response.headers["Location"] = f"/jobs/{job_id}"
        if await_in_post:
            await run(job, body.text)
        elif task_per_job:
            task = asyncio.create_task(run(job, body.text))
            app.state.tasks.add(task)
            task.add_done_callback(app.state.tasks.discard)
        else:
            app.state.queue.put_nowait((job_id, body.text))
        return {"id": job_id, "status": job["status"]}

    @app.get("/jobs/{job_id}")
    async def status(job_id: str) -> dict[str, Any]:
        if job_id not in app.state.jobs:
            if not_found:
                raise HTTPException(status_code=404, detail=f"no job {job_id}")
            return {"id": job_id, "status": "queued"}
        return dict(app.state.jobs[job_id])

    return app


def variant(**mistake: Any) -> Any:
    def make_jobs_app(work: Any) -> FastAPI:
        return jobs_app(work, **mistake)

    return make_jobs_app


async def test_jobs_app_passes_with_workers_on_a_queue(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson16.check_jobs_app(variant())
    assert "✅ make_jobs_app: 7 jobs accepted with 202 in" in capsys.readouterr().out


@pytest.mark.parametrize(("mistake", "hint"), [
    ({"await_in_post": True}, "answered only after the job's work had ended"),
    ({"status_code": 200}, "answered 200; a job that is accepted but not done yet is `202 Accepted`"),
    ({"location": False}, "in a `Location: /jobs/{id}` header"),
    ({"workers": 1}, "your jobs ran one at a time"),
    ({"workers": 2}, "at most 2 jobs ran at once with 7 waiting"),
    ({"task_per_job": True}, "7 jobs ran at once, but the app should run at most 3"),
    ({"catch": False}, "stayed 'running': the error ended your worker task"),
    ({"swallow": True}, "is reported 'done': an error must not be swallowed"),
    ({"running": False}, "no job was ever seen 'running'"),
    ({"not_found": False}, "GET /jobs/no-such-job answered 200"),
    ({"cancel": False}, r"when your app.s lifespan ended, 3 task\(s\) it started were still running \(.*worker"),
    ({"hang": True}, "your lifespan had not finished 1 s later"),
])
async def test_jobs_app_names_the_mistake(fast: float, mistake: dict[str, Any], hint: str) -> None:
    with pytest.raises(ExerciseFailed, match=hint):
        await lesson16.check_jobs_app(variant(**mistake))


async def test_jobs_app_says_when_a_route_is_missing(fast: float) -> None:
    def no_routes(work: Any) -> FastAPI:
        return FastAPI()

    with pytest.raises(ExerciseFailed, match=r"POST /jobs answered 404: add a route"):
        await lesson16.check_jobs_app(no_routes)


async def test_jobs_app_says_the_stub_is_not_done_and_refuses_an_async_factory(fast: float) -> None:
    def stub(work: Any) -> FastAPI:
        raise NotImplementedError

    async def async_factory(work: Any) -> FastAPI:
        return jobs_app(work)

    with pytest.raises(ExerciseFailed, match="not done yet"):
        await lesson16.check_jobs_app(stub)
    with pytest.raises(ExerciseFailed, match="make_jobs_app builds the app"):
        await lesson16.check_jobs_app(async_factory)


async def test_jobs_app_reports_an_app_that_fails_to_start(fast: float) -> None:
    def broken(work: Any) -> FastAPI:
        @asynccontextmanager
        async def lifespan(app: FastAPI) -> Any:
            raise RuntimeError("no queue today")
            yield

        return FastAPI(lifespan=lifespan)

    with pytest.raises(ExerciseFailed, match="your app did not start"):
        await lesson16.check_jobs_app(broken)


# -- exercise 2 ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as executor:
        yield executor


async def reference_rerank_all(pool: Any, store: Any, questions: list[str]) -> list[Any]:
    loop = asyncio.get_running_loop()

    async def one(question: str) -> Any:
        hits = await store.search(question, k=CANDIDATES)
        return await loop.run_in_executor(pool, rerank, question, hits)

    return list(await asyncio.gather(*(one(q) for q in questions)))


async def test_rerank_all_passes_with_the_pool(pool: ProcessPoolExecutor, fast: float,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    await lesson16.check_rerank_all(reference_rerank_all, pool)
    assert "✅ rerank_all: 6 searches at once, 6 re-ranks in the pool" in capsys.readouterr().out


async def on_the_loop(pool: Any, store: Any, questions: list[str]) -> list[Any]:
    hits = await asyncio.gather(*(store.search(q, k=CANDIDATES) for q in questions))
    return [rerank(q, h) for q, h in zip(questions, hits, strict=True)]


async def in_threads(pool: Any, store: Any, questions: list[str]) -> list[Any]:
    async def one(question: str) -> Any:
        hits = await store.search(question, k=CANDIDATES)
        return await asyncio.to_thread(rerank, question, hits)

    return list(await asyncio.gather(*(one(q) for q in questions)))


async def one_by_one(pool: Any, store: Any, questions: list[str]) -> list[Any]:
    loop = asyncio.get_running_loop()
    hits = await asyncio.gather(*(store.search(q, k=CANDIDATES) for q in questions))
    return [await loop.run_in_executor(pool, rerank, q, h) for q, h in zip(questions, hits, strict=True)]


async def searches_in_turn(pool: Any, store: Any, questions: list[str]) -> list[Any]:
    loop = asyncio.get_running_loop()
    hits = [await store.search(q, k=CANDIDATES) for q in questions]
    return list(await asyncio.gather(*(loop.run_in_executor(pool, rerank, q, h)
                                       for q, h in zip(questions, hits, strict=True))))


async def closes_the_pool(pool: Any, store: Any, questions: list[str]) -> list[Any]:
    with pool:
        return await reference_rerank_all(pool, store, questions)


async def blocking_map(pool: Any, store: Any, questions: list[str]) -> list[Any]:
    hits = await asyncio.gather(*(store.search(q, k=CANDIDATES) for q in questions))
    return list(pool.map(rerank, questions, hits))


async def reversed_order(pool: Any, store: Any, questions: list[str]) -> list[Any]:
    return (await reference_rerank_all(pool, store, questions))[::-1]


@pytest.mark.parametrize(("answer", "hint"), [
    (on_the_loop, "your re-ranks ran on the event loop's thread"),
    (in_threads, "your re-ranks never reached the process pool: asyncio.to_thread"),
    (one_by_one, "your re-ranks went to the pool one at a time"),
    (searches_in_turn, "your 6 searches ran one after another"),
    (closes_the_pool, "you shut down the pool you were given"),
    (blocking_map, "the loop was frozen while the pool worked: pool.map"),
    (reversed_order, "keep the questions' order"),
])
async def test_rerank_all_names_the_mistake(pool: ProcessPoolExecutor, fast: float, answer: Any, hint: str) -> None:
    with pytest.raises(ExerciseFailed, match=hint):
        await lesson16.check_rerank_all(answer, pool)
    assert not pool._shutdown_thread  # the learner's `with pool:` never reached the real pool


async def test_rerank_all_wants_the_process_pool(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match="pass the notebook's process pool"):
        await lesson16.check_rerank_all(reference_rerank_all, None)
