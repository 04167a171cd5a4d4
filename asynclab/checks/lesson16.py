"""Checkers for notebook 16 · Beyond one process.

    from asynclab.checks import lesson16
    await lesson16.check_jobs_app(make_jobs_app)          # 202 + a job id, workers, polling, shutdown
    await lesson16.check_rerank_all(rerank_all, pool)     # searches overlapped, re-ranks in the process pool

The first serves the learner's app on a real uvicorn server (a :class:`~asynclab.serving.BackgroundServer`)
and drives it over HTTP like a client: it submits jobs, polls them, and watches the app's
lifespan for tasks left running at shutdown. The server runs in its own thread and loop, so the
job function the checker hands to the app counts what runs there (jobs in flight, when each ended).
The second runs the learner's function in an :func:`~asynclab.checks.attempt` and hands it the
notebook's process pool behind a wrapper that counts what is sent to it (and refuses to shut it down).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any

import httpx

from asynclab.checks import (
    ExerciseFailed,
    attempt,
    build_app,
    describe_error,
    expect,
    expect_no_leaks,
    fail,
    passed,
    require_app_factory,
    require_async,
)
from asynclab.clock import get_speed, now, sleep
from asynclab.reranker import rerank
from asynclab.services import LLM, VectorStore
from asynclab.serving import BackgroundServer
from asynclab.text import load_corpus, summarize
from asynclab.worktime import timed

__all__ = [
    "CANDIDATES",
    "JOB_SECONDS",
    "QUESTIONS",
    "WORKERS",
    "check_jobs_app",
    "check_rerank_all",
]

# -- exercise 1: a slow endpoint answers 202 ------------------------------------------------------

#: Exercise 1: jobs the app runs at once (its worker tasks).
WORKERS = 3
#: Exercise 1: simulated seconds one job's work takes.
JOB_SECONDS = 0.5
#: Exercise 1: the texts submitted, one job each; the empty one makes ``work`` raise.
TEXTS = (*(doc.text for doc in load_corpus()[40:43]), "", *(doc.text for doc in load_corpus()[43:46]))
EMPTY = "the text is empty: nothing to summarize"
#: Exercise 1: simulated seconds between two looks at the unfinished jobs.
POLL = 0.25
#: Exercise 1: simulated seconds the jobs get to finish: one worker alone needs 3.5 s; 3 s more
#: absorb the HTTP round trips and a busy machine's stalls.
FINISH_WITHIN = len(TEXTS) * JOB_SECONDS + 3.0
#: Exercise 1: simulated seconds with no work running and no status changing after which the
#: unfinished jobs are taken as stuck (twice a job's time: a free worker takes a job at once).
QUIET = 2 * JOB_SECONDS
#: Exercise 1: wall seconds a stopping app's lifespan gets to end. A lifespan that cancels its
#: workers ends in milliseconds; one that waits for workers that never end would never end.
SHUTDOWN_GRACE = 1.0
#: Exercise 1: wall seconds one HTTP request may take; every handler here answers in milliseconds.
HTTP_TIMEOUT = 5.0


class _Work:
    """The job function the checker gives the learner's app: a summary in JOB_SECONDS; counts what runs."""

    def __init__(self) -> None:
        self.llm = LLM(latency=JOB_SECONDS, name="job")
        self.in_flight = self.peak = 0
        self.ended: dict[str, float] = {}   # text -> when its work ended (simulated, the shared clock)

    async def __call__(self, text: str) -> str:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if not isinstance(text, str) or not text.strip():
                await sleep(JOB_SECONDS / 2)  # fails partway, as real work does
                raise ValueError(EMPTY)
            return await self.llm.complete(text, model="summarizer")
        finally:
            self.in_flight -= 1
            self.ended[text if isinstance(text, str) else repr(text)] = now()


