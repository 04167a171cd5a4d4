"""The notebook 07 checkers pass the reference solutions and fail wrong ones with their hints."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from asynclab import LLM, sleep
from asynclab.chat import TOOL_SCHEMAS, ToolCall
from asynclab.checks import ExerciseFailed, lesson07

Registry = dict[str, Callable[..., Coroutine[Any, Any, Any]]]


# -- the reference solutions (as in the solutions notebook) ----------------------------------------


async def run_tool(registry: Registry, call: ToolCall) -> dict[str, Any]:
    """One tool call → its tool message; an error becomes a value the model can read."""
    try:
        result = await registry[call.name](**call.args())
    except Exception as error:
        result = {"error": f"{type(error).__name__}: {error}"}
    return {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)}


async def agent(llm: LLM, registry: Registry, question: str, max_steps: int) -> str:
    messages: list[Any] = [{"role": "user", "content": question}]
    for step in range(1, max_steps + 1):
        last = step == max_steps
        reply = await llm.chat(messages, tools=TOOL_SCHEMAS, tool_choice="none" if last else "auto")
        if not reply.tool_calls:
            return reply.content or ""
        messages.append(reply.message)
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(run_tool(registry, call)) for call in reply.tool_calls]
        messages += [task.result() for task in tasks]
    raise AssertionError("unreachable: the last step answers in text")


class Limited:
    """An LLM seen through a shared semaphore: at most its permits' worth of chat calls at once."""

    def __init__(self, llm: LLM, slots: asyncio.Semaphore) -> None:
        self.llm, self.slots = llm, slots

    async def chat(self, messages: Any, **options: Any) -> Any:
        async with self.slots:
            return await self.llm.chat(messages, **options)


async def run_agents(llm: LLM, registry: Registry, questions: list[str], limit: int) -> list[str]:
    limited = Limited(llm, asyncio.Semaphore(limit))  # ONE semaphore for every agent
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(agent(limited, registry, q, 4)) for q in questions]  # type: ignore[arg-type]
    return [task.result() for task in tasks]


# -- agent ----------------------------------------------------------------------------------------


