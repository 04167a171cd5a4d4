"""The notebook 02 checkers pass the reference solutions and fail each wrong one with its hint."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

import pytest

from asynclab import LLM, Hit, MetadataStore, NotFound, PineconeStore, ServiceError, timeout, wait_for
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
    if not services:
        raise ValueError("services must hold at least one replica, got an empty list")
    tasks = [asyncio.create_task(service.complete(prompt)) for service in services]
    errors: list[ServiceError] = []
    try:
        for next_done in asyncio.as_completed(tasks):
            try:
                return await next_done
            except ServiceError as error:
                errors.append(error)
        raise ExceptionGroup("every replica failed", errors)
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


# -- first_answer when every replica fails, and with no replicas ---------------------------------


async def first_answer_raising_the_last_error(services: Sequence[LLM], prompt: str) -> str:
    """The first edition's solution: UnboundLocalError on [], only the last error when all fail."""
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


async def first_answer_returning_none_when_all_fail(services: Sequence[LLM], prompt: str) -> str | None:
    if not services:
        raise ValueError("services must hold at least one replica")
    tasks = [asyncio.create_task(service.complete(prompt)) for service in services]
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


async def first_answer_without_checking_for_no_replicas(services: Sequence[LLM], prompt: str) -> str:
    tasks = [asyncio.create_task(service.complete(prompt)) for service in services]
    errors: list[ServiceError] = []
    try:
        for next_done in asyncio.as_completed(tasks):
            try:
                return await next_done
            except ServiceError as error:
                errors.append(error)
        raise ExceptionGroup("every replica failed", errors)  # ValueError from ExceptionGroup itself on []
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_first_answer_raising_only_the_last_error_is_told_to_raise_them_all(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"with every replica down, your function raised only llm-asia's error; "
                                             r"the errors of llm-eu, llm-us were lost"):
        await lesson02.check_first_answer(first_answer_raising_the_last_error)


async def test_first_answer_returning_none_when_every_replica_fails_is_told_to_raise(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"with every replica down, your function returned None: .*"
                                             r"raise ExceptionGroup"):
        await lesson02.check_first_answer(first_answer_returning_none_when_all_fail)


async def test_first_answer_whose_empty_exception_group_raises_value_error_passes(fast: float) -> None:
    # ExceptionGroup("…", []) raises "ValueError: second argument (exceptions) must be a non-empty
    # sequence" by itself: a ValueError, but not one that says what was wrong with the call.
    # The check accepts any ValueError; what it refuses is UnboundLocalError and friends.
    await lesson02.check_first_answer(first_answer_without_checking_for_no_replicas)


async def first_answer_unbound_on_empty(services: Sequence[LLM], prompt: str) -> str:
    """Right in every race; on [] it reads `answer` before assigning it (the UnboundLocalError under test)."""
    if not services:
        return answer  # noqa: F821 - read before it is assigned: the UnboundLocalError under test
    answer = await first_answer(services, prompt)
    return answer


async def test_first_answer_failing_on_an_empty_list_is_told_to_raise_value_error(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"with no replicas at all \(services=\[\]\), your function raised "
                                             r"UnboundLocalError.*raise a clear ValueError"):
        await lesson02.check_first_answer(first_answer_unbound_on_empty)


async def test_the_reference_first_answer_raises_a_group_of_every_replicas_error() -> None:
    services = lesson02.replicas(failing=lesson02.SCENARIOS["every replica down"])
    with pytest.raises(ExceptionGroup) as caught:
        await first_answer(services, "What is an AI agent?")
    assert sorted(e.service for e in caught.value.exceptions) == ["llm-asia", "llm-eu", "llm-us"]  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="at least one replica"):
        await first_answer([], "What is an AI agent?")


# -- brief(llm, store, meta, question, doc_id, seconds) -------------------------------------------


async def _metadata_or_none(meta: MetadataStore, doc_id: str) -> dict[str, object] | None:
    try:
        return await meta.get(doc_id)
    except NotFound:
        return None


