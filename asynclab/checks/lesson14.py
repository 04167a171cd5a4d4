"""Checkers for notebook 14 · Serving models.

    from asynclab.checks import lesson14
    await lesson14.check_dynamic_policy(decide)              # Triton's dynamic batcher, by hand
    await lesson14.check_max_num_seqs(pick_max_num_seqs)     # the smallest batch that meets a p99 TTFT

Both exercises are plain functions (``def``; an ``async def`` works too). The checkers drive
them through the inference engine in virtual time (:func:`~asynclab.inference.simulate`), so
every number is exact and a busy machine cannot fail a right answer.

Introduced in notebook 14.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from asynclab.checks import describe_error, expect, fail, passed
from asynclab.inference.model import GPUModel
from asynclab.inference.report import ServingReport
from asynclab.inference.requests import Request
from asynclab.inference.requests import Sequence as Running
from asynclab.inference.schedulers import ContinuousBatcher, DynamicBatcher, Step
from asynclab.inference.simulate import simulate
from asynclab.inference.workload import mixed_workload

__all__ = [
    "MAX_NUM_SEQS_CASES",
    "POLL",
    "PolicyBatcher",
    "check_dynamic_policy",
    "check_max_num_seqs",
    "pick_max_num_seqs_reference",
]

#: How often the engine asks a policy that said "wait" again (simulated seconds): the learner's
#: policy answers "how many now?", so the engine polls it, and a batch may go up to POLL late.
POLL = 0.005
#: A policy that has let a request wait this long with an idle GPU is waiting forever.
STALL = 30.0


class _PolicyMistake(Exception):
    """The learner's policy answered something the engine cannot do; the message is the hint."""


def _hint_for(exc: BaseException, name: str) -> str:
    if isinstance(exc, _PolicyMistake):
        return str(exc)
    if isinstance(exc, NotImplementedError):
        return "not done yet: replace `raise NotImplementedError` in the exercise cell with your code"
    return f"{name} raised {describe_error(exc)}"


class PolicyBatcher:
    """A whole-batch scheduler whose dispatch rule is ``decide(now, arrivals, max_batch_size, max_queue_delay)``.

    ``decide`` answers how many of the waiting requests (oldest first, ``arrivals`` are their
    arrival times) to send now; 0 means wait, and the engine asks again :data:`POLL` later or
    when a request arrives. The batch then runs to its longest sequence, as in DynamicBatcher.
    """

    name = "your policy"

    def __init__(self, decide: Callable[..., Any], max_batch_size: int, max_queue_delay: float) -> None:
        self.decide, self.max_batch_size, self.max_queue_delay = decide, max_batch_size, max_queue_delay
        self.fname = getattr(decide, "__name__", "your function")
        self._rows = 0
        #: (sent at, batch size, the oldest request's arrival) for every batch.
        self.batches: list[tuple[float, int, float]] = []

    def schedule(
        self, t: float, waiting: Sequence[Running], running: Sequence[Running], gpu: GPUModel
    ) -> Step | float | None:
        if running:
            return Step(rows=self._rows)
        if not waiting:
            return None
        arrivals = tuple(seq.arrival for seq in waiting)
        n = self.decide(t, arrivals, self.max_batch_size, self.max_queue_delay)
        if inspect.isawaitable(n):
            close = getattr(n, "close", None)
            if close is not None:
                close()  # never awaited: no "coroutine was never awaited" warning on top of the hint
            raise _PolicyMistake(f"{self.fname} is `async def`: a policy decides at once and awaits nothing. "
                                 "Use `def`.")
        call = f"{self.fname}(now={t:.3f}, {len(arrivals)} waiting, max_batch_size={self.max_batch_size}, " \
               f"max_queue_delay={self.max_queue_delay})"
        if isinstance(n, bool) or not isinstance(n, int):
            raise _PolicyMistake(f"{call} returned {type(n).__name__} {n!r:.40}: return an int, how many "
                                 "of the waiting requests to send now (0: wait)")
        if n < 0 or n > len(arrivals):
            raise _PolicyMistake(f"{call} returned {n}: it can send 0 to {len(arrivals)} (the requests waiting)")
        if n > self.max_batch_size:
            raise _PolicyMistake(f"{call} sent a batch of {n}: that breaks the limit, max_batch_size="
                                 f"{self.max_batch_size}. Send at most max_batch_size; the rest wait for the next "
                                 "batch.")
        if n == 0:
            if t - arrivals[0] > STALL:
                raise _PolicyMistake(f"{call} still says wait after the oldest request waited {t - arrivals[0]:.0f} s "
                                     "with the GPU idle: your batcher only sends full batches. A batch must also go "
                                     "when its oldest request has waited max_queue_delay.")
            return t + POLL
        self._rows = n
        self.batches.append((t, n, arrivals[0]))
        return Step(admit=list(waiting[:n]), rows=n)


