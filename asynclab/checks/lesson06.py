"""Checkers for notebook 06 · Parallel tools in agents.

    from asynclab.checks import lesson06
    await lesson06.check_dispatch(dispatch)
    await lesson06.check_run_tools_within(run_tools_within)

Each checker builds its own registry of tools (healthy ones, one that is down, one that hangs,
one that is slow) and the tool calls an LLM would return (:class:`~asynclab.chat.ToolCall`,
arguments as JSON text, some of them wrong on purpose), runs the learner's function in a trace,
and grades the tool messages it returns (one per call, in call order, results as JSON, errors
the model can read) *and* the timing (all calls at once, nothing left running). A message "the
model can read as an error" is judged by the same rule the simulated model uses
(:func:`asynclab.intents.error_of`), so what passes here is what ``llm.chat`` acknowledges.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from asynclab.chat import ToolCall, prepare
from asynclab.checks import (
    Attempt,
    attempt,
    describe_error,
    expect,
    fail,
    passed,
    require_async,
    within,
)
from asynclab.clock import get_speed, now, timeout
from asynclab.faults import Faults, ServiceError
from asynclab.intents import error_of
from asynclab.messages import InvalidRequest
from asynclab.services.llm import run_model
from asynclab.services.tools import TOOL_LATENCY, Tools
from asynclab.timeline import span_label
from asynclab.tracing import current_trace

__all__ = ["check_dispatch", "check_run_tools_within"]

#: What the user asked, for the conversation the checkers rebuild around the learner's messages.
QUESTION = "What's the news on AI chips, the weather in Delhi, and AAPL's stock price?"
#: run_tools_within: the deadline of the main case, and a long one for the case where all answer.
DEADLINE = 1.0
HEALTHY_DEADLINE = 2.0
#: The slow forecast tool of run_tools_within: answers, but long after the deadline.
SLOW_FORECAST = 2.0


@dataclass(frozen=True)
class _Case:
    """One tool call of a checker's scenario and what should become of it."""

    call: ToolCall
    fate: str  # "ok", "failed", "unknown", "bad_json", "bad_args", "late"
    expected: Any = None  # the tool's result, for "ok"

    @property
    def what(self) -> str:
        return f"call {self.call.id!r} ({self.call.name} {self.call.arguments})"


def _registry(*, down: bool = True, late: bool = False) -> dict[str, Callable[..., Awaitable[Any]]]:
    """The checkers' tools: fresh services, so every run is every request's first attempt.

    down: the stock tool fails (a 503 after its 0.3 s). late: two more tools, a slow forecast
    (answers after 2 s) and headlines that never answer.
    """
    ok = Tools()
    stock = Tools(faults=Faults(error_rate=1.0)) if down else ok
    registry: dict[str, Callable[..., Awaitable[Any]]] = {
        "get_weather": ok.weather, "get_news": ok.news, "get_stock_price": stock.stock_price,
    }
    if late:
        registry["get_forecast"] = Tools(latency={"weather": SLOW_FORECAST}).weather
        registry["get_headlines"] = Tools(faults=Faults(hang_rate=1.0)).news
    return registry


async def _expected(name: str, arguments: dict[str, Any]) -> Any:
    """What a tool returns for these arguments (its data is deterministic), without its latency."""
    instant = Tools(latency=0.0)
    methods: dict[str, Callable[..., Awaitable[Any]]] = {
        "get_weather": instant.weather, "get_news": instant.news, "get_stock_price": instant.stock_price,
    }
    method = methods[name]
    return await method(**arguments)


async def _case(id_: str, name: str, arguments: str, fate: str) -> _Case:
    expected = await _expected(name, json.loads(arguments)) if fate == "ok" else None
    return _Case(ToolCall(id_, name, arguments), fate, expected)


async def _dispatch_cases() -> list[_Case]:
    return [
        await _case("call_1", "get_news", '{"topic": "AI chips"}', "ok"),  # 0.8 s: finishes last
        await _case("call_2", "get_weather", '{"city": "Delhi"}', "ok"),  # 0.5 s
        await _case("call_3", "get_stock_price", '{"symbol": "AAPL"}', "failed"),  # a 503 at 0.3 s
        await _case("call_4", "get_horoscope", '{"sign": "Leo"}', "unknown"),  # no such tool
        await _case("call_5", "get_weather", '{"city": "Tokyo"', "bad_json"),  # cut short
        await _case("call_6", "get_weather", '{"town": "Oslo"}', "bad_args"),  # no parameter 'town'
    ]