class _WatchedLifespan:
    """Wrap an ASGI app; at the end of its lifespan, write down the tasks it left running.

    Runs on the server's loop. The tasks alive when the lifespan starts are uvicorn's; tasks
    created after it (the app's workers, a task per job) that are still running when the app
    says its shutdown is complete were left behind. A lifespan that does not end within
    SHUTDOWN_GRACE after the server asks it to is cancelled, so the server can stop.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.left: list[str] = []
        self.hung = False
        self.shut_down = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        assert me is not None
        before = asyncio.all_tasks()
        timer: asyncio.TimerHandle | None = None

        def hang() -> None:
            self.hung = True
            me.cancel()

        async def watched_receive() -> Any:
            nonlocal timer
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                timer = loop.call_later(SHUTDOWN_GRACE, hang)
            return message

        async def watched_send(message: Any) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                if timer is not None:
                    timer.cancel()
                self.shut_down = True
                self.left = [_task_name(task) for task in asyncio.all_tasks() - before
                             if task is not me and not task.done()]
                if self.hung:
                    return  # we stopped it: the hint says so, uvicorn need not log a traceback
            await send(message)

        try:
            await self.app(scope, watched_receive, watched_send)
        except asyncio.CancelledError:
            if not self.hung:
                raise
            me.uncancel()
            await send({"type": "lifespan.shutdown.complete"})


def _task_name(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    return getattr(coro, "__qualname__", None) or task.get_name()


def _body(reply: httpx.Response) -> Any:
    try:
        return reply.json()
    except ValueError:
        return reply.text


async def _submit(client: httpx.AsyncClient, text: str) -> tuple[httpx.Response, float]:
    reply = await client.post("/jobs", json={"text": text})
    return reply, now()


def _check_submitted(replies: list[tuple[httpx.Response, float]], work: _Work) -> list[str]:
    """The job ids, once every POST answered 202 at once with an id and a Location."""
    __tracebackhide__ = True
    first, _ = replies[0]
    if first.status_code in (404, 405):
        fail(f"POST /jobs answered {first.status_code}: add a route `@app.post(\"/jobs\", status_code=202)` that "
             "takes a body with a `text` field.")
    if first.status_code == 422:
        fail(f"POST /jobs refused the body {{\"text\": ...}} (422): {_body(first)!s:.200}. Declare a pydantic model "
             "with one field `text: str` as the handler's parameter.")
    for text, (_, answered) in zip(TEXTS, replies, strict=True):
        ended = work.ended.get(text)
        if ended is not None and ended <= answered:
            fail(f"POST /jobs answered only after the job's work had ended ({answered:.2f} s vs {ended:.2f} s): the "
                 "handler awaited the work. Put the job on a queue (queue.put_nowait) and answer 202 at once; a "
                 "worker task takes it from there.")
    ids = []
    for reply, _ in replies:
        if reply.status_code >= 500:
            fail(f"POST /jobs answered {reply.status_code}: {_body(reply)!s:.200}")
        expect(reply.status_code == 202,
               f"POST /jobs answered {reply.status_code}; a job that is accepted but not done yet is "
               "`202 Accepted`: `@app.post(\"/jobs\", status_code=202)`.")
        body = _body(reply)
        job_id = body.get("id") if isinstance(body, dict) else None
        expect(isinstance(job_id, str) and bool(job_id),
               f"POST /jobs must answer {{\"id\": ..., \"status\": \"queued\"}} with the job's id as a str; got "
               f"{body!r:.200}")
        location = reply.headers.get("location", "")
        expect(location.endswith(f"/jobs/{job_id}"),
               f"POST /jobs must say where to poll, in a `Location: /jobs/{{id}}` header (response.headers["
               f"\"Location\"] = ...); got {location!r:.120}")
        ids.append(str(job_id))
    expect(len(set(ids)) == len(ids), f"every job needs its own id; POST /jobs answered the ids {ids}")
    return ids


async def _poll(client: httpx.AsyncClient, ids: list[str], work: _Work) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Every status each job went through, and each job's last body.

    Until every job has ended; or FINISH_WITHIN has passed; or no work has run and no status has
    changed for QUIET (a worker that died leaves its jobs waiting for nobody: no need to wait longer).
    """
    __tracebackhide__ = True
    seen: dict[str, list[str]] = {job_id: [] for job_id in ids}
    last: dict[str, Any] = {}
    started = calm_since = now()
    while True:
        before = [list(statuses) for statuses in seen.values()]
        replies = await asyncio.gather(*(client.get(f"/jobs/{job_id}") for job_id in ids
                                         if last.get(job_id, {}).get("status") not in ("done", "failed")))
        for reply in replies:
            if reply.status_code in (404, 405) and not seen[ids[0]]:
                fail(f"GET /jobs/{{id}} answered {reply.status_code} for a job POST /jobs had just accepted: add "
                     "a route `@app.get(\"/jobs/{job_id}\")` that returns the job's status.")
            expect(reply.status_code == 200, f"GET /jobs/{{id}} answered {reply.status_code}: {_body(reply)!s:.200}")
            body = _body(reply)
            status = body.get("status") if isinstance(body, dict) else None
            expect(status in ("queued", "running", "done", "failed"),
                   f"GET /jobs/{{id}} must answer {{\"id\", \"status\"}} with status queued, running, done or "
                   f"failed; got {body!r:.200}")
            job_id = str(body.get("id", ""))
            expect(job_id in seen, f"GET /jobs/{{id}} must repeat the job's id in its body; got {body!r:.200}")
            if not seen[job_id] or seen[job_id][-1] != status:
                seen[job_id].append(str(status))
            last[job_id] = body
        if all(last[job_id]["status"] in ("done", "failed") for job_id in ids) or now() - started > FINISH_WITHIN:
            return seen, last
        if work.in_flight or before != list(seen.values()):
            calm_since = now()
        elif now() - calm_since > QUIET:
            return seen, last
        await sleep(POLL)


