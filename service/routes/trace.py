"""Span tracing: the spans of a text that occur verbatim in the corpus, with counts and documents."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter
from starlette.responses import Response

from service.deps import StateDep
from service.errors import InvalidQuery
from service.routes._common import FastJsonRoute, check_batch, json_response, phrase
from service.schemas import IdsPhrase, TraceRequest, TraceResults

router = APIRouter(tags=["trace"], route_class=FastJsonRoute)


@router.post("/trace", response_model=TraceResults, summary="Maximal corpus spans of each text")
def trace(request: TraceRequest, state: StateDep) -> Response:
    settings = state.settings
    if request.docs_per_span > settings.max_documents:
        raise InvalidQuery(f"docs_per_span: {request.docs_per_span}, the limit is {settings.max_documents}")
    if request.context > settings.max_document_tokens:
        raise InvalidQuery(f"context: {request.context}, the limit is {settings.max_document_tokens}")
    index = state.index(request.index)
    check_batch(settings, request.queries)
    queries = [
        phrase(settings, {"ids": q.ids} if isinstance(q, IdsPhrase) else q, f"queries[{i}]")
        for i, q in enumerate(request.queries)
    ]
    space = request.space or ("exact" if settings.space == "exact" else "auto")
    results = index.trace(
        queries,
        min_len=request.min_len,
        max_count=request.max_count,
        boundary=request.boundary,
        rank=request.rank,
        max_spans=request.max_spans,
        docs_per_span=request.docs_per_span,
        context=request.context,
        seed=request.seed,
        space=space,
        deadline=state.deadline(),
    )
    return json_response({"index": request.index, "results": [dataclasses.asdict(r) for r in results]})
