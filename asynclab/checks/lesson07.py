"""Checkers for notebook 07 · The async agent loop.

    from asynclab.checks import lesson07
    await lesson07.check_agent(agent)              # the loop: turns, tools at once, a step limit that answers
    await lesson07.check_run_agents(run_agents)    # n agents, at most `limit` LLM calls in flight at once

``agent(llm, registry, question, max_steps) -> str`` is graded on three conversations: a question
that needs three tools in one turn, a question whose stock tool is down, and a model that always
wants one more tool call. ``run_agents(llm, registry, questions, limit) -> list[str]`` runs eight
agents on one LLM that may serve only ``limit`` of their calls at once. Each checker reads the
trace: the model's turns, the tool calls between them, which overlapped, what was cancelled.

Introduced in notebook 07.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from asynclab.chat import TOOL_SCHEMAS
from asynclab.checks import Attempt, ExerciseFailed, attempt, expect, expect_no_leaks, fail, passed
from asynclab.clock import WALL_SLACK, get_speed
from asynclab.faults import Faults
from asynclab.latency import Streamed
from asynclab.services import LLM, Tools
from asynclab.tracing import Span, Trace

__all__ = [
    "AGENT_QUESTION",
    "FAILING_QUESTION",
    "LIMIT_QUESTION",
    "RUN_QUESTIONS",
    "check_agent",
    "check_run_agents",
    "predicted_total",
    "registry_of",
]

#: Three tool calls in one turn: weather in Paris and Tokyo (0.5 s each), NVDA's price (0.3 s).
AGENT_QUESTION = "What's the weather in Paris and Tokyo, and NVDA's stock price?"
#: Three calls again, with the stock tool down: weather (0.5 s), news (0.8 s), stock (fails at 0.3 s).
FAILING_QUESTION = "Weather in Lisbon, AI chips news and the price of NVDA?"
#: Asked of a model that always wants one more tool call, with this step limit.
LIMIT_QUESTION = "What's the weather in Oslo and the latest news about AI chips?"
LIMIT_STEPS = 3
#: The step limit check_agent gives for the two questions that need only two turns.
AGENT_STEPS = 4
#: A model asked this many times beyond the step limit is stopped: the agent has no limit.
RUNAWAY = 5

#: check_run_agents: one weather question per agent, a flat 0.4 s per model turn (whatever it
#: writes, so the arithmetic is exact), the weather tool's 0.5 s, at most 2 LLM calls at once.
RUN_QUESTIONS = tuple(f"Weather in {city}?" for city in ("Paris", "Tokyo", "Lisbon", "Oslo", "Berlin", "Madrid",
                                                          "Rome", "Seoul"))
RUN_LIMIT = 2
RUN_TURN = 0.4
RUN_TOOL = 0.5


def registry_of(tools: Tools) -> dict[str, Callable[..., Awaitable[Any]]]:
    """The course's three tools by the names of :data:`asynclab.chat.TOOL_SCHEMAS`."""
    return {"get_weather": tools.weather, "get_news": tools.news, "get_stock_price": tools.stock_price}


def predicted_total(agents: int, limit: int, turn: float, tool: float) -> float:
    """Simulated seconds for ``agents`` two-turn agents (turn, tool, turn) sharing ``limit`` LLM slots.

    With a first-come-first-served limit (an ``asyncio.Semaphore``, a service's capacity) the
    first turns, all asked at once, go first: W = agents / limit waves of ``turn`` seconds. Wave
    g's second turns are asked at (g + 1)·turn + tool and start when the slots are free, after
    the first turns and the earlier waves' second turns: the last ends at
    max(W·turn + tool, (2W − 1)·turn) + turn. ``agents`` must be a multiple of ``limit``.
    """
    if agents % limit:
        raise ValueError(f"agents must be a multiple of limit for this formula, got {agents} and {limit}")
    waves = agents // limit
    return max(waves * turn + tool, (2 * waves - 1) * turn) + turn


# -- the models the checker talks to ---------------------------------------------------------------


class _Stubborn(LLM):
    """A model that always wants one more tool call: ``tool_choice="auto"`` acts as ``"required"``.

    Real models loop like this now and then (the same search again, a tool that never satisfies
    them); only the agent's step limit ends it. ``"none"`` is obeyed: the model answers in text.
    Asked more than ``stop_after`` times, it ends the runaway agent with :class:`ExerciseFailed`.
    """

    def __init__(self, stop_after: int, **options: Any) -> None:
        super().__init__(**options)
        self.asked = 0
        self.stop_after = stop_after

    async def chat(self, messages: Any, **options: Any) -> Any:
        self.asked += 1
        if self.asked > self.stop_after:
            raise ExerciseFailed(f"stopped a runaway agent after {self.asked - 1} model calls")
        if options.get("tool_choice", "auto") == "auto":
            options["tool_choice"] = "required"
        return await super().chat(messages, **options)