def _check_jobs(ids: list[str], seen: dict[str, list[str]], last: dict[str, Any], work: _Work) -> None:
    __tracebackhide__ = True
    failing = ids[TEXTS.index("")]
    if last[failing]["status"] == "running":
        fail(f"the job whose work raised ValueError({EMPTY!r}) stayed 'running': the error ended your worker task, "
             "and nobody recorded it. Wrap each job in try/except Exception: mark it failed with the error's "
             "message, and let the worker take the next job.")
    stuck = [job_id for job_id in ids if last[job_id]["status"] not in ("done", "failed")]
    expect(not stuck,
           f"{len(stuck)} job(s) were still {last[stuck[0]]['status']!r} {FINISH_WITHIN:g} s after they were "
           f"submitted, when {WORKERS} workers need {-(-len(TEXTS) // WORKERS) * JOB_SECONDS:g} s: are your workers "
           "running (started in the lifespan, each looping on `await queue.get()`)?" if stuck else "")
    status = last[failing]["status"]
    expect(status == "failed",
           f"the job whose work raised ValueError({EMPTY!r}) is reported {status!r}: an error must not be "
           "swallowed. Mark the job 'failed' and keep the error's message under \"error\".")
    expect(EMPTY in str(last[failing].get("error", "")),
           f"a failed job must say why under \"error\" (str(exc)); got {last[failing]!r:.200}")
    for job_id, text in zip(ids, TEXTS, strict=True):
        if job_id == failing:
            continue
        body = last[job_id]
        expect(body["status"] == "done", f"job {job_id} ended {body['status']!r}: {body!r:.200}")
        expect(body.get("result") == summarize(text),
               f"a done job must hold what `await work(text)` returned under \"result\"; job {job_id} holds "
               f"{body.get('result')!r:.100}")
    waited = [job_id for job_id in ids if seen[job_id][0] in ("queued", "running") and seen[job_id][-1] == "done"]
    expect(bool(waited), "no job was ever seen unfinished: GET /jobs/{id} must say 'queued' or 'running' until the "
                         "work is done, then 'done'.")
    expect(any("running" in statuses for statuses in seen.values()),
           f"no job was ever seen 'running' (statuses seen: {sorted({s for v in seen.values() for s in v})}): set "
           "the job's status to 'running' when a worker takes it, so a client can tell waiting from working.")
    if work.peak == 1:
        fail(f"your jobs ran one at a time ({len(TEXTS)} jobs, {len(TEXTS) * JOB_SECONDS:g} s of work): start "
             f"{WORKERS} worker tasks in the lifespan, all reading the same asyncio.Queue.")
    expect(work.peak <= WORKERS,
           f"{work.peak} jobs ran at once, but the app should run at most {WORKERS}: a task per job has no limit. "
           f"Start exactly {WORKERS} worker tasks that take jobs from one queue.")
    expect(work.peak == WORKERS,
           f"at most {work.peak} jobs ran at once with {len(TEXTS)} waiting: start {WORKERS} workers, not "
           f"{work.peak}.")


async def _drive(app: _WatchedLifespan, work: _Work) -> tuple[float, float]:
    """Submit, poll, check; the server stops at the end. (POSTs' slowest answer, when all ended.)"""
    __tracebackhide__ = True
    try:
        server = await BackgroundServer(app).astart()
    except RuntimeError as exc:
        cause = exc.__cause__
        fail(f"your app did not start: {describe_error(cause) if cause else exc}. Look at its lifespan.")
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=HTTP_TIMEOUT) as client:
            started = now()
            replies = await asyncio.gather(*(_submit(client, text) for text in TEXTS))
            ids = _check_submitted(replies, work)
            slowest = max(answered for _, answered in replies) - started
            seen, last = await _poll(client, ids, work)
            unknown = await client.get("/jobs/no-such-job")
            _check_jobs(ids, seen, last, work)
            expect(unknown.status_code == 404,
                   f"GET /jobs/no-such-job answered {unknown.status_code}: an unknown id is `404 Not Found` "
                   "(raise HTTPException(status_code=404)).")
            return slowest, now() - started
    except httpx.TimeoutException as exc:
        request = exc.request
        fail(f"{request.method} {request.url.path} did not answer within {HTTP_TIMEOUT:g} s of wall time: does the "
             "handler await something that never comes (a queue nobody fills, a worker that never started)?")
        raise  # not reached: fail raised
    finally:
        await server.astop()