def _requests(*specs: tuple[float, int]) -> list[Request]:
    """Requests from (arrival, output tokens), each with a 50-token prompt."""
    return [Request(i, arrival, 50, output) for i, (arrival, output) in enumerate(specs)]


def _run(
    decide: Callable[..., Any], work: list[Request], size: int, delay: float
) -> tuple[PolicyBatcher, ServingReport]:
    __tracebackhide__ = True
    policy = PolicyBatcher(decide, size, delay)
    try:
        report = simulate(work, policy)
    except Exception as exc:  # the learner's answer, shown as a hint
        fail(_hint_for(exc, policy.fname))
    return policy, report


async def check_dynamic_policy(decide: Callable[[float, Sequence[float], int, float], int]) -> None:
    """``decide(now, arrivals, max_batch_size, max_queue_delay)``: how many waiting requests to send now."""
    __tracebackhide__ = True
    expect(callable(decide), f"pass your function itself (decide), not {type(decide).__name__} {decide!r:.40}")
    name = getattr(decide, "__name__", "your function")
    # 1. One request alone: it waits max_queue_delay for company, then goes alone.
    policy, _ = _run(decide, _requests((0.0, 5)), 8, 0.1)
    sent, size, _ = policy.batches[0]
    expect(sent >= 0.1 - 1e-9, f"a lone request arriving at 0.0 was sent at {sent:.3f} s: at once, without "
           "waiting max_queue_delay = 0.1 s for others to join. Below max_batch_size, wait until the OLDEST "
           "request has waited max_queue_delay, then send.")
    expect(sent <= 0.1 + POLL + 1e-9, f"a lone request waited {sent:.3f} s, more than max_queue_delay = 0.1 s.")
    # 2. A burst: full batches go at once; what is left goes when the GPU is free (it waited long enough).
    burst = _requests(*[(0.0, 4)] * 20)
    policy, _ = _run(decide, burst, 8, 0.1)
    sizes = [size for _, size, _ in policy.batches]
    expect(sizes[0] == 8 and policy.batches[0][0] == 0.0,
           f"20 requests arrived at once and the limit is 8, but your first batch had {sizes[0]} request(s), sent at "
           f"{policy.batches[0][0]:.3f} s. When max_batch_size requests wait, a full batch goes at once.")
    expect(sizes == [8, 8, 4], f"the burst of 20 went out in batches of {sizes}: expected [8, 8, 4] (full batches, "
           "then the 4 left over, which have waited long enough by then).")
    late = [sent - oldest for sent, _, oldest in policy.batches]
    gap = policy.batches[2][0] - policy.batches[1][0]
    expect(late[2] > 0.1 and gap < 1.0, "the last 4 of the burst waited for more after the GPU was free.")
    # 3. The delay counts from the oldest request, not from the newest one.
    trickle = _requests((0.0, 3), (0.06, 3), (0.09, 3), (0.14, 3), (0.19, 3))
    policy, _ = _run(decide, trickle, 8, 0.1)
    sent, size, oldest = policy.batches[0]
    expect(sent <= 0.1 + POLL + 1e-9,
           f"requests arrived at 0.00, 0.06, 0.09, 0.14, 0.19 s with max_queue_delay = 0.1 s, and your first batch "
           f"went at {sent:.3f} s: the oldest had waited {sent - oldest:.3f} s. Time the delay from the OLDEST "
           "request (arrivals[0]), not from the newest: every new arrival would push the batch back.")
    expect(size == 3, f"at 0.1 s three requests were waiting; your batch took {size}.")
    # 4. A mixed workload: the same batches, so the same throughput, as the library's DynamicBatcher.
    work = mixed_workload(120, rate=3.0, seed=14)
    _, mine = _run(decide, work, 16, 0.2)
    reference = simulate(work, DynamicBatcher(max_batch_size=16, max_queue_delay=0.2))
    # Polling can send a batch up to POLL (5 ms) later than the reference's exact deadline: a
    # fraction of a percent over a minute of work. 2 % is far below any real difference in policy.
    expect(abs(mine.throughput / reference.throughput - 1) < 0.02,
           f"on a mixed workload your policy served {mine.throughput:.0f} tokens/s, DynamicBatcher "
           f"{reference.throughput:.0f} tokens/s with the same settings: the rule differs somewhere.")
    passed(f"{name}: a lone request waits {0.1:.1f} s, a burst of 20 goes as {sizes}, the delay counts from the "
           f"oldest; {mine.throughput:.0f} tokens/s on a mixed workload (DynamicBatcher: {reference.throughput:.0f})")


