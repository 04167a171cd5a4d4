"""The notebook 09 checkers pass the reference solutions and fail wrong ones with their hints."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from asynclab import Embeddings, MicroBatcher, timeout
from asynclab.checks import ExerciseFailed, lesson09
from asynclab.services.embeddings import Vector

# -- embed_all -------------------------------------------------------------------------------------


async def embed_all(emb: Embeddings, chunks: list[str], limit: int, max_batch: int) -> list[Vector]:
    """The reference solution (as in the solutions notebook)."""
    semaphore = asyncio.Semaphore(limit)

    async def one(batch: list[str]) -> list[Vector]:
        async with semaphore:
            return await emb.embed_batch(batch)

    batches = [chunks[i : i + max_batch] for i in range(0, len(chunks), max_batch)]
    results = await asyncio.gather(*(one(batch) for batch in batches))
    return [vector for batch in results for vector in batch]


async def test_embed_all_passes_the_reference(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson09.check_embed_all(embed_all)
    out = capsys.readouterr().out
    assert "✅ embed_all: 400 chunks in 13 requests of at most 32 texts, at most 8 in flight" in out


async def test_embed_all_passes_a_worker_pool(fast: float) -> None:
    async def workers(emb: Embeddings, chunks: list[str], limit: int, max_batch: int) -> list[Vector]:
        starts = asyncio.Queue[int]()
        for i in range(0, len(chunks), max_batch):
            starts.put_nowait(i)
        vectors: list[Any] = [None] * len(chunks)

        async def worker() -> None:
            while not starts.empty():
                i = starts.get_nowait()
                vectors[i : i + max_batch] = await emb.embed_batch(chunks[i : i + max_batch])

        async with asyncio.TaskGroup() as tg:
            for _ in range(limit):
                tg.create_task(worker())
        return vectors

    await lesson09.check_embed_all(workers)


async def test_embed_all_says_a_batch_is_too_large(fast: float) -> None:
    async def one_batch(emb: Embeddings, chunks: list[str], limit: int, max_batch: int) -> list[Vector]:
        return await emb.embed_batch(chunks)

    with pytest.raises(ExerciseFailed, match="one request carried 400 texts, but the provider takes at most 32"):
        await lesson09.check_embed_all(one_batch)


async def test_embed_all_catches_batches_without_the_limit(fast: float) -> None:
    async def unlimited(emb: Embeddings, chunks: list[str], limit: int, max_batch: int) -> list[Vector]:
        batches = [chunks[i : i + max_batch] for i in range(0, len(chunks), max_batch)]
        results = await asyncio.gather(*(emb.embed_batch(batch) for batch in batches))
        return [vector for batch in results for vector in batch]

    with pytest.raises(ExerciseFailed, match=r"13 requests were in flight at once, but the limit is 8\. Hold one "):
        await lesson09.check_embed_all(unlimited)


async def test_embed_all_catches_a_semaphore_made_per_request(fast: float) -> None:
    async def own_semaphores(emb: Embeddings, chunks: list[str], limit: int, max_batch: int) -> list[Vector]:
        async def one(batch: list[str]) -> list[Vector]:
            async with asyncio.Semaphore(limit):  # a new one each time: limits nothing
                return await emb.embed_batch(batch)

        batches = [chunks[i : i + max_batch] for i in range(0, len(chunks), max_batch)]
        results = await asyncio.gather(*(one(batch) for batch in batches))
        return [vector for batch in results for vector in batch]

    with pytest.raises(ExerciseFailed, match="created once and shared by every request"):
        await lesson09.check_embed_all(own_semaphores)


async def test_embed_all_says_the_last_partial_batch_is_missing(fast: float) -> None:
    async def drops_the_tail(emb: Embeddings, chunks: list[str], limit: int, max_batch: int) -> list[Vector]:
        semaphore = asyncio.Semaphore(limit)

        async def one(batch: list[str]) -> list[Vector]:
            async with semaphore:
                return await emb.embed_batch(batch)

        batches = [chunks[i : i + max_batch] for i in range(0, len(chunks) - max_batch + 1, max_batch)]
        results = await asyncio.gather(*(one(batch) for batch in batches))
        return [vector for batch in results for vector in batch]

    with pytest.raises(ExerciseFailed, match=r"16 of the 400 chunks were never embedded \(the first is chunk 384\)"):
        await lesson09.check_embed_all(drops_the_tail)


async def test_embed_all_says_overlapping_batches_embed_chunks_twice(fast: float) -> None:
    async def overlapping(emb: Embeddings, chunks: list[str], limit: int, max_batch: int) -> list[Vector]:
        semaphore = asyncio.Semaphore(limit)

        async def one(batch: list[str]) -> list[Vector]:
            async with semaphore:
                return await emb.embed_batch(batch)

        step = max_batch - 1  # an off-by-one: each batch repeats the last chunk of the one before
        results = await asyncio.gather(*(one(chunks[i : i + max_batch]) for i in range(0, len(chunks), step)))
        return [vector for batch in results for vector in batch][: len(chunks)]

    with pytest.raises(ExerciseFailed, match="chunk 31 was embedded 2 times: the batches must not overlap"):
        await lesson09.check_embed_all(overlapping)


async def test_embed_all_says_one_text_per_request_misses_batching(fast: float) -> None:
    async def singles(emb: Embeddings, chunks: list[str], limit: int, max_batch: int) -> list[Vector]:
        semaphore = asyncio.Semaphore(limit)

        async def one(chunk: str) -> Vector:
            async with semaphore:
                return await emb.embed(chunk)

        return list(await asyncio.gather(*(one(chunk) for chunk in chunks)))

    with pytest.raises(ExerciseFailed, match=r"you sent one text per request \(400 requests\)"):
        await lesson09.check_embed_all(singles)


async def test_embed_all_wants_the_vectors_in_chunk_order(fast: float) -> None:
    async def completion_order(emb: Embeddings, chunks: list[str], limit: int, max_batch: int) -> list[Vector]:
        semaphore = asyncio.Semaphore(limit)

        async def one(batch: list[str]) -> list[Vector]:
            async with semaphore:
                return await emb.embed_batch(batch)

        batches = [chunks[i : i + max_batch] for i in range(0, len(chunks), max_batch)]
        vectors = []
        for done in asyncio.as_completed([one(batch) for batch in reversed(batches)]):
            vectors.extend(await done)
        return vectors

    with pytest.raises(ExerciseFailed, match="you returned the right vectors in the wrong order"):
        await lesson09.check_embed_all(completion_order)


async def test_embed_all_says_to_flatten_the_batches(fast: float) -> None:
    async def nested(emb: Embeddings, chunks: list[str], limit: int, max_batch: int) -> list[Any]:
        semaphore = asyncio.Semaphore(limit)

        async def one(batch: list[str]) -> list[Vector]:
            async with semaphore:
                return await emb.embed_batch(batch)

        batches = [chunks[i : i + max_batch] for i in range(0, len(chunks), max_batch)]
        return list(await asyncio.gather(*(one(batch) for batch in batches)))

    with pytest.raises(ExerciseFailed, match="embed_all returned 13 lists, one per request: flatten them"):
        await lesson09.check_embed_all(nested)


async def test_embed_all_catches_batches_sent_one_after_another(fast: float) -> None:
    async def sequential(emb: Embeddings, chunks: list[str], limit: int, max_batch: int) -> list[Vector]:
        vectors = []
        for i in range(0, len(chunks), max_batch):
            vectors.extend(await emb.embed_batch(chunks[i : i + max_batch]))
        return vectors

    with pytest.raises(ExerciseFailed, match=r"your 13 requests ran one after another \(\d+\.\d\d s\)"):
        await lesson09.check_embed_all(sequential)


async def test_embed_all_wants_batches_filled_up_to_max_batch(fast: float) -> None:
    async def small_batches(emb: Embeddings, chunks: list[str], limit: int, max_batch: int) -> list[Vector]:
        return await embed_all(emb, chunks, limit, 4)  # 100 requests of 4: 13 waves

    with pytest.raises(ExerciseFailed, match=r"your 100 requests of about 4 texts need 1\.56 s .* batches of 32 need "
                                             r"0\.52 s"):
        await lesson09.check_embed_all(small_batches)


async def test_embed_all_catches_a_limit_lower_than_allowed(fast: float) -> None:
    async def timid(emb: Embeddings, chunks: list[str], limit: int, max_batch: int) -> list[Vector]:
        return await embed_all(emb, chunks, 2, max_batch)

    with pytest.raises(ExerciseFailed, match="at most 2 requests were in flight, but the limit allows 8"):
        await lesson09.check_embed_all(timid)


async def test_embed_all_catches_a_blocking_wait(fast: float) -> None:
    async def naps(emb: Embeddings, chunks: list[str], limit: int, max_batch: int) -> list[Vector]:
        time.sleep(0.3)  # a blocking pause inside async def (6 simulated seconds at speed 20)
        return await embed_all(emb, chunks, limit, max_batch)

    with pytest.raises(ExerciseFailed, match="the event loop was frozen"):
        await lesson09.check_embed_all(naps)


def test_plan_seconds_predicts_waves_of_the_slowest_request() -> None:
    assert lesson09.plan_seconds([32] * 12 + [16], limit=8) == pytest.approx(0.26 + 0.26)
    assert lesson09.plan_seconds([1] * 16, limit=8) == pytest.approx(2 * 0.105)
    assert lesson09.plan_seconds([32] * 13, limit=1) == pytest.approx(13 * 0.26)


# -- micro_batcher ---------------------------------------------------------------------------------


async def micro_batcher(requests: asyncio.Queue[Any], emb: Embeddings, max_batch: int, max_wait: float) -> None:
    """The reference solution (as in the solutions notebook)."""

    async def send(batch: list[tuple[str, asyncio.Future[Vector]]]) -> None:
        vectors = await emb.embed_batch([text for text, _ in batch])
        for (_, future), vector in zip(batch, vectors, strict=True):
            future.set_result(vector)

    async with asyncio.TaskGroup() as tg:
        ended = False
        while not ended:
            first = await requests.get()
            if first is None:
                break
            batch = [first]
            try:
                async with timeout(max_wait):  # from the oldest request: the first of the batch
                    while len(batch) < max_batch:
                        request = await requests.get()
                        if request is None:
                            ended = True
                            break
                        batch.append(request)
            except TimeoutError:
                pass
            tg.create_task(send(batch))


async def test_micro_batcher_passes_the_reference(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson09.check_micro_batcher(micro_batcher)
    out = capsys.readouterr().out
    # The burst makes two full batches and one of 4; the trickle batches of about 3; then three alone.
    assert "✅ micro_batcher: 35 callers in" in out and "sizes [8, 8, 4, " in out and out.rstrip().endswith(
        "nothing was left running."
    )


async def test_micro_batcher_passes_the_package_batcher(fast: float) -> None:
    async def with_the_package(requests: asyncio.Queue[Any], emb: Embeddings, max_batch: int, max_wait: float) -> None:
        async with MicroBatcher(emb.embed_batch, max_batch=max_batch, max_wait=max_wait) as batcher, \
                asyncio.TaskGroup() as tg:

            async def answer(text: str, future: asyncio.Future[Vector]) -> None:
                future.set_result(await batcher.submit(text))

            while (request := await requests.get()) is not None:
                tg.create_task(answer(*request))

    await lesson09.check_micro_batcher(with_the_package)


async def test_micro_batcher_says_it_must_wait_for_none(fast: float) -> None:
    async def returns_at_once(requests: asyncio.Queue[Any], emb: Embeddings, max_batch: int, max_wait: float) -> None:
        first = await requests.get()
        vectors = await emb.embed_batch([first[0]])
        first[1].set_result(vectors[0])

    with pytest.raises(ExerciseFailed, match="your batcher returned before None arrived"):
        await lesson09.check_micro_batcher(returns_at_once)


async def test_micro_batcher_catches_batches_left_in_flight(fast: float) -> None:
    async def leaves_them(requests: asyncio.Queue[Any], emb: Embeddings, max_batch: int, max_wait: float) -> None:
        background = set()

        async def send(batch: list[tuple[str, asyncio.Future[Vector]]]) -> None:
            vectors = await emb.embed_batch([text for text, _ in batch])
            for (_, future), vector in zip(batch, vectors, strict=True):
                future.set_result(vector)

        ended = False
        while not ended:
            first = await requests.get()
            if first is None:
                break
            batch = [first]
            try:
                async with timeout(max_wait):
                    while len(batch) < max_batch:
                        request = await requests.get()
                        if request is None:
                            ended = True
                            break
                        batch.append(request)
            except TimeoutError:
                pass
            task = asyncio.create_task(send(batch))  # never awaited
            background.add(task)
            task.add_done_callback(background.discard)

    with pytest.raises(ExerciseFailed, match=r"returned while batches were still in flight \(1 callers had no vector"):
        await lesson09.check_micro_batcher(leaves_them)


async def test_micro_batcher_says_the_last_partial_batch_was_dropped(fast: float) -> None:
    async def drops_the_rest(requests: asyncio.Queue[Any], emb: Embeddings, max_batch: int, max_wait: float) -> None:
        async def send(batch: list[tuple[str, asyncio.Future[Vector]]]) -> None:
            vectors = await emb.embed_batch([text for text, _ in batch])
            for (_, future), vector in zip(batch, vectors, strict=True):
                future.set_result(vector)

        async with asyncio.TaskGroup() as tg:
            while True:
                first = await requests.get()
                if first is None:
                    return
                batch = [first]
                try:
                    async with timeout(max_wait):
                        while len(batch) < max_batch:
                            request = await requests.get()
                            if request is None:
                                return  # forgets `batch`
                            batch.append(request)
                except TimeoutError:
                    pass
                tg.create_task(send(batch))

    with pytest.raises(ExerciseFailed, match=r"^1 callers never got a vector: when None arrives, send the batch"):
        await lesson09.check_micro_batcher(drops_the_rest)


async def test_micro_batcher_wants_embed_batch_not_single_calls(fast: float) -> None:
    async def singles(requests: asyncio.Queue[Any], emb: Embeddings, max_batch: int, max_wait: float) -> None:
        async with asyncio.TaskGroup() as tg:

            async def one(text: str, future: asyncio.Future[Vector]) -> None:
                future.set_result(await emb.embed(text))

            while (request := await requests.get()) is not None:
                tg.create_task(one(*request))

    with pytest.raises(ExerciseFailed, match=r"called emb\.embed 35 times, one text per request"):
        await lesson09.check_micro_batcher(singles)


async def test_micro_batcher_says_a_batch_is_over_max_batch(fast: float) -> None:
    async def too_big(requests: asyncio.Queue[Any], emb: Embeddings, max_batch: int, max_wait: float) -> None:
        await micro_batcher(requests, emb, 2 * max_batch, max_wait)

    with pytest.raises(ExerciseFailed, match="one batch carried 16 texts, but max_batch is 8"):
        await lesson09.check_micro_batcher(too_big)


async def test_micro_batcher_catches_vectors_given_to_the_wrong_callers(fast: float) -> None:
    async def shifted(requests: asyncio.Queue[Any], emb: Embeddings, max_batch: int, max_wait: float) -> None:
        async def send(batch: list[tuple[str, asyncio.Future[Vector]]]) -> None:
            vectors = await emb.embed_batch([text for text, _ in batch])
            for (_, future), vector in zip(batch, reversed(vectors), strict=True):
                future.set_result(vector)

        async with asyncio.TaskGroup() as tg:
            while (first := await requests.get()) is not None:
                batch = [first]
                while len(batch) < max_batch and not requests.empty() and requests._queue[0] is not None:  # type: ignore[attr-defined]
                    batch.append(requests.get_nowait())
                tg.create_task(send(batch))

    with pytest.raises(ExerciseFailed, match=r"got ndarray .* \(it is the vector of another caller's text\)"):
        await lesson09.check_micro_batcher(shifted)


async def test_micro_batcher_catches_batches_awaited_one_after_another(fast: float) -> None:
    async def sequential(requests: asyncio.Queue[Any], emb: Embeddings, max_batch: int, max_wait: float) -> None:
        ended = False
        while not ended:
            first = await requests.get()
            if first is None:
                break
            batch = [first]
            try:
                async with timeout(max_wait):
                    while len(batch) < max_batch:
                        request = await requests.get()
                        if request is None:
                            ended = True
                            break
                        batch.append(request)
            except TimeoutError:
                pass
            vectors = await emb.embed_batch([text for text, _ in batch])  # waits before collecting more
            for (_, future), vector in zip(batch, vectors, strict=True):
                future.set_result(vector)

    with pytest.raises(ExerciseFailed, match="waited for each batch to come back before collecting the next"):
        await lesson09.check_micro_batcher(sequential)


async def test_micro_batcher_catches_a_full_batch_held_back(fast: float) -> None:
    async def always_waits(requests: asyncio.Queue[Any], emb: Embeddings, max_batch: int, max_wait: float) -> None:
        async def send(batch: list[tuple[str, asyncio.Future[Vector]]]) -> None:
            vectors = await emb.embed_batch([text for text, _ in batch])
            for (_, future), vector in zip(batch, vectors, strict=True):
                future.set_result(vector)

        async with asyncio.TaskGroup() as tg:
            ended = False
            while not ended:
                first = await requests.get()
                if first is None:
                    break
                batch = [first]
                try:
                    async with timeout(max_wait):  # collects for the whole window, even when full
                        while True:
                            request = await requests.get()
                            if request is None:
                                ended = True
                                break
                            batch.append(request)
                except TimeoutError:
                    pass
                for i in range(0, len(batch), max_batch):
                    tg.create_task(send(batch[i : i + max_batch]))

    with pytest.raises(ExerciseFailed, match=r"a full batch of 8 waited (0\.[5-9]|1\.\d)\d s before it went out"):
        await lesson09.check_micro_batcher(always_waits)


async def test_micro_batcher_catches_a_clock_restarted_by_each_arrival(fast: float) -> None:
    async def debounced(requests: asyncio.Queue[Any], emb: Embeddings, max_batch: int, max_wait: float) -> None:
        async def send(batch: list[tuple[str, asyncio.Future[Vector]]]) -> None:
            vectors = await emb.embed_batch([text for text, _ in batch])
            for (_, future), vector in zip(batch, vectors, strict=True):
                future.set_result(vector)

        async with asyncio.TaskGroup() as tg:
            ended = False
            while not ended:
                first = await requests.get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < max_batch:
                    try:
                        async with timeout(max_wait):  # restarted for every request: from the latest
                            request = await requests.get()
                    except TimeoutError:
                        break
                    if request is None:
                        ended = True
                        break
                    batch.append(request)
                tg.create_task(send(batch))

    with pytest.raises(ExerciseFailed, match=r"a request waited [23]\.\d\d s before its batch went out.*FIRST"):
        await lesson09.check_micro_batcher(debounced)


async def test_micro_batcher_catches_a_batcher_that_never_waits(fast: float) -> None:
    async def eager(requests: asyncio.Queue[Any], emb: Embeddings, max_batch: int, max_wait: float) -> None:
        async def send(batch: list[tuple[str, asyncio.Future[Vector]]]) -> None:
            vectors = await emb.embed_batch([text for text, _ in batch])
            for (_, future), vector in zip(batch, vectors, strict=True):
                future.set_result(vector)

        async with asyncio.TaskGroup() as tg:
            while (first := await requests.get()) is not None:
                batch = [first]  # takes what is there already, and waits for nothing
                while len(batch) < max_batch and not requests.empty() and requests._queue[0] is not None:  # type: ignore[attr-defined]
                    batch.append(requests.get_nowait())
                tg.create_task(send(batch))

    with pytest.raises(ExerciseFailed, match=r"went out in batches of 1\.0 on average: after a batch's first request"):
        await lesson09.check_micro_batcher(eager)


async def test_micro_batcher_catches_a_blocking_sleep(fast: float) -> None:
    async def blocking(requests: asyncio.Queue[Any], emb: Embeddings, max_batch: int, max_wait: float) -> None:
        async def send(batch: list[tuple[str, asyncio.Future[Vector]]]) -> None:
            vectors = await emb.embed_batch([text for text, _ in batch])
            for (_, future), vector in zip(batch, vectors, strict=True):
                future.set_result(vector)

        async with asyncio.TaskGroup() as tg:
            waited = False
            while (first := await requests.get()) is not None:
                if not waited:
                    time.sleep(0.3)  # "wait for more" with time.sleep: the loop stands still (once is enough)
                    waited = True
                batch = [first]
                while len(batch) < max_batch and not requests.empty() and requests._queue[0] is not None:  # type: ignore[attr-defined]
                    batch.append(requests.get_nowait())
                tg.create_task(send(batch))

    with pytest.raises(ExerciseFailed, match="the event loop was frozen"):
        await lesson09.check_micro_batcher(blocking)