async def check_jobs_app(make_jobs_app: object) -> None:
    """``make_jobs_app(work)``: POST /jobs answers 202 at once; WORKERS workers; GET /jobs/{id}; clean shutdown."""
    __tracebackhide__ = True
    factory = require_app_factory(make_jobs_app, "make_jobs_app", "check_jobs_app",
                                  "FastAPI(lifespan=...) with your two routes")
    work = _Work()
    app = _WatchedLifespan(build_app(factory, "make_jobs_app(work)", work))
    slowest, took = await _drive(app, work)
    expect(not app.hung,
           f"when the server stopped, your lifespan had not finished {SHUTDOWN_GRACE:g} s later: it was waiting for "
           "workers that never end (a TaskGroup or gather around `while True` loops). After the `yield`, cancel "
           "the workers (task.cancel()), then await them.")
    expect(not app.left,
           f"when your app's lifespan ended, {len(app.left)} task(s) it started were still running "
           f"({', '.join(app.left[:3])}): a restart or a test would leave them behind. After the `yield`, cancel "
           "the workers and await them (asyncio.gather(*workers, return_exceptions=True)).")
    passed(f"make_jobs_app: {len(TEXTS)} jobs accepted with 202 in {slowest:.2f} s, {WORKERS} at a time, all ended "
           f"in {took:.2f} s (the failing one reported 'failed'); no task left at shutdown.")


# -- exercise 2: re-rank without freezing the loop -------------------------------------------------

#: Exercise 2: the questions, and how many candidates each search returns.
QUESTIONS = (
    "How do I cache embeddings?",
    "What is dynamic batching?",
    "How do I stop a runaway agent loop?",
    "Why use a semaphore for LLM calls?",
    "How do I detect prompt injection?",
    "What is time to first token?",
)
CANDIDATES = 6


class _WatchedFuture(Future[Any]):
    """A pool future as the learner gets it: it notes a blocking wait for its result on the loop's thread.

    ``loop.run_in_executor`` reads the result only once the future is done; ``pool.map(...)`` or
    ``future.result()`` in ``async def`` wait for it, and the loop with them.
    """

    def __init__(self, pool: _SharedPool, inner: Future[Any]) -> None:
        super().__init__()
        self._shared, self._inner = pool, inner

    def copy(self, inner: Future[Any]) -> None:
        self._shared._done()
        if self.cancelled():
            return
        if inner.cancelled():
            self.cancel()
            self.set_running_or_notify_cancel()
        elif (error := inner.exception()) is not None:
            self.set_exception(error)
        else:
            self.set_result(inner.result())

    def cancel(self) -> bool:
        self._inner.cancel()
        return super().cancel()

    def result(self, timeout: float | None = None) -> Any:
        if not self.done() and asyncio.events._get_running_loop() is not None:
            self._shared.blocked += 1
        return super().result(timeout)


class _SharedPool(Executor):
    """The notebook's process pool as the learner sees it: counts submissions, refuses to shut down."""

    def __init__(self, pool: ProcessPoolExecutor) -> None:
        self._pool = pool
        self._lock = threading.Lock()  # done-callbacks run in the pool's manager thread
        self.submitted = self.in_flight = self.peak = 0
        self.blocked = 0  # times a result was waited for on a thread that runs an event loop
        self.shut_down = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self.shut_down:
            raise RuntimeError("cannot schedule new futures after shutdown")
        inner = self._pool.submit(fn, *args, **kwargs)
        with self._lock:
            self.submitted += 1
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        outer = _WatchedFuture(self, inner)
        inner.add_done_callback(outer.copy)
        return outer

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.shut_down = True  # the notebook's pool itself stays up: it is not the learner's to close

    def __repr__(self) -> str:
        return "<the notebook's process pool>"


