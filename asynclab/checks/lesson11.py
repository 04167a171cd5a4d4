"""Checkers for notebook 11 · Failure handling.

    from asynclab.checks import lesson11
    await lesson11.check_retry(retry)            # backoff with full jitter, Retry-After, what not to retry
    await lesson11.check_answer_by(answer_by)    # partial results by a deadline, nothing left running

Each checker makes its own services with faults it knows (a fixed number of failures, a rate
limit, a hang), runs the learner's function in a trace, and grades it from the spans: how many
attempts each request made, how long it waited between them, what it did with a cancellation.

Introduced in notebook 11.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from asynclab.checks import (
    Attempt,
    attempt,
    close_coroutines,
    describe_error,
    expect,
    expect_no_leaks,
    fail,
    passed,
    require_async,
    within,
)
from asynclab.clock import WALL_SLACK, get_speed, now, sleep, timeout
from asynclab.faults import Faults, NotFound, RateLimit, RateLimited, ServiceUnavailable
from asynclab.latency import Fixed
from asynclab.services import LLM, MetadataStore, PgVectorStore, PineconeStore, RedisStore, VectorStore
from asynclab.services.llm import run_model
from asynclab.tracing import Span, current_trace

__all__ = ["ANSWER_QUERY", "FLAKY", "check_answer_by", "check_retry", "full_jitter_bound"]

Call = Callable[[], Awaitable[Any]]

# -- check_retry ---------------------------------------------------------------------------------

#: The flaky scenario: every request fails 3 times (ServiceUnavailable), then works. With
#: base=1 and cap=3 the waits are drawn from [0, 1], [0, 2], [0, 3]: wide next to the timer
#: slack (0.16 s at speed 20), so jitter, its bounds and a wrong exponent are told apart.
FLAKY = {"attempts": 5, "base": 1.0, "cap": 3.0}
FLAKY_FAILURES = 3
#: Eight requests at once: 24 waits. A correct full-jitter answer puts all of them above half
#: their bound with probability 2⁻²⁴, so "never below half the bound" is a safe verdict.
FLAKY_PROMPTS = tuple(f"Ticket {i}: the model timed out again" for i in range(1, 9))
#: The rate-limited scenario: the checker spends the one call the window allows, so the
#: learner's first call is told to retry after ~1.8 s, far beyond the jittered backoff (≤ 0.4 s).
LIMITED = {"attempts": 4, "base": 0.2, "cap": 0.4}
LIMIT_WINDOW = 2.0
#: The other scenarios: few attempts, short waits.
SHORT = {"attempts": 3, "base": 0.2, "cap": 0.4}
CALL_LATENCY = 0.2
PROMPT = "Why do retries need jitter?"
#: Simulated seconds the checker waits before cancelling the hung call, then for it to end.
CANCEL_AFTER = 0.5
CANCEL_WAIT = 1.0


def full_jitter_bound(retry: int, base: float, cap: float) -> float:
    """The largest wait before retry number ``retry`` (1 = the first retry): min(cap, base·2^(retry-1))."""
    return min(cap, base * 2.0 ** (retry - 1))


def _slack() -> float:
    """Simulated seconds a wait may run over: twice the timer lateness :func:`within` forgives."""
    return 2 * WALL_SLACK * get_speed()


async def _outcome(function: Callable[..., Awaitable[Any]], call: Call, options: dict[str, Any]) -> tuple[str, Any]:
    """Run the learner's retry once: ("returned", value) or ("raised", error). Cancellation passes."""
    try:
        return "returned", await function(call, **options)
    except NotImplementedError:
        raise  # the stub: attempt() says "not done yet"
    except Exception as error:  # the learner's error is a result to grade, not the checker's failure
        return "raised", error


async def _many(function: Callable[..., Awaitable[Any]], calls: list[Call], options: dict[str, Any]) -> list[Any]:
    return list(await asyncio.gather(*(_outcome(function, call, options) for call in calls)))


def _classify(llm: LLM, prompt: str) -> Call:
    """A call the learner's retry can make again and again: each call makes a new coroutine."""
    return lambda: llm.complete(prompt, model="classifier")


def _search(store: VectorStore) -> Call:
    return lambda: store.search(ANSWER_QUERY)