async def _within_cases() -> list[_Case]:
    return [
        await _case("call_1", "get_news", '{"topic": "AI chips"}', "ok"),  # 0.8 s
        await _case("call_2", "get_forecast", '{"city": "Lisbon"}', "late"),  # 2.0 s: after the deadline
        await _case("call_3", "get_weather", '{"city": "Delhi"}', "ok"),  # 0.5 s
        await _case("call_4", "get_stock_price", '{"symbol": "AAPL"}', "failed"),  # a 503 at 0.3 s
        await _case("call_5", "get_headlines", '{"topic": "GPUs"}', "late"),  # hangs
    ]


async def _healthy_cases() -> list[_Case]:
    return [
        await _case("call_1", "get_news", '{"topic": "AI chips"}', "ok"),
        await _case("call_2", "get_weather", '{"city": "Delhi"}', "ok"),
        await _case("call_3", "get_stock_price", '{"symbol": "AAPL"}', "ok"),
    ]


# -- running the learner's function ---------------------------------------------------------------


@dataclass
class _Outcome:
    """What the learner's function did: returned a value or raised, and which calls ran on after it.

    stuck: the guard (simulated seconds) after which the function was still waiting, or None.
    took: simulated seconds from the call to the return (or the error).
    """

    value: Any = None
    error: Exception | None = None
    running: tuple[str, ...] = ()
    stuck: float | None = None
    took: float = 0.0


async def _run(function: Callable[..., Awaitable[Any]], *args: Any, deadline: float | None = None) -> _Outcome:
    """Call the learner's function; keep an error as a value, so the checker can name its cause.

    With a ``deadline``, a guard stops a function that waits far past it (a hanging tool with no
    timeout). At speed s, ``asyncio.timeout(deadline)`` waits ``deadline`` *wall* seconds, that is
    s × deadline simulated: the guard waits a little past that, so that mistake can be told from
    having no timeout at all.
    """
    outcome = _Outcome()
    speed = get_speed()
    guard = None if deadline is None else (3 * deadline if speed <= 1.5 else 1.5 * speed * deadline)
    started = now()
    try:
        async with timeout(guard) as scope:
            outcome.value = await function(*args)
    except NotImplementedError:
        raise  # the stub: attempt() says "not done yet"
    except Exception as exc:  # a CancelledError is not caught: attempt() reports it
        if isinstance(exc, TimeoutError) and scope.expired():
            outcome.stuck = guard
        else:
            outcome.error = exc
    outcome.took = now() - started
    # In the same step as the return: which service calls were still in progress.
    recorded = current_trace()
    if recorded is not None:
        outcome.running = tuple(span_label(s) for s in recorded.spans if s.outcome == "running")
    return outcome


def _expect_on_time(outcome: _Outcome, deadline: float, name: str) -> None:
    """Fail a function that waited for a hanging tool, or counted its deadline in wall seconds."""
    __tracebackhide__ = True
    if outcome.stuck is not None:
        fail(f"{name} was still waiting after {outcome.stuck:g} s, though the deadline is {deadline:g} s: the "
             "hanging tool never answers, and gather (even with return_exceptions=True) waits for it forever. "
             "Give each call the deadline: `async with asynclab.timeout(deadline):` around the one call.")
    speed = get_speed()
    if speed > 1.5 and within(outcome.took, speed * deadline, rel=0.2):
        fail(f"{name} gave up after {outcome.took:.1f} simulated seconds, not {deadline:g}: at speed {speed:g} that "
             f"is {deadline:g} wall seconds. asyncio.timeout and asyncio.wait count wall seconds; "
             "asynclab.timeout(deadline) and asynclab.wait_for count simulated ones, like the tools.")


