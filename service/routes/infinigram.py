"""infini-gram compatible endpoint: ``POST /`` with ``{"index", "query_type", "query" | "query_ids", ...}``,
answered with the JSON fields of infini-gram's public API, so its clients (the paper's scripts post
``{"index", "query_type": "count", "query": text}``) work unchanged against a local index.

Query types: ``count`` (also CNF: a query string with `` AND `` / `` OR ``, OR binding tighter, or a
triply nested ``query_ids``), ``prob``, ``ntd``, ``infgram_prob``, ``search_docs`` (also CNF).

Where the answers differ from infini-gram's, on purpose:

* every count is exact (``approx`` is always false): no clause subsampling; CNF AND counts anchor
  occurrences of the rarest clause with a partner of every other clause starting within
  ``max_diff_tokens`` tokens in the same document, without infini-gram 2.6.0's undercount at document
  boundaries. A single OR clause counts the sum of its terms' counts, as infini-gram does.
* ``ntd`` returns the exact distribution (``max_support`` is accepted and ignored; nothing is sampled).
* ``search_docs`` samples documents (without replacement) among those containing the query, where
  infini-gram samples occurrences with replacement; ``idxs`` are the global document ids.
* errors are ``{"error": "..."}`` with a 4xx/5xx status (infini-gram answers some with status 200).
* an index built from token ids without a tokenizer answers ``query_ids`` queries; the fields made of
  text are ``null``: ``tokens``, ``longest_suffix`` (infgram_prob) and each document's ``spans``
  (search_docs); ``token`` of ``ntd`` entries is ``null``. Text ``query`` is refused with 400.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from service.deps import ServiceState, StateDep
from service.engine import EngineError, Index, IndexUnavailable
from service.errors import CompatError, from_engine_error
from service.settings import Settings

router = APIRouter(tags=["infini-gram compatible"])

QueryType = Literal["count", "prob", "ntd", "infgram_prob", "search_docs"]
Ids = list[int]
Cnf = list[list[Ids]]


class CompatRequest(BaseModel):
    """The request of infini-gram's API. Exactly one of ``query`` and ``query_ids``."""

    model_config = ConfigDict(extra="ignore")

    index: str | None = Field(default=None, description="index name (infini-gram also accepts 'corpus')")
    corpus: str | None = None
    query_type: QueryType
    query: str | None = None
    query_ids: list[int] | list[list[list[int]]] | None = None
    max_support: int | None = Field(default=None, ge=1, description="accepted; ntd is exact here")
    max_clause_freq: int | None = Field(default=None, ge=1, description="accepted; CNF counts are exact here")
    max_diff_tokens: int | None = Field(default=None, ge=1, description="CNF window (default 100)")
    maxnum: int | None = Field(
        default=None, ge=1, description="documents returned by search_docs (default 1)"
    )
    max_disp_len: int | None = Field(
        default=None, ge=1, description="tokens shown per document (default 1000)"
    )


class CompatErrorBody(BaseModel):
    """infini-gram's error answer."""

    error: str


_ERRORS = {
    400: "malformed request or invalid query (infini-gram answers these as {'error': ...})",
    401: "missing or invalid API key (when keys are configured)",
    413: "request body over the server's limit",
    500: "internal error (the server log has the details)",
    503: "the query ran over its time or work budget",
}
COMPAT_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "description": text,
        "content": {"application/json": {"schema": CompatErrorBody.model_json_schema()}},
    }
    for status, text in _ERRORS.items()
}


def _parse(index: Index, settings: Settings, request: CompatRequest) -> Ids | Cnf:
    if (request.query is None) == (request.query_ids is None):
        raise CompatError("Exactly one of query and query_ids must be present!")
    if request.query is not None:
        query = request.query
        if len(query) > settings.max_query_chars:
            raise CompatError(f"Please limit your input to <= {settings.max_query_chars} characters!")
        if " AND " not in query and " OR " not in query:
            return _tokenize(index, query)
        return [[_tokenize(index, term) for term in clause.split(" OR ")] for clause in query.split(" AND ")]
    ids = request.query_ids
    if ids is None:  # unreachable: exactly one of the two was checked above
        raise CompatError("Exactly one of query and query_ids must be present!")
    if ids and isinstance(ids[0], list):
        cnf: Cnf = ids
        if sum(len(term) for clause in cnf for term in clause) > settings.max_query_tokens:
            raise CompatError(f"Please limit your input to <= {settings.max_query_tokens} tokens!")
        if not cnf or len(cnf) > settings.max_phrases:
            raise CompatError(f"Please enter 1 to {settings.max_phrases} disjunctive clauses!")
        for clause in cnf:
            if not clause or len(clause) > settings.max_variants:
                raise CompatError(
                    f"Please enter 1 to {settings.max_variants} terms in each disjunctive clause!"
                )
            if any(not term for term in clause):
                raise CompatError("CNF terms must not be empty!")
        return cnf
    simple: Ids = ids  # type: ignore[assignment]
    if len(simple) > settings.max_query_tokens:
        raise CompatError(f"Please limit your input to <= {settings.max_query_tokens} tokens!")
    return simple


