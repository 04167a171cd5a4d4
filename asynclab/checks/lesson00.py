"""Checkers for notebook 00 · Why async.

    from asynclab.checks import lesson00
    await lesson00.check_partial_failure(handle_request)  # three calls at once; one may fail
    await lesson00.check_predict_times(predict_times)     # Σ vs max, with dependent stages
    await lesson00.check_handle_request(handle_request)   # the three calls at once, all healthy

Introduced in notebook 00.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asynclab.checks import (
    Attempt,
    attempt,
    close_coroutines,
    describe_error,
    expect,
    expect_about,
    expect_no_leaks,
    fail,
    passed,
    require_async,
)
from asynclab.clock import WALL_SLACK, get_speed, sleep, stopwatch
from asynclab.faults import Faults, ServiceError
from asynclab.services import LLM, MetadataStore, PineconeStore

__all__ = ["PLANS", "check_handle_request", "check_partial_failure", "check_predict_times"]

#: The request the handle_request checker sends: a question about the document the user has open.
QUESTION = "How do I keep an LLM app from waiting on every call?"
DOC_ID = "doc-090"




async def _reference(question: str, doc_id: str) -> tuple[str, list[str], dict[str, Any]]:
    """The right answer, from instant (zero-latency) copies of the same services."""
    answer = await LLM(latency=0).complete(question)
    hits = await PineconeStore(latency=0).search(question, k=3)
    info = await MetadataStore(latency=0).get(doc_id)
    return answer, [hit.id for hit in hits], info


def _expect_three_overlapping_calls(result: Attempt, durations: dict[str, float]) -> None:
    __tracebackhide__ = True
    total, longest = sum(durations.values()), max(durations.values())
    for service in durations:
        calls = len(result.trace.by_service(service))
        expect(calls == 1, f"the {service} service was called {calls} times; call it exactly once")
    peak = result.trace.max_concurrency()
    if peak == 1:
        fail(f"your three calls ran one after another: {result.elapsed:.2f} s, the sum ({total:.2f} s). "
             "Start them all before awaiting any: answer, hits, info = await asyncio.gather(...)")
    if peak < 3:
        fail(f"your calls overlapped only partly (at most {peak} at once): {result.elapsed:.2f} s, but all "
             f"three at once take {longest:.2f} s, the longest call. Put all three calls in ONE "
             "asyncio.gather(...), none awaited before it.")
    expect_about(result.elapsed, longest,
                 "your three calls overlapped, but the request took {measured:.2f} s instead of "
                 "{expected:.2f} s (the longest call): is something else waiting in your function?")


async def check_handle_request(handle_request: Callable[..., Any]) -> None:
    """Grade ``handle_request(llm, store, meta, question, doc_id) -> (answer, doc_ids, metadata)``.

    It must return the LLM's answer, the ids of the top-3 search hits and the metadata of
    ``doc_id``, and take about the longest call (1.2 s), not the sum (2.1 s).
    """
    __tracebackhide__ = True
    result, durations = await _expect_healthy_request(handle_request)
    passed(f"handle_request is right and concurrent: {result.elapsed:.2f} s, the longest call "
           f"({max(durations.values()):.2f} s), instead of the sum ({sum(durations.values()):.2f} s).")


async def _expect_healthy_request(handle_request: Callable[..., Any]) -> tuple[Attempt, dict[str, float]]:
    """All three services healthy: the right tuple, in about the longest call; the attempt and latencies."""
    __tracebackhide__ = True
    expected_answer, expected_ids, expected_info = await _reference(QUESTION, DOC_ID)
    llm, store, meta = LLM(), PineconeStore(), MetadataStore()
    durations = {s.name: s.latency.seconds() for s in (llm, store, meta)}
    result = await attempt(handle_request, llm, store, meta, QUESTION, DOC_ID)
    expect_no_leaks(result)
    returned = result.result
    if inspect.iscoroutine(returned):
        close_coroutines([returned])
        fail("you returned a coroutine object, not the results: did you forget an `await`?")
    expect(isinstance(returned, tuple) and len(returned) == 3,
           f"return a tuple of three things, (answer, doc_ids, metadata); you returned {returned!r:.120}")
    forgotten = close_coroutines(returned)
    expect(not forgotten,
           f"your tuple holds coroutine objects ({', '.join(forgotten)}), not results: a call was never "
           "awaited. Pass the calls to asyncio.gather and await it.")
    answer, doc_ids, info = returned
    expect(answer == expected_answer,
           f"the answer should be what llm.complete(question) returns; you returned {answer!r:.120}")
    if isinstance(doc_ids, list) and doc_ids and not isinstance(doc_ids[0], str):
        fail(f"doc_ids should be the hits' ids, like {expected_ids!r}; you returned "
             f"{type(doc_ids[0]).__name__} objects: use [hit.id for hit in hits]")
    expect(list(doc_ids) == expected_ids if isinstance(doc_ids, (list, tuple)) else False,
           f"doc_ids should be the ids of the top-3 hits of store.search(question, k=3), {expected_ids!r}; "
           f"you returned {doc_ids!r:.120}")
    if info != expected_info:
        if isinstance(info, dict) and info.get("id") in expected_ids:
            fail(f"metadata is for {info.get('id')!r}, a search hit; fetch the document the user has open: "
                 f"meta.get(doc_id) with doc_id={DOC_ID!r}")
        fail(f"metadata should be what meta.get(doc_id) returns for {DOC_ID!r}; you returned {info!r:.120}")
    _expect_three_overlapping_calls(result, durations)
    return result, durations


# -- partial failure: the metadata is optional, the answer and the hits are not ----------------


@dataclass
class _Raised:
    """What the learner's function raised, kept as its result so the trace can still be read."""

    error: Exception