async def test_agent_passes_the_reference(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson07.check_agent(agent)
    out = capsys.readouterr().out
    assert "✅ agent: 3 tools in one turn" in out and "stopped after 3 calls" in out


async def test_agent_with_streamed_turns_passes_too(fast: float) -> None:
    async def streaming(llm: LLM, registry: Registry, question: str, max_steps: int) -> str:
        messages: list[Any] = [{"role": "user", "content": question}]
        for step in range(1, max_steps + 1):
            text: list[str] = []
            calls: dict[int, dict[str, str]] = {}
            choice = "none" if step == max_steps else "auto"
            async for chunk in await llm.chat(messages, tools=TOOL_SCHEMAS, tool_choice=choice, stream=True):
                text.append(chunk.content or "")
                for delta in chunk.tool_calls:
                    call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                    call["id"] += delta.id or ""
                    call["name"] += delta.name or ""
                    call["arguments"] += delta.arguments
            if not calls:
                return "".join(text)
            made = [ToolCall(c["id"], c["name"], c["arguments"]) for c in calls.values()]
            messages.append({"role": "assistant", "content": None, "tool_calls": [c.to_dict() for c in made]})
            messages += await asyncio.gather(*(run_tool(registry, call) for call in made))
        raise AssertionError("unreachable")

    await lesson07.check_agent(streaming)


async def test_agent_catches_tools_run_one_after_another(fast: float) -> None:
    async def one_by_one(llm: LLM, registry: Registry, question: str, max_steps: int) -> str:
        messages: list[Any] = [{"role": "user", "content": question}]
        for step in range(1, max_steps + 1):
            reply = await llm.chat(messages, tools=TOOL_SCHEMAS, tool_choice="none" if step == max_steps else "auto")
            if not reply.tool_calls:
                return reply.content or ""
            messages.append(reply.message)
            for call in reply.tool_calls:
                messages.append(await run_tool(registry, call))
        return ""

    with pytest.raises(ExerciseFailed, match=r"the 3 tool calls of turn 1 .* ran one after another: "
                                             r"1\.\d\d s, the sum"):
        await lesson07.check_agent(one_by_one)


async def test_agent_catches_a_loop_with_no_step_limit(fast: float) -> None:
    async def runaway(llm: LLM, registry: Registry, question: str, max_steps: int) -> str:
        messages: list[Any] = [{"role": "user", "content": question}]
        while True:
            reply = await llm.chat(messages, tools=TOOL_SCHEMAS)
            if not reply.tool_calls:
                return reply.content or ""
            messages.append(reply.message)
            messages += await asyncio.gather(*(run_tool(registry, call) for call in reply.tool_calls))

    with pytest.raises(ExerciseFailed, match=r"asked it 8 times and was still going \(max_steps=3\): a runaway loop"):
        await lesson07.check_agent(runaway)


async def test_agent_says_to_answer_instead_of_raising_at_the_limit(fast: float) -> None:
    async def raises(llm: LLM, registry: Registry, question: str, max_steps: int) -> str:
        messages: list[Any] = [{"role": "user", "content": question}]
        for _ in range(max_steps):
            reply = await llm.chat(messages, tools=TOOL_SCHEMAS)
            if not reply.tool_calls:
                return reply.content or ""
            messages.append(reply.message)
            messages += await asyncio.gather(*(run_tool(registry, call) for call in reply.tool_calls))
        raise RuntimeError(f"no answer after {max_steps} steps")

    with pytest.raises(ExerciseFailed, match=r"at the step limit your agent raised \(RuntimeError: no answer after 3 "
                                             r"steps\).*tool_choice='none'"):
        await lesson07.check_agent(raises)


async def test_agent_counts_the_forced_answer_as_a_step(fast: float) -> None:
    async def one_too_many(llm: LLM, registry: Registry, question: str, max_steps: int) -> str:
        messages: list[Any] = [{"role": "user", "content": question}]
        for _ in range(max_steps):
            reply = await llm.chat(messages, tools=TOOL_SCHEMAS)
            if not reply.tool_calls:
                return reply.content or ""
            messages.append(reply.message)
            messages += await asyncio.gather(*(run_tool(registry, call) for call in reply.tool_calls))
        final = await llm.chat(messages, tools=TOOL_SCHEMAS, tool_choice="none")  # a 4th call
        return final.content or ""

    with pytest.raises(ExerciseFailed, match=r"with max_steps=3 your agent asked the model 4 times"):
        await lesson07.check_agent(one_too_many)


async def test_agent_reports_a_task_left_running(fast: float) -> None:
    async def leaky(llm: LLM, registry: Registry, question: str, max_steps: int) -> str:
        async def typing_indicator() -> None:
            while True:
                await sleep(0.1)

        asyncio.create_task(typing_indicator())  # started, never cancelled  # noqa: RUF006
        return await agent(llm, registry, question, max_steps)

    with pytest.raises(ExerciseFailed, match=r"returned while 1 task\(s\) it started were still running "
                                             r"\(.*typing_indicator\)"):
        await lesson07.check_agent(leaky)


async def test_agent_wants_the_answer_after_the_tool_results(fast: float) -> None:
    async def asks_once(llm: LLM, registry: Registry, question: str, max_steps: int) -> str:
        reply = await llm.chat([{"role": "user", "content": question}], tools=TOOL_SCHEMAS)
        results = await asyncio.gather(*(registry[c.name](**c.args()) for c in reply.tool_calls))
        return json.dumps(results)

    with pytest.raises(ExerciseFailed, match=r"asked the model once and returned; 3 tool call\(s\) ran after it"):
        await lesson07.check_agent(asks_once)


async def test_agent_explains_tool_results_sent_as_python_reprs(fast: float) -> None:
    async def reprs(llm: LLM, registry: Registry, question: str, max_steps: int) -> str:
        messages: list[Any] = [{"role": "user", "content": question}]
        for step in range(1, max_steps + 1):
            reply = await llm.chat(messages, tools=TOOL_SCHEMAS, tool_choice="none" if step == max_steps else "auto")
            if not reply.tool_calls:
                return reply.content or ""
            messages.append(reply.message)
            results = await asyncio.gather(*(registry[c.name](**c.args()) for c in reply.tool_calls))
            messages += [{"role": "tool", "tool_call_id": c.id, "content": str(r)}
                         for c, r in zip(reply.tool_calls, results, strict=True)]
        return ""

    with pytest.raises(ExerciseFailed, match=r"they look like Python reprs \(str\(result\)\)"):
        await lesson07.check_agent(reprs)


async def test_agent_catches_a_wrong_final_answer(fast: float) -> None:
    async def first_sentence(llm: LLM, registry: Registry, question: str, max_steps: int) -> str:
        answer = await agent(llm, registry, question, max_steps)
        return answer.split(". ")[0]  # "only the first point": not what the model said

    with pytest.raises(ExerciseFailed, match=r"the final answer to \"What's the weather in Paris and Tokyo.*is not "
                                             r"the model's"):
        await lesson07.check_agent(first_sentence)


async def test_agent_wants_a_failing_tool_sent_back_as_an_error(fast: float) -> None:
    async def unguarded(llm: LLM, registry: Registry, question: str, max_steps: int) -> str:
        messages: list[Any] = [{"role": "user", "content": question}]
        for step in range(1, max_steps + 1):
            reply = await llm.chat(messages, tools=TOOL_SCHEMAS, tool_choice="none" if step == max_steps else "auto")
            if not reply.tool_calls:
                return reply.content or ""
            messages.append(reply.message)
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(registry[c.name](**c.args())) for c in reply.tool_calls]
            messages += [{"role": "tool", "tool_call_id": c.id, "content": json.dumps(t.result())}
                         for c, t in zip(reply.tool_calls, tasks, strict=True)]
        return ""

    with pytest.raises(ExerciseFailed, match=r"(?s)with the stock tool down, your agent failed instead of answering "
                                             r"\(1 error\(s\) inside a TaskGroup: ServiceUnavailable from "
                                             r"tools.stock_price.*\{'error'"):
        await lesson07.check_agent(unguarded)


