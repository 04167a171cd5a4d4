from __future__ import annotations

import statistics

import pytest

from asynclab.latency import Batched, Fixed, Jittered, Streamed, as_latency


def test_fixed_latency_is_the_same_for_every_request() -> None:
    model = Fixed(1.2)
    assert {model.seconds(str(i)) for i in range(10)} == {1.2}
    assert repr(model) == "Fixed(1.2)"


def test_jitter_depends_on_the_request_not_the_call_order() -> None:
    model = Jittered(1.0, sigma=0.3, seed=4)
    first = [model.seconds(f"req-{i}") for i in range(50)]
    again = [model.seconds(f"req-{i}") for i in reversed(range(50))][::-1]
    assert first == again
    assert len(set(first)) == 50


def test_jitter_is_lognormal_around_the_median() -> None:
    model = Jittered(1.0, sigma=0.3)
    draws = [model.seconds(f"k{i}") for i in range(2000)]
    # The median of 2000 lognormal draws lies within ±5 % of the true median (σ/√n ≈ 0.8 %).
    assert statistics.median(draws) == pytest.approx(1.0, rel=0.05)
    assert min(draws) > 0


def test_a_tail_makes_some_calls_much_slower() -> None:
    plain = Jittered(1.0, sigma=0.1, seed=1)
    tailed = Jittered(1.0, sigma=0.1, tail_rate=0.1, tail_factor=5, seed=1)
    slow = sum(tailed.seconds(f"k{i}") > 3 for i in range(1000))
    assert sum(plain.seconds(f"k{i}") > 3 for i in range(1000)) == 0
    assert 60 <= slow <= 140  # 10 % of 1000, binomial sd ≈ 9.5, so ±4 sd


def test_a_stream_costs_time_to_first_token_plus_a_step_per_token() -> None:
    model = Streamed(first_token=0.4, per_token=0.05)
    assert model.seconds(n=1) == pytest.approx(0.4)
    assert model.seconds(n=11) == pytest.approx(0.4 + 0.5)


def test_a_batch_costs_a_plus_b_times_n_so_batching_pays() -> None:
    model = Batched(base=0.1, per_item=0.005)
    assert model.seconds(n=100) == pytest.approx(0.6)
    assert 100 * model.seconds(n=1) > 10 * model.seconds(n=100)


def test_a_number_becomes_a_fixed_latency() -> None:
    assert isinstance(as_latency(0.3), Fixed)
    model = Streamed()
    assert as_latency(model) is model


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: Fixed(-1), ValueError, "seconds must be a finite number of simulated seconds >= 0, got -1"),
        (lambda: Fixed("1.2"), TypeError, "seconds must be a number of simulated seconds >= 0, got str"),
        (lambda: Jittered(-0.5), ValueError, "median must be a finite"),
        (lambda: Jittered(1, tail_rate=2), ValueError, "tail_rate must be a number between 0 and 1"),
        (lambda: Jittered(1, tail_factor=0.5), ValueError, "tail_factor must be >= 1"),
        (lambda: Streamed(first_token=-0.1), ValueError, "first_token must be a finite"),
        (lambda: Batched(per_item=float("nan")), ValueError, "per_item must be a finite"),
        (lambda: as_latency("slow"), TypeError, "latency must be a number of simulated seconds or a latency model"),
        (lambda: as_latency(-3), ValueError, "latency must be a finite number of simulated seconds >= 0, got -3"),
        (lambda: as_latency(True), TypeError, "latency must be a number"),
    ],
)
def test_bad_latencies_are_refused_with_what_is_allowed(build: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        build()  # type: ignore[operator]
