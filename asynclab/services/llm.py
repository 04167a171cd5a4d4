"""A fake LLM that takes realistic time, streams tokens, and gives sensible answers.

    llm = LLM()                                            # 1.2 s per completion
    await llm.complete(review, model="sentiment")          # "positive"
    async for token in llm.stream("What is time to first token?"):
        print(token, end="")

Models (all deterministic, computed from the text by :mod:`asynclab.text`):

- ``assistant`` (default): answers a question. With a ``Context:`` section in the prompt it
  answers from that context (RAG); without one, from the bundled knowledge base.
- ``summarizer``: the most central one or two sentences of the text.
- ``sentiment``: ``"positive"``, ``"negative"`` or ``"neutral"``.
- ``classifier``: the topic: llm, retrieval, embeddings, agents, serving, async, evaluation,
  safety, or other.

``llm.chat(messages, tools=...)`` is the chat-completions interface with tool calling; how the
model decides is documented in :mod:`asynclab.chat`.

Introduced in notebook 00; streaming in 04; :class:`BlockingLLM` in 01; ``chat`` in 06.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from functools import lru_cache, partial
from typing import Any, Literal, overload

from asynclab import text
from asynclab.chat import ChatChunk, ChatReply, Prepared, prepare
from asynclab.clock import now, sleep_until
from asynclab.faults import Faults
from asynclab.latency import Latency, Streamed
from asynclab.services.base import Service, check_text
from asynclab.services.vectorstores import nearest

__all__ = ["LLM", "MODELS", "BlockingLLM", "run_model", "token_usage"]

MODELS = ("assistant", "summarizer", "sentiment", "classifier")

_CONTEXT = re.compile(r"context:\s*(?P<context>.*?)(?:\n\s*question:\s*(?P<question>.*))?\Z", re.I | re.S)


def _check_model(model: object) -> str:
    if model not in MODELS:
        allowed = ", ".join(repr(m) for m in MODELS)
        raise ValueError(f"model must be one of {allowed}; got {model!r}")
    return str(model)


@lru_cache(maxsize=4096)
def run_model(model: str, prompt: str) -> str:
    """What ``model`` answers to ``prompt``: the same text every time, however it is called."""
    if model == "summarizer":
        return text.summarize(prompt)
    if model == "sentiment":
        return text.sentiment(prompt)[0]
    if model == "classifier":
        return text.classify(prompt)[0]
    match = _CONTEXT.search(prompt)
    if match:
        question = match.group("question") or prompt[: match.start()]
        return text.answer(question.strip() or prompt, match.group("context"))
    # No context given: answer from what the model "knows", the bundled knowledge base.
    best, _ = nearest(prompt, k=1)[0]
    return text.answer(prompt, best.text)


@lru_cache(maxsize=4096)
def token_usage(model: str, prompt: str) -> int:
    """Tokens one completion counts against a token budget: the prompt's plus the answer's.

    Counted with the course's tokenizer (:func:`asynclab.text.tokenize`), like a provider's TPM.
    """
    return len(text.tokenize(prompt)) + len(text.tokenize(run_model(model, prompt)))


class LLM(Service):
    """A simulated LLM service.

    latency: simulated seconds per ``complete`` call (default 1.2 s, the seed example's LLM
    call). stream_latency: a :class:`Streamed` model for ``stream`` (default 0.35 s to the
    first token, then 0.03 s per token, about 33 tokens/s). faults, capacity, name: see
    :class:`Service`.
    """

    default_name = "llm"
    default_latency = 1.2

    def __init__(
        self,
        *,
        latency: float | Latency | None = None,
        stream_latency: Streamed | None = None,
        faults: Faults | None = None,
        capacity: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name, latency=latency, faults=faults, capacity=capacity)
        if stream_latency is not None and not isinstance(stream_latency, Streamed):
            raise TypeError(
                f"stream_latency must be a Streamed(first_token, per_token) model, got "
                f"{type(stream_latency).__name__} {stream_latency!r}"
            )
        self.stream_latency = stream_latency or Streamed()
        nearest("warm up", 1)  # build the knowledge index now, not inside the first timed call

    async def complete(self, prompt: str, *, model: str = "assistant") -> str:
        """The model's whole answer, after the service latency.

            summary = await llm.complete(article, model="summarizer")
        """
        check_text(prompt, "prompt")
        _check_model(model)
        # The token count (prompt + answer) is taken only if the rate limit counts tokens.
        usage = partial(token_usage, model, prompt)
        return await self._serve("complete", f"{model}:{prompt}", run_model, model, prompt, tokens=usage)

    def stream(self, prompt: str, *, model: str = "assistant") -> AsyncIterator[str]:
        """The same answer as ``complete``, token by token as the model produces it.

            async for token in llm.stream("Why do LLM apps wait?"):
                print(token, end="", flush=True)

        Stopping early (``break``, cancelling, closing the generator) stops the producer:
        its span ends ``"cancelled"`` and the service slot is freed.
        """
        check_text(prompt, "prompt")
        _check_model(model)
        tokens = text.tokenize(run_model(model, prompt))
        return self._produce(f"{model}:{prompt}", tokens, token_usage(model, prompt))

    async def _produce(self, key: str, tokens: list[str], usage: int) -> AsyncIterator[str]:
        span = self._open("stream", key, items=len(tokens))
        await self._admit(span, usage)
        outcome = "cancelled"  # an early exit (break, aclose, cancel) lands here via finally
        try:
            fate = self.faults.decide(self.name, "stream", key, span.attempt)
            if fate == "hang":
                await asyncio.Event().wait()  # never set: only cancellation ends a hang
            # Each token is due at start + first_token + i·per_token: deadlines, not sleeps, so
            # timer lateness does not pile up over a long answer.
            first, step = self.stream_latency.first_token, self.stream_latency.per_token
            for index, token in enumerate(tokens):
                await sleep_until(span.start + first + step * index)
                if fate == "error" and index == len(tokens) // 2:
                    # A stream that breaks half way: the learner has seen tokens, then an error.
                    raise self._fail(span, "stream broke mid-answer")
                if index == 0:
                    span.first_token = now()  # plots mark time to first token
                yield token
            outcome = "ok"
        finally:
            self._release()
            if span.end is None:
                self._finish(span, outcome)

    @overload
    async def chat(
        self, messages: Any, *, tools: Any = None, tool_choice: Any = "auto", parallel_tool_calls: bool = True,
        model: str = "assistant", stream: Literal[False] = False,
    ) -> ChatReply: ...

    @overload
    async def chat(
        self, messages: Any, *, tools: Any = None, tool_choice: Any = "auto", parallel_tool_calls: bool = True,
        model: str = "assistant", stream: Literal[True],
    ) -> AsyncIterator[ChatChunk]: ...

    async def chat(
        self, messages: Any, *, tools: Any = None, tool_choice: Any = "auto", parallel_tool_calls: bool = True,
        model: str = "assistant", stream: bool = False,
    ) -> ChatReply | AsyncIterator[ChatChunk]:
        """The assistant's next turn in a conversation: text, or tool calls to run (see :mod:`asynclab.chat`).

            reply = await llm.chat(messages, tools=TOOL_SCHEMAS)       # reply.tool_calls, reply.content
            async for chunk in await llm.chat(messages, stream=True):   # like the openai SDK
                print(chunk.content or "", end="")

        messages: OpenAI-style message dicts (or the SDK's message objects). tools: function
        schemas. tool_choice: "auto", "none", "required" or a named function.
        parallel_tool_calls: all needed calls in one turn (True) or one per turn. Takes the
        stream latency: time to first token + per token, for every completion token. The stream
        ends with a chunk carrying ``finish_reason`` and ``usage``; a rate limit or a fault before
        the first chunk raises at the first ``anext``, and stopping early cancels the producer.
        """
        _check_model(model)
        if not isinstance(stream, bool):
            raise TypeError(f"stream must be True or False, got {type(stream).__name__} {stream!r}")
        prepared = prepare(
            messages, tools=tools, tool_choice=tool_choice, parallel_tool_calls=parallel_tool_calls,
            model=model, answer=run_model,
        )
        if stream:
            return self._produce_chat(prepared)
        usage = prepared.reply.usage
        return await self._serve(
            "chat", prepared.key, _reply_of, prepared,
            items=usage.completion_tokens, latency=self.stream_latency, tokens=usage.total_tokens,
        )

    async def _produce_chat(self, prepared: Prepared) -> AsyncIterator[ChatChunk]:
        # Like _produce, with chat chunks: one per completion token, then the finish reason and usage.
        span = self._open("chat", prepared.key, items=len(prepared.pieces))
        await self._admit(span, tokens=prepared.reply.usage.total_tokens)
        outcome = "cancelled"
        try:
            fate = self.faults.decide(self.name, "chat", prepared.key, span.attempt)
            if fate == "hang":
                await asyncio.Event().wait()
            first, step = self.stream_latency.first_token, self.stream_latency.per_token
            for index, piece in enumerate(prepared.pieces):
                await sleep_until(span.start + first + step * index)
                if fate == "error" and index == len(prepared.pieces) // 2:
                    raise self._fail(span, "stream broke mid-answer")
                if index == 0:
                    span.first_token = now()
                yield piece
            yield ChatChunk(finish_reason=prepared.reply.finish_reason, usage=prepared.reply.usage)
            outcome = "ok"
        finally:
            self._release()
            if span.end is None:
                self._finish(span, outcome)


def _reply_of(prepared: Prepared) -> ChatReply:
    return prepared.reply


class BlockingLLM(Service):
    """The same LLM behind a *blocking* client: each call holds the thread (``time.sleep``).

        llm = BlockingLLM()
        llm.complete("hi")        # inside ``async def`` this freezes the event loop

    Use it to see the blocking-call pitfall, and ``await asyncio.to_thread(llm.complete, p)``
    to escape it. Introduced in notebook 01.
    """

    default_name = "llm"
    default_latency = 1.2

    def __init__(self, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        nearest("warm up", 1)  # build the knowledge index now, not inside the first timed call

    def complete(self, prompt: str, *, model: str = "assistant") -> str:
        check_text(prompt, "prompt")
        _check_model(model)
        usage = partial(token_usage, model, prompt)
        return self._serve_blocking("complete", f"{model}:{prompt}", run_model, model, prompt, tokens=usage)

