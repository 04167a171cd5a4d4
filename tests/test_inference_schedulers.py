"""Static, dynamic and continuous batching: who is in each pass, the KV budget, preemption, fairness, throughput."""

from __future__ import annotations

import pytest

from asynclab.inference import (
    ContinuousBatcher,
    DynamicBatcher,
    Engine,
    GPUModel,
    Request,
    Sequence,
    StaticBatcher,
    StepRecord,
    mixed_workload,
    simulate,
)

GPU = GPUModel(a=0.03, b=0.001, prefill_per_token=0.0001, max_batch_size=32, kv_tokens=8192)


def requests(*specs: tuple[float, int, int]) -> list[Request]:
    """Requests from (arrival, prompt tokens, output tokens)."""
    return [Request(i, arrival, prompt, output) for i, (arrival, prompt, output) in enumerate(specs)]


def test_static_waits_for_a_full_batch_then_runs_it_to_its_longest_sequence() -> None:
    work = requests((0.0, 10, 2), (0.1, 10, 5), (0.2, 10, 3), (0.3, 10, 1), (0.4, 10, 1))
    report = simulate(work, StaticBatcher(batch_size=4, timeout=10.0), GPU)
    first = report.steps[0]
    assert first.start == pytest.approx(0.3)  # the 4th request fills the batch
    assert first.admitted == (0, 1, 2, 3)
    block = [step for step in report.steps if step.start < report.sequences[1].finished]  # type: ignore[operator]
    assert len(block) == 5  # one pass per token of the longest answer (5 tokens)
    assert all(4 not in step.members for step in block)  # the 5th waits for the whole block
    assert all(step.rows == 4 for step in block[1:])  # finished rows are still computed
    assert report.padding > 0


def test_static_sends_a_short_batch_after_its_timeout_padded_to_its_fixed_size() -> None:
    report = simulate(requests((0.0, 10, 2), (0.5, 10, 2)), StaticBatcher(batch_size=8, timeout=1.0), GPU)
    assert report.steps[0].start == pytest.approx(1.0)  # the oldest waited the timeout
    assert report.steps[0].prefill_tokens == 8 * 10  # eight rows of the longest prompt
    assert report.steps[1].rows == 8


def test_dynamic_sends_when_the_oldest_waited_max_queue_delay() -> None:
    work = requests((0.0, 10, 1), (0.05, 10, 1), (0.3, 10, 1))
    report = simulate(work, DynamicBatcher(max_batch_size=8, max_queue_delay=0.1), GPU)
    assert report.steps[0].start == pytest.approx(0.1)
    assert report.steps[0].admitted == (0, 1)
    assert report.steps[0].rows == 2  # no padding: the batch is as wide as it is full
    assert report.steps[1].start == pytest.approx(0.4)


def test_dynamic_sends_a_full_batch_or_a_preferred_size_at_once() -> None:
    burst = requests(*[(0.0, 10, 1)] * 5)
    full = simulate(burst, DynamicBatcher(max_batch_size=4, max_queue_delay=1.0), GPU)
    assert full.steps[0].start == 0.0 and len(full.steps[0].admitted) == 4
    preferred = simulate(burst, DynamicBatcher(max_batch_size=8, max_queue_delay=1.0, preferred_sizes=(2, 4)), GPU)
    assert preferred.steps[0].start == 0.0 and len(preferred.steps[0].admitted) == 4


def test_continuous_lets_requests_join_and_leave_at_any_step() -> None:
    work = requests((0.0, 10, 3), (0.0, 10, 10), (0.01, 10, 2))  # 2 arrives during the first pass
    report = simulate(work, ContinuousBatcher(max_num_seqs=8), GPU)
    members = [set(step.members) for step in report.steps]
    assert members[0] == {0, 1}
    joined = next(i for i, m in enumerate(members) if 2 in m)
    assert joined == 1 and {0, 1} <= members[joined]  # joined the running batch at the next pass
    left = next(i for i, m in enumerate(members) if 0 not in m)
    assert left == 3  # three passes, three tokens, then gone
    assert report.padding == 0


def test_continuous_never_runs_more_than_max_num_seqs() -> None:
    report = simulate(mixed_workload(120, rate=20.0, seed=2), ContinuousBatcher(max_num_seqs=6), GPU)
    assert max(len(step.members) for step in report.steps) == 6