async def check_rerank_all(function: Callable[..., Any], pool: object) -> None:
    """``rerank_all(pool, store, questions)``: searches at once, each re-rank in the process pool, loop free."""
    __tracebackhide__ = True
    require_async(function)
    expect(isinstance(pool, ProcessPoolExecutor),
           f"pass the notebook's process pool (a ProcessPoolExecutor), got {type(pool).__name__}")
    assert isinstance(pool, ProcessPoolExecutor)
    shared = _SharedPool(pool)
    store = VectorStore()
    on_loop = time.thread_time()
    try:
        result = await attempt(function, shared, store, list(QUESTIONS))
        failed = ""
    except ExerciseFailed as exc:
        result, failed = None, exc.hint
    on_loop = time.thread_time() - on_loop
    frozen = failed.startswith("the event loop was frozen")
    if failed and not frozen:
        fail(failed)  # not done yet, an error, a leak: as attempt() says it
    # The expected answers, computed in the same pool, with each one's CPU time: re-ranks run on
    # the loop's thread show as that thread's CPU time (the searches and the pickling cost a few
    # ms); half of what they cost in the pool leaves room for a faster worker.
    loop = asyncio.get_running_loop()
    reference = VectorStore(latency=0)
    candidates = [[doc for doc, _ in reference.nearest(q, CANDIDATES)] for q in QUESTIONS]
    expected = await asyncio.gather(*(loop.run_in_executor(pool, timed, rerank, q, c)
                                      for q, c in zip(QUESTIONS, candidates, strict=True)))
    rerank_cpu = sum(ran.cpu for ran in expected)
    if shared.submitted == 0 and on_loop > 0.5 * rerank_cpu:
        fail(f"your re-ranks ran on the event loop's thread ({on_loop:.2f} s of CPU there): while rerank computes, "
             "nothing else in this process runs. Send each one to the pool: "
             "`await loop.run_in_executor(pool, rerank, question, hits)`.")
    if shared.submitted == 0:
        fail("your re-ranks never reached the process pool: asyncio.to_thread (or run_in_executor(None, ...)) runs "
             "them in threads of this process, and threads take turns holding the GIL: one re-rank at a time, and "
             "the loop itself waits for its turn (it may stall). "
             "Use `await loop.run_in_executor(pool, rerank, question, hits)`.")
    if frozen or shared.blocked:
        fail("the loop was frozen while the pool worked: pool.map(...) or future.result() block until the results "
             "are there. Await them instead: `await loop.run_in_executor(pool, rerank, question, hits)`.")
    assert result is not None
    expect_no_leaks(result)
    if shared.shut_down:
        fail("you shut down the pool you were given (`with pool:` or pool.shutdown()): it is the notebook's, which "
             "uses it again. A pool is made once, shared, and shut down by its owner at the end.")
    expect(shared.submitted == len(QUESTIONS),
           f"{shared.submitted} calls went to the pool for {len(QUESTIONS)} questions: one re-rank per question.")
    searches = result.trace.spans
    expect(len(searches) == len(QUESTIONS),
           f"expected one store.search per question ({len(QUESTIONS)}); your function made {len(searches)}.")
    if result.trace.max_concurrency() <= 1:
        fail(f"your {len(QUESTIONS)} searches ran one after another ({result.elapsed:.2f} s): they only wait on the "
             "store, so start them all at once (gather, or a TaskGroup with a task per question).")
    if shared.peak <= 1:
        fail("your re-ranks went to the pool one at a time (each awaited before the next was sent): one worker "
             "computed while the other idled. Start them all (gather, or a task per question) and await them together.")
    value = result.result
    expect(isinstance(value, (list, tuple)) and len(value) == len(QUESTIONS),
           f"return one ranking per question, in the questions' order ({len(QUESTIONS)}); got {value!r:.160}")
    for question, got, want in zip(QUESTIONS, value, expected, strict=True):
        try:
            pairs = [(str(doc_id), float(score)) for doc_id, score in got]
        except (TypeError, ValueError):
            pairs = []
        if pairs != want.value:
            fail(f"for {question!r} expected rerank(question, hits, k=3) = {want.value!r:.160}, got {got!r:.160}. "
                 f"Search with k={CANDIDATES}, re-rank those hits, keep the questions' order (gather keeps it).")
    passed(f"rerank_all: {len(QUESTIONS)} searches at once, {len(QUESTIONS)} re-ranks in the pool ({shared.peak} in "
           f"flight at once, {rerank_cpu * 1000:.0f} ms of CPU off the loop), the loop never frozen; results in "
           f"order, in {result.elapsed / get_speed() * 1000:.0f} ms of wall time.")