def _raised_hint(error: Exception, cases: list[_Case], name: str) -> str:
    """Why the learner's function raised, in terms of the scenario's calls."""
    by_fate = {case.fate: case for case in cases}
    what = describe_error(error)
    if isinstance(error, BaseExceptionGroup):
        return (f"{name} raised {what}. A TaskGroup cancels all its calls when one fails: catch each call's "
                "errors inside its own task (a small `async def` that returns the tool message either way), "
                "so the task ends with an error value and the other calls keep their results.")
    if isinstance(error, TimeoutError):
        arrived = ", ".join(case.call.name for case in cases if case.fate == "ok")
        return (f"{name} raised TimeoutError at the deadline, so the results that had arrived ({arrived}) were "
                "lost with it. Put the deadline on each call, inside its own task (`async with "
                "timeout(...)` around the one call): a late call becomes an error message, the others keep "
                "their results.")
    if isinstance(error, ServiceError) and "failed" in by_fate:
        return (f"{by_fate['failed'].what} failed ({what}), and {name} raised it: one failing tool must not sink "
                "the whole turn. Catch its error and return it as the call's message, e.g. "
                "{\"error\": \"ServiceUnavailable: …\"}; asyncio.gather without return_exceptions passes the "
                "first error on, and leaves the other calls running.")
    if isinstance(error, KeyError) and "unknown" in by_fate:
        case = by_fate["unknown"]
        return (f"{case.what} names a tool that is not in the registry, and {name} raised {what}. Models do "
                "invent tool names: answer that call with an error value that names the tool (and the tools "
                f"there are), e.g. {{\"error\": \"unknown tool '{case.call.name}'; available: get_weather, …\"}}, "
                "so the model can correct itself.")
    if isinstance(error, json.JSONDecodeError) and "bad_json" in by_fate:
        case = by_fate["bad_json"]
        return (f"{case.what}: its arguments are not valid JSON, and {name} raised {what}. A model's JSON can "
                "be cut short or malformed: answer that call with an error value saying its arguments are not "
                "valid JSON (json.loads inside the try).")
    if isinstance(error, TypeError) and "bad_args" in by_fate:
        case = by_fate["bad_args"]
        return (f"{case.what} passes an argument the tool does not take, and {name} raised {what}. "
                "`tool(**arguments)` raises TypeError at the call, before any await: make the call inside "
                "the try, and answer with an error value naming the problem.")
    return f"{name} raised {what}"


def _expect_no_stragglers(outcome: _Outcome, result: Attempt, name: str) -> None:
    __tracebackhide__ = True
    if outcome.running or result.leaked:
        calls = ", ".join(outcome.running[:3]) or ", ".join(
            t.get_coro().__qualname__ for t in result.leaked[:3])  # type: ignore[union-attr]
        fail(f"{name} returned while {max(len(outcome.running), len(result.leaked))} call(s) were still running "
             f"({calls}). Nothing may outlive the turn: cancel what did not answer in time and wait until it "
             "has stopped (asynclab.timeout around each call does both; asyncio.wait(..., timeout=...) only "
             "stops waiting, it does not stop the calls).")


def _messages(value: object, cases: list[_Case], name: str) -> list[Mapping[str, Any]]:
    """The learner's return value as tool messages, one per call, in call order."""
    __tracebackhide__ = True
    ids = [case.call.id for case in cases]
    example = '{"role": "tool", "tool_call_id": call.id, "content": "…"}'
    expect(isinstance(value, Sequence) and not isinstance(value, (str, bytes)),
           f"{name} should return a list of tool messages ({example}), one per call in the order of the "
           f"calls; got {type(value).__name__} {value!r:.100}")
    value = cast(Sequence[Any], value)
    expect(len(value) == len(cases),
           f"{name} returned {len(value)} messages for {len(cases)} tool calls: answer every call, also those "
           "that failed or were too late (the API refuses a conversation with a tool call left unanswered).")
    for i, message in enumerate(value):
        if not isinstance(message, Mapping) or message.get("role") != "tool":
            fail(f"item {i} is not a tool message: {message!r:.100}. Return {example} for each call.")
    got = [message.get("tool_call_id") for message in value]
    if sorted(map(str, got)) == sorted(ids) and got != ids:
        fail(f"your messages answer the calls in the order {got}, not the order of the calls {ids}: they came "
             "in the order the tools finished. Keep the calls' order: asyncio.gather returns results in the "
             "order of its arguments, or keep the tasks in a list and read them after the TaskGroup.")
    for message, case in zip(value, cases, strict=True):
        expect(message.get("tool_call_id") == case.call.id,
               f"the message for {case.what} has tool_call_id {message.get('tool_call_id')!r}; it must be that "
               "call's own id (call.id), so the model knows which call it answers.")
        content = message.get("content")
        if not isinstance(content, str):
            fail(f"the content of the message for {case.what} is {type(content).__name__} {content!r:.80}; "
                 "the API takes text: json.dumps(result) for a result, an error as text or JSON.")
    return list(value)