async def _outcome(handle_request: Callable[..., Any], *args: Any) -> Any:
    """Run the learner's function; an error it raises becomes a :class:`_Raised` result.

    The error is what one of the scenarios expects, so attempt() must not fail on it: the
    checker decides. NotImplementedError (the stub) still goes through as an error.
    """
    try:
        return await handle_request(*args)
    except NotImplementedError:
        raise
    except Exception as error:  # a ServiceError, an ExceptionGroup from a TaskGroup, or a bug
        return _Raised(error)


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def _from(error: BaseException, service: str) -> bool:
    """The error is (or a group holds) a ServiceError of ``service``."""
    return any(isinstance(leaf, ServiceError) and leaf.service == service for leaf in _leaves(error))


async def _expect_optional_metadata(handle_request: Callable[..., Any]) -> Attempt:
    """The metadata store fails: the answer and the hits, metadata None, still in ≈ the longest call."""
    __tracebackhide__ = True
    expected_answer, expected_ids, _ = await _reference(QUESTION, DOC_ID)
    llm, store, meta = LLM(), PineconeStore(), MetadataStore(faults=Faults(error_rate=1.0))
    durations = {s.name: s.latency.seconds() for s in (llm, store, meta)}
    result = await attempt(_outcome, handle_request, llm, store, meta, QUESTION, DOC_ID)
    returned = result.result
    if isinstance(returned, _Raised):
        inside = (" A TaskGroup cancels all its tasks when one fails, so the metadata's error must be caught "
                  "inside its own task" if isinstance(returned.error, BaseExceptionGroup) else "")
        fail(f"when the metadata store failed, your function raised {describe_error(returned.error)}. But the "
             f"metadata is optional: the request should still return the answer and the hits, with None as "
             f"metadata.{inside} Wrap that one call in a small coroutine that awaits it and returns None "
             "on ServiceError.")
    expect_no_leaks(result)
    expect(isinstance(returned, tuple) and len(returned) == 3,
           f"return a tuple of three things, (answer, doc_ids, metadata); with the metadata store down you "
           f"returned {returned!r:.120}")
    answer, doc_ids, info = returned
    if isinstance(info, BaseException):
        fail(f"with the metadata store down, your metadata is the error object itself ({describe_error(info)}): "
             "asyncio.gather(..., return_exceptions=True) puts errors among the results. Turn it into None: "
             "the caller asked for metadata, not for an exception.")
    expect(info is None, f"with the metadata store down, metadata should be None; you returned {info!r:.120}")
    expect(answer == expected_answer and list(doc_ids) == expected_ids,
           f"with the metadata store down, the answer and the doc ids should be the usual ones; you returned "
           f"{answer!r:.60} and {doc_ids!r:.80}")
    _expect_three_overlapping_calls(result, durations)
    return result