def _attempts(spans: list[Span], key: str) -> list[Span]:
    return sorted((span for span in spans if span.key == key), key=lambda span: span.queued)


def _expect_raised(outcome: tuple[str, Any], kind: type[BaseException], what: str) -> None:
    """The learner's retry ended by raising ``kind`` (the service's own error)."""
    __tracebackhide__ = True
    how, value = outcome
    if how == "returned":
        fail(f"{what}, but your retry returned {value!r:.60} instead of raising: after the last attempt, "
             "raise the last error (a bare `raise` in the except block), so the caller knows it failed.")
    if type(value).__name__ == "RetryError":
        fail(f"{what}, but your retry raised tenacity's RetryError: pass reraise=True to AsyncRetrying, "
             "so the caller gets the service's own error.")
    expect(isinstance(value, kind),
           f"{what}: your retry should raise the {kind.__name__} it got, but raised {describe_error(value)}")


async def _check_flaky(function: Callable[..., Awaitable[Any]]) -> str:
    __tracebackhide__ = True
    llm = LLM(latency=Fixed(CALL_LATENCY), faults=Faults(fail_first=FLAKY_FAILURES))
    calls = [_classify(llm, prompt) for prompt in FLAKY_PROMPTS]
    # Worst case: 4 calls and waits of 1 + 2 + 3 s; 60 s leaves room for a wrong answer to show itself.
    result = await attempt(_many, function, calls, FLAKY, timeout=60.0)
    expect_no_leaks(result)
    spans = result.trace.spans
    for prompt, (how, value) in zip(FLAKY_PROMPTS, result.result, strict=True):
        tries = _attempts(spans, f"classifier:{prompt}")
        succeeded = [span for span in tries if span.outcome == "ok"]
        if succeeded and tries[-1] is not succeeded[0]:
            fail(f"a call succeeded (attempt {succeeded[0].attempt}), but your retry called again afterwards: "
                 "stop retrying as soon as a call succeeds, and return its answer.")
        if how == "raised":
            if len(tries) <= 1:
                fail(f"your retry raised {describe_error(value)} without retrying: ServiceUnavailable (503) is "
                     "transient, the next attempt may work. Catch it and try again.")
            fail(f"your retry gave up after {len(tries)} attempts with {describe_error(value)}, but attempts="
                 f"{FLAKY['attempts']} allows {FLAKY['attempts']}: the service answers on attempt "
                 f"{FLAKY_FAILURES + 1}. Count every call, the first included.")
        if inspect.iscoroutine(value):
            close_coroutines(value for _, value in result.result)
            fail("your retry returned a coroutine object: the call's coroutine was never awaited. `call()` makes a "
                 "new coroutine each time; `await call()` runs it. (tenacity's `await AsyncRetrying(...)(call)` "
                 "awaits only `async def` functions: with a lambda, use `async for attempt in AsyncRetrying(...): "
                 "with attempt: return await call()`.)")
        expect(value == run_model("classifier", prompt),
               f"your retry returned {value!r:.60}; it should return what the call returned on the attempt that "
               f"worked ({run_model('classifier', prompt)!r}).")
        expect(len(tries) == FLAKY_FAILURES + 1,
               f"a request that fails {FLAKY_FAILURES} times and then works takes {FLAKY_FAILURES + 1} calls; "
               f"yours made {len(tries)}. Stop retrying as soon as a call succeeds.")
    base, cap, slack = FLAKY["base"], FLAKY["cap"], _slack()
    gaps: list[tuple[int, float, float]] = []  # (retry number, wait, bound)
    for prompt in FLAKY_PROMPTS:
        tries = _attempts(spans, f"classifier:{prompt}")
        for retry, (before, after) in enumerate(itertools.pairwise(tries), start=1):
            assert before.end is not None
            gaps.append((retry, after.queued - before.end, full_jitter_bound(retry, base, cap)))
    over = [(retry, wait, bound) for retry, wait, bound in gaps if wait > bound + slack]
    if any(wait > 2 * cap + slack for _, wait, _ in over):
        longest = max(wait for _, wait, _ in over)
        fail(f"you waited up to {longest:.2f} s between attempts, but full jitter waits at most cap = {cap:g} s: did "
             "you call asyncio.sleep (wall seconds) instead of asynclab.sleep (simulated seconds)?")
    for retry, wait, bound in over:
        doubled = " (twice the bound: is your exponent one too high? the first retry waits up to base)" if (
            wait <= 2 * bound + slack) else ""
        fail(f"you waited {wait:.2f} s before retry {retry}, but full jitter waits at most min(cap, base·2^"
             f"(retry-1)) = min({cap:g}, {base:g}·2^{retry - 1}) = {bound:g} s{doubled}.")
    share = [wait / bound for _, wait, bound in gaps]
    if all(bound - wait <= slack for _, wait, bound in gaps):
        fail("every wait was the whole bound (base·2^(retry-1)): that is exponential backoff without jitter, and "
             "clients that failed together retry together. Draw each wait at random: "
             "random.uniform(0, min(cap, base * 2 ** (retry - 1))).")
    if max(share) < 0.15:
        fail(f"your retries came almost at once (the longest wait was {max(share):.0%} of its bound): back off. "
             "Wait random.uniform(0, min(cap, base * 2 ** (retry - 1))) with asynclab.sleep before each retry.")
    # 0.45, not 0.5: a timer aimed early may wake an equal-jitter wait a hair below half its bound.
    if min(share) >= 0.45:
        fail(f"your {len(gaps)} waits never went below half their bound: that is 'equal jitter' or a fixed "
             "share, not full jitter. Full jitter draws from the whole range: random.uniform(0, bound).")
    return f"{len(gaps)} waits within min(cap, base·2^(retry-1)), {sum(share) / len(share):.0%} of the bound on average"