def _check_contents(messages: list[Mapping[str, Any]], cases: list[_Case], name: str) -> None:
    __tracebackhide__ = True
    for message, case in zip(messages, cases, strict=True):
        content: str = message["content"]
        error = error_of(content)
        if case.fate == "ok":
            if error is not None:
                if any(word in content.lower() for word in ("time", "deadline", "cancel")):
                    fail(f"{case.what} answers before the deadline, but your message for it says "
                         f"{content!r:.100}. Either a timeout around all the calls at once cancelled it with the "
                         "rest (put the timeout around each call, inside its own task), or your timeout was "
                         "shorter than the deadline.")
                fail(f"{case.what} worked, but your message for it reports an error: {content!r:.120}")
            try:
                value = json.loads(content)
            except ValueError:
                fail(f"the message for {case.what} is not JSON: {content!r:.100}. Send the result as "
                     "json.dumps(result), which the model (and any API) can parse; str(result) is Python's repr.")
            expect(value == case.expected,
                   f"the message for {case.what} holds {content!r:.100}, but the tool returned "
                   f"{json.dumps(case.expected)!r:.100}: send the tool's result for that call, as JSON.")
            continue
        if error is None:
            fail(f"{case.what} did not succeed ({_why(case)}), but your message for it does not say so: "
                 f"{content!r:.100}. The model would take it for an answer. Say it failed, e.g. "
                 "{\"error\": \"…\"} or text starting with \"Error:\" (that is how the model recognises an error).")
        if case.fate == "unknown":
            expect(case.call.name in content,
                   f"the error for {case.what} should name the unknown tool ({case.call.name!r}), so the model "
                   f"knows which call to fix; yours says {content!r:.100}")
        if case.fate == "late":
            expect(any(word in content.lower() for word in ("time", "deadline")),
                   f"{case.what} was too late, but your error says {content!r:.100}: say it timed out (e.g. "
                   "\"TimeoutError: no answer within 1 s\"), so the model can tell the user it was slow, "
                   "not broken.")


def _why(case: _Case) -> str:
    return {"failed": "the tool failed with ServiceUnavailable", "unknown": "there is no such tool",
            "bad_json": "its arguments are not valid JSON", "bad_args": "the tool takes no such argument",
            "late": "it did not answer before the deadline"}[case.fate]


def _answer(messages: list[Mapping[str, Any]], cases: list[_Case], name: str) -> str:
    """The model's answer to the conversation with these tool messages (or a hint if the API refuses it)."""
    __tracebackhide__ = True
    assistant = {"role": "assistant", "content": None, "tool_calls": [case.call.to_dict() for case in cases]}
    conversation = [{"role": "user", "content": QUESTION}, assistant, *messages]
    try:
        prepared = prepare(conversation, answer=run_model)
    except InvalidRequest as exc:
        fail(f"the API would refuse the conversation with your messages: {exc}")
    return prepared.reply.content or ""


def _last_end(result: Attempt) -> float:
    """When the last service call ended, in seconds since the attempt began (0 without calls)."""
    ends = [span.end for span in result.trace.spans if span.end is not None]
    return max(ends, default=result.trace.start) - result.trace.start


def _expect_overlap(result: Attempt, calls: int, expected: float, name: str) -> None:
    """All ``calls`` tool calls were in flight at once, and the function returned when the last one ended.

    Read from the trace, not from a nominal time: on a busy machine every call may end a little
    late, and a correct answer must still pass. What is checked is the overlap itself (all calls
    in flight at one moment) and the return right after the last call (about()'s slack), which a
    loaded machine does not change.
    """
    __tracebackhide__ = True
    spans = result.trace.spans
    if len(spans) >= 2 and result.trace.max_concurrency() <= 1:
        fail(f"your {len(spans)} tool calls ran one after another: {result.elapsed:.2f} s. The model asked for "
             f"them in one message because they are independent: start them all, then wait "
             f"(asyncio.gather, or a TaskGroup), and the turn takes the slowest ({expected:.2f} s).")
    expect(len(spans) >= calls,
           f"{name} made {len(spans)} tool calls, but {calls} of the calls were valid: run each of them once.")
    expect(result.trace.max_concurrency() >= calls,
           f"{name} took {result.elapsed:.2f} s, but with all {calls} calls at once it takes {expected:.2f} s "
           f"(at most {result.trace.max_concurrency()} ran at the same time): start every call before "
           "awaiting any.")
    last = _last_end(result)
    expect(within(result.elapsed, last),
           f"{name} returned {result.elapsed - last:.2f} s after the last tool call had answered: return as "
           "soon as every call is done.")


# -- the checkers -------------------------------------------------------------------------------


async def check_dispatch(function: Callable[..., Awaitable[Any]]) -> None:
    """``dispatch(tool_calls, registry)`` → one tool message per call, in call order, all at once."""
    __tracebackhide__ = True
    require_async(function)
    cases = await _dispatch_cases()
    registry = _registry()
    result = await attempt(_run, function, [case.call for case in cases], registry)
    outcome: _Outcome = result.result
    if outcome.error is not None:
        fail(_raised_hint(outcome.error, cases, "dispatch"))
    _expect_no_stragglers(outcome, result, "dispatch")
    messages = _messages(outcome.value, cases, "dispatch")
    slowest = max(TOOL_LATENCY["news"], TOOL_LATENCY["weather"], TOOL_LATENCY["stock_price"])
    _expect_overlap(result, 3, slowest, "dispatch")
    _check_contents(messages, cases, "dispatch")
    answer = _answer(messages, cases, "dispatch")
    passed(f"dispatch: {len(cases)} calls answered in call order in {result.elapsed:.2f} s (the slowest tool "
           f"takes {slowest:.2f} s): 2 results, and an error the model can read for a failed tool, an unknown "
           f"tool, broken JSON and a wrong argument.\n   The model's answer: {answer}")


