"""Request and response models of the ``/v1`` API (they also make the OpenAPI document at ``/docs``).

A **phrase** is text (tokenized by the index's own tokenizer) or token ids::

    "the capital of France"            text
    {"ids": [1169, 3139, 273, 6181]}   token ids

A **phrase spec** is a phrase or an OR of variants, counted as a union (a document or position matched
by two variants counts once)::

    {"any": ["Paris", " Paris", {"ids": [40313]}]}

Every query endpoint takes a batch ``{"index": NAME, "queries": [...]}`` and answers
``{"index": NAME, "results": [...]}`` with one result per query, in order. Limits that depend on the
configuration (batch size, tokens per phrase, ...) are checked in :mod:`service.routes._common` and
advertised by ``GET /v1/health``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, WithJsonSchema

from taskgram.api import (
    Boundary,
    CountUnit,
    DocumentBase,
    DocumentHitBase,
    DocumentsResultBase,
    HealthBase,
    IndexInfoBase,
    InfgramResultBase,
    InfgramTokenBase,
    NextTokenDistributionBase,
    ProbResultBase,
    Results,
    SpacePolicy,
    TokenizedBase,
    TokenProbBase,
    TraceDocumentBase,
    TraceResultBase,
    TraceSpanBase,
)

TokenId = Annotated[StrictInt, Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IdsPhrase(_Model):
    """A phrase given as token ids."""

    ids: list[TokenId] = Field(min_length=1)


Phrase = Annotated[str | IdsPhrase, Field(description="text, or {'ids': [...]} token ids")]


class AnyPhrase(_Model):
    """An OR of phrase variants, counted as a union."""

    any: list[Phrase] = Field(min_length=1)


PhraseSpec = Annotated[str | IdsPhrase | AnyPhrase, Field(description="a phrase or {'any': [phrases]}")]

# The high-volume endpoints (count, doc_freq, cooccurrence, windowed, ntd) take their queries as plain JSON
# values, checked by one tight loop in service.routes._common instead of one pydantic model per item
# (100,000 items: milliseconds instead of a second); their OpenAPI schema is the same as the typed one.
_IDS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "IdsPhrase",
    "properties": {"ids": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1}},
    "required": ["ids"],
    "additionalProperties": False,
}
_PHRASE_SCHEMA: dict[str, Any] = {"anyOf": [{"type": "string", "minLength": 1}, _IDS_SCHEMA]}
_SPEC_SCHEMA: dict[str, Any] = {
    "anyOf": [
        *_PHRASE_SCHEMA["anyOf"],
        {
            "type": "object",
            "title": "AnyPhrase",
            "properties": {"any": {"type": "array", "items": _PHRASE_SCHEMA, "minItems": 1}},
            "required": ["any"],
            "additionalProperties": False,
        },
    ]
}
RawPhrases = Annotated[list[Any], WithJsonSchema({"type": "array", "items": _PHRASE_SCHEMA})]
RawSpecs = Annotated[list[Any], WithJsonSchema({"type": "array", "items": _SPEC_SCHEMA})]
RawConjunctions = Annotated[
    list[Any],
    WithJsonSchema({"type": "array", "items": {"type": "array", "items": _SPEC_SCHEMA, "minItems": 2}}),
]
IndexName = Annotated[str, Field(min_length=1, max_length=200, description="name of a served index")]


class _Batch(_Model):
    index: IndexName
    space: SpacePolicy | None = Field(
        default=None,
        description="leading-space policy for text phrases: 'auto' (a space is prepended unless the text "
        "starts with whitespace: the phrase as it appears in running text), 'exact' (as given), 'both' "
        "(OR of the two; phrase specs only). Default: the server's (auto unless configured).",
    )




class _Bounded(_Batch):
    boundary: Boundary = Field(
        default="token",
        description="'token' (default): every occurrence of the phrase's tokens, also where they begin or "
        "end inside a longer word ('index' inside 'indexes'). 'word': only occurrences that neither start "
        "nor end inside a word (a word character is a letter, digit or underscore; see "
        "service.engine.words). Needs an index with a byte-level BPE tokenizer.",
    )


class CountRequest(_Bounded):
    """Occurrences of each phrase (summed over shards)."""

    queries: RawPhrases


class DocFreqRequest(_Bounded):
    """Number of distinct documents containing each phrase spec."""

    queries: RawSpecs


class CooccurrenceRequest(_Bounded):
    """Co-occurrence of all phrases of each query (2 or more phrase specs), in documents (default) or in
    occurrences of the first phrase."""

    queries: RawConjunctions
    unit: CountUnit = Field(
        default="documents",
        description="'documents': the number of documents containing every phrase of the query. "
        "'occurrences': the number of occurrences of the FIRST phrase (distinct start positions of its "
        "variants) that lie in a document containing all the other phrases; divided by the first "
        "phrase's occurrence count it is the fraction of its occurrences whose document holds the others "
        "(<= 1), and it is 0 exactly when the document count is 0. [s, s] gives the occurrences of s.",
    )


class WindowedCooccurrenceRequest(_Batch):
    """infini-gram CNF AND semantics, exact: occurrences of the rarest clause (the phrase spec with the
    fewest occurrences; the first on ties) with every other clause starting within ``window`` tokens, in
    the same document."""

    queries: RawConjunctions
    window: int = Field(default=100, ge=1)
    boundary: Boundary = Field(
        default="token",
        description="token matching only: 'word' is refused (422) by windowed co-occurrence",
    )


class NtdRequest(_Batch):
    """Exact next-token distribution after each prompt ('' = the unigram distribution)."""

    queries: RawPhrases
    top_k: int | None = Field(default=None, ge=1, description="keep the top_k most frequent next tokens")


class ProbQuery(_Model):
    prompt: Phrase
    token_id: TokenId


class ProbRequest(_Batch):
    """P(token_id | prompt) = count(prompt + token) / count(prompt)."""

    queries: list[ProbQuery]


class InfgramQuery(_Model):
    context: Phrase = Field(description="the text before the continuation ('' or {'ids': [...]})")
    continuation: Phrase


class InfgramRequest(_Batch):
    """∞-gram probability of every token of a continuation after its context."""

    queries: list[InfgramQuery]


class DocumentsRequest(_Bounded):
    """The documents containing all phrase specs of each query: exact total, and one page or sample."""

    queries: list[list[PhraseSpec]]
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=10, ge=0)
    sample: bool = Field(default=False, description="a uniform random sample instead of a page")
    seed: int | None = Field(default=None, description="seed of the sample (reproducible)")
    window: int = Field(
        default=100,
        ge=0,
        description="snippet tokens on each side of the first match (more where a byte-level tokenizer split "
        "a character over the snippet's edge: the snippet holds whole characters)",
    )


class TokenizeRequest(_Batch):
    """Token ids of each text under the index's tokenizer and normalization."""

    queries: list[str]