async def brief(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str, doc_id: str,
                seconds: float) -> tuple[str, list[Hit], dict[str, object] | None]:
    async with timeout(seconds), asyncio.TaskGroup() as tg:
        answer = tg.create_task(llm.complete(question))
        hits = tg.create_task(store.search(question, k=3))
        info = tg.create_task(_metadata_or_none(meta, doc_id))
    return answer.result(), hits.result(), info.result()


async def brief_with_gather(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str, doc_id: str,
                            seconds: float) -> tuple[str, list[Hit], dict[str, object] | None]:
    """The alternative: gather(return_exceptions=True) under wait_for; re-raise what is not NotFound."""
    answer, hits, info = await wait_for(asyncio.gather(
        llm.complete(question), store.search(question, k=3), meta.get(doc_id), return_exceptions=True), seconds)
    for result in (answer, hits, info):
        if isinstance(result, BaseException) and not isinstance(result, NotFound):
            raise result
    return answer, hits, None if isinstance(info, NotFound) else info  # type: ignore[return-value]


async def brief_one_after_another(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str,
                                  doc_id: str, seconds: float) -> tuple[object, ...]:
    async with timeout(seconds):
        return await llm.complete(question), await store.search(question, k=3), await _metadata_or_none(meta, doc_id)


async def brief_with_except_star_around_the_group(llm: LLM, store: PineconeStore, meta: MetadataStore,
                                                  question: str, doc_id: str, seconds: float) -> tuple[object, ...]:
    info = None
    async with timeout(seconds):
        try:
            async with asyncio.TaskGroup() as tg:
                answer = tg.create_task(llm.complete(question))
                hits = tg.create_task(store.search(question, k=3))
                found = tg.create_task(meta.get(doc_id))
            info = found.result()
        except* NotFound:
            pass  # too late: the group has cancelled answer and hits already
    return answer.result(), hits.result(), info


async def brief_letting_not_found_through(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str,
                                          doc_id: str, seconds: float) -> tuple[object, ...]:
    async with timeout(seconds), asyncio.TaskGroup() as tg:
        answer = tg.create_task(llm.complete(question))
        hits = tg.create_task(store.search(question, k=3))
        info = tg.create_task(meta.get(doc_id))
    return answer.result(), hits.result(), info.result()


async def brief_with_plain_gather(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str,
                                  doc_id: str, seconds: float) -> tuple[object, ...]:
    async with timeout(seconds):
        return tuple(await asyncio.gather(llm.complete(question), store.search(question, k=3),
                                          _metadata_or_none(meta, doc_id)))


async def brief_swallowing_errors(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str,
                                  doc_id: str, seconds: float) -> tuple[object, ...]:
    async def quietly(call: Awaitable[object]) -> object:
        try:
            return await call
        except Exception:  # the swallowed error under test
            return None
    async with timeout(seconds), asyncio.TaskGroup() as tg:
        parts = [tg.create_task(quietly(call)) for call in
                 (llm.complete(question), store.search(question, k=3), meta.get(doc_id))]
    return tuple(part.result() for part in parts)


async def brief_without_a_deadline(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str,
                                   doc_id: str, seconds: float) -> tuple[object, ...]:
    async with asyncio.TaskGroup() as tg:
        answer = tg.create_task(llm.complete(question))
        hits = tg.create_task(store.search(question, k=3))
        info = tg.create_task(_metadata_or_none(meta, doc_id))
    return answer.result(), hits.result(), info.result()


async def brief_with_a_deadline_in_wall_seconds(llm: LLM, store: PineconeStore, meta: MetadataStore,
                                                question: str, doc_id: str, seconds: float) -> tuple[object, ...]:
    async with asyncio.timeout(seconds), asyncio.TaskGroup() as tg:  # wall seconds: 20× too long at speed 20
        answer = tg.create_task(llm.complete(question))
        hits = tg.create_task(store.search(question, k=3))
        info = tg.create_task(_metadata_or_none(meta, doc_id))
    return answer.result(), hits.result(), info.result()