async def check_run_tools_within(function: Callable[..., Awaitable[Any]]) -> None:
    """``run_tools_within(tool_calls, registry, deadline)`` → a tool message per call by the deadline."""
    __tracebackhide__ = True
    require_async(function)
    cases = await _within_cases()
    result = await attempt(_run, function, [case.call for case in cases], _registry(late=True), DEADLINE,
                           deadline=DEADLINE)
    outcome: _Outcome = result.result
    name = "run_tools_within"
    _expect_on_time(outcome, DEADLINE, name)
    if outcome.error is not None:
        fail(_raised_hint(outcome.error, cases, name))
    _expect_no_stragglers(outcome, result, name)
    messages = _messages(outcome.value, cases, name)
    spans = result.trace.spans
    if len(spans) >= 2 and result.trace.max_concurrency() <= 1:
        fail(f"your {len(spans)} tool calls ran one after another ({result.elapsed:.2f} s): start them all at "
             f"once, then wait for them together, up to the deadline ({DEADLINE:g} s).")
    _check_contents(messages, cases, name)
    late = [span for span in spans if span.operation in ("weather", "news") and span.outcome != "ok"]
    expect(len(late) == 2 and all(span.outcome == "cancelled" for span in late),
           "the two late calls (the slow forecast and the hanging headlines) should end cancelled at the "
           f"deadline; they ended {[span.outcome for span in late]}.")
    # The late calls were cancelled at the deadline, and the function returned right then. 25 % on top of
    # the timer slack: a cancellation on a busy machine may come a few ms late; too early would have lost
    # the news (0.8 s), and a deadline counted twice or in wall seconds is far outside.
    cancelled_at = max(span.end for span in late if span.end is not None) - result.trace.start
    expect(within(cancelled_at, DEADLINE, rel=0.25),
           f"the late calls were cancelled {cancelled_at:.2f} s after the start, but the deadline is "
           f"{DEADLINE:g} s: start every call at once, and at the deadline cancel what has not answered.")
    expect(within(result.elapsed, cancelled_at),
           f"{name} returned at {result.elapsed:.2f} s, {result.elapsed - cancelled_at:.2f} s after the deadline "
           "had cancelled the late calls: return once every call is answered or cancelled.")
    answer = _answer(messages, cases, name)

    healthy = await _healthy_cases()
    again = await attempt(_run, function, [case.call for case in healthy], _registry(down=False), HEALTHY_DEADLINE,
                          deadline=HEALTHY_DEADLINE)
    outcome = again.result
    _expect_on_time(outcome, HEALTHY_DEADLINE, name)
    if outcome.error is not None:
        fail(f"with every tool healthy, {_raised_hint(outcome.error, healthy, name)}")
    _expect_no_stragglers(outcome, again, name)
    _check_contents(_messages(outcome.value, healthy, name), healthy, name)
    last = _last_end(again)  # about 0.8 s, the news (measured: a busy machine may make it a little later)
    if within(again.elapsed, HEALTHY_DEADLINE) and not within(again.elapsed, last):
        fail(f"with every tool healthy, all had answered after {last:.2f} s, but {name} returned only at the "
             f"deadline ({again.elapsed:.2f} s of {HEALTHY_DEADLINE:g} s). The deadline is a limit, not a wait: "
             "return as soon as every call is done.")
    expect(again.trace.max_concurrency() >= len(healthy),
           f"with every tool healthy, your {len(healthy)} calls did not all run at once (at most "
           f"{again.trace.max_concurrency()} at the same time): start every call before awaiting any.")
    expect(within(again.elapsed, last),
           f"with every tool healthy, {name} returned {again.elapsed - last:.2f} s after the last call had "
           "answered: return as soon as every call is done.")
    passed(f"{name}: by the {DEADLINE:g} s deadline ({result.elapsed:.2f} s), 2 results, an error for the "
           f"failed tool and a timeout for the 2 late ones, which were cancelled; with every tool healthy it "
           f"returned after {again.elapsed:.2f} s, not at the deadline.\n   The model's answer: {answer}")
