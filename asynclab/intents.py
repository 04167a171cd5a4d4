"""What a chat question asks for, and how tool results become an answer: the chat model's reading.

    needs("What's the weather in Paris and Tokyo, and NVDA's stock price?")
    # [Need('weather', 'Paris'), Need('weather', 'Tokyo'), Need('stock', 'NVDA')]
    tool_kind("get_stock_price", "The last price of a ticker symbol")   # 'stock'

Pure and deterministic (no randomness, no I/O): :mod:`asynclab.chat` uses it to decide which
tools to call with which arguments, and to write the final answer from their results. The
rules, for lesson authors writing questions, are listed in :mod:`asynclab.chat`.

Introduced in notebook 06.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from asynclab import text

__all__ = [
    "COMPANIES",
    "KINDS",
    "Need",
    "describe_result",
    "error_of",
    "is_question",
    "key_phrase",
    "main_parameter",
    "needs",
    "tool_kind",
]

#: The kinds of tool the model knows how to use, in the order a tool's name is matched against them.
KINDS = ("weather", "stock", "news", "search")

# A tool's kind from words in its name (first) or description; "news" before "search", so that a
# "search_news" tool is a news tool.
_KIND_WORDS = {
    "weather": ("weather", "forecast", "temperature"),
    "stock": ("stock", "ticker", "share price", "quote"),
    "news": ("news", "headline"),
    "search": ("search", "retriev", "knowledge", "document", "docs", "lookup"),
}
# Which parameter of a tool receives the value, by name (else the first required string).
_MAIN_PARAMETER = {
    "weather": ("city", "location", "place", "town", "cities", "locations"),
    "stock": ("symbol", "ticker", "symbols", "tickers", "stock"),
    "news": ("topic", "query", "q", "subject", "keywords", "keyword", "topics"),
    "search": ("query", "q", "question", "text", "topic", "search"),
}


def _set(spec: str) -> frozenset[str]:
    return frozenset(spec.split())


_TOKEN = re.compile(r"\$?[^\W\d_][\w'’-]*|\d+(?:\.\d+)?|[^\w\s]")
_WEATHER_WORDS = _set("rain raining rainy sunny snow snowing humid humidity windy wind degrees temperature")
_STOCK_WORDS = _set("stock stocks shares ticker")
_PRICE_WORDS = _set("price prices quote trading trade trades worth")
_NEWS_WORDS = _set("news headline headlines")
_TOPIC_PREPOSITIONS = _set("about on regarding around for of concerning")
_TOPIC_ENDS = _set("and or but then please today now also plus with")
_TOPIC_FILLERS = _set("latest recent any some top today's me the get give tell show what's fresh")
#: All-capital words that are not ticker symbols.
_NOT_TICKERS = _set(
    "I A AI API APIS LLM LLMS RAG GPU GPUS CPU USD EUR GBP SSE HTTP JSON UTC OK US UK EU CEO PM AM FAQ "
    "TTFT RPM TPM KV SDK SQL CI ID URL TL DR ETA NYC LA SF"
)
#: Lowercase words after "in", "for" or "at" that are not places.
_NOT_PLACES = _set("today tomorrow tonight now general town city area here there advance total case particular "
                   "celsius fahrenheit degrees morning afternoon evening weekend week")
#: Company names the model knows the ticker of.
COMPANIES = {
    "nvidia": "NVDA", "apple": "AAPL", "microsoft": "MSFT", "alphabet": "GOOGL", "google": "GOOGL",
    "amazon": "AMZN", "tesla": "TSLA", "meta": "META", "intel": "INTC", "ibm": "IBM", "netflix": "NFLX",
    "oracle": "ORCL", "amd": "AMD",
}


@dataclass(frozen=True, slots=True)
class Need:
    """One thing the question needs a tool for: its kind and the value the tool is called with."""

    kind: str
    value: str


def _bare(token: str) -> str:
    return token.removeprefix("$").removesuffix("'s").removesuffix("’s")


def _is_place_word(token: str) -> bool:
    # A place name's words are capitalised and contain a lowercase letter: "Paris", "New", "York",
    # never "NVDA" or "NVDA's" (a ticker) or "I".
    bare = _bare(token)
    return bare[:1].isupper() and any(c.islower() for c in bare) and bare.lower() not in text.STOPWORDS


def _is_lowercase_place(token: str) -> bool:
    # "weather in paris": one lowercase word is a place too, unless it is a time or a filler.
    return (token.isalpha() and token.islower() and token not in text.STOPWORDS and token not in _NOT_PLACES
            and token not in _NEWS_WORDS and token not in _STOCK_WORDS and token not in _WEATHER_WORDS)


def _places_after(tokens: list[str], start: int, lowercase: bool = True) -> list[str]:
    """A list of place names starting at ``tokens[start]``: "Paris, Tokyo and New York", "paris and oslo"."""
    places: list[str] = []
    i = start
    # Lowercase names only in an all-lowercase list: in "in Lisbon, and chips news", chips is no place.
    lowercase = lowercase and start < len(tokens) and _is_lowercase_place(tokens[start])
    while i < len(tokens):
        end = i
        while end < len(tokens) and _is_place_word(tokens[end]):
            end += 1
        if end == i and lowercase and _is_lowercase_place(tokens[i]):
            end = i + 1
        if end == i:
            break
        places.append(" ".join(_bare(t)[:1].upper() + _bare(t)[1:] for t in tokens[i:end]))
        i = end
        if i >= len(tokens) or tokens[i].lower() not in {",", "and", "or", "&"}:
            break  # the list goes on only after a comma, "and", "or"
        while i < len(tokens) and tokens[i].lower() in {",", "and", "or", "&"}:
            i += 1
    return places


def _cities(tokens: list[str], lowercase: bool) -> list[str]:
    lowered = [t.lower() for t in tokens]
    found: list[str] = []
    for i, word in enumerate(lowered):
        if word in {"in", "for", "at"}:
            found += _places_after(tokens, i + 1, lowercase)
    return list(dict.fromkeys(found))


def _symbols(tokens: list[str]) -> list[str]:
    found = []
    for token in tokens:
        bare = _bare(token)
        if re.fullmatch(r"[A-Z]{1,5}", bare) and (token.startswith("$") or bare not in _NOT_TICKERS):
            found.append(bare)
        elif bare.lower() in COMPANIES and bare[:1].isupper():
            found.append(COMPANIES[bare.lower()])
    return list(dict.fromkeys(found))


def _topics(tokens: list[str]) -> list[str]:
    lowered = [t.lower() for t in tokens]
    found = []
    for i, word in enumerate(lowered):
        if word not in _NEWS_WORDS:
            continue
        after = i + 1
        if after < len(tokens) and lowered[after] in _TOPIC_PREPOSITIONS:  # "news about AI chips"
            end = after + 1
            while end < len(tokens) and tokens[end][0].isalnum() and lowered[end] not in _TOPIC_ENDS:
                end += 1
            words = tokens[after + 1 : end]
        else:  # "the latest AI chips news"
            begin = i
            while begin > 0 and tokens[begin - 1][0].isalnum() and lowered[begin - 1] not in _TOPIC_FILLERS \
                    and lowered[begin - 1] not in text.STOPWORDS and i - begin < 4:
                begin -= 1
            words = tokens[begin:i]
        if words:
            found.append(" ".join(words))
    return list(dict.fromkeys(found))


def needs(question: str) -> list[Need]:
    """What the question needs tools for, in this order: weather per city, stock per symbol, news per topic.

    A kind with a trigger word but no value gives ``Need(kind, "")``: the model asks which city,
    symbol or topic instead of calling the tool.
    """
    tokens = _TOKEN.findall(question)
    lowered = {_bare(t).lower() for t in tokens}
    found: list[Need] = []
    if lowered & {"weather", "forecast"}:
        found += [Need("weather", city) for city in _cities(tokens, lowercase=True)] or [Need("weather", "")]
    elif lowered & _WEATHER_WORDS and (cities := _cities(tokens, lowercase=False)):
        # "temperature in sampling" is no weather question: a weak word needs a capitalised city.
        found += [Need("weather", city) for city in cities]
    symbols = _symbols(tokens)
    dollar = any(t.startswith("$") for t in tokens)
    if lowered & _STOCK_WORDS or "share price" in question.lower() or dollar or (lowered & _PRICE_WORDS and symbols):
        found += [Need("stock", symbol) for symbol in symbols] or [Need("stock", "")]
    if lowered & _NEWS_WORDS:
        found += [Need("news", topic) for topic in _topics(tokens)] or [Need("news", "")]
    return found


def key_phrase(question: str, limit: int = 8) -> str:
    """The question's content words (no stopwords), at most ``limit`` of them: a search query."""
    words = [w for w in re.findall(r"[^\W_][\w'’-]*", question) if w.lower() not in text.STOPWORDS]
    return " ".join(words[:limit]) or question.strip()