async def _reference(llm: LLM, registry: dict[str, Callable[..., Awaitable[Any]]], question: str,
                     max_steps: int) -> str:
    """The right answer: the loop, its last allowed turn with tool_choice="none" (run on instant services)."""
    messages: list[Any] = [{"role": "user", "content": question}]
    for step in range(max_steps):
        reply = await llm.chat(messages, tools=TOOL_SCHEMAS, tool_choice="none" if step == max_steps - 1 else "auto")
        if not reply.tool_calls:
            return reply.content or ""
        messages.append(reply.message)
        for call in reply.tool_calls:
            try:
                result = await registry[call.name](**call.args())
            except Exception as error:  # the reference sends an error as a value, as the learner must
                result = {"error": f"{type(error).__name__}: {error}"}
            messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
    raise AssertionError("unreachable: the last turn answers in text")


def _instant_tools(failing: str | None = None) -> dict[str, Callable[..., Awaitable[Any]]]:
    registry = registry_of(Tools(latency=0))
    if failing is not None:
        registry[failing] = registry_of(Tools(latency=0, faults=Faults(error_rate=1.0)))[failing]
    return registry


_INSTANT = Streamed(first_token=0, per_token=0)


# -- reading the trace ------------------------------------------------------------------------------


def _turns(recorded: Trace) -> tuple[list[Span], list[list[Span]]]:
    """The model's calls in order, and the tool calls made after each one (before the next)."""
    llm = sorted(recorded.by_service("llm"), key=lambda s: s.queued)
    tools = sorted((s for s in recorded.spans if s.service != "llm"), key=lambda s: s.queued)
    after: list[list[Span]] = [[] for _ in llm]
    for span in tools:
        index = max((i for i, call in enumerate(llm) if call.queued <= span.queued), default=0)
        if after:
            after[index].append(span)
    return llm, after


def _peak(spans: Sequence[Span]) -> int:
    group = Trace()
    group.spans = list(spans)
    return group.max_concurrency()


def _label(span: Span) -> str:
    return f"{span.operation}({span.key})"


def _answer(result: Attempt, what: str) -> str:
    __tracebackhide__ = True
    value = result.result
    if inspect.iscoroutine(value):
        value.close()
        fail(f"{what} returned a coroutine object, not the answer: did you forget an `await`?")
    expect(isinstance(value, str) and bool(value.strip()),
           f"{what} should return the model's final answer, a non-empty str; it returned {value!r:.100}")
    return str(value)


def _expect_answer(got: str, want: str, question: str) -> None:
    __tracebackhide__ = True
    if got == want:
        return
    if "'temperature_c'" in got or "'price'" in got:
        fail("the model could not read your tool results: they look like Python reprs (str(result)). "
             "Send each result as JSON text: `{'role': 'tool', 'tool_call_id': call.id, "
             "'content': json.dumps(result)}`.")
    fail(f"the final answer to {question!r} is not the model's.\n  expected: {want!r}\n  got:      {got!r:.300}\n"
         "Return the text of the model's last reply: the one that comes after every tool result was appended "
         "(a tool message per call, with its tool_call_id).")


def _expect_turn_overlapped(calls: list[Span], turn: int) -> None:
    __tracebackhide__ = True
    if len(calls) < 2:
        return
    peak = _peak(calls)
    names = ", ".join(_label(s) for s in calls)
    total = sum(s.duration for s in calls)
    longest = max(s.duration for s in calls)
    if peak == 1:
        fail(f"the {len(calls)} tool calls of turn {turn} ({names}) ran one after another: {total:.2f} s, the sum, "
             f"instead of {longest:.2f} s, the longest. Start them all at once: a task per call in an "
             "asyncio.TaskGroup, then read the results.")
    expect(peak == len(calls),
           f"the {len(calls)} tool calls of turn {turn} ({names}) overlapped only partly (at most {peak} at "
           "once). Start every call of the turn before awaiting any of them (a TaskGroup).")


