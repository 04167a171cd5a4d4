"""GPUModel: a pass costs a + b·n, prefill adds per prompt token, and bad limits are refused by name."""

from __future__ import annotations

import pytest

from asynclab.inference import GPUModel, Request, mixed_workload


def test_a_pass_costs_a_plus_b_times_the_batch() -> None:
    gpu = GPUModel(a=0.03, b=0.001, prefill_per_token=0.0002)
    assert gpu.step_cost(decode=1) == pytest.approx(0.031)
    assert gpu.step_cost(decode=32) == pytest.approx(0.062)
    assert gpu.step_cost(decode=4, prefill_tokens=100) == pytest.approx(0.03 + 0.004 + 0.02)


def test_a_batch_of_32_makes_many_times_the_tokens_per_second_of_one_sequence() -> None:
    gpu = GPUModel()
    assert gpu.throughput(32) / gpu.throughput(1) == pytest.approx(32 * gpu.step_cost(1) / gpu.step_cost(32))
    assert gpu.throughput(32) > 15 * gpu.throughput(1)


def test_a_pass_wider_than_the_gpu_or_empty_is_refused() -> None:
    gpu = GPUModel(max_batch_size=8)
    with pytest.raises(ValueError, match="decode must be at most max_batch_size=8, got 9"):
        gpu.step_cost(decode=9)
    with pytest.raises(ValueError, match="decode >= 1 or prefill_tokens >= 1"):
        gpu.step_cost()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"a": -1.0}, ValueError, "a must be"),
        ({"b": "x"}, TypeError, "b must be"),
        ({"max_batch_size": 0}, ValueError, "max_batch_size must be an int >= 1, got 0"),
        ({"kv_tokens": 1.5}, TypeError, "kv_tokens must be an int"),
        ({"a": 0.0, "b": 0.0}, ValueError, "a \\+ b must be > 0"),
    ],
)
def test_bad_gpu_settings_name_the_argument(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        GPUModel(**kwargs)  # type: ignore[arg-type]


def test_a_request_refuses_an_empty_answer() -> None:
    with pytest.raises(ValueError, match="output_tokens must be an int >= 1, got 0"):
        Request(id=0, arrival=0.0, prompt_tokens=5, output_tokens=0)


def test_the_workload_is_the_same_for_the_same_seed_and_mixes_short_and_long_answers() -> None:
    first, again, other = mixed_workload(100, seed=3), mixed_workload(100, seed=3), mixed_workload(100, seed=4)
    assert first == again
    assert first != other
    lengths = [request.output_tokens for request in first]
    assert min(lengths) <= 40 and max(lengths) >= 150  # both kinds are in
    arrivals = [request.arrival for request in first]
    assert arrivals == sorted(arrivals)


def test_a_bad_workload_rate_names_the_argument() -> None:
    with pytest.raises(ValueError, match="rate must be a number of requests per simulated second > 0, got 0"):
        mixed_workload(10, rate=0)