def _tokenize(index: Index, text: str) -> Ids:
    return [int(t) for t in index.tokenize(text)] if text else []


def _is_cnf(query: Ids | Cnf) -> bool:
    return bool(query) and isinstance(query[0], list)


def _tokens(index: Index, query: Ids | Cnf) -> Any:
    if _is_cnf(query):
        return [[_id_to_token(index, term) for term in clause] for clause in query]  # type: ignore[union-attr]
    return _id_to_token(index, query)  # type: ignore[arg-type]


def _id_to_token(index: Index, ids: Ids) -> list[str]:
    return list(index.id_to_token(ids)) if ids else []


def _spec(clause: list[Ids]) -> Ids | list[Ids]:
    return clause[0] if len(clause) == 1 else clause


def _count(index: Index, query: Ids | Cnf, request: CompatRequest, deadline: float) -> dict[str, Any]:
    if not _is_cnf(query):
        if not query:
            return {"count": index.n_tokens, "approx": False}
        return {"count": index.count([query], deadline=deadline)[0], "approx": False}  # type: ignore[list-item]
    cnf: Cnf = query  # type: ignore[assignment]
    if len(cnf) == 1:
        return {"count": sum(index.count(cnf[0], deadline=deadline)), "approx": False}
    # the engine anchors on the rarest clause, as infini-gram does (the count is per anchor occurrence)
    specs = [_spec(clause) for clause in cnf]
    window = request.max_diff_tokens if request.max_diff_tokens is not None else 100
    count = index.windowed_cooccurrence([specs], window, deadline=deadline)[0]
    return {"count": count, "approx": False}


def _prob(index: Index, query: Ids, deadline: float) -> dict[str, Any]:
    if not query:
        raise CompatError("Please provide a non-empty query!")
    result = index.prob([(query[:-1], query[-1])], deadline=deadline)[0]
    prob = -1.0 if result.prob is None else result.prob
    return {"prompt_cnt": result.prompt_count, "cont_cnt": result.cont_count, "prob": prob}


def _ntd(index: Index, query: Ids, deadline: float) -> dict[str, Any]:
    result = index.ntd([query], deadline=deadline)[0]
    by_id = {
        str(t.token_id): {
            "cont_cnt": t.count,
            "prob": t.prob,
            "token": None if t.token is None else t.token.replace("Ġ", " "),
        }
        for t in result.tokens
    }
    return {"prompt_cnt": result.prompt_count, "result_by_token_id": by_id, "approx": False}


def _infgram_prob(index: Index, query: Ids, deadline: float) -> dict[str, Any]:
    if not query:
        raise CompatError("Please provide a non-empty query!")
    result = index.infgram_prob([(query[:-1], [query[-1]])], deadline=deadline)[0]
    token = result.tokens[-1]
    context = query[:-1]
    suffix = context[len(context) - token.suffix_len :] if token.suffix_len else []
    return {
        "prompt_cnt": token.suffix_count,
        "cont_cnt": token.cont_count,
        "prob": token.prob,
        "suffix_len": token.suffix_len,
        "longest_suffix": (index.decode(suffix) if suffix else "") if index.has_tokenizer else None,
    }