async def test_agent_catches_a_failure_that_cancels_the_other_tools(fast: float) -> None:
    async def all_or_nothing(llm: LLM, registry: Registry, question: str, max_steps: int) -> str:
        messages: list[Any] = [{"role": "user", "content": question}]
        for step in range(1, max_steps + 1):
            reply = await llm.chat(messages, tools=TOOL_SCHEMAS, tool_choice="none" if step == max_steps else "auto")
            if not reply.tool_calls:
                return reply.content or ""
            messages.append(reply.message)
            try:
                async with asyncio.TaskGroup() as group:
                    tasks = [group.create_task(registry[c.name](**c.args())) for c in reply.tool_calls]
                results: list[Any] = [t.result() for t in tasks]
            except* Exception as errors:
                results = [{"error": str(errors.exceptions[0])}] * len(reply.tool_calls)
            messages += [{"role": "tool", "tool_call_id": c.id, "content": json.dumps(r)}
                         for c, r in zip(reply.tool_calls, results, strict=True)]
        return ""

    with pytest.raises(ExerciseFailed, match=r"your agent cancelled the other tool calls \(weather\(Lisbon\), "
                                             r"news\(3:ai chips\)\)"):
        await lesson07.check_agent(all_or_nothing)


# -- run_agents -----------------------------------------------------------------------------------