def is_question(question: str) -> bool:
    """Worth a search: three words or more, one of them a content word ("hi there" is not)."""
    found = [w.lower() for w in re.findall(r"[^\W_][\w'’-]*", question)]
    return len(found) >= 3 and any(w not in text.STOPWORDS for w in found)


def tool_kind(name: str, description: str = "") -> str | None:
    """Which kind of tool this is, from words in its name, else its description (None: unknown)."""
    for haystack in (name.lower().replace("_", " ").replace("-", " "), description.lower()):
        for kind in KINDS:
            if any(word in haystack for word in _KIND_WORDS[kind]):
                return kind
    return None


def main_parameter(kind: str | None, parameters: dict[str, Any]) -> str | None:
    """The parameter that receives the value: a known name for the kind, else the first required string."""
    properties = parameters.get("properties") or {}
    for name in _MAIN_PARAMETER.get(kind or "", ()):
        if name in properties:
            return name
    required = [p for p in parameters.get("required") or () if p in properties]
    for name in [*required, *properties]:
        if (properties[name] or {}).get("type", "string") in ("string", "array"):
            return str(name)
    return None


# -- reading tool results ---------------------------------------------------------------------

_ERROR_START = re.compile(
    r"\s*(?:error\b|failed\b|\w*(?:Error|Exception|Unavailable|RateLimited|NotFound|Timeout)\b)", re.I
)


