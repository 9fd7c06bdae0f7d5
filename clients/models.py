"""Typed results of the client (the same for ``Client``, ``AsyncClient`` and ``LocalClient``).

Counts are plain ``list[int]``; richer answers are these frozen pydantic models. Their fields are those of
the shared bases in :mod:`taskgram.api` (one definition, shared with the service's response models).
Unknown fields a newer server adds are ignored, missing ones are a :class:`clients.errors.ProtocolError`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from taskgram.api import (
    DocumentBase,
    DocumentHitBase,
    DocumentsResultBase,
    HealthBase,
    IndexInfoBase,
    InfgramResultBase,
    InfgramTokenBase,
    NextTokenDistributionBase,
    ProbResultBase,
    TokenizedBase,
    TokenProbBase,
    TraceDocumentBase,
    TraceResultBase,
    TraceSpanBase,
)

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


class TokenProb(TokenProbBase, _Model):
    pass


class NextTokenDistribution(NextTokenDistributionBase[TokenProb], _Model):
    pass


class ProbResult(ProbResultBase, _Model):
    pass


class InfgramToken(InfgramTokenBase, _Model):
    pass


class InfgramResult(InfgramResultBase[InfgramToken], _Model):
    pass


class DocumentHit(DocumentHitBase, _Model):
    pass


class DocumentsResult(DocumentsResultBase[DocumentHit], _Model):
    pass


class Document(DocumentBase, _Model):
    pass


class Tokenized(TokenizedBase, _Model):
    pass


class IndexInfo(IndexInfoBase, _Model):
    """One served index: its name, identity (manifest hash, the cache key) and manifest summary."""

    model_config = ConfigDict(extra="allow", frozen=True)


class Health(HealthBase, _Model):
    pass


class TraceDocument(TraceDocumentBase, _Model):
    """One occurrence of a traced span in its document: ``text[span[0]:span[1]]`` is the span (tokens of
    ``token_ids`` when the index has no tokenizer)."""


class TraceSpan(TraceSpanBase[TraceDocument], _Model):
    """A maximal span of the traced text found verbatim in the corpus: tokens ``[start, end)``,
    characters ``[char_start, char_end)`` of ``TraceResult.text``, exact ``count``, sampled documents."""


class TraceResult(TraceResultBase[TraceSpan], _Model):
    """The trace of one text: ``spans`` in text order, ``span_density`` (spans per token), ``coverage``
    (fraction of tokens inside a span), ``longest`` (longest span in tokens)."""
