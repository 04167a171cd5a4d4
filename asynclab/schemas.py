"""The HTTP wire format: pydantic models for every request and response body of the server.

    body = CompleteRequest(prompt="What is backpressure?", model="summarizer")
    reply = CompleteResponse.model_validate(response.json())
    reply.text

The server (:mod:`asynclab.server`) validates requests with these models, so bad input gets a
422 naming the field; the client (:mod:`asynclab.client`) sends and reads the same models.
They check everything the services would refuse (blank text, a city that is no place name,
``k=true``), so a ValueError the services raise past this point is the server's own fault (5xx).
Times are simulated seconds, like everywhere in asynclab.

Introduced in notebook 08.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, ValidationInfo

from asynclab.services.base import check_text

__all__ = [
    "MAX_BATCH",
    "AgentRequest",
    "AgentResponse",
    "CompleteRequest",
    "CompleteResponse",
    "DocId",
    "EmbedBatchRequest",
    "EmbedBatchResponse",
    "EmbedRequest",
    "EmbedResponse",
    "ErrorBody",
    "HitModel",
    "Metadata",
    "ModelName",
    "News",
    "PlaceName",
    "SearchRequest",
    "SearchResponse",
    "ShortText",
    "SpanTiming",
    "StockQuote",
    "StoreName",
    "StreamDone",
    "Text",
    "Ticker",
    "Topic",
    "Weather",
]

#: Mirrors ``asynclab.services.MODELS`` and ``STORES`` (a test keeps them in step): a Literal
#: lets FastAPI answer a bad name with a 422 that lists the allowed ones, and /docs show them.
ModelName = Literal["assistant", "summarizer", "sentiment", "classifier"]
StoreName = Literal["redis", "pgvector", "pinecone"]

#: Most texts one /embeddings/batch request may carry: a request body stays well under 1 MB.
MAX_BATCH = 256



def _not_blank(value: str, info: ValidationInfo) -> str:
    return check_text(value, info.field_name or "text")  # the services' own rule and message


def _not_blank_as(name: str) -> AfterValidator:
    """The same check for a query or path parameter (FastAPI validates those without a field name)."""
    return AfterValidator(lambda value: check_text(value, name))


#: Mirror the tools' own rules (``Tools.weather``, ``Tools.stock_price``; a test keeps them in step).
_PLACE = re.compile(r"[^\W\d_][\w .'-]*")
_TICKER = re.compile(r"[A-Z]{1,5}")


def _place_name(value: str) -> str:
    if not _PLACE.fullmatch(value.strip()):
        raise ValueError(f"city must be a place name such as 'Lisbon', got {value!r}")
    return value


def _ticker(value: str) -> str:
    if not _TICKER.fullmatch(value):
        raise ValueError(f"symbol must be 1 to 5 capital letters such as 'NVDA', got {value!r}")
    return value


#: A text a service takes: 1 to 20,000 characters, not only spaces.
Text = Annotated[str, Field(min_length=1, max_length=20_000), AfterValidator(_not_blank)]
#: A short argument of a tool or a path (a topic, a document id): 1 to 200 characters, not blank.
ShortText = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_not_blank)]
_Short = Field(min_length=1, max_length=200)
#: A document id in a path, like ``doc-001``.
DocId = Annotated[str, _Short, _not_blank_as("doc_id")]
#: What the news tool takes: any topic.
Topic = Annotated[str, _Short, _not_blank_as("topic")]
#: What the weather tool takes: letters, spaces, dots, apostrophes and hyphens, like 'São Paulo'.
PlaceName = Annotated[str, _Short, _not_blank_as("city"), AfterValidator(_place_name)]
#: What the stock tool takes: 1 to 5 capital letters.
Ticker = Annotated[str, _not_blank_as("symbol"), AfterValidator(_ticker)]


class _Request(BaseModel):
    # JSON numbers only: NaN and ±Infinity are no JSON (the server refuses them in the body too).
    model_config = ConfigDict(allow_inf_nan=False)


class ErrorBody(BaseModel):
    """The JSON body of every error answer (and of a stream's ``error`` event)."""

    detail: str
    error: str = Field(description="the asynclab error type, e.g. RateLimited")
    service: str = ""
    retry_after: float | None = Field(default=None, description="simulated seconds to wait (429 only)")


class CompleteRequest(_Request):
    prompt: Text
    model: ModelName = "assistant"


class CompleteResponse(BaseModel):
    model: ModelName
    text: str


class StreamDone(BaseModel):
    """The data of a stream's final ``done`` event."""

    tokens: int


class EmbedRequest(_Request):
    text: Text


class EmbedResponse(BaseModel):
    dim: int
    vector: list[float]


class EmbedBatchRequest(_Request):
    texts: list[Text] = Field(min_length=1, max_length=MAX_BATCH)


class EmbedBatchResponse(BaseModel):
    dim: int
    vectors: list[list[float]]


class SearchRequest(_Request):
    query: Text
    # Strict: like the stores' own check, k=true or k=2.0 is refused, not read as 1 or 2.
    k: StrictInt = Field(default=3, ge=1, le=128, description="how many documents, best first")


class HitModel(BaseModel):
    id: str
    title: str
    text: str
    topic: str
    score: float
    store: str


class SearchResponse(BaseModel):
    store: StoreName
    hits: list[HitModel]


class Metadata(BaseModel):
    id: str
    title: str
    topic: str
    source: str
    year: int
    author: str
    url: str


class Weather(BaseModel):
    city: str
    temperature_c: float
    condition: str
    humidity_pct: int
    wind_kph: int


class News(BaseModel):
    topic: str
    headlines: list[str]


class StockQuote(BaseModel):
    symbol: str
    price: float
    currency: str
    change_pct: float


class AgentRequest(_Request):
    """A question, and which tools to call: each tool runs only when its field is given."""

    question: Text
    k: StrictInt = Field(default=3, ge=1, le=20, description="documents to keep after merging the three stores")
    city: PlaceName | None = Field(default=None, description="call the weather tool for this city")
    news_topic: ShortText | None = Field(default=None, description="call the news tool for this topic")
    symbol: Ticker | None = Field(default=None, description="call the stock tool for this ticker")


class SpanTiming(BaseModel):
    """One service call the agent made, in simulated seconds from the start of the request."""

    name: str
    start: float
    end: float
    outcome: str


class AgentResponse(BaseModel):
    answer: str
    sources: list[HitModel]
    weather: Weather | None = None
    news: News | None = None
    stock: StockQuote | None = None
    timings: list[SpanTiming]
    elapsed: float = Field(description="simulated seconds the agent took")