# ------------------------------------------------------------------------------------------------------
# Responses: the shared shapes of taskgram.api (the engine's result fields), with extra fields forbidden.
# Every field is always sent, so the schema lists every field as required.


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)


class IntResults(Results[int], _Response):
    pass


class TokenProbModel(TokenProbBase, _Response):
    pass


class NextTokenDistributionModel(NextTokenDistributionBase[TokenProbModel], _Response):
    pass


class NtdResults(Results[NextTokenDistributionModel], _Response):
    pass


class ProbResultModel(ProbResultBase, _Response):
    pass


class ProbResults(Results[ProbResultModel], _Response):
    pass


class InfgramTokenModel(InfgramTokenBase, _Response):
    pass


class InfgramResultModel(InfgramResultBase[InfgramTokenModel], _Response):
    pass


class InfgramResults(Results[InfgramResultModel], _Response):
    pass


class DocumentHitModel(DocumentHitBase, _Response):
    pass


class DocumentsResultModel(DocumentsResultBase[DocumentHitModel], _Response):
    pass


class DocumentsResults(Results[DocumentsResultModel], _Response):
    pass


class DocumentModel(DocumentBase, _Response):
    index: str


class TokenizedText(TokenizedBase, _Response):
    pass


class TokenizeResults(Results[TokenizedText], _Response):
    pass


class IndexSummary(IndexInfoBase, _Response):
    model_config = ConfigDict(extra="allow")


class IndexesResponse(_Response):
    indexes: list[IndexSummary]
    refused: dict[str, str] = Field(description="index name -> why it could not be opened")


class Problem(_Response):
    """RFC 9457 problem details (``application/problem+json``); ``errors`` lists request-validation
    failures (where and what, without the input)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["urn:taskgram:problem:unknown-index"])
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for the error statuses a router can answer."""
    what = {
        400: "malformed body (not JSON, not UTF-8, nested too deeply)",
        401: "missing or invalid API key (when keys are configured)",
        404: "unknown index or document",
        413: "body or batch over the server's limits",
        422: "invalid query (the detail names the field)",
        503: "the request's time or work budget ran out (Retry-After)",
    }
    schema = Problem.model_json_schema()
    return {
        status: {"description": what[status], "content": {"application/problem+json": {"schema": schema}}}
        for status in statuses
    }


class HealthResponse(HealthBase, _Response):
    # shard_groups is present only under taskgram serve --ray: not a required property of the answer
    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=False)

    shard_groups: dict[str, list[dict[str, Any]]] | None = Field(
        default=None,
        description="taskgram serve --ray only: per index, each shard group's shards and state (up/down)",
    )


# ------------------------------------------------------------------------------------------------------
# Tracing (POST /v1/trace; mirrors service.engine.trace)


class TraceRequest(_Model):
    """Maximal spans of each text (or token-id list) that occur verbatim in the corpus (OLMoTrace's
    method, exact across shards): see ``service.engine.trace``."""

    index: IndexName
    queries: list[str | IdsPhrase] = Field(min_length=1, description="texts, or {'ids': [...]} token ids")
    min_len: int = Field(default=1, ge=1, description="shortest span kept, in tokens")
    max_count: int | None = Field(default=10, ge=1, description="keep spans occurring at most this often")
    boundary: Literal["word", "token"] = Field(
        default="word", description="'word': spans start and end at word boundaries; 'token': anywhere"
    )
    rank: Literal["length", "unigram_logprob"] = Field(
        default="length", description="span order: longest first, or lowest unigram log-probability sum"
    )
    max_spans: int | None = Field(default=None, ge=1, description="keep only the best-ranked spans")
    docs_per_span: int = Field(default=10, ge=0, description="occurrences shown per span (sampled)")
    context: int = Field(default=100, ge=0, description="snippet tokens on each side of an occurrence")
    seed: int | None = Field(default=0, ge=0, description="seed of the occurrence sample")
    space: Literal["auto", "exact"] | None = Field(
        default=None, description="leading-space policy of the texts (default: the server's, 'auto')"
    )


class TraceDocumentModel(TraceDocumentBase, _Response):
    pass


class TraceSpanModel(TraceSpanBase[TraceDocumentModel], _Response):
    pass


class TraceResultModel(TraceResultBase[TraceSpanModel], _Response):
    pass


class TraceResults(Results[TraceResultModel], _Response):
    pass
