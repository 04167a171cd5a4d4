"""The notebook 11 checkers pass the reference solutions and fail wrong ones with their hints."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from asynclab import RateLimited, ServiceError, ServiceUnavailable, now, sleep, timeout
from asynclab.checks import ExerciseFailed, lesson11

Call = Callable[[], Awaitable[Any]]
RETRYABLE = (ServiceUnavailable, RateLimited, TimeoutError)

# -- retry ---------------------------------------------------------------------------------------


async def retry(call: Call, *, attempts: int = 4, base: float = 0.2, cap: float = 2.0, idempotent: bool = True) -> Any:
    """The reference solution (as in the solutions notebook)."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except RETRYABLE as error:
            worth_it = idempotent or isinstance(error, RateLimited)  # a 429 was refused before any work
            if not worth_it or attempt == attempts:
                raise
            wait = random.uniform(0, min(cap, base * 2 ** (attempt - 1)))
            if isinstance(error, RateLimited):
                wait += error.retry_after
            await sleep(wait)
    raise AssertionError("unreachable: the loop returns or raises")


async def test_retry_passes_the_reference(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson11.check_retry(retry)
    out = capsys.readouterr().out
    assert "✅ retry" in out and "Retry-After" in out and "cancellation propagated" in out


async def test_retry_passes_tenacity_with_the_simulated_sleep(fast: float) -> None:
    async def with_tenacity(
        call: Call, *, attempts: int = 4, base: float = 0.2, cap: float = 2.0, idempotent: bool = True
    ) -> Any:
        def worth_retrying(error: BaseException) -> bool:
            return isinstance(error, RateLimited) or (idempotent and isinstance(error, RETRYABLE))

        def wait(state: RetryCallState) -> float:
            jitter = random.uniform(0, min(cap, base * 2 ** (state.attempt_number - 1)))
            error = state.outcome.exception() if state.outcome else None
            return jitter + (error.retry_after if isinstance(error, RateLimited) else 0.0)

        async for attempt in AsyncRetrying(sleep=sleep, stop=stop_after_attempt(attempts), wait=wait,
                                           retry=retry_if_exception(worth_retrying), reraise=True):
            with attempt:
                return await call()
        raise AssertionError("unreachable: tenacity returns or raises")

    await lesson11.check_retry(with_tenacity)


async def test_retry_explains_tenacity_calling_a_lambda_without_awaiting_it(fast: float) -> None:
    async def lambda_not_awaited(
        call: Call, *, attempts: int = 4, base: float = 0.2, cap: float = 2.0, idempotent: bool = True
    ) -> Any:
        retrying = AsyncRetrying(sleep=sleep, stop=stop_after_attempt(attempts), reraise=True)
        return await retrying(call)  # call is a plain function (a lambda): its coroutine comes back unawaited

    with pytest.raises(ExerciseFailed, match="returned a coroutine object"):
        await lesson11.check_retry(lambda_not_awaited)


def _variant(
    *, wait: Callable[[int, float, float], float] | None = None, catch: tuple[type[BaseException], ...] = RETRYABLE,
    retry_after: bool = True, idempotent_rule: str = "right", extra_calls: int = 0, after_last: str = "raise",
    sleeper: Callable[[float], Awaitable[None]] = sleep,
) -> Callable[..., Awaitable[Any]]:
    """A retry with one mistake: the wait, what it catches, Retry-After, the idempotency rule, the budget."""

    async def wrong(call: Call, *, attempts: int = 4, base: float = 0.2, cap: float = 2.0,
                    idempotent: bool = True) -> Any:
        last: BaseException | None = None
        for attempt in range(1, attempts + 1 + extra_calls):
            try:
                return await call()
            except catch as error:
                last = error
                if idempotent_rule == "ignored":
                    worth_it = True
                elif idempotent_rule == "never":
                    worth_it = idempotent
                else:
                    worth_it = idempotent or isinstance(error, RateLimited)
                if not worth_it or (attempt == attempts + extra_calls and after_last == "raise"):
                    raise
                if attempt == attempts + extra_calls:
                    break
                bound = min(cap, base * 2 ** (attempt - 1))
                pause = wait(attempt, bound, cap) if wait else random.uniform(0, bound)
                if retry_after and isinstance(error, RateLimited):
                    pause += error.retry_after
                await sleeper(pause)
        assert last is not None
        return None

    return wrong


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (_variant(wait=lambda attempt, bound, cap: bound), "exponential backoff without jitter"),
        (_variant(wait=lambda attempt, bound, cap: 0.0), "your retries came almost at once"),
        (_variant(wait=lambda attempt, bound, cap: random.uniform(0, min(cap, 2 * bound))),
         "is your exponent one too high"),
        (_variant(wait=lambda attempt, bound, cap: random.uniform(bound / 2, bound)), "never went below half"),
        (_variant(extra_calls=1), r"attempts=3 means 3 calls in all"),
        (_variant(after_last="return"), "returned None instead of raising"),
        (_variant(retry_after=False), "after a RateLimited that said retry_after="),
        (_variant(idempotent_rule="never"), "A 429 is refused before any work is done"),
        (_variant(catch=(Exception,)), r"you retried a NotFound \(404\)"),
        (_variant(catch=(ServiceUnavailable, RateLimited, ValueError)), "raised ValueError 3 times"),
        (_variant(idempotent_rule="ignored"), "with idempotent=False after a ServiceUnavailable"),
        (_variant(catch=(*RETRYABLE, asyncio.CancelledError)), "your retry ignored cancellation"),
    ],
    ids=["no-jitter", "no-backoff", "exponent-too-high", "equal-jitter", "one-call-too-many", "returns-none",
         "ignores-retry-after", "never-retries-non-idempotent", "retries-not-found", "retries-value-error",
         "retries-non-idempotent", "swallows-cancellation"],
)
async def test_retry_fails_each_mistake_with_its_own_hint(
    fast: float, wrong: Callable[..., Awaitable[Any]], hint: str
) -> None:
    with pytest.raises(ExerciseFailed, match=hint):
        await lesson11.check_retry(wrong)


