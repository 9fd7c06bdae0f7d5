"""The shapes of taskgram's ``/v1`` answers and its option vocabularies, each defined once.

The engine returns frozen dataclasses (:mod:`service.engine.results`, framework-free); the service
documents its answers with pydantic response models (:mod:`service.schemas`) and the clients parse them
into frozen pydantic models (:mod:`clients.models`). The fields of each shape are written here, once, as a
base model; the API shapes derive from it and set only what differs, as the full-stack FastAPI template
derives ``ItemCreate`` / ``ItemPublic`` from ``ItemBase``::

    TokenProbBase ──┬── service.schemas.TokenProbModel   extra fields forbidden (the OpenAPI schema)
                    └── clients.models.TokenProb         frozen, unknown fields of a newer server ignored

A shape that holds others is generic in them (``NextTokenDistributionBase[TokenProbModel]``), and every
batch answer is one envelope, :class:`Results` ``{index, results}``. ``tests/unit/test_api_shapes.py``
checks that these fields are the engine's.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from taskgram.choices import BOUNDARIES, COUNT_UNITS, SPACE_POLICIES, Boundary, CountUnit, SpacePolicy

__all__ = [
    "BOUNDARIES",
    "COUNT_UNITS",
    "Boundary",
    "SPACE_POLICIES",
    "CountUnit",
    "DocumentBase",
    "DocumentHitBase",
    "DocumentsResultBase",
    "HealthBase",
    "IndexInfoBase",
    "InfgramResultBase",
    "InfgramTokenBase",
    "NextTokenDistributionBase",
    "ProbResultBase",
    "Results",
    "SpacePolicy",
    "TokenProbBase",
    "TokenizedBase",
    "TraceDocumentBase",
    "TraceResultBase",
    "TraceSpanBase",
]

R = TypeVar("R")
T = TypeVar("T")
D = TypeVar("D")


class Results(BaseModel, Generic[R]):
    """The answer of every batch endpoint: one result per query, in order."""

    index: str
    results: list[R]


class TokenProbBase(BaseModel):
    """One next token: how often it follows the prompt, and ``count / prompt_count``."""

    token_id: int
    token: str | None
    count: int
    prob: float


class NextTokenDistributionBase(BaseModel, Generic[T]):
    """Exact distribution of the next token; ``tokens`` sorted by count, cut to ``top_k`` if asked."""

    prompt_count: int
    approx: bool = False
    tokens: list[T] = []
    n_distinct: int = 0
    ends_of_document: int = 0


class ProbResultBase(BaseModel):
    """``prob = cont_count / prompt_count``."""

    prompt_count: int
    cont_count: int
    prob: float | None = Field(description="None when the prompt does not occur")


class InfgramTokenBase(BaseModel):
    """∞-gram probability of one continuation token and the suffix of its context it was counted after."""

    token_id: int
    token: str | None
    prob: float
    suffix_len: int
    suffix_count: int
    cont_count: int


class InfgramResultBase(BaseModel, Generic[T]):
    """Per-token ∞-gram probabilities; ``log_prob`` (natural log) is None when a token has probability 0."""

    tokens: list[T]
    log_prob: float | None


class DocumentHitBase(BaseModel):
    """One matching document with a snippet around its first match."""

    doc_id: int
    shard: int
    metadata: dict[str, Any]
    text: str | None
    spans: list[tuple[int, int, int]] = Field(description="(start_char, end_char, phrase_index) in text")
    token_ids: list[int] = []
    snippet_start: int = 0
    doc_len: int = 0


class DocumentsResultBase(BaseModel, Generic[T]):
    """``total`` = exact number of documents containing all phrases; ``docs`` = this page or sample."""

    total: int
    docs: list[T]
    offset: int = 0
    sample: bool = False


class DocumentBase(BaseModel):
    """A whole document (or its first ``max_tokens`` tokens: ``truncated`` says so)."""

    doc_id: int
    metadata: dict[str, Any]
    token_ids: list[int]
    text: str | None
    shard: int = 0
    doc_len: int = 0
    truncated: bool = False


class TokenizedBase(BaseModel):
    """Token ids of a text and their token strings."""

    token_ids: list[int]
    tokens: list[str]


class IndexInfoBase(BaseModel):
    """One served index: its name, identity and (more fields) its manifest summary."""

    name: str
    identity: str = Field(description="sha256 of the index manifest: changes whenever the index does")


class HealthBase(BaseModel):
    """Liveness, the served index names and the server's limits."""

    status: Literal["ok", "degraded"]
    version: str
    indexes: list[str]
    limits: dict[str, int | float]


class TraceDocumentBase(BaseModel):
    """One occurrence of a traced span, shown in its document: ``text[span[0]:span[1]]`` is the span
    (tokens of ``token_ids`` when the index has no tokenizer)."""

    doc_id: int
    shard: int
    metadata: dict[str, Any]
    position: int = Field(description="the span's first token in the document")
    text: str | None = Field(description="the snippet; null for an index without a tokenizer")
    span: tuple[int, int] = Field(
        description="[start, end) characters of the span in text (tokens if no text)"
    )
    token_ids: list[int]
    token_span: tuple[int, int] = Field(description="[start, end) of the span in token_ids")
    snippet_start: int = Field(description="the snippet's first token in the document")
    doc_len: int


class TraceSpanBase(BaseModel, Generic[D]):
    """A maximal span of the traced text found verbatim in the corpus: tokens ``[start, end)``, characters
    ``[char_start, char_end)`` of the result's ``text``, its exact ``count``, and sampled documents."""

    start: int = Field(description="first token of the span in the query")
    end: int = Field(description="one past its last token")
    length: int
    count: int = Field(description="exact occurrences in the corpus")
    char_start: int | None
    char_end: int | None
    text: str | None
    rank: int = Field(description="1 = best under the request's rank")
    unigram_logprob: float
    documents: list[D] = []


class TraceResultBase(BaseModel, Generic[T]):
    """The trace of one text: ``spans`` in text order, ``span_density`` (spans per token), ``coverage``
    (fraction of tokens inside a span), ``longest`` (the longest span in tokens, 0 when none)."""

    token_ids: list[int]
    text: str | None = Field(description="the text the character offsets index")
    spans: list[T]
    n_tokens: int
    span_density: float = Field(description="spans per token")
    coverage: float = Field(description="fraction of tokens inside a span")
    longest: int