async def brief_swallowing_the_deadline(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str,
                                        doc_id: str, seconds: float) -> tuple[object, ...] | None:
    try:
        return await brief(llm, store, meta, question, doc_id, seconds)
    except TimeoutError:
        return None


async def brief_with_five_hits(llm: LLM, store: PineconeStore, meta: MetadataStore, question: str,
                               doc_id: str, seconds: float) -> tuple[object, ...]:
    async with timeout(seconds), asyncio.TaskGroup() as tg:
        answer = tg.create_task(llm.complete(question))
        hits = tg.create_task(store.search(question, k=5))
        info = tg.create_task(_metadata_or_none(meta, doc_id))
    return answer.result(), hits.result(), info.result()


async def test_brief_with_a_task_group_and_a_timeout_passes(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson02.check_brief(brief)
    assert "✅ brief returns all three parts in" in capsys.readouterr().out


async def test_brief_with_gather_return_exceptions_and_wait_for_passes_too(
    fast: float, capsys: pytest.CaptureFixture[str]
) -> None:
    await lesson02.check_brief(brief_with_gather)
    assert "✅ brief returns all three parts" in capsys.readouterr().out


async def test_brief_one_call_after_another_fails_with_the_sum(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"your 3 calls ran one after another: \d\.\d\d s, the sum"):
        await lesson02.check_brief(brief_one_after_another)


async def test_brief_with_except_star_around_the_group_is_told_the_siblings_were_cancelled(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"with a missing document, your TaskGroup cancelled the other calls "
                                             r"\(llm, pinecone\).*Catch NotFound inside the task"):
        await lesson02.check_brief(brief_with_except_star_around_the_group)


async def test_brief_letting_not_found_through_is_told_a_missing_document_is_no_failure(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"with a missing document, your function raised .*NotFound.*"
                                             r"not a failure of the brief"):
        await lesson02.check_brief(brief_letting_not_found_through)


async def test_brief_with_plain_gather_leaves_the_llm_running_when_the_store_fails(fast: float) -> None:
    before = asyncio.all_tasks()
    with pytest.raises(ExerciseFailed, match=r"with the vector store down, your function ended while 1 call\(s\) "
                                             r"it started were still running \(LLM.complete\)"):
        await lesson02.check_brief(brief_with_plain_gather)
    assert not [t for t in asyncio.all_tasks() - before if not t.done()]


async def test_brief_swallowing_errors_is_told_it_swallowed_the_stores_failure(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"with the vector store down, your function returned .* instead of "
                                             r"raising: it swallowed the store's ServiceUnavailable"):
        await lesson02.check_brief(brief_swallowing_errors)


async def test_brief_without_a_deadline_is_told_to_use_asynclab_timeout(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"with an LLM slower than the deadline, your function took \d\.\d\d s, "
                                             r"past the deadline of 1\.5 s: .*asynclab.timeout"):
        await lesson02.check_brief(brief_without_a_deadline)


async def test_brief_with_asyncio_timeout_is_told_it_counts_wall_seconds(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"past the deadline of 1\.5 s.*asyncio.timeout counts wall seconds"):
        await lesson02.check_brief(brief_with_a_deadline_in_wall_seconds)


async def test_brief_returning_none_at_the_deadline_is_told_it_swallowed_the_timeout(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"returned None after 1\.\d\d s instead of raising TimeoutError"):
        await lesson02.check_brief(brief_swallowing_the_deadline)


async def test_brief_with_the_wrong_number_of_hits_is_told_the_right_ones(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"with all three parts found, hits are \['doc-076', .* but "
                                             r"store.search\(question, k=3\) finds"):
        await lesson02.check_brief(brief_with_five_hits)


async def test_a_brief_not_written_yet_is_told_to_replace_not_implemented(fast: float) -> None:
    async def brief_stub(*args: object) -> None:
        raise NotImplementedError  # the stub cell as the notebook ships it

    with pytest.raises(ExerciseFailed, match="not done yet: replace `raise NotImplementedError`"):
        await lesson02.check_brief(brief_stub)