async def test_retry_says_a_wall_clock_sleep_is_not_simulated(fast: float) -> None:
    # A quarter of each bound, slept in wall seconds: at speed 20, 0.25-0.75 s of wall time is 5-15
    # simulated seconds, while the bounds are 1-3 s (and all of it stays under the check's 60 s).
    wrong = _variant(wait=lambda attempt, bound, cap: bound / 4, sleeper=asyncio.sleep)
    with pytest.raises(ExerciseFailed, match=r"did you call asyncio.sleep \(wall seconds\)"):
        await lesson11.check_retry(wrong)


async def test_retry_names_tenacity_without_reraise(fast: float) -> None:
    async def no_reraise(call: Call, *, attempts: int = 4, base: float = 0.2, cap: float = 2.0,
                         idempotent: bool = True) -> Any:
        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            jitter = random.uniform(0, min(cap, base * 2 ** (state.attempt_number - 1)))
            return jitter + (error.retry_after if isinstance(error, RateLimited) else 0.0)

        def worth_retrying(error: BaseException) -> bool:
            return isinstance(error, RateLimited) or (idempotent and isinstance(error, RETRYABLE))

        async for attempt in AsyncRetrying(sleep=sleep, stop=stop_after_attempt(attempts), wait=wait,
                                           retry=retry_if_exception(worth_retrying)):  # no reraise=True
            with attempt:
                return await call()
        raise AssertionError("unreachable: tenacity returns or raises")

    with pytest.raises(ExerciseFailed, match="tenacity's RetryError: pass reraise=True"):
        await lesson11.check_retry(no_reraise)


async def test_retry_says_a_cancellation_turned_into_an_error(fast: float) -> None:
    async def turns(call: Call, *, attempts: int = 4, base: float = 0.2, cap: float = 2.0,
                    idempotent: bool = True) -> Any:
        try:
            return await retry(call, attempts=attempts, base=base, cap=cap, idempotent=idempotent)
        except asyncio.CancelledError:
            raise ServiceUnavailable("gave up") from None

    with pytest.raises(ExerciseFailed, match="turned its cancellation into ServiceUnavailable"):
        await lesson11.check_retry(turns)


# -- answer_by -----------------------------------------------------------------------------------


async def answer_by(calls: dict[str, Call], seconds: float) -> dict[str, Any]:
    """The reference solution (as in the solutions notebook)."""
    answers: dict[str, Any] = {}

    async def one(name: str, call: Call) -> None:
        with contextlib.suppress(ServiceError):  # a failed source is left out; the others still count
            answers[name] = await call()

    try:
        async with timeout(seconds), asyncio.TaskGroup() as group:
            for name, call in calls.items():
                group.create_task(one(name, call))
    except TimeoutError:
        pass  # the deadline: the TaskGroup has cancelled what was still running
    return answers