def _parse(content: str) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return content


def error_of(content: str) -> str | None:
    """The error a tool result reports, or None: ``{"error": ...}``, or text like "Error: ..." / "TimeoutError()"."""
    value = _parse(content)
    if isinstance(value, dict) and "error" in value:
        error = value["error"]
        if isinstance(error, dict):
            error = error.get("message") or error.get("type") or json.dumps(error)
        return str(error) or "unknown error"
    if isinstance(value, str) and _ERROR_START.match(value):
        return value.strip()
    return None


def _pick(values: dict[str, Any], *names: str) -> Any:
    return next((values[n] for n in names if n in values), None)


def _compact(value: Any, limit: int = 160) -> str:
    rendered = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return rendered if len(rendered) <= limit else rendered[: limit - 1] + "…"


def _weather(args: dict[str, Any], value: Any) -> str:
    if isinstance(value, dict):
        city = _pick(value, "city", "location", "name") or _pick(args, "city", "location") or "there"
        temperature = _pick(value, "temperature_c", "temperature", "temp_c", "temp")
        condition = _pick(value, "condition", "conditions", "description", "summary")
        if temperature is not None or condition is not None:
            parts = [str(condition)] if condition is not None else []
            parts += [f"{temperature} °C"] if temperature is not None else []
            return f"The weather in {city}: {', '.join(parts)}."
    return f"The weather for {_compact(args) if args else 'that place'}: {_compact(value)}."


def _stock(args: dict[str, Any], value: Any) -> str:
    if isinstance(value, dict) and _pick(value, "price", "last", "close") is not None:
        symbol = _pick(value, "symbol", "ticker") or _pick(args, "symbol", "ticker") or "It"
        sentence = f"{symbol} trades at {_pick(value, 'price', 'last', 'close')} {value.get('currency', '')}".rstrip()
        change = value.get("change_pct")
        return sentence + (f" ({change:+} % today)." if isinstance(change, (int, float)) else ".")
    return f"The stock price for {_compact(args)}: {_compact(value)}."


def _news(args: dict[str, Any], value: Any) -> str:
    headlines = value.get("headlines") if isinstance(value, dict) else value
    topic = _pick(args, "topic", "query", "q") or "that"
    if isinstance(headlines, list) and headlines:
        return f"Headlines about {topic}: " + "; ".join(f"“{h}”" for h in headlines) + "."
    return f"The news about {topic}: {_compact(value)}."


def _search(question: str, value: Any) -> str:
    if isinstance(value, list):  # hits: take their texts
        value = " ".join(str(v.get("text", v)) if isinstance(v, dict) else str(v) for v in value)
    elif isinstance(value, dict):
        value = str(value.get("text") or value.get("answer") or json.dumps(value))
    found = text.answer(question, str(value), max_sentences=2)
    return "The search found nothing about that." if found == text.NO_ANSWER else found


def describe_result(kind: str | None, name: str, args: dict[str, Any], content: str, question: str) -> str:
    """One sentence of the final answer from one tool result (an error is acknowledged, not hidden)."""
    error = error_of(content)
    if error is not None:
        what = {"weather": "the weather", "stock": "the stock price", "news": "the news"}.get(kind or "", "an answer")
        target = next((str(v) for v in args.values() if isinstance(v, (str, int, float))), "")
        detail = f" for {target}" if target and kind != "search" else ""
        return f"I couldn't get {what}{detail}: the {name} tool reported an error ({_compact(error, 120)})."
    value = _parse(content)
    if kind == "weather":
        return _weather(args, value)
    if kind == "stock":
        return _stock(args, value)
    if kind == "news":
        return _news(args, value)
    if kind == "search":
        return _search(question, value)
    return f"{name} returned {_compact(value)}."
