from __future__ import annotations

import asyncio

import pytest

from asynclab import Tools, trace

# At TEST_SPEED (20) a timer firing ~5 ms late (a busy or shared 2-core VM) reads as 0.1 simulated seconds.
ABS = 0.1


async def test_the_three_tools_return_plausible_data_concurrently(fast: float) -> None:
    tools = Tools()
    with trace() as t:
        weather, news, stock = await asyncio.gather(
            tools.weather("Lisbon"), tools.news("AI chips"), tools.stock_price("NVDA")
        )
    assert weather["city"] == "Lisbon"
    assert -5 <= float(weather["temperature_c"]) <= 32
    assert len(news) == 3 and all("AI chips" in h for h in news)
    assert stock["symbol"] == "NVDA" and float(stock["price"]) > 0
    assert t.elapsed == pytest.approx(0.8, rel=0.05, abs=ABS)  # the slowest tool, news
    assert {s.operation: round(s.duration, 1) for s in t.spans} == pytest.approx(
        {"weather": 0.5, "news": 0.8, "stock_price": 0.3}, abs=ABS
    )


async def test_tool_data_is_the_same_in_every_run(fast: float) -> None:
    a, b = Tools(latency=0.01), Tools(latency=0.01)
    assert await a.weather("Oslo") == await b.weather("oslo")
    assert await a.news("agents", limit=5) == await b.news("agents", limit=5)
    assert await a.stock_price("ACME") == await b.stock_price("ACME")


async def test_a_latency_mapping_overrides_one_tool(fast: float) -> None:
    tools = Tools(latency={"news": 2.0})
    assert tools.latencies["news"].seconds() == 2.0
    assert tools.latencies["weather"].seconds() == 0.5


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda t: t.weather(""), ValueError, "city must be a non-empty str"),
        (lambda t: t.weather("42"), ValueError, "city must be a place name such as 'Lisbon', got '42'"),
        (lambda t: t.news("ai", limit=0), ValueError, "limit must be an int from 1 to 10, got 0"),
        (lambda t: t.stock_price("nvda"), ValueError, "symbol must be 1 to 5 capital letters"),
        (lambda t: t.stock_price(123), TypeError, "symbol must be a str, got int"),
    ],
)
async def test_bad_tool_arguments_are_refused(call: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        await call(Tools())  # type: ignore[operator]


def test_an_unknown_tool_latency_is_refused() -> None:
    with pytest.raises(ValueError, match=r"latency keys must be among \['news', 'stock_price', 'weather'\]"):
        Tools(latency={"email": 1.0})
