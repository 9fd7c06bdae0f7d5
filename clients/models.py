"""Typed results of the client (the same for ``Client``, ``AsyncClient`` and ``LocalClient``).

Counts are plain ``list[int]``; richer answers are these frozen pydantic models. Unknown fields a newer
server adds are ignored, missing ones are a :class:`clients.errors.ProtocolError`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "Document",
    "DocumentHit",
    "DocumentsResult",
    "Health",
    "IndexInfo",
    "InfgramResult",
    "InfgramToken",
    "NextTokenDistribution",
    "ProbResult",
    "TokenProb",
    "Tokenized",
    "TraceDocument",
    "TraceResult",
    "TraceSpan",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class TokenProb(_Model):
    token_id: int
    token: str | None
    count: int
    prob: float


class NextTokenDistribution(_Model):
    """Exact distribution of the next token; ``tokens`` sorted by count, cut to ``top_k`` if asked."""

    prompt_count: int
    approx: bool = False
    tokens: list[TokenProb]
    n_distinct: int = 0
    ends_of_document: int = 0


class ProbResult(_Model):
    """``prob = cont_count / prompt_count``; None when the prompt does not occur."""

    prompt_count: int
    cont_count: int
    prob: float | None


class InfgramToken(_Model):
    token_id: int
    token: str | None
    prob: float
    suffix_len: int
    suffix_count: int
    cont_count: int


class InfgramResult(_Model):
    """Per-token ∞-gram probabilities; ``log_prob`` (natural log) is None when a token has probability 0."""

    tokens: list[InfgramToken]
    log_prob: float | None


class DocumentHit(_Model):
    doc_id: int
    shard: int
    metadata: dict[str, Any]
    text: str | None
    spans: list[tuple[int, int, int]]
    token_ids: list[int] = []
    snippet_start: int = 0
    doc_len: int = 0


class DocumentsResult(_Model):
    """``total`` = exact number of documents containing all phrases; ``docs`` = this page or sample."""

    total: int
    docs: list[DocumentHit]
    offset: int = 0
    sample: bool = False


class Document(_Model):
    doc_id: int
    metadata: dict[str, Any]
    token_ids: list[int]
    text: str | None
    shard: int = 0
    doc_len: int = 0
    truncated: bool = False


class Tokenized(_Model):
    token_ids: list[int]
    tokens: list[str]


class IndexInfo(_Model):
    """One served index: its name, identity (manifest hash, the cache key) and manifest summary."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    identity: str


class Health(_Model):
    status: Literal["ok", "degraded"]
    version: str
    indexes: list[str]
    limits: dict[str, float]


class TraceDocument(_Model):
    """One occurrence of a traced span in its document: ``text[span[0]:span[1]]`` is the span (tokens of
    ``token_ids`` when the index has no tokenizer)."""

    doc_id: int
    shard: int
    metadata: dict[str, Any]
    position: int
    text: str | None
    span: tuple[int, int]
    token_ids: list[int]
    token_span: tuple[int, int]
    snippet_start: int
    doc_len: int


class TraceSpan(_Model):
    """A maximal span of the traced text found verbatim in the corpus: tokens ``[start, end)``,
    characters ``[char_start, char_end)`` of ``TraceResult.text``, exact ``count``, sampled documents."""

    start: int
    end: int
    length: int
    count: int
    char_start: int | None
    char_end: int | None
    text: str | None
    rank: int
    unigram_logprob: float
    documents: list[TraceDocument]


class TraceResult(_Model):
    """The trace of one text: ``spans`` in text order, ``span_density`` (spans per token), ``coverage``
    (fraction of tokens inside a span), ``longest`` (longest span in tokens)."""

    token_ids: list[int]
    text: str | None
    spans: list[TraceSpan]
    n_tokens: int
    span_density: float
    coverage: float
    longest: int