async def test_answer_by_passes_the_reference(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson11.check_answer_by(answer_by)
    out = capsys.readouterr().out
    assert "✅ answer_by" in out and "pinecone failed" in out


async def test_answer_by_catches_gather_inside_a_timeout(fast: float) -> None:
    async def gathered(calls: dict[str, Call], seconds: float) -> dict[str, Any]:
        try:
            async with timeout(seconds):
                values = await asyncio.gather(*(call() for call in calls.values()), return_exceptions=True)
        except TimeoutError:
            return {}
        return {name: v for name, v in zip(calls, values, strict=True) if not isinstance(v, BaseException)}

    with pytest.raises(ExerciseFailed, match=r"gather\(\) inside a timeout loses them all"):
        await lesson11.check_answer_by(gathered)


async def test_answer_by_says_the_deadline_is_not_an_error(fast: float) -> None:
    async def lets_timeout_out(calls: dict[str, Call], seconds: float) -> dict[str, Any]:
        answers: dict[str, Any] = {}

        async def one(name: str, call: Call) -> None:
            with contextlib.suppress(ServiceError):
                answers[name] = await call()

        async with timeout(seconds), asyncio.TaskGroup() as group:
            for name, call in calls.items():
                group.create_task(one(name, call))
        return answers

    with pytest.raises(ExerciseFailed, match="raised TimeoutError: the deadline is not an error here"):
        await lesson11.check_answer_by(lets_timeout_out)


async def test_answer_by_catches_one_failure_sinking_the_task_group(fast: float) -> None:
    async def unguarded(calls: dict[str, Call], seconds: float) -> dict[str, Any]:
        answers: dict[str, Any] = {}

        async def one(name: str, call: Call) -> None:
            answers[name] = await call()

        try:
            async with timeout(seconds), asyncio.TaskGroup() as group:
                for name, call in calls.items():
                    group.create_task(one(name, call))
        except TimeoutError:
            pass
        return answers

    with pytest.raises(ExerciseFailed, match="one failing source sank the whole answer"):
        await lesson11.check_answer_by(unguarded)


async def test_answer_by_catches_sources_called_one_after_another(fast: float) -> None:
    async def sequential(calls: dict[str, Call], seconds: float) -> dict[str, Any]:
        answers: dict[str, Any] = {}
        deadline = now() + seconds
        for name, call in calls.items():
            left = deadline - now()
            if left <= 0:
                break
            try:
                async with timeout(left):  # what is left of the budget, passed down: but one call at a time
                    answers[name] = await call()
            except (ServiceError, TimeoutError):
                pass
        return answers

    with pytest.raises(ExerciseFailed, match="called the sources one after another"):
        await lesson11.check_answer_by(sequential)


async def test_answer_by_catches_late_calls_left_running(fast: float) -> None:
    async def leaves_them(calls: dict[str, Call], seconds: float) -> dict[str, Any]:
        tasks = {name: asyncio.create_task(call()) for name, call in calls.items()}
        await sleep(seconds)
        return {name: task.result() for name, task in tasks.items() if task.done() and not task.exception()}

    with pytest.raises(ExerciseFailed, match="were still running: calls that missed the deadline must be cancelled"):
        await lesson11.check_answer_by(leaves_them)


async def test_answer_by_catches_waiting_for_the_deadline_when_all_are_done(fast: float) -> None:
    async def always_waits(calls: dict[str, Call], seconds: float) -> dict[str, Any]:
        tasks = {name: asyncio.create_task(call()) for name, call in calls.items()}
        await sleep(seconds)
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        return {name: task.result() for name, task in tasks.items()
                if not task.cancelled() and task.exception() is None}

    with pytest.raises(ExerciseFailed, match=r"waited until the deadline .* although every source had answered"):
        await lesson11.check_answer_by(always_waits)


async def test_answer_by_wants_failed_sources_left_out(fast: float) -> None:
    async def keeps_failures(calls: dict[str, Call], seconds: float) -> dict[str, Any]:
        answers: dict[str, Any] = {}

        async def one(name: str, call: Call) -> None:
            try:
                answers[name] = await call()
            except ServiceError as error:
                answers[name] = error

        try:
            async with timeout(seconds), asyncio.TaskGroup() as group:
                for name, call in calls.items():
                    group.create_task(one(name, call))
        except TimeoutError:
            pass
        return answers

    with pytest.raises(ExerciseFailed, match="has an entry for 'pinecone', which failed"):
        await lesson11.check_answer_by(keeps_failures)


async def test_answer_by_without_a_deadline_waits_for_the_hung_source(fast: float) -> None:
    async def no_deadline(calls: dict[str, Call], seconds: float) -> dict[str, Any]:
        answers: dict[str, Any] = {}

        async def one(name: str, call: Call) -> None:
            with contextlib.suppress(ServiceError):
                answers[name] = await call()

        async with asyncio.TaskGroup() as group:
            for name, call in calls.items():
                group.create_task(one(name, call))
        return answers

    with pytest.raises(ExerciseFailed, match="still running after 30 simulated seconds"):
        await lesson11.check_answer_by(no_deadline)


async def test_retry_says_it_gave_up_before_its_attempts_were_spent(fast: float) -> None:
    async def three_at_most(call: Call, *, attempts: int = 4, base: float = 0.2, cap: float = 2.0,
                            idempotent: bool = True) -> Any:
        return await retry(call, attempts=min(attempts, 3), base=base, cap=cap, idempotent=idempotent)

    with pytest.raises(ExerciseFailed, match=r"gave up after 3 attempts .* attempts=5 allows 5"):
        await lesson11.check_retry(three_at_most)


async def test_retry_wants_what_the_call_returned(fast: float) -> None:
    async def says_done(call: Call, *, attempts: int = 4, base: float = 0.2, cap: float = 2.0,
                        idempotent: bool = True) -> Any:
        await retry(call, attempts=attempts, base=base, cap=cap, idempotent=idempotent)
        return True

    with pytest.raises(ExerciseFailed, match="should return what the call returned on the attempt that worked"):
        await lesson11.check_retry(says_done)


async def test_retry_stops_calling_once_a_call_succeeds(fast: float) -> None:
    async def checks_twice(call: Call, *, attempts: int = 4, base: float = 0.2, cap: float = 2.0,
                           idempotent: bool = True) -> Any:
        answer = await retry(call, attempts=attempts, base=base, cap=cap, idempotent=idempotent)
        await call()  # "to be sure": one call too many
        return answer

    with pytest.raises(ExerciseFailed, match="but your retry called again afterwards"):
        await lesson11.check_retry(checks_twice)


async def test_retry_says_it_waited_too_long_after_a_429(fast: float) -> None:
    wrong = _variant(wait=lambda attempt, bound, cap: random.uniform(0, bound), retry_after=False)

    async def twice_as_long(call: Call, *, attempts: int = 4, base: float = 0.2, cap: float = 2.0,
                            idempotent: bool = True) -> Any:
        async def slow_to_come_back() -> Any:
            try:
                return await call()
            except RateLimited as error:
                await sleep(2 * error.retry_after)  # twice what the server asked, then the retry's own wait
                raise

        return await wrong(slow_to_come_back, attempts=attempts, base=base, cap=cap, idempotent=idempotent)

    with pytest.raises(ExerciseFailed, match="wait retry_after plus at most the jittered backoff"):
        await lesson11.check_retry(twice_as_long)


async def test_retry_says_a_retry_that_ends_by_itself_on_a_hung_call(fast: float) -> None:
    async def gives_up_alone(call: Call, *, attempts: int = 4, base: float = 0.2, cap: float = 2.0,
                             idempotent: bool = True) -> Any:
        return None  # never waits for the call at all

    with pytest.raises(ExerciseFailed, match="the call hangs until it is cancelled, but your retry ended by itself"):
        await lesson11._check_cancellation(gives_up_alone)


async def test_answer_by_says_it_made_no_call(fast: float) -> None:
    async def nothing(calls: dict[str, Call], seconds: float) -> dict[str, Any]:
        return {}

    with pytest.raises(ExerciseFailed, match="made no call"):
        await lesson11.check_answer_by(nothing)


async def test_answer_by_says_it_answered_past_the_deadline(fast: float) -> None:
    async def late(calls: dict[str, Call], seconds: float) -> dict[str, Any]:
        return await answer_by(calls, seconds + 0.5)

    with pytest.raises(ExerciseFailed, match=r"answered after 2\.\d\d s, past its deadline of 1.5 s"):
        await lesson11.check_answer_by(late)


async def test_answer_by_says_it_cut_the_sources_too_early(fast: float) -> None:
    async def early(calls: dict[str, Call], seconds: float) -> dict[str, Any]:
        return await answer_by(calls, seconds * 2 / 3)

    with pytest.raises(ExerciseFailed, match=r"the slow sources should be cut at the deadline, 1\.5 s"):
        await lesson11.check_answer_by(early)


async def test_answer_by_names_a_source_that_answered_but_is_missing(fast: float) -> None:
    async def first_only(calls: dict[str, Call], seconds: float) -> dict[str, Any]:
        answers = await answer_by(calls, seconds)
        return dict(list(answers.items())[:1])

    with pytest.raises(ExerciseFailed, match="has no answer from 'pgvector', which answered in time"):
        await lesson11.check_answer_by(first_only)


async def test_answer_by_wants_the_answers_not_the_tasks(fast: float) -> None:
    async def keeps_tasks(calls: dict[str, Call], seconds: float) -> dict[str, Any]:
        tasks = {name: asyncio.create_task(call()) for name, call in calls.items()}
        try:
            async with timeout(seconds):
                await asyncio.gather(*tasks.values(), return_exceptions=True)
        except TimeoutError:
            pass
        return {name: task for name, task in tasks.items() if not task.cancelled() and task.exception() is None}

    with pytest.raises(ExerciseFailed, match=r"\['redis'\] should be what the call returned"):
        await lesson11.check_answer_by(keeps_tasks)
