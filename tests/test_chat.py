"""llm.chat: the tool-calling chat model, its decisions, latency, usage and streaming."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import jsonschema
import pytest

from asynclab import LLM, Faults, RateLimit, RateLimited, ServiceUnavailable, Streamed, Tools, about, stopwatch, trace
from asynclab.chat import TOOL_SCHEMAS, ChatChunk, ChatReply, InvalidRequest
from asynclab.intents import needs

# At TEST_SPEED (20) a timer firing ~5 ms late (a busy or shared 2-core VM) reads as 0.1 simulated seconds.
ABS = 0.1

THREE = "What's the weather in Paris and Tokyo, and NVDA's stock price?"


def user(content: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": content}]


def schema_of(name: str, tools: list[dict[str, Any]] = TOOL_SCHEMAS) -> dict[str, Any]:
    return next(t["function"]["parameters"] for t in tools if t["function"]["name"] == name)


async def run_tools(reply: ChatReply, tools: Tools) -> list[dict[str, Any]]:
    """The tool messages for a reply's calls, run at once; a failure becomes an "Error: …" result."""
    functions = {"get_weather": tools.weather, "get_news": tools.news, "get_stock_price": tools.stock_price}

    async def one(call: Any) -> dict[str, Any]:
        try:
            content = json.dumps(await functions[call.name](**call.args()))
        except Exception as exc:
            content = f"Error: {type(exc).__name__}: {exc}"
        return {"role": "tool", "tool_call_id": call.id, "content": content}

    return list(await asyncio.gather(*(one(call) for call in reply.tool_calls)))


def assemble(chunks: list[ChatChunk]) -> tuple[str, dict[int, dict[str, str]], str | None]:
    """Text, tool calls by index, and finish reason, put back together from stream chunks."""
    content, calls, finish = "", {}, None
    for chunk in chunks:
        content += chunk.content or ""
        for delta in chunk.tool_calls:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            call["name"] += delta.name or ""
            call["arguments"] += delta.arguments
        finish = chunk.finish_reason or finish
    return content, calls, finish


# -- deciding ----------------------------------------------------------------------------------


async def test_weather_in_two_cities_and_a_stock_price_is_three_tool_calls_in_one_message(fast: float) -> None:
    reply = await LLM().chat(user(THREE), tools=TOOL_SCHEMAS)
    assert reply.finish_reason == "tool_calls" and reply.content is None
    assert [(c.name, c.args()) for c in reply.tool_calls] == [
        ("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Tokyo"}), ("get_stock_price", {"symbol": "NVDA"}),
    ]
    assert len({c.id for c in reply.tool_calls}) == 3
    for call in reply.tool_calls:  # valid against the schema, additionalProperties: False included
        jsonschema.validate(call.args(), schema_of(call.name))


async def test_after_the_tool_results_it_answers_in_text_using_them(fast: float) -> None:
    llm, tools = LLM(), Tools()
    messages = user(THREE)
    first = await llm.chat(messages, tools=TOOL_SCHEMAS)
    results = await run_tools(first, tools)
    messages += [first.message, *results]
    final = await llm.chat(messages, tools=TOOL_SCHEMAS)
    assert final.finish_reason == "stop" and not final.tool_calls
    paris, tokyo, nvda = (json.loads(r["content"]) for r in results)
    assert final.content is not None
    for fact in (f"Paris: {paris['condition']}, {paris['temperature_c']} °C",
                 f"Tokyo: {tokyo['condition']}, {tokyo['temperature_c']} °C", f"NVDA trades at {nvda['price']} USD"):
        assert fact in final.content