async def _check_budget(function: Callable[..., Awaitable[Any]]) -> str:
    __tracebackhide__ = True
    llm = LLM(latency=Fixed(CALL_LATENCY), faults=Faults(fail_first=10))
    result = await attempt(_outcome, function, lambda: llm.complete(PROMPT, model="classifier"), SHORT, timeout=30.0)
    expect_no_leaks(result)
    tries = _attempts(result.trace.spans, f"classifier:{PROMPT}")
    expect(len(tries) == SHORT["attempts"],
           f"attempts={SHORT['attempts']} means {SHORT['attempts']} calls in all (the first and "
           f"{SHORT['attempts'] - 1} retries), but yours made {len(tries)} on a service that keeps failing.")
    _expect_raised(result.result, ServiceUnavailable, f"a call that fails {SHORT['attempts']} times in a row")
    return f"gave up after {SHORT['attempts']} attempts with the service's error"


async def _check_retry_after(function: Callable[..., Awaitable[Any]]) -> str:
    __tracebackhide__ = True
    llm = LLM(latency=Fixed(CALL_LATENCY), faults=Faults(rate_limit=RateLimit(1, per=LIMIT_WINDOW)))
    await llm.complete("The call that fills the window", model="classifier")  # outside the learner's trace
    told: list[tuple[float, float]] = []  # (when, retry_after) of each 429 the learner got

    async def call() -> str:
        try:
            return await llm.complete(PROMPT, model="classifier")
        except RateLimited as error:
            told.append((now(), error.retry_after))
            raise

    options = {**LIMITED, "idempotent": False}
    result = await attempt(_outcome, function, call, options, timeout=60.0)
    expect_no_leaks(result)
    how, value = result.result
    tries = _attempts(result.trace.spans, f"classifier:{PROMPT}")
    if how == "raised" and len(tries) == 1 and isinstance(value, RateLimited):
        fail("your retry gave up on a RateLimited (429) because the call is not idempotent. A 429 is refused "
             "before any work is done, so retrying it is safe for every call: retry RateLimited even when "
             "idempotent=False.")
    slack = _slack()
    for (when, retry_after), after in zip(told, tries[1:], strict=False):
        waited = after.queued - when
        if waited < retry_after - slack:
            fail(f"you retried {waited:.2f} s after a RateLimited that said retry_after={retry_after:.2f} s: the "
                 "service refuses calls until then. Wait at least error.retry_after (then add your jittered "
                 "backoff, so clients told the same time do not come back together).")
        if waited > retry_after + LIMITED["cap"] + slack:
            fail(f"you waited {waited:.2f} s after a RateLimited with retry_after={retry_after:.2f} s: wait "
                 f"retry_after plus at most the jittered backoff ({LIMITED['cap']:g} s here), not more.")
    if how == "raised":
        fail(f"a rate-limited call should work once its window frees, but your retry raised "
             f"{describe_error(value)} after {len(tries)} attempts. Wait error.retry_after before retrying.")
    expect(value == run_model("classifier", PROMPT),
           f"your retry returned {value!r:.60} for the rate-limited call; it should return the call's answer.")
    first = told[0][1] if told else 0.0
    return f"Retry-After {first:.2f} s honoured"


