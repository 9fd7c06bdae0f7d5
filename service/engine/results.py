"""Result types of the engine: frozen dataclasses with JSON-friendly fields only (``dataclasses.asdict``
gives plain dicts, lists, str, int, float and None)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TokenProb:
    """One next token: how often it follows the prompt and ``count / prompt_count``."""

    token_id: int
    token: str | None
    count: int
    prob: float

    @classmethod
    def many(
        cls, ids: list[int], tokens: list[str | None], counts: list[int], probs: list[float]
    ) -> list[TokenProb]:
        """Build many at once (a distribution can hold tens of thousands): fills each instance's
        ``__dict__`` directly, skipping the frozen dataclass's per-field ``object.__setattr__``."""
        new = object.__new__
        out = []
        for t, name, c, p in zip(ids, tokens, counts, probs, strict=True):
            obj = new(cls)
            obj.__dict__.update(token_id=t, token=name, count=c, prob=p)
            out.append(obj)
        return out


@dataclass(frozen=True)
class NextTokenDistribution:
    """Exact distribution of the token that follows a prompt.

    ``prompt_count`` counts every occurrence of the prompt; occurrences that end a document have no next
    token, so the probabilities sum to ``1 - ends_of_document / prompt_count``. ``tokens`` are sorted by
    count (descending, then token id) and cut to ``top_k`` when asked; ``n_distinct`` is the number of
    distinct next tokens before the cut. ``approx`` is always False: the engine does not sample."""

    prompt_count: int
    approx: bool = False
    tokens: list[TokenProb] = field(default_factory=list)
    n_distinct: int = 0
    ends_of_document: int = 0


@dataclass(frozen=True)
class ProbResult:
    """``prob = cont_count / prompt_count`` (None when the prompt does not occur)."""

    prompt_count: int
    cont_count: int
    prob: float | None


@dataclass(frozen=True)
class InfgramToken:
    """∞-gram probability of one continuation token: the longest suffix of its context that occurs
    (``suffix_len`` tokens, ``suffix_count`` occurrences) and ``prob = cont_count / suffix_count``."""

    token_id: int
    token: str | None
    prob: float
    suffix_len: int
    suffix_count: int
    cont_count: int


@dataclass(frozen=True)
class InfgramResult:
    """Per-token ∞-gram probabilities of a continuation; ``log_prob`` is the natural-log sum, None when
    some token has probability 0."""

    tokens: list[InfgramToken]
    log_prob: float | None


@dataclass(frozen=True)
class DocumentHit:
    """One document that matched: ``text`` is a snippet of ``window`` tokens on each side of the first
    match (None for an index without a tokenizer); ``spans`` are ``(start_char, end_char, phrase_index)``
    in ``text`` for every match of any phrase inside the snippet; ``token_ids`` are the snippet's tokens and
    ``snippet_start`` its first token's position in the document."""

    doc_id: int
    shard: int
    metadata: dict[str, Any]
    text: str | None
    spans: list[tuple[int, int, int]]
    token_ids: list[int] = field(default_factory=list)
    snippet_start: int = 0
    doc_len: int = 0


@dataclass(frozen=True)
class DocumentsResult:
    """``total`` = exact number of documents containing all phrases; ``docs`` = the requested page (or
    sample, without replacement) of them, in doc_id order."""

    total: int
    docs: list[DocumentHit]
    offset: int = 0
    sample: bool = False


@dataclass(frozen=True)
class Document:
    """A whole document (or its first ``max_tokens`` tokens: ``truncated`` says so)."""

    doc_id: int
    metadata: dict[str, Any]
    token_ids: list[int]
    text: str | None
    shard: int = 0
    doc_len: int = 0
    truncated: bool = False