async def _expect_required_search(handle_request: Callable[..., Any]) -> Attempt:
    """The vector store fails: the search's error goes up at once, and the LLM call is cancelled."""
    __tracebackhide__ = True
    llm, store, meta = LLM(), PineconeStore(faults=Faults(error_rate=1.0)), MetadataStore()
    failed_at = store.latency.seconds()  # an injected failure comes after the call's latency
    result = await attempt(_outcome, handle_request, llm, store, meta, QUESTION, DOC_ID)
    returned = result.result
    if not isinstance(returned, _Raised):
        if isinstance(returned, tuple) and any(isinstance(part, BaseException) for part in returned):
            fail("when the vector store failed, your function returned its error as a value, not raised: "
                 f"{returned!r:.120}. Without hits there is no answer: raise the search's error (only the "
                 "metadata's error becomes None).")
        fail(f"when the vector store failed, your function returned {returned!r:.120} instead of failing. "
             "Without search hits there is no answer to give: let the search's error reach the caller, and "
             "catch only the metadata's.")
    error = returned.error
    if not _from(error, store.name):
        fail(f"when the vector store failed, your function raised {describe_error(error)}, but the error to "
             f"report is the search's ServiceUnavailable: raise it as it is (or inside the ExceptionGroup of a "
             "TaskGroup). Did you use a result that was an error object?")
    if result.leaked:
        names = ", ".join(task.get_coro().__qualname__ for task in result.leaked[:3])  # type: ignore[union-attr]
        fail(f"when the search failed at {failed_at:.2f} s, your function raised at once but left "
             f"{len(result.leaked)} call(s) running ({names}): asyncio.gather passes on the first error and "
             "does not stop the other calls, which go on (and are paid for) after the request has failed. "
             "Use `async with asyncio.TaskGroup() as tg:`: when one task fails, it cancels the others and "
             "waits for them.")
    answered = [span for span in result.trace.by_service(llm.name) if span.outcome == "ok"]
    if answered:
        fail(f"the search failed at {failed_at:.2f} s, but your function raised only at {result.elapsed:.2f} s: "
             f"it waited for the LLM's answer ({answered[0].duration:.2f} s) and then threw it away "
             "(asyncio.gather waits for every call, return_exceptions or not). Cancel the other calls as soon "
             "as a required one fails: a TaskGroup does it for you.")
    # Failing fast is proven above (the LLM call was cancelled, not answered). What is left to catch
    # is another wait after the failure; a bound halfway to the LLM's answer, plus timer slack, never
    # fails a right answer on a busy machine (stalls of 10-20 ms of wall time are 0.2-0.4 s here).
    answer_at = llm.latency.seconds()
    limit = failed_at + 0.5 * (answer_at - failed_at) + 2 * WALL_SLACK * get_speed()
    expect(result.elapsed <= limit,
           f"when the search failed, your request took {result.elapsed:.2f} s to fail instead of {failed_at:.2f} s "
           "(when the search failed): is something else waiting in your function?")
    return result


async def check_partial_failure(handle_request: Callable[..., Any]) -> None:
    """Grade ``handle_request(llm, store, meta, question, doc_id)`` when services fail.

    Three runs, fresh services each: all healthy → ``(answer, doc_ids, metadata)`` in about the
    longest call (1.2 s); the metadata store failing → ``(answer, doc_ids, None)``, still 1.2 s;
    the vector store failing → the search's error raised (alone, or inside a TaskGroup's
    ExceptionGroup) when the search fails (0.6 s), the LLM call cancelled, nothing left running.
    """
    __tracebackhide__ = True
    require_async(handle_request)
    healthy, durations = await _expect_healthy_request(handle_request)
    degraded = await _expect_optional_metadata(handle_request)
    failed = await _expect_required_search(handle_request)
    passed(f"handle_request survives a failing metadata store and fails fast without search hits: "
           f"healthy {healthy.elapsed:.2f} s, metadata down {degraded.elapsed:.2f} s (the longest call is "
           f"{max(durations.values()):.2f} s), search down: raised at {failed.elapsed:.2f} s with the LLM "
           "call cancelled.")


#: Request plans the predict_times checker measures: stages run one after another; the calls
#: inside a stage are independent and run concurrently.
PLANS: dict[str, list[list[float]]] = {
    "seed example (LLM, vector search, metadata, all independent)": [[1.2, 0.6, 0.3]],
    "RAG (search, then metadata + LLM with the retrieved context)": [[0.6], [0.3, 1.2]],
    "agent (weather, news, stock tools, then the LLM)": [[0.5, 0.8, 0.3], [1.2]],
}