def test_the_kv_cache_budget_holds_in_every_pass_and_preemption_keeps_it() -> None:
    gpu = GPUModel(kv_tokens=2000, max_batch_size=32)
    engine = Engine(ContinuousBatcher(max_num_seqs=32), gpu)
    for request in mixed_workload(60, seed=5):  # all at once: the cache fills as their answers grow
        engine.submit(Sequence(Request(request.id, 0.0, request.prompt_tokens, request.output_tokens)))
    t, preempted = 0.0, 0
    while not engine.idle:
        step = engine.plan(t)
        assert isinstance(step, StepRecord)
        preempted += len(step.preempted)
        # After this pass every running sequence holds one more token: that must fit.
        assert sum(seq.kv_tokens + 1 for seq in engine.running) <= gpu.kv_tokens
        engine.complete(step)
        t = step.end
    assert preempted > 0  # the budget was tight enough to need it
    assert all(seq.generated == seq.request.output_tokens for seq in engine.sequences)


def test_a_preempted_request_recomputes_its_prompt_and_tokens_then_finishes() -> None:
    gpu = GPUModel(kv_tokens=60, max_batch_size=4)
    work = requests((0.0, 20, 15), (0.0, 20, 15))
    report = simulate(work, ContinuousBatcher(max_num_seqs=4), gpu)
    young = report.sequences[1]
    assert young.preemptions >= 1
    joins = [step for step in report.steps if 1 in step.admitted]
    assert len(joins) == 2  # admitted, preempted, admitted again
    assert joins[1].prefill_tokens > 20  # the prompt again, and the tokens it had made
    assert any(1 in step.preempted for step in report.steps)
    assert all(seq.generated == 15 for seq in report.sequences)
    assert len(young.token_times) == 15


def test_no_request_starves_requests_join_in_arrival_order() -> None:
    gpu = GPUModel(kv_tokens=3000)
    report = simulate(mixed_workload(150, rate=30.0, seed=7), ContinuousBatcher(max_num_seqs=16), gpu)
    assert report.preemptions > 0
    by_admission = sorted(report.sequences, key=lambda seq: (seq.admitted, seq.arrival))
    assert [seq.id for seq in by_admission] == sorted(seq.id for seq in report.sequences)
    assert all(seq.finished is not None for seq in report.sequences)


def test_a_request_larger_than_the_kv_cache_is_refused_by_name() -> None:
    engine = Engine(ContinuousBatcher(), GPUModel(kv_tokens=100))
    with pytest.raises(ValueError, match="request 0 needs 150 KV-cache tokens"):
        engine.submit(Sequence(Request(0, 0.0, 100, 50)))


def test_a_scheduler_that_names_a_past_time_is_an_error() -> None:
    class Stuck:
        name = "stuck"

        def schedule(self, t: float, waiting: object, running: object, gpu: object) -> float:
            return t

    with pytest.raises(ValueError, match=r"a time later than t=0\.0000, got 0\.0"):
        simulate(requests((0.0, 10, 1)), Stuck(), GPU)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [2.0, 4.0])
def test_on_mixed_lengths_continuous_beats_dynamic_beats_static(rate: float) -> None:
    work = mixed_workload(200, rate=rate, seed=0)
    static = simulate(work, StaticBatcher(batch_size=32, timeout=2.0))
    dynamic = simulate(work, DynamicBatcher(max_batch_size=32, max_queue_delay=0.1))
    continuous = simulate(work, ContinuousBatcher(max_num_seqs=32))
    # Deterministic (virtual time): no tolerance is needed, only the order and a clear margin.
    assert continuous.throughput > 1.2 * dynamic.throughput
    assert dynamic.throughput > static.throughput
    assert continuous.ttft(0.5) < dynamic.ttft(0.5) < static.ttft(0.5)


def test_bad_scheduler_settings_name_the_argument() -> None:
    with pytest.raises(ValueError, match="max_queue_delay must be"):
        DynamicBatcher(max_queue_delay=-1)
    with pytest.raises(ValueError, match="preferred_sizes must be at most max_batch_size=8"):
        DynamicBatcher(max_batch_size=8, preferred_sizes=(16,))
    with pytest.raises(TypeError, match="max_num_seqs must be an int"):
        ContinuousBatcher(max_num_seqs=2.5)  # type: ignore[arg-type]
