from __future__ import annotations

import math
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


# -- what a model returns is checked at call time ------------------------------------------


class _Returns:
    """A latency model of one's own that returns whatever it is given (a learner's bug)."""

    def __init__(self, value: object) -> None:
        self.value = value
        self.label = "mine"

    def seconds(self, key: str = "", n: int = 1) -> float:
        return self.value  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"Returns({self.value!r})"


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (float("nan"), ValueError, r"latency model Returns\(nan\) returned nan for request 'k' \(n=1\): it must "
                                   r"return a finite number of simulated seconds >= 0"),
        (float("inf"), ValueError, r"Returns\(inf\) returned inf"),
        (float("-inf"), ValueError, r"Returns\(-inf\) returned -inf"),
        (-0.5, ValueError, r"Returns\(-0.5\) returned -0.5"),
        ("1.2", TypeError, r"Returns\('1.2'\) returned str '1.2' for request 'k' \(n=1\): it must return a number"),
        (None, TypeError, r"returned NoneType None"),
        (True, TypeError, r"returned bool True"),
    ],
)
def test_a_model_of_ones_own_is_checked_at_every_call(value: object, error: type, message: str) -> None:
    model = as_latency(_Returns(value))
    with pytest.raises(error, match=message):
        model.seconds("k")


def test_a_checked_model_still_looks_and_answers_like_itself() -> None:
    mine = _Returns(0.25)
    model = as_latency(mine)
    assert model.seconds("k", 3) == 0.25
    assert repr(model) == "Returns(0.25)"
    assert model.label == "mine"  # type: ignore[attr-defined]  # its attributes are the model's
    assert as_latency(model) is model  # not wrapped twice


def test_an_object_whose_seconds_is_not_a_method_is_no_latency_model() -> None:
    class NotAModel:
        seconds = 1.2

    with pytest.raises(TypeError, match="latency must be a number of simulated seconds or a latency model"):
        as_latency(NotAModel())


async def test_a_service_call_fails_with_the_models_name_instead_of_hanging_or_finishing_at_once() -> None:
    from asynclab import LLM, Tools, at_speed, trace

    llm = LLM(latency=_Returns(float("nan")))
    tools = Tools(latency={"news": _Returns(-1.0)})
    with at_speed(50), trace() as t:
        with pytest.raises(ValueError, match=r"latency model Returns\(nan\) returned nan"):
            await llm.complete("hi")
        with pytest.raises(ValueError, match=r"^latency\['news'\]: latency model Returns\(-1.0\) returned -1.0"):
            await tools.news("AI")
    assert [span.outcome for span in t.spans] == ["ValueError", "ValueError"]
    assert llm.in_flight == tools.in_flight == 0


@pytest.mark.parametrize("model", [Batched(), Streamed()])
@pytest.mark.parametrize(
    ("n", "error", "message"),
    [
        (-100, ValueError, r"n must be an int >= 0 \(items in the call\), got -100"),
        (2.5, TypeError, r"n must be an int >= 0 \(items in the call\), got float 2.5"),
        (True, TypeError, "got bool True"),
    ],
)
def test_a_batch_or_stream_of_a_negative_or_fractional_size_is_refused(
    model: Batched | Streamed, n: object, error: type, message: str
) -> None:
    # Batched().seconds(n=-100) was -1.9 simulated seconds.
    with pytest.raises(error, match=message):
        model.seconds(n=n)  # type: ignore[arg-type]


def test_an_empty_batch_costs_the_base_and_an_empty_stream_the_first_token() -> None:
    assert Batched(base=0.1, per_item=0.02).seconds(n=0) == pytest.approx(0.1)
    assert Streamed(first_token=0.4, per_token=0.05).seconds(n=0) == pytest.approx(0.4)


@pytest.mark.parametrize("model", [Batched(base=1e300, per_item=1e300), Streamed(first_token=1, per_token=1e300)])
@pytest.mark.parametrize("n", [10**10, 10**400])
def test_a_duration_beyond_a_float_is_an_error_naming_the_model(model: Batched | Streamed, n: int) -> None:
    with pytest.raises(ValueError, match=rf"latency model {type(model).__name__}\(.*\) returned inf"):
        model.seconds("k", n)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Jittered(1.0, sigma=1e6), r"sigma must be from 0 to 5 \(0.3 is typical\), got 1000000.0"),
        (lambda: Jittered(1e300, sigma=1.0, tail_factor=1e10),
         r"median=1e\+300, sigma=1.0 and tail_factor=10000000000.0 can draw a duration too large for a float"),
        (lambda: Jittered(1e308, sigma=5.0), "too large for a float"),
    ],
)
def test_jitter_that_could_overflow_is_refused_when_the_model_is_made(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


def test_the_widest_allowed_jitter_never_overflows() -> None:
    # The constructor bounds the longest draw (|gauss| < 8.6); twenty thousand draws stay finite.
    model = Jittered(1e300 / math.exp(5 * 8.6), sigma=5.0, tail_rate=0.5, tail_factor=1.0)
    assert all(math.isfinite(model.seconds(f"k{i}")) for i in range(20_000))


def test_jitter_refuses_a_seed_that_is_not_an_int() -> None:
    with pytest.raises(TypeError, match="seed must be an int, got str '1'"):
        Jittered(1.0, seed="1")  # type: ignore[arg-type]
