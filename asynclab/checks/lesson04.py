"""Checkers for notebook 04 · Streaming tokens.

    from asynclab.checks import lesson04
    await lesson04.check_collect_with_ttft(collect_with_ttft)
    await lesson04.check_stream_until(stream_until)

Each checker makes its own :class:`~asynclab.LLM` with a stream latency it knows, runs the
learner's function in a trace, and grades the text *and* the timing of the stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asynclab.checks import attempt, expect, expect_no_leaks, fail, passed, require_async, within
from asynclab.latency import Streamed
from asynclab.services.llm import LLM, run_model
from asynclab.text import tokenize
from asynclab.tracing import Span, current_trace

__all__ = ["check_collect_with_ttft", "check_stream_until"]

#: The checker's streams: slower per token than the default, so "time to first token" and
#: "total time" differ by a second or more and cannot be confused at any speed.
TTFT_LATENCY = Streamed(first_token=0.4, per_token=0.05)
TTFT_PROMPT = "What is time to first token?"

UNTIL_LATENCY = Streamed(first_token=0.3, per_token=0.05)
UNTIL_PROMPT = "How do retries with backoff work?"
UNTIL_STOP = "backoff"




async def _at_return(
    function: Callable[..., Awaitable[Any]], llm: LLM, *args: Any
) -> tuple[Any, int, dict[int, str]]:
    """Run the learner's function and note, the moment it returns, what its streams were doing.

    Read in the same task step as the return: no loop iteration in between, so a generator
    left for the garbage collector to close still shows as open.
    """
    result = await function(llm, *args)
    recorded = current_trace()
    outcomes = {id(span): span.outcome for span in recorded.spans} if recorded is not None else {}
    return result, llm.in_flight, outcomes


def _one_stream(spans: list[Span], name: str) -> Span:
    __tracebackhide__ = True
    streams = [span for span in spans if span.operation == "stream"]
    if not streams:
        if any(span.operation == "complete" for span in spans):
            fail(f"{name} called llm.complete(...): that waits for the whole answer. "
                 "Use `async for token in llm.stream(prompt)` to see tokens as they arrive.")
        fail(f"{name} made no llm.stream(...) call: iterate `async for token in llm.stream(prompt)`.")
    expect(len(streams) == 1,
           f"{name} opened {len(streams)} streams for one prompt: open llm.stream(prompt) once.")
    return streams[0]


async def check_collect_with_ttft(function: Callable[..., Awaitable[Any]]) -> None:
    """``collect_with_ttft(llm, prompt)`` returns ``(text, ttft, total)``, measured by the learner."""
    __tracebackhide__ = True
    require_async(function)
    llm = LLM(stream_latency=TTFT_LATENCY)
    expected_text = run_model("assistant", TTFT_PROMPT)
    n = len(tokenize(expected_text))
    result = await attempt(_at_return, function, llm, TTFT_PROMPT)
    expect_no_leaks(result)
    value = result.result[0]
    expect(isinstance(value, tuple) and len(value) == 3,
           f"return a tuple (text, ttft, total), got {type(value).__name__} {value!r:.80}")
    text, ttft, total = value
    span = _one_stream(result.trace.spans, "collect_with_ttft")
    expect(isinstance(text, str), f"text must be a str (the tokens joined), got {type(text).__name__}")
    if text != expected_text:
        if text.replace(" ", "") == expected_text.replace(" ", ""):
            fail("the text has the right tokens but wrong spaces: each token carries its own leading "
                 "space, so join them with ''.join(tokens), not ' '.join(tokens).")
        fail(f"the text differs from what llm.complete would return.\n  expected: {expected_text!r}\n"
             f"  got:      {text!r}\nCollect every token of the stream, in order, and join them with ''.")
    for name, measured in (("ttft", ttft), ("total", total)):
        expect(isinstance(measured, (int, float)) and not isinstance(measured, bool),
               f"{name} must be a number of simulated seconds (from a stopwatch), got {measured!r}")
    first_token = (span.first_token or result.trace.start) - result.trace.start
    whole = result.elapsed
    if within(ttft, whole) and not within(ttft, first_token):
        fail(f"your ttft is {ttft:.2f} s, about the whole stream ({whole:.2f} s): you read the stopwatch "
             "after the loop. Read it inside the loop, when the first token arrives.")
    expect(within(ttft, first_token),
           f"your ttft is {ttft:.2f} s, but the first token arrived {first_token:.2f} s after your function "
           "started. Start a stopwatch before the `async for` and read sw.elapsed on the first token.")
    expect(within(total, whole),
           f"your total is {total:.2f} s, but the whole stream took {whole:.2f} s. Read the stopwatch "
           "after the last token (after the `async for` loop ends).")
    # 25 %: a busy 2-core machine can stall a 1.45 s stream by 0.2 s; extra waiting costs far more.
    expect(within(whole, TTFT_LATENCY.seconds(n=n), rel=0.25),
           f"the stream took {whole:.2f} s, but {n} tokens take {TTFT_LATENCY.seconds(n=n):.2f} s: "
           "read the tokens as they come, without extra waiting.")
    passed(f"collect_with_ttft: {n} tokens, first after {ttft:.2f} s, all after {total:.2f} s "
           f"(the model says {TTFT_LATENCY.first_token:g} + {TTFT_LATENCY.per_token:g}·{n - 1} = "
           f"{TTFT_LATENCY.seconds(n=n):.2f} s).")


async def check_stream_until(function: Callable[..., Awaitable[Any]]) -> None:
    """``stream_until(llm, prompt, stop_word)`` returns the text before the stop word, closing the stream."""
    __tracebackhide__ = True
    require_async(function)
    llm = LLM(stream_latency=UNTIL_LATENCY)
    tokens = tokenize(run_model("assistant", UNTIL_PROMPT))
    stop = next(i for i, token in enumerate(tokens) if token.strip() == UNTIL_STOP)
    expected_text = "".join(tokens[:stop])
    result = await attempt(_at_return, function, llm, UNTIL_PROMPT, UNTIL_STOP)
    text, in_flight, outcomes = result.result
    span = _one_stream(result.trace.spans, "stream_until")
    if text != expected_text:
        if isinstance(text, str) and text == expected_text + tokens[stop]:
            fail(f"your text ends with the stop word {UNTIL_STOP!r}: return only what came before it.")
        fail(f"stream_until returned {text!r:.120}\n  expected the text before {UNTIL_STOP!r}: "
             f"{expected_text!r}\nJoin the tokens you read with '' and stop when token.strip() == stop_word.")
    at_return = outcomes.get(id(span), span.outcome)
    if at_return == "ok":
        fail(f"you read the whole answer ({len(tokens)} tokens, {result.elapsed:.2f} s) and cut it "
             f"afterwards. Stop reading as soon as {UNTIL_STOP!r} arrives: the rest costs time and tokens.")
    if in_flight or at_return == "running":
        fail("your stream was still open when your function returned: `break` leaves the async generator "
             "suspended until Python garbage-collects it. Close it yourself: "
             "`async with contextlib.aclosing(llm.stream(prompt)) as stream:` around the loop "
             "(or `await stream.aclose()`).")
    expect_no_leaks(result)
    expected = UNTIL_LATENCY.first_token + UNTIL_LATENCY.per_token * stop
    # 30 %: a busy 2-core machine can stall a 0.8 s read by 0.3 s (seen in a course run); reading on
    # to the end takes 1.7 s and is caught above, and an extra wait of a second still fails here.
    expect(within(result.elapsed, expected, rel=0.3),
           f"stream_until took {result.elapsed:.2f} s, but reading up to token {stop + 1} takes "
           f"{expected:.2f} s: stop at the stop word, and do not wait for anything else.")
    passed(f"stream_until: stopped after {stop + 1} of {len(tokens)} tokens ({result.elapsed:.2f} s instead "
           f"of {UNTIL_LATENCY.seconds(n=len(tokens)):.2f} s); the stream span ended {at_return!r}, "
           f"llm.in_flight == {in_flight}.")
