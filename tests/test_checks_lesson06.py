"""The notebook 06 checkers pass the reference solutions and fail wrong ones with their hints."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from asynclab import ServiceError, get_speed, timeout
from asynclab.chat import ToolCall
from asynclab.checks import ExerciseFailed, lesson06

Registry = dict[str, Callable[..., Awaitable[Any]]]
Message = dict[str, str]


def message(call: ToolCall, content: str) -> Message:
    return {"role": "tool", "tool_call_id": call.id, "content": content}


def error(exc: BaseException) -> str:
    return json.dumps({"error": f"{type(exc).__name__}: {exc}"})


# -- dispatch ----------------------------------------------------------------------------------


async def dispatch(tool_calls: Sequence[ToolCall], registry: Registry) -> list[Message]:
    """The reference solution (as in the solutions notebook)."""

    async def run(call: ToolCall) -> Message:
        try:
            tool = registry.get(call.name)
            if tool is None:
                raise LookupError(f"unknown tool {call.name!r}; the tools are {', '.join(registry)}")
            arguments = json.loads(call.arguments)
            content = json.dumps(await tool(**arguments))
        except Exception as exc:  # a tool's failure, an unknown name, broken JSON, a wrong argument
            content = error(exc)
        return message(call, content)

    return list(await asyncio.gather(*(run(call) for call in tool_calls)))


async def test_dispatch_passes_the_reference(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson06.check_dispatch(dispatch)
    out = capsys.readouterr().out
    assert "✅ dispatch: 6 calls answered in call order" in out
    # The model read the errors: it says which calls it could not answer.
    assert "I couldn't get the stock price for AAPL" in out and "get_horoscope" in out


async def test_dispatch_also_passes_a_task_group_with_the_tasks_in_a_list(fast: float) -> None:
    async def with_task_group(tool_calls: Sequence[ToolCall], registry: Registry) -> list[Message]:
        async def run(call: ToolCall) -> Message:
            if call.name not in registry:
                return message(call, f"Error: there is no tool {call.name!r}")
            try:
                arguments = json.loads(call.arguments)
            except ValueError as exc:
                return message(call, f"Error: the arguments are not valid JSON ({exc})")
            try:
                return message(call, json.dumps(await registry[call.name](**arguments)))
            except (ServiceError, TypeError, ValueError) as exc:
                return message(call, error(exc))

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(run(call)) for call in tool_calls]
        return [task.result() for task in tasks]

    await lesson06.check_dispatch(with_task_group)


async def test_dispatch_says_a_stub_is_not_done_yet(fast: float) -> None:
    async def stub(tool_calls: Sequence[ToolCall], registry: Registry) -> list[Message]:
        raise NotImplementedError

    with pytest.raises(ExerciseFailed, match="not done yet"):
        await lesson06.check_dispatch(stub)


async def test_dispatch_says_sequential_calls_take_the_sum(fast: float) -> None:
    async def sequential(tool_calls: Sequence[ToolCall], registry: Registry) -> list[Message]:
        return [(await dispatch([call], registry))[0] for call in tool_calls]  # one call at a time

    with pytest.raises(ExerciseFailed, match=r"your 3 tool calls ran one after another: 1\.\d\d s"):
        await lesson06.check_dispatch(sequential)


async def test_dispatch_says_calls_that_overlap_only_partly(fast: float) -> None:
    async def first_one_then_the_rest(tool_calls: Sequence[ToolCall], registry: Registry) -> list[Message]:
        first = await dispatch(tool_calls[:1], registry)  # the news alone, then the others together
        return first + await dispatch(tool_calls[1:], registry)

    with pytest.raises(ExerciseFailed, match=r"dispatch took 1\.\d\d s, but with all 3 calls at once it takes 0\.80 s "
                                             r"\(at most 2 ran at the same time\)"):
        await lesson06.check_dispatch(first_one_then_the_rest)


async def test_dispatch_says_to_return_when_the_last_call_answered(fast: float) -> None:
    async def lingers(tool_calls: Sequence[ToolCall], registry: Registry) -> list[Message]:
        messages = await dispatch(tool_calls, registry)
        await asyncio.sleep(0.5 / get_speed())  # "to be safe": half a simulated second for nothing
        return messages

    with pytest.raises(ExerciseFailed, match=r"dispatch returned 0\.\d\d s after the last tool call had answered"):
        await lesson06.check_dispatch(lingers)


async def test_dispatch_says_results_must_come_in_call_order(fast: float) -> None:
    async def finish_order(tool_calls: Sequence[ToolCall], registry: Registry) -> list[Message]:
        answered: list[Message] = []

        async def run(call: ToolCall) -> None:
            answered.extend(await dispatch([call], registry))  # appended as each one finishes

        async with asyncio.TaskGroup() as tg:
            for call in tool_calls:
                tg.create_task(run(call))
        return answered

    with pytest.raises(ExerciseFailed, match=r"in the order the tools finished\. Keep the calls' order"):
        await lesson06.check_dispatch(finish_order)


async def test_dispatch_says_an_unknown_tool_name_must_not_raise_key_error(fast: float) -> None:
    async def catches_service_errors_only(tool_calls: Sequence[ToolCall], registry: Registry) -> list[Message]:
        async def run(call: ToolCall) -> Message:  # the lesson's demo: only a tool's failure is expected
            try:
                return message(call, json.dumps(await registry[call.name](**call.args())))
            except ServiceError as exc:
                return message(call, error(exc))

        return list(await asyncio.gather(*(run(call) for call in tool_calls)))

    with pytest.raises(ExerciseFailed, match=r"names a tool that is not in the registry, and dispatch raised KeyError"):
        await lesson06.check_dispatch(catches_service_errors_only)


async def test_dispatch_says_a_failing_tool_must_not_sink_the_turn(fast: float) -> None:
    async def validates_but_lets_tool_errors_escape(tool_calls: Sequence[ToolCall],
                                                    registry: Registry) -> list[Message]:
        async def run(call: ToolCall) -> Message:
            if call.name not in registry:
                return message(call, f"Error: unknown tool {call.name}")
            try:
                coroutine = registry[call.name](**json.loads(call.arguments))
            except (ValueError, TypeError) as exc:
                return message(call, error(exc))
            return message(call, json.dumps(await coroutine))  # a tool's failure escapes

        return list(await asyncio.gather(*(run(call) for call in tool_calls)))  # no return_exceptions

    with pytest.raises(ExerciseFailed, match=r"failed \(ServiceUnavailable from tools\.stock_price.*and dispatch "
                                             r"raised it: one failing tool must not sink the whole turn"):
        await lesson06.check_dispatch(validates_but_lets_tool_errors_escape)


async def test_dispatch_says_broken_json_needs_an_error_value(fast: float) -> None:
    async def trusts_the_json(tool_calls: Sequence[ToolCall], registry: Registry) -> list[Message]:
        async def run(call: ToolCall) -> Message:
            arguments = json.loads(call.arguments)  # outside the try
            try:
                return message(call, json.dumps(await registry[call.name](**arguments)))
            except (KeyError, TypeError, ServiceError) as exc:
                return message(call, error(exc))

        return list(await asyncio.gather(*(run(call) for call in tool_calls)))

    with pytest.raises(ExerciseFailed, match=r"arguments are not valid JSON, and dispatch raised JSONDecodeError"):
        await lesson06.check_dispatch(trusts_the_json)


async def test_dispatch_says_a_wrong_argument_raises_type_error_at_the_call(fast: float) -> None:
    async def calls_outside_the_try(tool_calls: Sequence[ToolCall], registry: Registry) -> list[Message]:
        async def run(call: ToolCall) -> Message:
            if call.name not in registry:
                return message(call, f"Error: unknown tool {call.name}")
            try:
                arguments = json.loads(call.arguments)
            except ValueError as exc:
                return message(call, error(exc))
            pending = registry[call.name](**arguments)  # TypeError here, at the call, outside the try
            try:
                return message(call, json.dumps(await pending))
            except ServiceError as exc:
                return message(call, error(exc))

        return list(await asyncio.gather(*(run(call) for call in tool_calls)))

    with pytest.raises(ExerciseFailed, match=r"passes an argument the tool does not take, and dispatch raised "
                                             r"TypeError"):
        await lesson06.check_dispatch(calls_outside_the_try)


async def test_dispatch_catches_an_error_swallowed_into_an_empty_result(fast: float) -> None:
    async def swallows(tool_calls: Sequence[ToolCall], registry: Registry) -> list[Message]:
        async def run(call: ToolCall) -> Message:
            try:
                return message(call, json.dumps(await registry[call.name](**json.loads(call.arguments))))
            except Exception:
                return message(call, json.dumps(None))  # "no result": the model cannot tell it failed

        return list(await asyncio.gather(*(run(call) for call in tool_calls)))

    with pytest.raises(ExerciseFailed, match=r"call 'call_3' \(get_stock_price .*did not succeed \(the tool failed "
                                             r"with ServiceUnavailable\), but your message for it does not say so"):
        await lesson06.check_dispatch(swallows)


async def test_dispatch_wants_the_unknown_tool_named_in_its_error(fast: float) -> None:
    async def vague(tool_calls: Sequence[ToolCall], registry: Registry) -> list[Message]:
        async def run(call: ToolCall) -> Message:
            try:
                return message(call, json.dumps(await registry[call.name](**json.loads(call.arguments))))
            except Exception:
                return message(call, json.dumps({"error": "something went wrong"}))

        return list(await asyncio.gather(*(run(call) for call in tool_calls)))

    with pytest.raises(ExerciseFailed, match=r"should name the unknown tool \('get_horoscope'\)"):
        await lesson06.check_dispatch(vague)


async def test_dispatch_says_content_must_be_text(fast: float) -> None:
    async def dict_content(tool_calls: Sequence[ToolCall], registry: Registry) -> list[dict[str, Any]]:
        async def run(call: ToolCall) -> dict[str, Any]:
            try:
                result: Any = await registry[call.name](**json.loads(call.arguments))
            except Exception as exc:
                result = {"error": str(exc)}
            return {"role": "tool", "tool_call_id": call.id, "content": result}

        return list(await asyncio.gather(*(run(call) for call in tool_calls)))

    with pytest.raises(ExerciseFailed, match=r"the content of the message for call 'call_1' .* is list .*json\.dumps"):
        await lesson06.check_dispatch(dict_content)


async def test_dispatch_says_python_repr_is_not_json(fast: float) -> None:
    async def repr_content(tool_calls: Sequence[ToolCall], registry: Registry) -> list[Message]:
        async def run(call: ToolCall) -> Message:
            try:
                return message(call, str(await registry[call.name](**json.loads(call.arguments))))
            except Exception as exc:
                return message(call, error(exc))

        return list(await asyncio.gather(*(run(call) for call in tool_calls)))

    with pytest.raises(ExerciseFailed, match=r"is not JSON: .*str\(result\) is Python's repr"):
        await lesson06.check_dispatch(repr_content)


async def test_dispatch_says_each_message_needs_its_calls_own_id(fast: float) -> None:
    async def numbered(tool_calls: Sequence[ToolCall], registry: Registry) -> list[Message]:
        messages = await dispatch(tool_calls, registry)
        return [{**m, "tool_call_id": f"call_{i}"} for i, m in enumerate(messages)]  # off by one

    with pytest.raises(ExerciseFailed, match=r"has tool_call_id 'call_0'; it must be that call's own id"):
        await lesson06.check_dispatch(numbered)


async def test_dispatch_says_the_calls_left_running_after_a_caught_gather_error(fast: float) -> None:
    async def gather_then_give_up(tool_calls: Sequence[ToolCall], registry: Registry) -> list[Message]:
        async def run(call: ToolCall) -> str:
            return json.dumps(await registry[call.name](**json.loads(call.arguments)))

        try:
            contents = list(await asyncio.gather(*(run(call) for call in tool_calls)))
        except Exception as exc:  # the unknown tool's KeyError: gather raises, the others run on
            contents = [error(exc)] * len(tool_calls)
        return [message(call, content) for call, content in zip(tool_calls, contents, strict=True)]

    with pytest.raises(ExerciseFailed, match=r"dispatch returned while 3 call\(s\) were still running \(tools\.news"):
        await lesson06.check_dispatch(gather_then_give_up)


async def test_dispatch_says_a_task_group_without_a_catch_cancels_everything(fast: float) -> None:
    async def bare_task_group(tool_calls: Sequence[ToolCall], registry: Registry) -> list[Message]:
        async def run(call: ToolCall) -> Message:
            return message(call, json.dumps(await registry[call.name](**json.loads(call.arguments))))

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(run(call)) for call in tool_calls]
        return [task.result() for task in tasks]

    with pytest.raises(ExerciseFailed, match=r"dispatch raised \d error\(s\) inside a TaskGroup.*catch each call's "
                                             r"errors inside its own task"):
        await lesson06.check_dispatch(bare_task_group)


async def test_dispatch_says_a_blocking_call_froze_the_loop(fast: float) -> None:
    async def blocking(tool_calls: Sequence[ToolCall], registry: Registry) -> list[Message]:
        time.sleep(0.3)  # a synchronous HTTP client, say: 0.3 wall seconds with the loop stopped
        return await dispatch(tool_calls, registry)

    with pytest.raises(ExerciseFailed, match=r"the event loop was frozen for"):
        await lesson06.check_dispatch(blocking)


# -- run_tools_within ----------------------------------------------------------------------------


async def run_tools_within(tool_calls: Sequence[ToolCall], registry: Registry, deadline: float) -> list[Message]:
    """The reference solution (as in the solutions notebook)."""

    async def run(call: ToolCall) -> Message:
        try:
            async with timeout(deadline):  # started together, so each call's deadline is the turn's
                content = json.dumps(await registry[call.name](**json.loads(call.arguments)))
        except TimeoutError:
            content = json.dumps({"error": f"TimeoutError: no answer within {deadline:g} s"})
        except Exception as exc:
            content = error(exc)
        return message(call, content)

    return list(await asyncio.gather(*(run(call) for call in tool_calls)))


async def test_run_tools_within_passes_the_reference(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson06.check_run_tools_within(run_tools_within)
    out = capsys.readouterr().out
    assert "✅ run_tools_within: by the 1 s deadline" in out and "not at the deadline" in out
    assert "I couldn't get the weather for Lisbon" in out and "no answer within 1 s" in out


async def test_run_tools_within_also_passes_asyncio_wait_and_cancel(fast: float) -> None:
    async def with_wait(tool_calls: Sequence[ToolCall], registry: Registry, deadline: float) -> list[Message]:
        async def run(call: ToolCall) -> str:
            try:
                return json.dumps(await registry[call.name](**json.loads(call.arguments)))
            except Exception as exc:
                return error(exc)

        tasks = [asyncio.create_task(run(call)) for call in tool_calls]
        _, pending = await asyncio.wait(tasks, timeout=deadline / get_speed())  # asyncio counts wall seconds
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return [message(call, "Error: timed out" if task in pending else task.result())
                for call, task in zip(tool_calls, tasks, strict=True)]

    await lesson06.check_run_tools_within(with_wait)


async def test_run_tools_within_says_sequential_calls_take_the_sum(fast: float) -> None:
    async def sequential(tool_calls: Sequence[ToolCall], registry: Registry, deadline: float) -> list[Message]:
        return [(await run_tools_within([call], registry, deadline))[0] for call in tool_calls]

    with pytest.raises(ExerciseFailed, match=r"your 5 tool calls ran one after another \(3\.\d\d s\)"):
        await lesson06.check_run_tools_within(sequential)


async def test_run_tools_within_says_to_cancel_what_is_late(fast: float) -> None:
    async def no_cancel(tool_calls: Sequence[ToolCall], registry: Registry, deadline: float) -> list[Message]:
        async def run(call: ToolCall) -> str:
            try:
                return json.dumps(await registry[call.name](**json.loads(call.arguments)))
            except Exception as exc:
                return error(exc)

        tasks = [asyncio.create_task(run(call)) for call in tool_calls]
        _, pending = await asyncio.wait(tasks, timeout=deadline / get_speed())
        return [message(call, "Error: timed out" if task in pending else task.result())
                for call, task in zip(tool_calls, tasks, strict=True)]

    with pytest.raises(ExerciseFailed, match=r"returned while 2 call\(s\) were still running \(tools\.weather · "
                                             r"Lisbon, tools\.news · gpus\).*only stops waiting"):
        await lesson06.check_run_tools_within(no_cancel)


async def test_run_tools_within_says_a_plain_gather_lets_one_failure_sink_the_turn(fast: float) -> None:
    async def plain_gather(tool_calls: Sequence[ToolCall], registry: Registry, deadline: float) -> list[Message]:
        async def run(call: ToolCall) -> Message:
            try:
                async with timeout(deadline):
                    return message(call, json.dumps(await registry[call.name](**json.loads(call.arguments))))
            except TimeoutError:
                return message(call, "Error: timed out")

        return list(await asyncio.gather(*(run(call) for call in tool_calls)))

    with pytest.raises(ExerciseFailed, match=r"run_tools_within raised it: one failing tool must not sink the "
                                             r"whole turn"):
        await lesson06.check_run_tools_within(plain_gather)


async def test_run_tools_within_says_a_timeout_around_everything_loses_what_arrived(fast: float) -> None:
    async def one_timeout(tool_calls: Sequence[ToolCall], registry: Registry, deadline: float) -> list[Message]:
        async with timeout(deadline):  # around all the calls: at the deadline everything goes
            return await dispatch(tool_calls, registry)

    with pytest.raises(ExerciseFailed, match=r"raised TimeoutError at the deadline, so the results that had arrived "
                                             r"\(get_news, get_weather\) were lost with it"):
        await lesson06.check_run_tools_within(one_timeout)


async def test_run_tools_within_says_an_on_time_answer_was_reported_as_timed_out(fast: float) -> None:
    async def one_timeout_caught(tool_calls: Sequence[ToolCall], registry: Registry, deadline: float) -> list[Message]:
        try:
            async with timeout(deadline):
                return await dispatch(tool_calls, registry)
        except TimeoutError:
            return [message(call, "Error: timed out") for call in tool_calls]

    with pytest.raises(ExerciseFailed, match=r"call 'call_1' \(get_news .*answers before the deadline, but your "
                                             r"message for it says 'Error: timed out'. Either a timeout around all"):
        await lesson06.check_run_tools_within(one_timeout_caught)


async def test_run_tools_within_says_a_timeout_shorter_than_the_deadline_loses_answers(fast: float) -> None:
    async def half_the_time(tool_calls: Sequence[ToolCall], registry: Registry, deadline: float) -> list[Message]:
        return await run_tools_within(tool_calls, registry, deadline / 2)

    with pytest.raises(ExerciseFailed, match=r"or your timeout was shorter than the deadline"):
        await lesson06.check_run_tools_within(half_the_time)


async def test_run_tools_within_says_a_timeout_longer_than_the_deadline_runs_over(fast: float) -> None:
    async def too_generous(tool_calls: Sequence[ToolCall], registry: Registry, deadline: float) -> list[Message]:
        return await run_tools_within(tool_calls, registry, deadline * 1.6)

    with pytest.raises(ExerciseFailed, match=r"the late calls were cancelled 1\.\d\d s after the start, but the "
                                             r"deadline is 1 s"):
        await lesson06.check_run_tools_within(too_generous)


async def test_run_tools_within_says_to_return_once_the_late_calls_are_cancelled(fast: float) -> None:
    async def lingers(tool_calls: Sequence[ToolCall], registry: Registry, deadline: float) -> list[Message]:
        messages = await run_tools_within(tool_calls, registry, deadline)
        await asyncio.sleep(0.5 / get_speed())
        return messages

    with pytest.raises(ExerciseFailed, match=r"run_tools_within returned at 1\.\d\d s, 0\.\d\d s after the deadline "
                                             r"had cancelled the late calls"):
        await lesson06.check_run_tools_within(lingers)


async def test_run_tools_within_says_every_call_needs_a_message(fast: float) -> None:
    async def only_what_arrived(tool_calls: Sequence[ToolCall], registry: Registry, deadline: float) -> list[Message]:
        messages = await run_tools_within(tool_calls, registry, deadline)
        return [m for m in messages if "TimeoutError" not in m["content"]]

    with pytest.raises(ExerciseFailed, match=r"returned 3 messages for 5 tool calls: answer every call"):
        await lesson06.check_run_tools_within(only_what_arrived)


async def test_run_tools_within_wants_a_late_call_reported_as_a_timeout(fast: float) -> None:
    async def vague(tool_calls: Sequence[ToolCall], registry: Registry, deadline: float) -> list[Message]:
        messages = await run_tools_within(tool_calls, registry, deadline)
        return [{**m, "content": "Error: no result"} if "TimeoutError" in m["content"] else m for m in messages]

    with pytest.raises(ExerciseFailed, match=r"call 'call_2' \(get_forecast .*was too late, but your error says "
                                             r"'Error: no result': say it timed out"):
        await lesson06.check_run_tools_within(vague)


async def test_run_tools_within_says_a_hanging_tool_needs_a_timeout(fast: float) -> None:
    async def no_timeout(tool_calls: Sequence[ToolCall], registry: Registry, deadline: float) -> list[Message]:
        return await dispatch(tool_calls, registry)

    with pytest.raises(ExerciseFailed, match=r"was still waiting after \d+ s, though the deadline is 1 s: the hanging "
                                             r"tool never answers"):
        await lesson06.check_run_tools_within(no_timeout)


async def test_run_tools_within_says_asyncio_timeout_counts_wall_seconds(fast: float) -> None:
    async def wall_timeout(tool_calls: Sequence[ToolCall], registry: Registry, deadline: float) -> list[Message]:
        async def run(call: ToolCall) -> Message:
            try:
                async with asyncio.timeout(deadline):  # wall seconds: 20 simulated seconds at speed 20
                    return message(call, json.dumps(await registry[call.name](**json.loads(call.arguments))))
            except TimeoutError:
                return message(call, "Error: timed out")
            except Exception as exc:
                return message(call, error(exc))

        return list(await asyncio.gather(*(run(call) for call in tool_calls)))

    with pytest.raises(ExerciseFailed, match=r"gave up after 2\d\.\d simulated seconds, not 1: at speed 20 that is 1 "
                                             r"wall seconds"):
        await lesson06.check_run_tools_within(wall_timeout)


async def test_run_tools_within_says_not_to_wait_for_the_deadline_when_all_answered(fast: float) -> None:
    async def waits_out_the_deadline(tool_calls: Sequence[ToolCall], registry: Registry,
                                     deadline: float) -> list[Message]:
        tasks = [asyncio.create_task(run_tools_within([call], registry, deadline)) for call in tool_calls]
        await asyncio.sleep(deadline / get_speed())  # "the deadline": but everything was done long before
        return [(await task)[0] for task in tasks]

    with pytest.raises(ExerciseFailed, match=r"all had answered after 0\.\d\d s, but run_tools_within returned only at "
                                             r"the deadline \(2\.\d\d s of 2 s\)"):
        await lesson06.check_run_tools_within(waits_out_the_deadline)


async def test_run_tools_within_catches_a_failure_swallowed_silently(fast: float) -> None:
    async def swallows(tool_calls: Sequence[ToolCall], registry: Registry, deadline: float) -> list[Message]:
        messages = await run_tools_within(tool_calls, registry, deadline)
        return [{**m, "content": "{}"} if "ServiceUnavailable" in m["content"] else m for m in messages]

    with pytest.raises(ExerciseFailed, match=r"call 'call_4' \(get_stock_price .*but your message for it does not "
                                             r"say so"):
        await lesson06.check_run_tools_within(swallows)


async def test_run_tools_within_says_results_must_come_in_call_order(fast: float) -> None:
    async def finish_order(tool_calls: Sequence[ToolCall], registry: Registry, deadline: float) -> list[Message]:
        answered: list[Message] = []

        async def run(call: ToolCall) -> None:
            answered.extend(await run_tools_within([call], registry, deadline))

        async with asyncio.TaskGroup() as tg:
            for call in tool_calls:
                tg.create_task(run(call))
        return answered

    with pytest.raises(ExerciseFailed, match=r"in the order the tools finished"):
        await lesson06.check_run_tools_within(finish_order)


async def test_run_tools_within_says_a_blocking_call_froze_the_loop(fast: float) -> None:
    async def blocking(tool_calls: Sequence[ToolCall], registry: Registry, deadline: float) -> list[Message]:
        time.sleep(0.3)
        return await run_tools_within(tool_calls, registry, deadline)

    with pytest.raises(ExerciseFailed, match=r"the event loop was frozen for"):
        await lesson06.check_run_tools_within(blocking)