async def _check_not_retried(function: Callable[..., Awaitable[Any]]) -> str:
    __tracebackhide__ = True
    store = MetadataStore(latency=Fixed(CALL_LATENCY))
    result = await attempt(_outcome, function, lambda: store.get("doc-999"), SHORT, timeout=30.0)
    expect_no_leaks(result)
    tries = _attempts(result.trace.spans, "doc-999")
    if len(tries) > 1:
        fail(f"you retried a NotFound (404) {len(tries) - 1} time(s): asking again for a document that does not "
             "exist gives the same answer. Retry only errors that may pass: ServiceUnavailable, RateLimited, "
             "TimeoutError.")
    _expect_raised(result.result, NotFound, "metadata.get('doc-999') raises NotFound")

    calls = 0

    async def bad_request() -> str:
        nonlocal calls
        calls += 1
        raise ValueError("prompt must be a non-empty str")

    result = await attempt(_outcome, function, bad_request, SHORT, timeout=30.0)
    if calls > 1:
        fail(f"you called a function that raised ValueError {calls} times: a bug in the request is not "
             "transient. Catch only the errors worth retrying, not `Exception`.")
    _expect_raised(result.result, ValueError, "a call that raises ValueError")

    llm = LLM(latency=Fixed(CALL_LATENCY), faults=Faults(fail_first=1))
    options = {**SHORT, "idempotent": False}
    result = await attempt(_outcome, function, lambda: llm.complete(PROMPT), options, timeout=30.0)
    tries = _attempts(result.trace.spans, f"assistant:{PROMPT}")
    if len(tries) > 1:
        fail("you retried a call with idempotent=False after a ServiceUnavailable: the first attempt may have done "
             "its work before the answer was lost, so a retry could do it twice (two emails, two charges). "
             "Without idempotency, retry only RateLimited.")
    _expect_raised(result.result, ServiceUnavailable, "a non-idempotent call that fails with ServiceUnavailable")

    return "NotFound, ValueError and a non-idempotent 503 not retried"


async def _cancel_midway(function: Callable[..., Awaitable[Any]], call: Call) -> tuple[str, str]:
    """Start the learner's retry on a hung call, cancel it, and say how it ended."""
    task: asyncio.Future[Any] = asyncio.ensure_future(function(call, **SHORT))
    await sleep(CANCEL_AFTER)
    if task.done():
        error = None if task.cancelled() else task.exception()
        return "ended early", describe_error(error) if error is not None else "a return value"
    task.cancel()
    try:
        async with timeout(CANCEL_WAIT):
            await asyncio.wait({task})  # waits without cancelling the task when the timeout ends it
    except TimeoutError:
        pass
    if not task.done():
        for _ in range(20):  # an answer that swallows every cancel: keep asking, each attempt ends it once
            task.cancel()
            await asyncio.wait({task}, timeout=0.05)
            if task.done():
                break
        return "swallowed", ""
    if task.cancelled():
        return "cancelled", ""
    if task.exception() is not None:
        return "turned", describe_error(task.exception())  # type: ignore[arg-type]
    return "turned", f"a return value {task.result()!r:.60}"


