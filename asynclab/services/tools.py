"""Agent tools: weather, news and stock prices, each a slow external API with plausible data.

    tools = Tools()
    await tools.weather("Lisbon")        # 0.5 s  {'city': 'Lisbon', 'temperature_c': 17.3, ...}
    await tools.news("AI chips")         # 0.8 s  three headlines
    await tools.stock_price("NVDA")      # 0.3 s  {'symbol': 'NVDA', 'price': 131.2, ...}

Data is deterministic: the same argument gives the same answer in every run.

Introduced in notebook 06.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from asynclab.faults import Faults
from asynclab.latency import Latency, as_latency, seeded_random
from asynclab.services.base import Service, check_text

__all__ = ["TOOL_LATENCY", "Tools"]

#: Default simulated seconds per tool: a weather API is quick, news search is slow.
TOOL_LATENCY = {"weather": 0.5, "news": 0.8, "stock_price": 0.3}

_CONDITIONS = ("sunny", "partly cloudy", "overcast", "light rain", "heavy rain", "windy", "fog", "snow")
_HEADLINES = (
    "{topic}: what changed this week",
    "Engineers report {pct}% lower latency after rethinking {topic}",
    "Three lessons from a year of {topic} in production",
    "Why {topic} budgets are rising in {year}",
    "A practical guide to {topic} for small teams",
    "{topic} outage traced to a missing timeout",
    "Startups bet on {topic} as costs fall {pct}%",
)
_SYMBOL = re.compile(r"[A-Z]{1,5}")


def _weather(city: str) -> dict[str, str | float | int]:
    rng = seeded_random("weather", city.lower())
    return {
        "city": city,
        "temperature_c": round(rng.uniform(-5, 32), 1),
        "condition": rng.choice(_CONDITIONS),
        "humidity_pct": rng.randint(25, 95),
        "wind_kph": rng.randint(0, 45),
    }


def _news(topic: str, limit: int) -> list[str]:
    rng = seeded_random("news", topic.lower())
    templates = rng.sample(_HEADLINES, k=min(limit, len(_HEADLINES)))
    return [t.format(topic=topic.strip(), pct=rng.randint(10, 60), year=rng.randint(2025, 2026)) for t in templates]


def _stock(symbol: str) -> dict[str, str | float]:
    rng = seeded_random("stock", symbol)
    return {
        "symbol": symbol,
        "price": round(rng.uniform(8, 900), 2),
        "currency": "USD",
        "change_pct": round(rng.gauss(0, 1.8), 2),
    }


class Tools(Service):
    """Three tools behind one service.

    latency: a number for every tool, or a mapping like ``{"news": 2.0}`` that overrides the
    defaults in :data:`TOOL_LATENCY`. faults, capacity, name: see Service.
    """

    default_name = "tools"

    def __init__(
        self,
        *,
        latency: float | Latency | Mapping[str, float | Latency] | None = None,
        faults: Faults | None = None,
        capacity: int | None = None,
        name: str | None = None,
    ) -> None:
        per_tool: dict[str, float | Latency] = dict(TOOL_LATENCY)
        if isinstance(latency, Mapping):
            unknown = set(latency) - set(TOOL_LATENCY)
            if unknown:
                raise ValueError(
                    f"latency keys must be among {sorted(TOOL_LATENCY)}; got {sorted(unknown)}"
                )
            per_tool.update(latency)
        elif latency is not None:
            per_tool = {tool: latency for tool in TOOL_LATENCY}
        super().__init__(name=name, latency=per_tool["weather"], faults=faults, capacity=capacity)
        self.latencies = {tool: as_latency(value, f"latency[{tool!r}]") for tool, value in per_tool.items()}

    async def weather(self, city: str) -> dict[str, str | float | int]:
        """Current weather for a city (any name made of letters, spaces, dots, hyphens)."""
        check_text(city, "city")
        if not re.fullmatch(r"[^\W\d_][\w .'-]*", city.strip()):
            raise ValueError(f"city must be a place name such as 'Lisbon', got {city!r}")
        name = city.strip().title()
        return await self._serve("weather", name, _weather, name, latency=self.latencies["weather"])

    async def news(self, topic: str, limit: int = 3) -> list[str]:
        """The latest ``limit`` headlines about a topic."""
        check_text(topic, "topic")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10:
            raise ValueError(f"limit must be an int from 1 to 10, got {limit!r}")
        return await self._serve(
            "news", f"{limit}:{topic.lower()}", _news, topic, limit, latency=self.latencies["news"]
        )

    async def stock_price(self, symbol: str) -> dict[str, str | float]:
        """The last price of a ticker symbol (1–5 capital letters, like 'NVDA')."""
        check_text(symbol, "symbol")
        if not _SYMBOL.fullmatch(symbol):
            raise ValueError(f"symbol must be 1 to 5 capital letters such as 'NVDA', got {symbol!r}")
        return await self._serve(
            "stock_price", symbol, _stock, symbol, latency=self.latencies["stock_price"]
        )
