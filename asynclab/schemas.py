"""The HTTP wire format: pydantic models for every request and response body of the server.

    body = CompleteRequest(prompt="What is backpressure?", model="summarizer")
    reply = CompleteResponse.model_validate(response.json())
    reply.text

The server (:mod:`asynclab.server`) validates requests with these models, so bad input gets a
422 naming the field; the client (:mod:`asynclab.client`) sends and reads the same models.
Times are simulated seconds, like everywhere in asynclab.

Introduced in notebook 08.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

__all__ = [
    "MAX_BATCH",
    "AgentRequest",
    "AgentResponse",
    "CompleteRequest",
    "CompleteResponse",
    "EmbedBatchRequest",
    "EmbedBatchResponse",
    "EmbedRequest",
    "EmbedResponse",
    "ErrorBody",
    "HitModel",
    "Metadata",
    "ModelName",
    "News",
    "SearchRequest",
    "SearchResponse",
    "SpanTiming",
    "StockQuote",
    "StoreName",
    "StreamDone",
    "Weather",
]

#: Mirrors ``asynclab.services.MODELS`` and ``STORES`` (a test keeps them in step): a Literal
#: lets FastAPI answer a bad name with a 422 that lists the allowed ones, and /docs show them.
ModelName = Literal["assistant", "summarizer", "sentiment", "classifier"]
StoreName = Literal["redis", "pgvector", "pinecone"]

#: Most texts one /embeddings/batch request may carry: a request body stays well under 1 MB.
MAX_BATCH = 256

_Text = Annotated[str, Field(min_length=1, max_length=20_000)]


class ErrorBody(BaseModel):
    """The JSON body of every error answer (and of a stream's ``error`` event)."""

    detail: str
    error: str = Field(description="the asynclab error type, e.g. RateLimited")
    service: str = ""
    retry_after: float | None = Field(default=None, description="simulated seconds to wait (429 only)")


class CompleteRequest(BaseModel):
    prompt: _Text
    model: ModelName = "assistant"


class CompleteResponse(BaseModel):
    model: ModelName
    text: str


class StreamDone(BaseModel):
    """The data of a stream's final ``done`` event."""

    tokens: int


class EmbedRequest(BaseModel):
    text: _Text


class EmbedResponse(BaseModel):
    dim: int
    vector: list[float]


class EmbedBatchRequest(BaseModel):
    texts: list[str] = Field(min_length=1, max_length=MAX_BATCH)


class EmbedBatchResponse(BaseModel):
    dim: int
    vectors: list[list[float]]


class SearchRequest(BaseModel):
    query: _Text
    k: int = Field(default=3, ge=1, le=128, description="how many documents, best first")


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


class AgentRequest(BaseModel):
    """A question, and which tools to call: each tool runs only when its field is given."""

    question: _Text
    k: int = Field(default=3, ge=1, le=20, description="documents to keep after merging the three stores")
    city: str | None = Field(default=None, description="call the weather tool for this city")
    news_topic: str | None = Field(default=None, description="call the news tool for this topic")
    symbol: str | None = Field(default=None, description="call the stock tool for this ticker")


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