async def _check_cancellation(function: Callable[..., Awaitable[Any]]) -> str:
    __tracebackhide__ = True
    llm = LLM(latency=Fixed(CALL_LATENCY), faults=Faults(hang_rate=1.0))
    result = await attempt(_cancel_midway, function, lambda: llm.complete(PROMPT), timeout=60.0)
    how, detail = result.result
    tries = _attempts(result.trace.spans, f"assistant:{PROMPT}")
    if how == "ended early":
        fail(f"the call hangs until it is cancelled, but your retry ended by itself with {detail}: do not time out "
             "or give up on your own here; just let the caller's cancellation through.")
    if how == "swallowed" or len(tries) > 1:
        fail(f"your retry ignored cancellation: it was cancelled during attempt 1 and went on to attempt "
             f"{max(len(tries), 2)}. An `except` caught asyncio.CancelledError (a bare `except:` or `except "
             "BaseException`) and retried it. Catch only the retryable errors; CancelledError must propagate "
             "(`except Exception` does not catch it since Python 3.8).")
    if how == "turned":
        fail(f"your retry turned its cancellation into {detail}: whoever cancelled it (a timeout, a TaskGroup) "
             "waits for CancelledError. Let it propagate, or re-raise it after your cleanup.")
    expect(len(tries) == 1 and tries[0].outcome == "cancelled",
           f"the hung call should end 'cancelled' when your retry is cancelled; its span says {tries[0].outcome!r}")
    return "cancellation propagated"


async def check_retry(function: Callable[..., Awaitable[Any]]) -> None:
    """``retry(call, *, attempts, base, cap, idempotent=True)``: full-jitter backoff, Retry-After, no wrong retries."""
    __tracebackhide__ = True
    require_async(function)
    flaky = await _check_flaky(function)
    budget = await _check_budget(function)
    limited = await _check_retry_after(function)
    not_retried = await _check_not_retried(function)
    cancelled = await _check_cancellation(function)
    passed(f"retry: {FLAKY_FAILURES} failures then an answer in {FLAKY_FAILURES + 1} calls; {flaky}; {limited}; "
           f"{budget}; {not_retried}; {cancelled}.")


# -- check_answer_by -----------------------------------------------------------------------------

ANSWER_QUERY = "How do retries with backoff work?"
#: The deadline of the first scenario and what each source does within it.
DEADLINE = 1.5
#: The second scenario: every source answers by 0.8 s, well before its 3 s deadline.
EARLY_DEADLINE = 3.0


def _sources() -> dict[str, VectorStore]:
    """Five sources: two answer in time, one fails, one is late, one never answers."""
    return {
        "redis": RedisStore(latency=Fixed(0.3)),
        "pgvector": PgVectorStore(latency=Fixed(0.8)),
        "pinecone": PineconeStore(latency=Fixed(0.5), faults=Faults(error_rate=1.0)),
        "web": VectorStore(name="web", latency=Fixed(2.5)),
        "archive": VectorStore(name="archive", latency=Fixed(0.4), faults=Faults(hang_rate=1.0)),
    }


async def _answer_at_return(
    function: Callable[..., Awaitable[Any]], calls: dict[str, Call], seconds: float
) -> tuple[str, Any, dict[int, str]]:
    """The learner's answer, and each span's outcome the moment it returned (same task step)."""
    try:
        value: Any = await function(calls, seconds)
        how = "returned"
    except NotImplementedError:
        raise  # the stub: attempt() says "not done yet"
    except Exception as error:  # graded below with a hint of its own
        how, value = "raised", error
    recorded = current_trace()
    outcomes = {id(span): span.outcome for span in recorded.spans} if recorded is not None else {}
    return how, value, outcomes


def _ids(hits: Any) -> Any:
    try:
        return [hit.id for hit in hits]
    except (TypeError, AttributeError):
        return hits


