"""The notebook 10 checkers pass the reference solutions and fail wrong ones with their hints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest

from asynclab import Document, run_pipeline
from asynclab.checks import ExerciseFailed, lesson10

Stage = Callable[[Any], Awaitable[Any]]

# -- index_documents ---------------------------------------------------------------------------


async def staged(
    source: AsyncIterator[Document],
    stages: Sequence[Stage],
    workers: Sequence[int],
    maxsize: int,
    *,
    sentinels: Callable[[int, int], int] = lambda stage, workers: workers,
) -> dict[str, Any]:
    """A hand-built pipeline like the lesson's; ``sentinels(i, n)`` says how many stage i gets (n workers)."""
    queues: list[asyncio.Queue[Any]] = [asyncio.Queue(maxsize) for _ in stages]
    results: dict[str, Any] = {}

    async def worker(i: int) -> None:
        while (item := await queues[i].get()) is not None:
            doc_id, value = item
            value = await stages[i](value)
            if i + 1 < len(stages):
                await queues[i + 1].put((doc_id, value))
            else:
                results[doc_id] = value

    async def crew(i: int) -> None:
        async with asyncio.TaskGroup() as group:
            for _ in range(workers[i]):
                group.create_task(worker(i))
        if i + 1 < len(stages):
            for _ in range(sentinels(i + 1, workers[i + 1])):
                await queues[i + 1].put(None)

    async with asyncio.TaskGroup() as group:
        for i in range(len(stages)):
            group.create_task(crew(i))
        async for doc in source:
            await queues[0].put((doc.id, doc))
        for _ in range(sentinels(0, workers[0])):
            await queues[0].put(None)
    return results


async def index_documents(
    source: AsyncIterator[Document], extract: Stage, summarize: Stage, embed: Stage, maxsize: int
) -> dict[str, Any]:
    """The reference solution (as in the solutions notebook): 1, 3 and 3 workers."""
    return await staged(source, [extract, summarize, embed], [1, 3, 3], maxsize)