def _expect_stage_times(result: Attempt, llm: list[Span], after: list[list[Span]]) -> None:
    """The whole run ≈ each model call + each turn's longest tool call: no waiting besides."""
    __tracebackhide__ = True
    expected = sum(s.duration for s in llm) + sum(max((s.duration for s in calls), default=0.0) for calls in after)
    # 10 %, and a late wake-up (WALL_SLACK of wall time) at each hand-over from one stage to the next.
    stages = len(llm) + sum(1 for calls in after if calls)
    expect(abs(result.elapsed - expected) <= 0.1 * expected + stages * WALL_SLACK * get_speed(),
           f"your agent took {result.elapsed:.2f} s, but its model calls and each turn's longest tool call add up "
           f"to {expected:.2f} s: something else waited (a sleep, a tool call awaited twice?).")


# -- exercise 1: the agent loop ---------------------------------------------------------------------


async def _attempt_agent(function: Callable[..., Awaitable[Any]], llm: LLM,
                         registry: dict[str, Callable[..., Awaitable[Any]]], question: str,
                         max_steps: int) -> tuple[Attempt | None, str]:
    """attempt(), with the hint kept instead of raised, so a scenario can explain it better."""
    try:
        return await attempt(function, llm, registry, question, max_steps), ""
    except ExerciseFailed as failed:
        return None, failed.hint


async def _check_three_tools(function: Callable[..., Awaitable[Any]]) -> float:
    __tracebackhide__ = True
    llm, tools = LLM(), Tools()
    want = await _reference(LLM(stream_latency=_INSTANT), _instant_tools(), AGENT_QUESTION, AGENT_STEPS)
    result, hint = await _attempt_agent(function, llm, registry_of(tools), AGENT_QUESTION, AGENT_STEPS)
    if result is None:
        fail(hint)
    assert result is not None
    expect_no_leaks(result)
    got = _answer(result, "agent")
    calls, after = _turns(result.trace)
    expect(bool(calls), "your agent never called the model: `reply = await llm.chat(messages, tools=TOOL_SCHEMAS)`.")
    tool_calls = [s for turn in after for s in turn]
    if len(calls) == 1:
        fail(f"your agent asked the model once and returned; {len(tool_calls)} tool call(s) ran after it. The "
             "answer comes from a second call: append the assistant message and a tool message per call, "
             "then ask the model again.")
    expect(len(calls) == 2,
           f"your agent asked the model {len(calls)} times for a question that takes 2 turns (tools, then the "
           "answer): stop as soon as a reply has no tool calls, and return its text.")
    expect(len(tool_calls) == 3 and not after[1],
           f"the model asked for 3 tool calls in its first reply; your agent ran {len(tool_calls)} "
           f"({', '.join(_label(s) for s in tool_calls) or 'none'}). Run each call of the reply once, "
           "then ask again.")
    _expect_turn_overlapped(after[0], 1)
    _expect_answer(got, want, AGENT_QUESTION)
    _expect_stage_times(result, calls, after)
    return result.elapsed


async def _check_failing_tool(function: Callable[..., Awaitable[Any]]) -> None:
    __tracebackhide__ = True
    tools, broken = Tools(), Tools(faults=Faults(error_rate=1.0))
    registry = registry_of(tools) | {"get_stock_price": broken.stock_price}
    want = await _reference(LLM(stream_latency=_INSTANT), _instant_tools("get_stock_price"), FAILING_QUESTION,
                            AGENT_STEPS)
    result, hint = await _attempt_agent(function, LLM(), registry, FAILING_QUESTION, AGENT_STEPS)
    if result is None:
        if hint.startswith("your function raised") or hint.startswith("a task your function started failed"):
            fail("with the stock tool down, your agent failed instead of answering ("
                 + hint.removeprefix("your function raised ") + ").\nA tool error "
                 "is something the model can read: catch it inside each tool call and send it as that call's "
                 "result, e.g. `{'error': 'ServiceUnavailable: …'}`. The model then says it couldn't get the "
                 "price and answers the rest.")
        fail(hint)
    assert result is not None
    expect_no_leaks(result)
    got = _answer(result, "agent (with the stock tool down)")
    others = [s for s in result.trace.spans if s.operation in ("weather", "news")]
    cancelled = [_label(s) for s in others if s.outcome == "cancelled"]
    expect(not cancelled,
           f"when get_stock_price failed, your agent cancelled the other tool calls ({', '.join(cancelled)}): a "
           "TaskGroup cancels its other tasks when one raises. Catch the error inside each call's task.")
    if "I couldn't get the stock price for NVDA" not in got:
        if got.count("trades at") == 0 and "NVDA" in got:
            fail("the model did not see the stock tool's failure as an error. Send `json.dumps({'error': "
                 "f'{type(exc).__name__}: {exc}'})` as that call's content.")
        _expect_answer(got, want, FAILING_QUESTION)
    # The error's own words are the learner's choice; the weather before it and the news after it are not.
    before, _, rest = want.partition("I couldn't get")
    news = rest[rest.index("Headlines"):]
    expect(got.startswith(before) and got.endswith(news),
           f"with the stock tool down, the answer should still give the weather and the news:\n  expected: "
           f"{want!r}\n  got:      {got!r:.300}")


