from __future__ import annotations

import asyncio

import pytest

from asynclab import LLM, BlockingLLM, Faults, ServiceUnavailable, Streamed, stopwatch, trace
from asynclab.services.llm import MODELS

# At TEST_SPEED (20) a timer firing ~5 ms late (a busy or shared 2-core VM) reads as 0.1 simulated seconds.
ABS = 0.1

REVIEW_GOOD = "I love this product. The answers are fast, accurate and genuinely helpful."
REVIEW_BAD = "Terrible experience. The service was slow, broken and the support was awful."


async def test_the_sentiment_model_reads_the_text(fast: float) -> None:
    llm = LLM(latency=0.1)
    good, bad = await asyncio.gather(
        llm.complete(REVIEW_GOOD, model="sentiment"), llm.complete(REVIEW_BAD, model="sentiment")
    )
    assert (good, bad) == ("positive", "negative")


async def test_the_classifier_names_the_topic(fast: float) -> None:
    llm = LLM(latency=0.1)
    topic = await llm.complete(
        "Chunk the documents, embed them and store the vectors so retrieval finds relevant passages"
        " for the prompt.",
        model="classifier",
    )
    assert topic in {"retrieval", "embeddings"}


async def test_the_summarizer_returns_sentences_of_the_text(fast: float) -> None:
    article = (
        "Async code lets one thread wait on many network calls at once. "
        "An LLM call spends most of its time waiting for the network and the GPU. "
        "While one call waits, the event loop runs other calls. "
        "The weather was nice yesterday."
    )
    summary = await LLM(latency=0.1).complete(article, model="summarizer")
    assert 0 < len(summary) < len(article)
    sentences = [s.strip() for s in article.split(". ")]
    assert any(s.rstrip(".") in summary for s in sentences)


async def test_the_assistant_answers_from_the_given_context(fast: float) -> None:
    prompt = (
        "Context: The capital of the test kingdom is Asyncville. Its river is the Await.\n"
        "Question: What is the capital of the test kingdom?"
    )
    answer = await LLM(latency=0.1).complete(prompt)
    assert "Asyncville" in answer


async def test_the_assistant_answers_from_its_knowledge_without_context(fast: float) -> None:
    answer = await LLM(latency=0.1).complete("What is time to first token when streaming?")
    assert "token" in answer.lower()


async def test_answers_are_deterministic(fast: float) -> None:
    a, b = LLM(latency=0.05), LLM(latency=0.05)
    for model in MODELS:
        assert await a.complete(REVIEW_GOOD, model=model) == await b.complete(REVIEW_GOOD, model=model)


async def test_a_stream_yields_the_complete_answer_token_by_token(fast: float) -> None:
    llm = LLM(latency=0.1, stream_latency=Streamed(first_token=0.3, per_token=0.02))
    question = "How does streaming reduce perceived latency?"
    tokens: list[str] = []
    arrivals: list[float] = []
    with trace() as t, stopwatch() as sw:
        async for token in llm.stream(question):
            tokens.append(token)
            arrivals.append(sw.elapsed)
    assert "".join(tokens) == await llm.complete(question)
    assert len(tokens) > 5
    assert arrivals[0] == pytest.approx(0.3, rel=0.05, abs=ABS)
    expected_total = 0.3 + 0.02 * (len(tokens) - 1)
    assert arrivals[-1] == pytest.approx(expected_total, rel=0.05, abs=ABS * 2)
    span = t.spans[0]
    assert span.operation == "stream" and span.outcome == "ok" and span.items == len(tokens)
    assert span.first_token is not None


async def test_breaking_out_of_a_stream_stops_the_producer(fast: float) -> None:
    llm = LLM(capacity=1)
    with trace() as t:
        stream = llm.stream("Explain backpressure in async pipelines.")
        async for _ in stream:
            break
        await stream.aclose()  # type: ignore[attr-defined]
    assert t.spans[0].outcome == "cancelled"
    assert llm.in_flight == 0


async def test_a_stream_can_break_half_way_with_an_injected_fault(fast: float) -> None:
    llm = LLM(faults=Faults(error_rate=1.0), stream_latency=Streamed(0.05, 0.01))
    received: list[str] = []
    with pytest.raises(ServiceUnavailable, match="stream broke mid-answer"):
        async for token in llm.stream("What is a semaphore?"):
            received.append(token)
    assert received  # the learner saw part of the answer before the error


def test_the_blocking_llm_gives_the_same_answers() -> None:
    from asynclab import at_speed

    with at_speed(500):
        assert BlockingLLM(latency=0.1).complete(REVIEW_BAD, model="sentiment") == "negative"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"prompt": ""}, ValueError, "prompt must be a non-empty str"),
        ({"prompt": "   "}, ValueError, "prompt must be a non-empty str"),
        ({"prompt": 42}, TypeError, "prompt must be a str, got int 42"),
        ({"prompt": "hi", "model": "gpt-9"}, ValueError,
         "model must be one of 'assistant', 'summarizer', 'sentiment', 'classifier'; got 'gpt-9'"),
    ],
)
async def test_bad_llm_requests_are_refused_before_any_waiting(kwargs: dict, error: type, message: str) -> None:
    llm = LLM()
    with pytest.raises(error, match=message):
        await llm.complete(**kwargs)
    with pytest.raises(error, match=message):
        llm.stream(**kwargs)
    with pytest.raises(error, match=message):
        BlockingLLM().complete(**kwargs)
    assert llm.calls == 0


def test_a_bad_stream_latency_is_refused() -> None:
    with pytest.raises(TypeError, match=r"stream_latency must be a Streamed\(first_token, per_token\) model"):
        LLM(stream_latency=0.3)  # type: ignore[arg-type]