async def _run_answer_by(
    function: Callable[..., Awaitable[Any]], stores: dict[str, VectorStore], seconds: float
) -> tuple[Attempt, Any]:
    calls = {name: _search(store) for name, store in stores.items()}
    result = await attempt(_answer_at_return, function, calls, seconds, timeout=30.0)
    how, value, outcomes = result.result
    where = f"answer_by(calls, {seconds:g})"
    if how == "raised":
        if isinstance(value, TimeoutError):
            fail(f"{where} raised TimeoutError: the deadline is not an error here. Catch it (`except TimeoutError:`) "
                 "and return the answers that arrived.")
        if isinstance(value, (ServiceUnavailable, BaseExceptionGroup)):
            fail(f"{where} raised {describe_error(value)}: one failing source sank the whole answer (and a "
                 "TaskGroup cancels the others when one fails). Catch each source's error inside its own task and "
                 "leave that source out.")
        fail(f"{where} raised {describe_error(value)}")
    expect(isinstance(value, dict), f"{where} should return a dict {{name: answer}}; it returned "
                                    f"{type(value).__name__} {value!r:.80}")
    running = [span.service for span in result.trace.spans if outcomes.get(id(span), span.outcome) == "running"]
    if running or result.leaked:
        names = ", ".join(sorted(set(running))) or "some calls"
        fail(f"{where} returned while {names} were still running: calls that missed the deadline must be "
             "cancelled, or they keep working (and costing) for nobody. A TaskGroup inside asynclab.timeout "
             "cancels them for you.")
    expect_no_leaks(result)
    return result, value


async def check_answer_by(function: Callable[..., Awaitable[Any]]) -> None:
    """``answer_by(calls, seconds)``: the answers in by ``seconds``, failures left out, nothing left running."""
    __tracebackhide__ = True
    require_async(function)
    stores = _sources()
    expected = {name: [doc.id for doc, _ in stores[name].nearest(ANSWER_QUERY)] for name in ("redis", "pgvector")}
    result, value = await _run_answer_by(function, stores, DEADLINE)
    where = f"answer_by(calls, {DEADLINE:g})"
    expect(bool(result.trace.spans),
           f"{where} made no call: calls[name]() makes each source's coroutine; await it (in a task per source).")
    if result.trace.max_concurrency() <= 1:
        fail(f"{where} called the sources one after another ({result.elapsed:.2f} s): start them all at once "
             "(a task per source), so each gets the whole deadline.")
    if result.elapsed > DEADLINE and not within(result.elapsed, DEADLINE):
        fail(f"{where} answered after {result.elapsed:.2f} s, past its deadline of {DEADLINE:g} s: stop waiting at "
             "the deadline (`async with asynclab.timeout(seconds):` around the waiting).")
    if not value:
        fail(f"{where} returned {value!r}, but redis and pgvector answered in time (0.3 s and 0.8 s): keep each "
             "answer as it arrives (a task that stores its result), so a deadline does not throw away the answers "
             "you already have. gather() inside a timeout loses them all.")
    for name in ("pinecone", "web", "archive"):
        why = "failed" if name == "pinecone" else "had not answered by the deadline"
        expect(name not in value, f"{where} has an entry for {name!r}, which {why}: leave it out "
                                  f"(got {value.get(name)!r:.60}).")
    for name, ids in expected.items():
        expect(name in value, f"{where} has no answer from {name!r}, which answered in time: {sorted(value)} only.")
        expect(_ids(value[name]) == ids,
               f"{where}[{name!r}] should be what the call returned (documents {ids}); got {value[name]!r:.80}")
    expect(within(result.elapsed, DEADLINE),
           f"{where} took {result.elapsed:.2f} s: the slow sources should be cut at the deadline, {DEADLINE:g} s.")
    late = sorted(span.service for span in result.trace.spans if span.outcome == "cancelled")

    early = {name: store for name, store in _sources().items() if name in ("redis", "pgvector")}
    result, value = await _run_answer_by(function, early, EARLY_DEADLINE)
    where = f"answer_by(calls, {EARLY_DEADLINE:g})"
    expect(isinstance(value, dict) and sorted(value) == ["pgvector", "redis"],
           f"{where} with two sources that both answer should return both; got {value!r:.80}")
    longest = 0.8
    if within(result.elapsed, EARLY_DEADLINE):
        fail(f"{where} waited until the deadline ({result.elapsed:.2f} s) although every source had answered by "
             f"{longest:g} s: return as soon as all are done (a TaskGroup ends when its last task does).")
    expect(within(result.elapsed, longest),
           f"{where} took {result.elapsed:.2f} s; with every source done at {longest:g} s it should take about that.")
    passed(f"answer_by: by the {DEADLINE:g} s deadline {sorted(expected)} answered, pinecone failed and was left "
           f"out, {', '.join(late)} were cancelled at the deadline; with every source in time it answered at "
           f"{result.elapsed:.2f} s, not at {EARLY_DEADLINE:g} s.")