async def test_a_tool_that_failed_is_acknowledged_in_the_answer(fast: float) -> None:
    llm = LLM()
    messages = user(THREE)
    first = await llm.chat(messages, tools=TOOL_SCHEMAS)
    # Tokyo's weather fails: only that one request fails its first attempt.
    flaky = Tools(faults=Faults(error_rate=1.0))
    good = Tools()
    results = await run_tools(first, good)
    tokyo_call = first.tool_calls[1]
    try:
        await flaky.weather("Tokyo")
    except ServiceUnavailable as exc:
        results[1] = {"role": "tool", "tool_call_id": tokyo_call.id, "content": f"ServiceUnavailable: {exc}"}
    final = await llm.chat([*messages, first.message, *results], tools=TOOL_SCHEMAS)
    assert final.content is not None
    assert "couldn't get the weather for Tokyo" in final.content and "ServiceUnavailable" in final.content
    assert "The weather in Paris:" in final.content and "NVDA trades at" in final.content
    # A JSON {"error": ...} result is an error too.
    results[1]["content"] = json.dumps({"error": "timed out after 2 s"})
    final = await llm.chat([*messages, first.message, *results], tools=TOOL_SCHEMAS)
    assert "couldn't get the weather for Tokyo" in (final.content or "") and "timed out" in (final.content or "")


async def test_a_question_that_needs_no_tool_is_answered_directly(fast: float) -> None:
    llm = LLM()
    question = "What is time to first token when streaming?"
    reply = await llm.chat(user(question), tools=TOOL_SCHEMAS)
    assert reply.finish_reason == "stop" and not reply.tool_calls
    assert reply.content == await llm.complete(question)  # the same model as complete()


async def test_a_context_in_the_system_message_answers_the_question(fast: float) -> None:
    messages = [{"role": "system", "content": "Context: The capital of the test kingdom is Asyncville."},
                *user("What is the capital of the test kingdom?")]
    assert "Asyncville" in ((await LLM().chat(messages)).content or "")


async def test_a_weather_question_without_a_city_gets_a_question_back(fast: float) -> None:
    reply = await LLM().chat(user("What's the weather like?"), tools=TOOL_SCHEMAS)
    assert reply.tool_calls == () and reply.content == "Which city would you like the weather for?"


@pytest.mark.parametrize(("question", "expected"), [
    ("Weather in New York, San Francisco and Oslo please", [("weather", "New York"), ("weather", "San Francisco"),
                                                            ("weather", "Oslo")]),
    ("Any AI chips news, and how is Apple stock doing?", [("stock", "AAPL"), ("news", "AI chips")]),
    ("Give me the news about vector databases", [("news", "vector databases")]),
    ("Is it raining in Lisbon?", [("weather", "Lisbon")]),
    ("weather in paris and tokyo today", [("weather", "Paris"), ("weather", "Tokyo")]),  # lowercase, capitalised
    ("What is the weather like in general?", [("weather", "")]),  # no city: the model asks which
    ("What is the price of $TSLA?", [("stock", "TSLA")]),
    ("What does temperature do in sampling?", []),  # no city: the sampling knob, not the weather
    ("How do I cut GPU costs for an AI API?", []),  # capitals that are not tickers
])
def test_the_question_reader_finds_cities_symbols_and_topics(question: str, expected: list[tuple[str, str]]) -> None:
    assert [(n.kind, n.value) for n in needs(question)] == expected


async def test_without_parallel_tool_calls_it_calls_one_tool_per_turn(fast: float) -> None:
    llm, tools = LLM(), Tools()
    messages = user(THREE)
    made = []
    for _ in range(4):
        reply = await llm.chat(messages, tools=TOOL_SCHEMAS, parallel_tool_calls=False)
        if not reply.tool_calls:
            break
        assert len(reply.tool_calls) == 1
        made.append(reply.tool_calls[0].args())
        messages += [reply.message, *await run_tools(reply, tools)]
    assert made == [{"city": "Paris"}, {"city": "Tokyo"}, {"symbol": "NVDA"}]
    assert reply.finish_reason == "stop" and "NVDA trades at" in (reply.content or "")


async def test_tool_choice_none_never_calls_and_required_always_calls(fast: float) -> None:
    llm = LLM()
    none = await llm.chat(user(THREE), tools=TOOL_SCHEMAS, tool_choice="none")
    assert none.tool_calls == () and none.content
    required = await llm.chat(user("What is backpressure?"), tools=TOOL_SCHEMAS, tool_choice="required")
    assert [c.name for c in required.tool_calls] == ["get_weather"]
    jsonschema.validate(required.tool_calls[0].args(), schema_of("get_weather"))
    named = await llm.chat(user(THREE), tools=TOOL_SCHEMAS,
                           tool_choice={"type": "function", "function": {"name": "get_stock_price"}})
    assert [(c.name, c.args()) for c in named.tool_calls] == [("get_stock_price", {"symbol": "NVDA"})]