def _search_docs(
    index: Index, settings: Settings, query: Ids | Cnf, request: CompatRequest, deadline: float
) -> dict[str, Any]:
    settings_maxnum = request.maxnum if request.maxnum is not None else 1
    disp = request.max_disp_len if request.max_disp_len is not None else 1000
    if settings_maxnum > settings.max_documents:
        raise CompatError(f"maxnum must be an integer in [1, {settings.max_documents}]!")
    if disp > settings.max_document_tokens:
        raise CompatError(f"max_disp_len must be an integer in [1, {settings.max_document_tokens}]!")
    if _is_cnf(query):
        cnf: Cnf = query  # type: ignore[assignment]
        phrases: list[Any] = [_spec(clause) for clause in cnf]
        labels = len(cnf)
    else:
        if not query:
            raise CompatError("Please provide a non-empty query!")
        phrases = [query]
        labels = 1
    cnt = _count(index, query, request, deadline)["count"]
    result = index.documents(
        phrases, limit=settings_maxnum, sample=True, window=max(disp // 2, 1), deadline=deadline
    )
    documents = []
    for hit in result.docs:
        text = hit.text or ""
        spans: list[tuple[str, str | None]] | None = [] if hit.text is not None else None
        if spans is None:  # no tokenizer: no text to highlight (token_ids carry the document)
            documents.append(_compat_document(hit, None))
            continue
        cursor = 0
        for start, end, phrase_index in sorted(hit.spans):
            if start < cursor or phrase_index >= labels:
                continue
            if start > cursor:
                spans.append((text[cursor:start], None))
            spans.append((text[start:end], str(phrase_index)))
            cursor = end
        if cursor < len(text):
            spans.append((text[cursor:], None))
        documents.append(_compat_document(hit, spans))
    idxs = [hit.doc_id for hit in result.docs]
    message = (
        "0 occurrences found" if cnt == 0 else f"{cnt} occurrences found. Displaying the documents #{idxs}"
    )
    return {"cnt": cnt, "approx": False, "idxs": idxs, "documents": documents, "message": message}


def _compat_document(hit: Any, spans: list[tuple[str, str | None]] | None) -> dict[str, Any]:
    return {
        "doc_ix": hit.doc_id,
        "doc_len": hit.doc_len,
        "disp_len": len(hit.token_ids),
        "needle_offset": hit.snippet_start,
        "metadata": json.dumps(hit.metadata, ensure_ascii=False),
        "token_ids": hit.token_ids,
        "blocked": False,
        "spans": spans,
    }


@router.post(
    "/",
    summary="infini-gram compatible query (count, prob, ntd, infgram_prob, search_docs)",
    responses=COMPAT_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": CompatRequest.model_json_schema()}},
        }
    },
)
async def infinigram_query(request: Request, state: StateDep) -> Response:
    """Read as JSON whatever the Content-Type says (infini-gram clients do not always set it), then answer
    in the thread pool (the engine's kernels release the GIL)."""
    body = await request.body()
    try:
        payload = orjson.loads(body)
    except (ValueError, RecursionError):
        raise CompatError("the body is not valid JSON (UTF-8)") from None
    try:
        parsed = CompatRequest.model_validate(payload)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise CompatError(f"{where}: {first['msg']}") from None
    return await run_in_threadpool(_answer, state, parsed)


def _answer(state: ServiceState, request: CompatRequest) -> Response:
    name = request.index if request.index is not None else request.corpus
    if name is None:
        raise CompatError("Missing required field: 'index'")
    try:
        index = state.index(name)
    except IndexUnavailable:
        raise CompatError(f"Invalid index: {name}") from None
    settings = state.settings
    try:
        query = _parse(index, settings, request)
        if _is_cnf(query) and request.query_type not in ("count", "search_docs"):
            raise CompatError(f"query_type {request.query_type} does not take a CNF query")
        deadline = state.deadline()
        start = time.perf_counter()
        if request.query_type == "count":
            result = _count(index, query, request, deadline)
        elif request.query_type == "prob":
            result = _prob(index, query, deadline)  # type: ignore[arg-type]
        elif request.query_type == "ntd":
            result = _ntd(index, query, deadline)  # type: ignore[arg-type]
        elif request.query_type == "infgram_prob":
            result = _infgram_prob(index, query, deadline)  # type: ignore[arg-type]
        else:
            result = _search_docs(index, settings, query, request, deadline)
        result["latency"] = (time.perf_counter() - start) * 1000
        result["token_ids"] = query
        # an index built from token ids without a tokenizer has no token strings: "tokens" is null
        result["tokens"] = _tokens(index, query) if index.has_tokenizer else None
    except EngineError as err:
        raise CompatError.wrap(from_engine_error(err)) from err
    body = json.dumps(result, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Response(body.encode("utf-8"), media_type="application/json")