async def test_index_documents_passes_the_reference(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson10.check_index_documents(index_documents)
    out = capsys.readouterr().out
    assert "✅ index_documents: 24 documents, each once" in out and "1 + 3 + 3 workers" in out


async def test_index_documents_passes_the_package_pipeline(fast: float) -> None:
    async def with_package(
        source: AsyncIterator[Document], extract: Stage, summarize: Stage, embed: Stage, maxsize: int
    ) -> dict[str, Any]:
        outcomes = await run_pipeline(source, [extract, summarize, embed], workers=[1, 3, 3], maxsize=maxsize)
        return {outcome.item.id: outcome.value for outcome in outcomes}

    await lesson10.check_index_documents(with_package)


async def test_index_documents_says_one_document_after_another_is_sequential(fast: float) -> None:
    async def sequential(
        source: AsyncIterator[Document], extract: Stage, summarize: Stage, embed: Stage, maxsize: int
    ) -> dict[str, Any]:
        return {doc.id: await embed(await summarize(await extract(doc))) async for doc in source}

    with pytest.raises(ExerciseFailed, match="your stages ran one call at a time, one document after another"):
        await lesson10.check_index_documents(sequential)


async def test_index_documents_says_gathering_every_document_is_a_fan_out(fast: float) -> None:
    async def fan_out(
        source: AsyncIterator[Document], extract: Stage, summarize: Stage, embed: Stage, maxsize: int
    ) -> dict[str, Any]:
        docs = [doc async for doc in source]

        async def chain(doc: Document) -> Any:
            return await embed(await summarize(await extract(doc)))

        return dict(zip([doc.id for doc in docs], await asyncio.gather(*map(chain, docs)), strict=True))

    with pytest.raises(ExerciseFailed, match=r"a fan-out with gather \(or a worker per document\), not a pipeline"):
        await lesson10.check_index_documents(fan_out)


async def test_index_documents_names_the_stage_that_became_the_bottleneck(fast: float) -> None:
    async def two_embedders(
        source: AsyncIterator[Document], extract: Stage, summarize: Stage, embed: Stage, maxsize: int
    ) -> dict[str, Any]:
        return await staged(source, [extract, summarize, embed], [1, 3, 2], maxsize)

    with pytest.raises(ExerciseFailed, match=r"stage embed ran at most 2 call\(s\) at once: 2 / 0.5 s = 4.00 "
                                             r"documents/s.*Give it ⌈0.5 s × 5/s⌉ = 3 workers"):
        await lesson10.check_index_documents(two_embedders)


async def test_index_documents_says_workers_beyond_the_capacity_only_queue(fast: float) -> None:
    async def five_summarizers(
        source: AsyncIterator[Document], extract: Stage, summarize: Stage, embed: Stage, maxsize: int
    ) -> dict[str, Any]:
        return await staged(source, [extract, summarize, embed], [1, 5, 3], maxsize)

    with pytest.raises(ExerciseFailed, match=r"up to 5 summarize calls were in flight, but the service serves 3"):
        await lesson10.check_index_documents(five_summarizers)


async def test_index_documents_lets_spare_workers_after_the_bottleneck_pass(
    fast: float, capsys: pytest.CaptureFixture[str]
) -> None:
    async def generous(
        source: AsyncIterator[Document], extract: Stage, summarize: Stage, embed: Stage, maxsize: int
    ) -> dict[str, Any]:
        return await staged(source, [extract, summarize, embed], [2, 3, 6], maxsize)

    await lesson10.check_index_documents(generous)
    # Items reach embed at the bottleneck's pace, so at most 3 of its 6 workers are ever busy.
    assert "with 2 + 3 + 3 workers" in capsys.readouterr().out


async def test_index_documents_catches_an_unbounded_queue(fast: float) -> None:
    async def unbounded(
        source: AsyncIterator[Document], extract: Stage, summarize: Stage, embed: Stage, maxsize: int
    ) -> dict[str, Any]:
        return await staged(source, [extract, summarize, embed], [1, 3, 3], 0)

    with pytest.raises(ExerciseFailed, match=r"\d+ documents had been read from the source but not yet started: "
                                             r"the first queue is not bounded"):
        await lesson10.check_index_documents(unbounded)


async def test_index_documents_names_a_missing_sentinel_per_worker(fast: float) -> None:
    async def one_sentinel_per_stage(
        source: AsyncIterator[Document], extract: Stage, summarize: Stage, embed: Stage, maxsize: int
    ) -> dict[str, Any]:
        return await staged(source, [extract, summarize, embed], [1, 3, 3], maxsize, sentinels=lambda i, n: 1)

    with pytest.raises(ExerciseFailed, match=r"stopped making progress.*5 worker\(s\) still wait in queue.get\(\) "
                                             r"after the last item"):
        await lesson10.check_index_documents(one_sentinel_per_stage)


async def test_index_documents_says_workers_left_running_leak(fast: float) -> None:
    async def joined_not_stopped(
        source: AsyncIterator[Document], extract: Stage, summarize: Stage, embed: Stage, maxsize: int
    ) -> dict[str, Any]:
        stages, counts = [extract, summarize, embed], [1, 3, 3]
        queues: list[asyncio.Queue[Any]] = [asyncio.Queue(maxsize) for _ in stages]
        results: dict[str, Any] = {}

        async def worker(i: int) -> None:
            while True:
                doc_id, value = await queues[i].get()
                value = await stages[i](value)
                if i + 1 < len(stages):
                    await queues[i + 1].put((doc_id, value))
                else:
                    results[doc_id] = value
                queues[i].task_done()

        for i, count in enumerate(counts):
            for _ in range(count):
                asyncio.create_task(worker(i))  # noqa: RUF006 - the mistake under test
        async for doc in source:
            await queues[0].put((doc.id, doc))
        for queue in queues:
            await queue.join()
        return results  # the seven workers still wait in queue.get()

    with pytest.raises(ExerciseFailed, match=r"your function returned while 7 task\(s\) it started were still running"):
        await lesson10.check_index_documents(joined_not_stopped)


async def test_index_documents_says_which_text_was_embedded_instead_of_the_summary(fast: float) -> None:
    async def embeds_the_text(
        source: AsyncIterator[Document], extract: Stage, summarize: Stage, embed: Stage, maxsize: int
    ) -> dict[str, Any]:
        async def summarize_then_drop(text: str) -> str:
            await summarize(text)
            return text  # the summary is lost: the next stage embeds the extracted text

        return await staged(source, [extract, summarize_then_drop, embed], [1, 3, 3], maxsize)

    with pytest.raises(ExerciseFailed, match="is the embedding of the extracted text, not of the document's summary"):
        await lesson10.check_index_documents(embeds_the_text)


async def test_index_documents_catches_a_pipeline_that_waits_for_each_batch(fast: float) -> None:
    async def in_batches(
        source: AsyncIterator[Document], extract: Stage, summarize: Stage, embed: Stage, maxsize: int
    ) -> dict[str, Any]:
        vectors: dict[str, Any] = {}
        batch: list[Document] = []
        async for doc in source:
            batch.append(doc)
            if len(batch) == 3:  # three at a time, every stage waiting for the whole batch
                values: list[Any] = list(batch)
                for stage in (extract, summarize, embed):
                    values = await asyncio.gather(*map(stage, values))
                vectors.update(zip([d.id for d in batch], values, strict=True))
                batch = []
        return vectors

    with pytest.raises(ExerciseFailed, match=r"documents came out at \d\.\d\d/s, below the 5/s of the slowest stage"):
        await lesson10.check_index_documents(in_batches)


def test_steady_rate_forgives_one_stall_but_not_a_pause_every_few_items() -> None:
    smooth = [0.2 * i for i in range(24)]
    stalled = smooth[:10] + [t + 3.0 for t in smooth[10:]]  # the loop stood still for 3 s once
    batched = [1.2 * (i // 3) for i in range(24)]             # three at once, then 1.2 s of nothing
    assert lesson10.steady_rate(smooth) == pytest.approx(5.0)
    assert lesson10.steady_rate(stalled) == pytest.approx(5.0)
    assert lesson10.steady_rate(batched) < 0.85 * 5.0  # 3.5/s: below what the checker accepts


# -- summarize_all -----------------------------------------------------------------------------


def summarize_all_with(
    *, catch: bool = True, sentinels: str = "per worker", join: bool = False, task_done_on_error: bool = True,
    workers_used: int | None = None, record: bool = True,
) -> Callable[..., Awaitable[tuple[dict[str, str], dict[str, Exception]]]]:
    """The exercise's pipeline with each of its mistakes switchable (all off: the reference solution)."""

    async def summarize_all(
        docs: Sequence[Document], summarize: Stage, workers: int = 3
    ) -> tuple[dict[str, str], dict[str, Exception]]:
        count = workers_used or workers
        queue: asyncio.Queue[Document | None] = asyncio.Queue(maxsize=count)
        summaries: dict[str, str] = {}
        errors: dict[str, Exception] = {}

        async def worker() -> None:
            while True:
                doc = await queue.get()
                if doc is None:
                    return  # no task_done() for the sentinel
                if catch:
                    try:
                        summaries[doc.id] = await summarize(doc.text)
                    except Exception as exc:
                        if record:
                            errors[doc.id] = exc
                        if not task_done_on_error:
                            continue
                else:
                    summaries[doc.id] = await summarize(doc.text)
                queue.task_done()

        async with asyncio.TaskGroup() as group:
            for _ in range(count):
                group.create_task(worker())
            for doc in docs:
                await queue.put(doc)
            for _ in range(count if sentinels == "per worker" else 1):
                await queue.put(None)
            if join:
                await queue.join()
        return summaries, errors

    return summarize_all


async def test_summarize_all_passes_the_reference(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson10.check_summarize_all(summarize_all_with())
    out = capsys.readouterr().out
    assert "✅ summarize_all: 11 summaries and 1 error (doc-empty: ValueError)" in out and "with 3 workers" in out


async def test_summarize_all_passes_task_done_in_finally_with_join_and_cancel(fast: float) -> None:
    async def joined(
        docs: Sequence[Document], summarize: Stage, workers: int = 3
    ) -> tuple[dict[str, str], dict[str, Exception]]:
        queue: asyncio.Queue[Document] = asyncio.Queue(maxsize=workers)
        summaries: dict[str, str] = {}
        errors: dict[str, Exception] = {}

        async def worker() -> None:
            while True:
                doc = await queue.get()
                try:
                    summaries[doc.id] = await summarize(doc.text)
                except Exception as exc:
                    errors[doc.id] = exc
                finally:
                    queue.task_done()

        tasks = [asyncio.create_task(worker()) for _ in range(workers)]
        for doc in docs:
            await queue.put(doc)
        await queue.join()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return summaries, errors

    await lesson10.check_summarize_all(joined)


async def test_summarize_all_says_the_bad_document_stopped_the_pipeline(fast: float) -> None:
    broken = summarize_all_with(catch=False, sentinels="one", join=True)  # the exercise as given
    with pytest.raises(ExerciseFailed, match=r"one bad document \(doc-empty, a page with no text\) stopped the whole "
                                             r"pipeline: 1 error\(s\) inside a TaskGroup: ValueError"):
        await lesson10.check_summarize_all(broken)


async def test_summarize_all_names_join_and_the_missing_sentinels_together(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"(?s)1\. It waits in queue.join\(\).*2\. 2 worker\(s\) still wait in "
                                             r"queue.get\(\)"):
        await lesson10.check_summarize_all(summarize_all_with(sentinels="one", join=True))


async def test_summarize_all_names_a_missing_sentinel_per_worker(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"stopped making progress: no call for 2 simulated seconds.*2 worker\(s\) "
                                             r"still wait in queue.get\(\) after the last item"):
        await lesson10.check_summarize_all(summarize_all_with(sentinels="one"))


async def test_summarize_all_names_a_join_that_waits_for_a_task_done_never_called(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"It waits in queue.join\(\), which returns only when task_done\(\)"):
        await lesson10.check_summarize_all(summarize_all_with(join=True, task_done_on_error=False))


async def test_summarize_all_says_a_swallowed_error_was_dropped(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"doc-empty .* is in neither summaries nor errors: its failure was "):
        await lesson10.check_summarize_all(summarize_all_with(record=False))


async def test_summarize_all_says_one_worker_is_sequential(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"your summaries ran one at a time"):
        await lesson10.check_summarize_all(summarize_all_with(workers_used=1))


async def test_summarize_all_says_workers_left_waiting_leak(fast: float) -> None:
    async def no_sentinels(
        docs: Sequence[Document], summarize: Stage, workers: int = 3
    ) -> tuple[dict[str, str], dict[str, Exception]]:
        queue: asyncio.Queue[Document] = asyncio.Queue(maxsize=workers)
        summaries: dict[str, str] = {}
        errors: dict[str, Exception] = {}

        async def worker() -> None:
            while True:
                doc = await queue.get()
                try:
                    summaries[doc.id] = await summarize(doc.text)
                except Exception as exc:
                    errors[doc.id] = exc
                queue.task_done()

        for _ in range(workers):
            asyncio.create_task(worker())  # noqa: RUF006 - the mistake under test
        for doc in docs:
            await queue.put(doc)
        await queue.join()
        return summaries, errors

    with pytest.raises(ExerciseFailed, match=r"your function returned while 3 task\(s\) it started were still running"):
        await lesson10.check_summarize_all(no_sentinels)


async def test_summarize_all_shows_the_expected_summary_when_a_result_is_wrong(fast: float) -> None:
    async def titles(
        docs: Sequence[Document], summarize: Stage, workers: int = 3
    ) -> tuple[dict[str, str], dict[str, Exception]]:
        async def titled(text: str) -> str:
            doc = next(doc for doc in docs if doc.text == text)
            await summarize(text)
            return doc.title  # the wrong value: the title, not what summarize returned

        return await summarize_all_with()(docs, titled, workers)

    with pytest.raises(ExerciseFailed, match=r"summaries\['doc-\d+'\] is .*, but summarize\(doc.text\) returns"):
        await lesson10.check_summarize_all(titles)


async def test_a_stall_on_something_else_lists_where_the_tasks_wait(fast: float) -> None:
    async def waits_for_an_event(
        docs: Sequence[Document], summarize: Stage, workers: int = 3
    ) -> tuple[dict[str, str], dict[str, Exception]]:
        await asyncio.Event().wait()  # nobody sets it
        return {}, {}

    with pytest.raises(ExerciseFailed, match=r"stopped making progress.*Its tasks wait in: .*Event.wait"):
        await lesson10.check_summarize_all(waits_for_an_event)


def test_stuck_hint_names_a_task_waiting_to_put_into_a_full_queue() -> None:
    async def scenario() -> str:
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        await queue.put(1)
        blocked = asyncio.create_task(queue.put(2))
        await asyncio.sleep(0)
        hint = lesson10.stuck_hint([blocked])
        blocked.cancel()
        return hint

    assert "1 task(s) wait in queue.put() on a full queue that nobody reads" in asyncio.run(scenario())