# -- exercise 2 ------------------------------------------------------------------------------

#: (seed, rate, target p99 TTFT): N_REQUESTS mixed requests each, the GPU of the lesson.
N_REQUESTS = 60
MAX_NUM_SEQS_CASES: tuple[tuple[int, float, float], ...] = ((1, 5.0, 1.0), (2, 3.0, 0.3))
#: A target no batch can meet: shorter than one prefill pass.
IMPOSSIBLE_TARGET = 0.01


def _p99_ttft(requests: list[Request], max_num_seqs: int) -> float:
    return simulate(requests, ContinuousBatcher(max_num_seqs=max_num_seqs)).ttft(0.99)


def pick_max_num_seqs_reference(requests: list[Request], target: float) -> int:
    """The smallest max_num_seqs (1 to 32) whose p99 time to first token is at most ``target``."""
    for size in range(1, GPUModel().max_batch_size + 1):
        if _p99_ttft(requests, size) <= target:
            return size
    raise ValueError(f"no max_num_seqs from 1 to 32 meets a p99 TTFT of {target} s")


async def _ask(function: Callable[..., Any], *args: Any) -> Any:
    __tracebackhide__ = True
    try:
        value = function(*args)
        if inspect.isawaitable(value):
            value = await value
    except NotImplementedError:
        fail("not done yet: replace `raise NotImplementedError` in the exercise cell with your code")
    except Exception as exc:  # the learner's bug, shown as a hint
        fail(f"{getattr(function, '__name__', 'your function')} raised {describe_error(exc)}")
    return value


async def check_max_num_seqs(pick_max_num_seqs: Callable[[list[Request], float], int]) -> None:
    """``pick_max_num_seqs(requests, target)``: the smallest max_num_seqs meeting a p99 TTFT target."""
    __tracebackhide__ = True
    expect(callable(pick_max_num_seqs), f"pass your function itself, not {type(pick_max_num_seqs).__name__}")
    name = getattr(pick_max_num_seqs, "__name__", "your function")
    lines = []
    for seed, rate, target in MAX_NUM_SEQS_CASES:
        requests = mixed_workload(N_REQUESTS, rate=rate, seed=seed)
        value = await _ask(pick_max_num_seqs, requests, target)
        case = f"{name}({N_REQUESTS} requests at {rate:g}/s, target={target})"
        expect(isinstance(value, int) and not isinstance(value, bool),
               f"{case} returned {type(value).__name__} {value!r:.40}: max_num_seqs is a whole number (an int)")
        expect(1 <= value <= 32, f"{case} returned {value}: max_num_seqs goes from 1 to the GPU's 32")
        p99 = _p99_ttft(requests, value)
        expect(p99 <= target, f"{case} returned {value}, but with max_num_seqs={value} the p99 time to first token "
               f"is {p99:.2f} s, over the target {target} s: too few seats, requests queue for one.")
        if value > 1:
            smaller = _p99_ttft(requests, value - 1)
            expect(smaller > target, f"{case} returned {value}, but {value - 1} meets the target too (p99 TTFT "
                   f"{smaller:.2f} s ≤ {target} s). Return the SMALLEST: a smaller batch makes shorter passes "
                   "(a lower inter-token latency for everyone) and leaves KV cache to spare.")
        lines.append(f"{value} for a p99 TTFT ≤ {target} s at {rate:g} requests/s (measured {p99:.2f} s)")
    requests = mixed_workload(10, rate=5.0, seed=1)  # small: a search over 1..32 that finds nothing runs all 32
    try:
        value = pick_max_num_seqs(requests, IMPOSSIBLE_TARGET)
        if inspect.isawaitable(value):
            value = await value
    except ValueError:
        pass
    except Exception as exc:  # the learner's bug, shown as a hint
        fail(f"{name}(…, target={IMPOSSIBLE_TARGET}) raised {describe_error(exc)}: raise ValueError when no "
             "max_num_seqs can meet the target")
    else:
        fail(f"{name}(…, target={IMPOSSIBLE_TARGET}) returned {value!r:.40}, but no batch size gets a first token "
             "out in 0.01 s (one prefill pass takes longer): raise ValueError when none meets the target.")
    passed(f"{name}: " + "; ".join(lines) + "; an impossible target raises ValueError")