async def _check_step_limit(function: Callable[..., Awaitable[Any]]) -> int:
    __tracebackhide__ = True
    llm = _Stubborn(stop_after=LIMIT_STEPS + RUNAWAY)
    want = await _reference(_Stubborn(stop_after=LIMIT_STEPS, stream_latency=_INSTANT), _instant_tools(),
                            LIMIT_QUESTION, LIMIT_STEPS)
    result, hint = await _attempt_agent(function, llm, registry_of(Tools()), LIMIT_QUESTION, LIMIT_STEPS)
    if llm.asked > llm.stop_after:
        fail(f"with a model that always wants one more tool call, your agent asked it {llm.asked - 1} times "
             f"and was still going (max_steps={LIMIT_STEPS}): a runaway loop, burning tokens until someone "
             "stops it. Count the model calls and stop at max_steps.")
    if result is None:
        if hint.startswith("your function raised"):
            fail(f"at the step limit your agent raised ({hint.removeprefix('your function raised ')}). That is "
                 "the lesson's run_agent; here the agent must answer with what it has: make the last allowed "
                 "call (step max_steps) with tool_choice='none', so the model answers in text from the tool "
                 "results so far.")
        fail(hint)
    assert result is not None
    expect_no_leaks(result)
    expect(llm.asked <= LIMIT_STEPS,
           f"with max_steps={LIMIT_STEPS} your agent asked the model {llm.asked} times. A step is one call to "
           "the model, the last (the answer) included: at most max_steps calls.")
    got = _answer(result, f"agent (a model that never stops calling tools, max_steps={LIMIT_STEPS})")
    calls, after = _turns(result.trace)
    expect(llm.asked == LIMIT_STEPS,
           f"with max_steps={LIMIT_STEPS} your agent asked the model {llm.asked} times and returned {got!r:.80}: "
           f"use every step; only the last one (step {LIMIT_STEPS}) asks with tool_choice='none'.")
    for turn, tool_calls in enumerate(after, start=1):
        _expect_turn_overlapped(tool_calls, turn)
    _expect_answer(got, want, LIMIT_QUESTION + f" (with max_steps={LIMIT_STEPS})")
    _expect_stage_times(result, calls, after)
    return len(calls)


async def check_agent(function: Callable[..., Awaitable[Any]]) -> None:
    """Grade ``agent(llm, registry, question, max_steps) -> str``, the agent loop with a step limit.

    Three conversations: three tools in one turn (they must overlap; two model calls; the model's
    final answer), the stock tool down (its error goes back to the model as a value, the other
    calls finish), and a model that always wants another tool call (exactly ``max_steps`` model
    calls, the last with ``tool_choice="none"``, so the agent still answers). Nothing may be left
    running.
    """
    __tracebackhide__ = True
    elapsed = await _check_three_tools(function)
    await _check_failing_tool(function)
    steps = await _check_step_limit(function)
    passed(f"agent: 3 tools in one turn, all at once ({elapsed:.2f} s for model, tools, model); a failing tool "
           f"answered as an error; a model that never stops calling tools stopped after {steps} calls, "
           "with an answer; nothing left running.")


# -- exercise 2: many agents under one limit ----------------------------------------------------------