async def test_run_agents_passes_the_reference(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson07.check_run_agents(run_agents)
    out = capsys.readouterr().out
    assert "✅ run_agents: 8 agents, at most 2 LLM calls at once" in out and "predicted 3.20 s" in out


def test_the_prediction_is_the_first_come_first_served_arithmetic() -> None:
    assert lesson07.predicted_total(8, 2, 0.4, 0.5) == pytest.approx(3.2)   # 4 waves: the LLM is never idle
    assert lesson07.predicted_total(2, 2, 0.4, 0.5) == pytest.approx(1.3)   # one wave: an agent alone
    assert lesson07.predicted_total(4, 2, 0.4, 1.0) == pytest.approx(2.2)   # long tools: the LLM waits for them
    with pytest.raises(ValueError, match="agents must be a multiple of limit"):
        lesson07.predicted_total(5, 2, 0.4, 0.5)


async def test_run_agents_catches_a_semaphore_per_agent(fast: float) -> None:
    async def own_semaphores(llm: LLM, registry: Registry, questions: list[str], limit: int) -> list[str]:
        async with asyncio.TaskGroup() as group:  # a new semaphore for each agent: limits nothing
            tasks = [group.create_task(agent(Limited(llm, asyncio.Semaphore(limit)), registry, q, 4))  # type: ignore[arg-type]
                     for q in questions]
        return [task.result() for task in tasks]

    with pytest.raises(ExerciseFailed, match=r"8 LLM calls were in flight at once, but the limit is 2: nothing held "
                                             r"them back\. A semaphore made inside each agent"):
        await lesson07.check_run_agents(own_semaphores)


async def test_run_agents_catches_agents_run_one_after_another(fast: float) -> None:
    async def one_by_one(llm: LLM, registry: Registry, questions: list[str], limit: int) -> list[str]:
        return [await agent(llm, registry, q, 4) for q in questions]

    with pytest.raises(ExerciseFailed, match=r"your agents ran one after another: 1\d\.\d\d s"):
        await lesson07.check_run_agents(one_by_one)


async def test_run_agents_catches_a_limit_on_whole_agents(fast: float) -> None:
    async def whole_agents(llm: LLM, registry: Registry, questions: list[str], limit: int) -> list[str]:
        slots = asyncio.Semaphore(limit)

        async def one(question: str) -> str:
            async with slots:  # held while the tool runs too
                return await agent(llm, registry, question, 4)

        return list(await asyncio.gather(*(one(q) for q in questions)))

    with pytest.raises(ExerciseFailed, match=r"\(about 5\.2 s: 2 whole agents at a time\): "
                                             r"the limit held whole agents"):
        await lesson07.check_run_agents(whole_agents)


async def test_run_agents_wants_the_answers_in_question_order(fast: float) -> None:
    async def arrival_order(llm: LLM, registry: Registry, questions: list[str], limit: int) -> list[str]:
        limited = Limited(llm, asyncio.Semaphore(limit))
        tasks = [asyncio.ensure_future(agent(limited, registry, q, 4)) for q in reversed(questions)]  # type: ignore[arg-type]
        return [await task for task in tasks]

    with pytest.raises(ExerciseFailed, match=r"the right answers in the wrong order"):
        await lesson07.check_run_agents(arrival_order)


async def test_run_agents_catches_agents_started_one_by_one(fast: float) -> None:
    async def staggered(llm: LLM, registry: Registry, questions: list[str], limit: int) -> list[str]:
        limited = Limited(llm, asyncio.Semaphore(limit))

        async def later(i: int, question: str) -> str:
            await sleep(0.5 * i)  # "to be gentle with the API": the LLM idles meanwhile
            return await agent(limited, registry, question, 4)  # type: ignore[arg-type]

        return list(await asyncio.gather(*(later(i, q) for i, q in enumerate(questions))))

    with pytest.raises(ExerciseFailed, match=r"your agents took 4\.\d\d s, but 8 agents with at most 2 LLM calls at "
                                             r"once take 3\.20 s.*Keep the LLM busy"):
        await lesson07.check_run_agents(staggered)


async def test_agent_catches_an_extra_wait(fast: float) -> None:
    async def waits_for_luck(llm: LLM, registry: Registry, question: str, max_steps: int) -> str:
        answer = await agent(llm, registry, question, max_steps)
        await sleep(1.0)  # "give the tools time to finish"
        return answer

    with pytest.raises(ExerciseFailed, match=r"your agent took 4\.\d\d s, but its model calls and each turn's longest "
                                             r"tool call add up to 3\.\d\d s"):
        await lesson07.check_agent(waits_for_luck)

