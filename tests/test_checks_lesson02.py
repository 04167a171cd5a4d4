"""The notebook 02 checkers pass the reference solutions and fail each wrong one with its hint."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from asynclab import LLM, ServiceError
from asynclab.checks import ExerciseFailed, lesson02

# -- fetch_all(llm, prompts) -------------------------------------------------------------------


async def fetch_all(llm: LLM, prompts: Sequence[str]) -> list[str]:
    return list(await asyncio.gather(*(llm.complete(prompt) for prompt in prompts)))


async def fetch_all_one_by_one(llm: LLM, prompts: Sequence[str]) -> list[str]:
    return [await llm.complete(prompt) for prompt in prompts]


async def fetch_all_in_finish_order(llm: LLM, prompts: Sequence[str]) -> list[str]:
    return [await answer for answer in asyncio.as_completed([llm.complete(p) for p in prompts])]


async def fetch_all_with_the_wrong_model(llm: LLM, prompts: Sequence[str]) -> list[str]:
    return list(await asyncio.gather(*(llm.complete(p, model="summarizer") for p in prompts)))


async def fetch_all_then_a_summary_in_the_background(llm: LLM, prompts: Sequence[str]) -> list[str]:
    answers = list(await asyncio.gather(*(llm.complete(prompt) for prompt in prompts)))
    asyncio.create_task(llm.complete(" ".join(answers), model="summarizer"))  # noqa: RUF006 - the leak under test
    return answers


async def test_fetch_all_with_gather_passes(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson02.check_fetch_all(fetch_all)
    assert "✅ fetch_all returns all 6 answers in prompt order" in capsys.readouterr().out


async def test_fetch_all_one_prompt_after_another_fails_with_the_sum(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"your 6 calls ran one after another: \d\.\d\d s, the sum"):
        await lesson02.check_fetch_all(fetch_all_one_by_one)


async def test_fetch_all_in_finish_order_is_told_gather_keeps_argument_order(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match="in the order the calls FINISHED, not the order of the prompts"):
        await lesson02.check_fetch_all(fetch_all_in_finish_order)


async def test_fetch_all_with_the_wrong_model_names_the_first_wrong_answer(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"answers\[0\] is .* but llm.complete\('What is time to first"):
        await lesson02.check_fetch_all(fetch_all_with_the_wrong_model)


async def test_fetch_all_leaving_a_call_running_fails_and_the_call_is_cancelled(fast: float) -> None:
    before = asyncio.all_tasks()
    with pytest.raises(ExerciseFailed, match=r"returned while 1 call\(s\) were still running"):
        await lesson02.check_fetch_all(fetch_all_then_a_summary_in_the_background)
    assert not [t for t in asyncio.all_tasks() - before if not t.done()]


# -- first_answer(services, prompt) ------------------------------------------------------------


async def first_answer(services: Sequence[LLM], prompt: str) -> str:
    tasks = [asyncio.create_task(service.complete(prompt)) for service in services]
    try:
        for next_done in asyncio.as_completed(tasks):
            try:
                return await next_done
            except ServiceError as error:
                last_error = error
        raise last_error
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def first_answer_after_waiting_for_all(services: Sequence[LLM], prompt: str) -> str:
    answers = await asyncio.gather(*(s.complete(prompt) for s in services), return_exceptions=True)
    return next(a for a in answers if isinstance(a, str))


async def first_answer_without_cancelling(services: Sequence[LLM], prompt: str) -> str:
    for next_done in asyncio.as_completed([s.complete(prompt) for s in services]):
        try:
            return await next_done
        except ServiceError:
            continue
    raise RuntimeError("every replica failed")


async def first_answer_cancelling_without_awaiting(services: Sequence[LLM], prompt: str) -> str:
    tasks = [asyncio.create_task(s.complete(prompt)) for s in services]
    for next_done in asyncio.as_completed(tasks):
        try:
            answer = await next_done
        except ServiceError:
            continue
        for task in tasks:
            task.cancel()
        return answer
    raise RuntimeError("every replica failed")


async def first_answer_that_trusts_the_fastest(services: Sequence[LLM], prompt: str) -> str:
    tasks = [asyncio.create_task(s.complete(prompt)) for s in services]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return done.pop().result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_first_answer_with_as_completed_and_cancel_passes(
    fast: float, capsys: pytest.CaptureFixture[str]
) -> None:
    await lesson02.check_first_answer(first_answer)
    assert "✅ first_answer returns the fastest replica's answer" in capsys.readouterr().out


async def test_first_answer_waiting_for_every_replica_is_told_it_took_the_slowest(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"after \d\.\d\d s, the SLOWEST replica \(2\.00 s\)"):
        await lesson02.check_first_answer(first_answer_after_waiting_for_all)


async def test_first_answer_leaving_the_slower_calls_running_fails(fast: float) -> None:
    before = asyncio.all_tasks()
    with pytest.raises(ExerciseFailed, match=r"left 2 slower call\(s\) running.*Cancel the other tasks"):
        await lesson02.check_first_answer(first_answer_without_cancelling)
    assert not [t for t in asyncio.all_tasks() - before if not t.done()]


async def test_first_answer_cancelling_without_awaiting_is_told_to_await(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match="cancelled the slower calls but returned before they finished"):
        await lesson02.check_first_answer(first_answer_cancelling_without_awaiting)


async def test_first_answer_raising_the_fastest_replicas_error_is_told_to_skip_it(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"with the fastest replica \(llm-us\) down, your function raised the "
                                             r"ServiceUnavailable"):
        await lesson02.check_first_answer(first_answer_that_trusts_the_fastest)


async def first_answer_holding_one_back(services: Sequence[LLM], prompt: str) -> str:
    """Races the first two replicas and asks the third only when both have failed (issue 7)."""
    first = await _race(services[:2], prompt)
    if first is not None:
        return first
    answer = await _race(services[2:], prompt)
    if answer is None:
        raise RuntimeError("every replica failed")
    return answer


async def _race(services: Sequence[LLM], prompt: str) -> str | None:
    tasks = [asyncio.create_task(s.complete(prompt)) for s in services]
    try:
        for next_done in asyncio.as_completed(tasks):
            try:
                return await next_done
            except ServiceError:
                continue
        return None
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_first_answer_holding_a_replica_back_until_others_fail_is_caught(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"with three healthy replicas, not every replica was asked at "
                                             r"the start \(llm-asia never\): you held a replica back"):
        await lesson02.check_first_answer(first_answer_holding_one_back)


async def test_a_failed_check_names_its_exercise_when_rendered_in_a_notebook(fast: float) -> None:
    with pytest.raises(ExerciseFailed) as caught:
        await lesson02.check_first_answer(first_answer_after_waiting_for_all)
    title, *hint = caught.value._render_traceback_()
    assert "lesson02.check_first_answer" in title and "SLOWEST replica" in hint[0]
    assert not any("asynclab/checks" in line for line in hint)


async def test_the_replicas_race_has_one_fastest_and_one_broken_replica() -> None:
    healthy, broken = lesson02.replicas(), lesson02.replicas(fastest_fails=True)
    assert [s.latency.seconds() for s in healthy] == [0.8, 0.3, 2.0]
    assert [s.faults.error_rate for s in broken] == [0.0, 1.0, 0.0]
    two_down = lesson02.replicas(failing=lesson02.SCENARIOS["the two fastest replicas (llm-us, llm-eu) down"])
    assert [s.faults.error_rate for s in two_down] == [1.0, 1.0, 0.0]