async def check_run_agents(function: Callable[..., Awaitable[Any]]) -> None:
    """Grade ``run_agents(llm, registry, questions, limit) -> list[str]``: 8 agents, ≤ ``limit`` LLM calls at once.

    Each agent asks (0.4 s), runs its weather tool (0.5 s), asks again (0.4 s): 1.3 s alone. The
    answers must be in question order; at most 2 LLM calls in flight; the tools run while other
    agents use the LLM; and the whole takes what a first-come-first-served limit predicts
    (:func:`predicted_total`: 3.2 s), not 8 × 1.3 s one after another.
    """
    __tracebackhide__ = True
    questions = list(RUN_QUESTIONS)
    llm, tools = LLM(stream_latency=Streamed(first_token=RUN_TURN, per_token=0)), Tools()
    instant = LLM(stream_latency=_INSTANT)
    wanted = [await _reference(instant, _instant_tools(), q, AGENT_STEPS) for q in questions]
    result = await attempt(function, llm, registry_of(tools), questions, RUN_LIMIT)
    expect_no_leaks(result)
    answers = result.result
    if inspect.iscoroutine(answers):
        answers.close()
        fail("you returned a coroutine object, not the answers: did you forget an `await`?")
    expect(isinstance(answers, (list, tuple)) and len(answers) == len(questions),
           f"return a list with one answer per question, {len(questions)} in all; you returned {answers!r:.120}")
    if list(answers) != wanted:
        if sorted(map(str, answers)) == sorted(wanted):
            fail("you returned the right answers in the wrong order: return them in the order of the questions "
                 "(the tasks' results in creation order, or asyncio.gather).")
        first = next(i for i, (got, want) in enumerate(zip(answers, wanted, strict=True)) if got != want)
        fail(f"the answer to {questions[first]!r} is {answers[first]!r:.120}; the model says {wanted[first]!r}.")
    llm_calls = result.trace.by_service("llm")
    expect(len(llm_calls) == 2 * len(questions),
           f"each agent takes 2 model calls (the tool call, then the answer): {2 * len(questions)} in all; your "
           f"agents made {len(llm_calls)}.")
    peak = _peak(llm_calls)
    if peak > RUN_LIMIT:
        if peak >= len(questions):
            fail(f"{peak} LLM calls were in flight at once, but the limit is {RUN_LIMIT}: nothing held them back. A "
                 "semaphore made inside each agent limits only that agent. Create ONE asyncio.Semaphore(limit) "
                 "for all the agents and hold it around each llm.chat call.")
        fail(f"{peak} LLM calls were in flight at once, but the limit is {RUN_LIMIT}. Share ONE "
             "asyncio.Semaphore(limit) among all the agents, around each llm.chat call.")
    if result.trace.max_concurrency() == 1:
        fail(f"your agents ran one after another: {result.elapsed:.2f} s, about {len(questions)} × "
             f"{2 * RUN_TURN + RUN_TOOL:.1f} s. Start them all at once (a TaskGroup, or asyncio.gather); the "
             "semaphore alone keeps the LLM within its limit.")
    predicted = predicted_total(len(questions), RUN_LIMIT, RUN_TURN, RUN_TOOL)
    whole_agents = math.ceil(len(questions) / RUN_LIMIT) * (2 * RUN_TURN + RUN_TOOL)
    if result.trace.max_concurrency() <= RUN_LIMIT and result.elapsed > predicted * 1.1:
        fail(f"your agents took {result.elapsed:.2f} s (about {whole_agents:.1f} s: {RUN_LIMIT} whole agents at a "
             f"time): the limit held whole agents, so an agent waiting for its tool kept a slot the LLM could "
             "have used. Hold the semaphore only around each llm.chat call.")
    # 10 %, plus a late timer (WALL_SLACK, 4 ms of wall time) for each wait of the chain that ends last:
    # 2W turns one after another through the limit, and a tool. On a busy machine a turn starts a few ms
    # late, and each delay pushes back every turn queued behind it. (1.0 s at speed 20: agents started
    # 0.5 s apart, the next-slowest mistake, take 4.8 s.)
    chain = 2 * len(questions) // RUN_LIMIT + 1
    tolerance = 0.1 * predicted + chain * WALL_SLACK * get_speed()
    expect(abs(result.elapsed - predicted) <= tolerance,
           f"your agents took {result.elapsed:.2f} s, but 8 agents with at most 2 LLM calls at once take "
           f"{predicted:.2f} s: W = 8 / 2 = 4 waves of first turns ({RUN_TURN:g} s each), then the second turns in "
           f"the same order: max(W·{RUN_TURN:g} + {RUN_TOOL:g}, (2W − 1)·{RUN_TURN:g}) + {RUN_TURN:g}. Keep the "
           "LLM busy: every agent starts at once, and nothing but the semaphore makes them wait.")
    passed(f"run_agents: {len(questions)} agents, at most {peak} LLM calls at once, in {result.elapsed:.2f} s "
           f"(predicted {predicted:.2f} s; one after another {len(questions) * (2 * RUN_TURN + RUN_TOOL):.1f} s, "
           f"{RUN_LIMIT} whole agents at a time {whole_agents:.1f} s).")