def _exact(stages: list[list[float]]) -> tuple[float, float]:
    return sum(sum(stage) for stage in stages), sum(max(stage) for stage in stages)


async def _measure(stages: list[list[float]]) -> tuple[float, float]:
    """Run the plan for real: every call one after another, then stage by stage with gather."""
    with stopwatch() as one_by_one:
        for stage in stages:
            for seconds in stage:
                await sleep(seconds)
    with stopwatch() as staged:
        for stage in stages:
            await asyncio.gather(*(sleep(seconds) for seconds in stage))
    return one_by_one.elapsed, staged.elapsed


def _predict(predict_times: Callable[..., Any], name: str, stages: list[list[float]]) -> tuple[float, float]:
    __tracebackhide__ = True
    problem = ""
    try:
        predicted = predict_times([list(stage) for stage in stages])
    except NotImplementedError:
        problem = "not done yet: replace `raise NotImplementedError` in the exercise cell with your code"
    except Exception as exc:
        problem = f"predict_times raised {type(exc).__name__}: {exc} (for the {name} plan {stages})"
    if problem:
        fail(problem)  # outside the except block: the learner sees the hint, not a chained traceback
    if inspect.iscoroutine(predicted):
        predicted.close()
        fail("predict_times is pure arithmetic: write it with plain `def`, not `async def`")
    ok = (isinstance(predicted, tuple) and len(predicted) == 2
          and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in predicted))
    expect(ok, f"return a tuple of two numbers (t_sync, t_async); you returned {predicted!r:.120}")
    return float(predicted[0]), float(predicted[1])


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


async def check_predict_times(predict_times: Callable[..., Any]) -> None:
    """Grade ``predict_times(stages) -> (t_sync, t_async)`` on three plans, then measure them.

    A prediction is graded against the model (Σ of all calls; Σ over stages of the slowest
    call), and shown next to a real measurement of the same plan.
    """
    __tracebackhide__ = True
    if not callable(predict_times):
        close_coroutines([predict_times])
        fail(f"pass your function itself, check_predict_times(predict_times), not what a call of it returned "
             f"({type(predict_times).__name__} {predict_times!r:.60}): drop the parentheses.")
    predictions = {}
    for name, stages in PLANS.items():
        predictions[name] = _predict(predict_times, name, stages)
    for name, stages in PLANS.items():
        t_sync, t_async = predictions[name]
        want_sync, want_async = _exact(stages)
        everything = [seconds for stage in stages for seconds in stage]
        if not _same(t_sync, want_sync):
            fail(f"{name} {stages}: you predicted T_sync = {t_sync:.2f} s. One after another, every call "
                 f"waits for the one before, so every latency adds up: Σ of all calls.")
        if _same(t_async, max(everything)) and len(stages) > 1:
            fail(f"{name} {stages}: you predicted T_async = {t_async:.2f} s, the slowest call overall. But a "
                 "stage needs the results of the stage before it, so stages still run one after another: "
                 "T_async = Σ over stages of each stage's slowest call.")
        if _same(t_async, want_sync):
            fail(f"{name} {stages}: you predicted T_async = {t_async:.2f} s, the sequential time. Calls "
                 "inside a stage are independent and run at the same time: a stage takes its slowest call.")
        if not _same(t_async, want_async):
            fail(f"{name} {stages}: you predicted T_async = {t_async:.2f} s. Run concurrently, each stage "
                 "takes as long as its slowest call, and the stages follow each other.")
    print(f"{'plan':<62}{'T_sync':>16}{'T_async':>16}")
    print(f"{'':<62}{'pred. / meas.':>16}{'pred. / meas.':>16}")
    for name, stages in PLANS.items():
        measured_sync, measured_async = await _measure(stages)
        t_sync, t_async = predictions[name]
        print(f"{name:<62}{t_sync:>7.2f} /{measured_sync:>5.2f} s{t_async:>7.2f} /{measured_async:>5.2f} s")
    passed("predict_times matches the model and the measurements: Σ one after another; with "
           "concurrency, the slowest call of each stage, stage after stage.")