async def test_arguments_fit_a_learners_own_schemas(fast: float) -> None:
    tools = [
        {"type": "function", "function": {"name": "lookup_forecast", "description": "Weather forecast", "parameters": {
            "type": "object", "additionalProperties": False, "required": ["locations", "unit", "days"],
            "properties": {"locations": {"type": "array", "items": {"type": "string"}},
                           "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                           "days": {"type": "integer", "minimum": 1, "maximum": 7}}}}},
        {"type": "function", "function": {"name": "search_docs", "parameters": {
            "type": "object", "required": ["query"], "properties": {"query": {"type": "string", "maxLength": 30}}}}},
    ]
    reply = await LLM().chat(user("What's the forecast for Paris and Tokyo?"), tools=tools)
    assert [(c.name, c.args()) for c in reply.tool_calls] == [
        ("lookup_forecast", {"locations": ["Paris", "Tokyo"], "unit": "celsius", "days": 1})]
    jsonschema.validate(reply.tool_calls[0].args(), schema_of("lookup_forecast", tools))
    search = await LLM().chat(user("How do retries with exponential backoff and jitter work?"), tools=tools)
    assert [c.name for c in search.tool_calls] == ["search_docs"]
    jsonschema.validate(search.tool_calls[0].args(), schema_of("search_docs", tools))


async def test_the_same_conversation_gets_the_same_reply(fast: float) -> None:
    messages = user(THREE)
    one, two = await asyncio.gather(LLM().chat(messages, tools=TOOL_SCHEMAS), LLM().chat(copy.deepcopy(messages),
                                                                                      tools=TOOL_SCHEMAS))
    assert one == two


@pytest.mark.parametrize(("messages", "param"), [
    ([], "messages"),
    ([{"role": "bot", "content": "hi"}], "messages[0].role"),
    ([{"role": "user"}], "messages[0].content"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "messages[0].content[0]"),
    ([{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_1", "content": "{}"}],
     "messages[1].tool_call_id"),  # a tool result for a call nobody made (the assistant message is missing)
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]}],
     "messages[1].tool_calls[0].function.arguments"),  # a dict, not JSON text
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
      {"role": "user", "content": "and?"}], "messages[2]"),  # the tool result is missing
])
async def test_a_malformed_conversation_is_refused_naming_the_field(messages: list[Any], param: str) -> None:
    llm = LLM()
    with pytest.raises(InvalidRequest) as caught:
        await llm.chat(messages, tools=TOOL_SCHEMAS)
    assert caught.value.param == param and str(caught.value).startswith(param)
    assert llm.calls == 0  # refused before any span or waiting


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools[0].function.name"),
    ({"tools": [{"name": "get_weather"}]}, "tools[0]"),
    ({"tools": TOOL_SCHEMAS, "tool_choice": "always"}, "tool_choice"),
    ({"tools": TOOL_SCHEMAS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": TOOL_SCHEMAS, "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
])
async def test_bad_tools_and_options_are_refused_naming_the_field(kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await LLM().chat(user(THREE), **kwargs)
    assert caught.value.param == param


async def test_an_unknown_model_or_stream_flag_is_refused() -> None:
    with pytest.raises(ValueError, match="model must be one of"):
        await LLM().chat(user("hi"), model="gpt-4o")
    with pytest.raises(TypeError, match="stream must be True or False"):
        await LLM().chat(user("hi"), stream="yes")  # type: ignore[call-overload]


# -- latency, usage, streaming -------------------------------------------------------------------


async def test_a_reply_takes_the_time_to_first_token_plus_a_step_per_token(fast: float) -> None:
    llm = LLM(stream_latency=Streamed(first_token=0.5, per_token=0.05))
    for question in ("What is backpressure?", THREE):  # warm up: the first reply is decided (CPU), then cached
        await llm.chat(user(question), tools=TOOL_SCHEMAS)
    with stopwatch() as text_time:
        text = await llm.chat(user("What is backpressure?"), tools=TOOL_SCHEMAS)
    with stopwatch() as calls_time:
        calls = await llm.chat(user(THREE), tools=TOOL_SCHEMAS)
    for reply, watch in ((text, text_time), (calls, calls_time)):
        expected = 0.5 + 0.05 * (reply.usage.completion_tokens - 1)
        assert about(watch.elapsed, expected) or abs(watch.elapsed - expected) < ABS, (watch.elapsed, expected)
    assert calls.usage.completion_tokens > 3 * 3  # a name and argument pieces per call


async def test_usage_counts_the_prompt_and_the_completion(fast: float) -> None:
    llm = LLM()
    short = await llm.chat(user("What is backpressure?"))
    assert short.usage.completion_tokens == len(list(_tokens(short.content or "")))
    with_tools = await llm.chat(user("What is backpressure?"), tools=TOOL_SCHEMAS)
    assert with_tools.usage.prompt_tokens > short.usage.prompt_tokens + 50  # the schemas are prompt too
    assert short.usage.total_tokens == short.usage.prompt_tokens + short.usage.completion_tokens


def _tokens(text: str) -> list[str]:
    from asynclab.text import tokenize

    return tokenize(text)


async def test_a_stream_delivers_text_deltas_on_the_token_schedule(fast: float) -> None:
    llm = LLM(stream_latency=Streamed(first_token=0.5, per_token=0.05))
    reply = await llm.chat(user("What is backpressure?"))
    arrivals, chunks = [], []
    with stopwatch() as watch:
        async for chunk in await llm.chat(user("What is backpressure?"), stream=True):
            arrivals.append(watch.elapsed)
            chunks.append(chunk)
    content, calls, finish = assemble(chunks)
    assert content == reply.content and not calls and finish == "stop"
    assert chunks[-1].usage == reply.usage and len(chunks) == reply.usage.completion_tokens + 1
    assert abs(arrivals[0] - 0.5) < ABS  # the first token at the time to first token
    assert abs(arrivals[-2] - (0.5 + 0.05 * (len(chunks) - 2))) < ABS  # then one every 0.05 s


async def test_a_stream_delivers_tool_call_deltas_that_add_up_to_the_calls(fast: float) -> None:
    llm = LLM()
    reply = await llm.chat(user(THREE), tools=TOOL_SCHEMAS)
    chunks = [chunk async for chunk in await llm.chat(user(THREE), tools=TOOL_SCHEMAS, stream=True)]
    content, calls, finish = assemble(chunks)
    assert content == "" and finish == "tool_calls"
    assert [calls[i] for i in sorted(calls)] == [
        {"id": c.id, "name": c.name, "arguments": c.arguments} for c in reply.tool_calls]
    assert sum(1 for c in chunks if any(d.id for d in c.tool_calls)) == 3  # id and name come once per call


async def test_stopping_a_stream_early_cancels_the_producer(fast: float) -> None:
    llm = LLM()
    with trace() as t:
        stream = await llm.chat(user("What is backpressure?"), stream=True)
        async for _ in stream:
            break
        await stream.aclose()  # type: ignore[attr-defined]
    assert t.spans[0].name == "llm.chat" and t.spans[0].outcome == "cancelled" and llm.in_flight == 0


async def test_a_fault_breaks_a_stream_half_way_and_fails_a_plain_reply(fast: float) -> None:
    llm = LLM(faults=Faults(error_rate=1.0), stream_latency=Streamed(0.1, 0.01))
    received = []
    with pytest.raises(ServiceUnavailable, match="mid-answer"):
        async for chunk in await llm.chat(user("What is backpressure?"), stream=True):
            received.append(chunk)
    assert 0 < len(received) < 17
    with pytest.raises(ServiceUnavailable):
        await llm.chat(user("What is time to first token?"))


async def test_a_rate_limited_chat_raises_before_any_token(fast: float) -> None:
    llm = LLM(faults=Faults(rate_limit=RateLimit(1, per=10.0)))
    await llm.chat(user("What is backpressure?"))
    with pytest.raises(RateLimited) as caught:
        await llm.chat(user("What is backpressure?"))
    assert 0 < caught.value.retry_after <= 10.0
    stream = await llm.chat(user("What is backpressure?"), stream=True)
    with pytest.raises(RateLimited):
        await anext(stream)
