"""Documents: the documents that contain phrases (exact total, a page or a sample), one document by id."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from service.deps import StateDep
from service.errors import InvalidQuery
from service.routes._common import FastJsonRoute, check_batch, json_response, results_response, spec
from service.schemas import DocumentModel, DocumentsRequest, DocumentsResults

router = APIRouter(tags=["documents"], route_class=FastJsonRoute)


@router.post(
    "/documents", response_model=DocumentsResults, summary="Documents containing all phrases of each query"
)
def documents(request: DocumentsRequest, state: StateDep) -> Response:
    settings = state.settings
    if request.limit > settings.max_documents:
        raise InvalidQuery(f"limit: {request.limit}, the limit is {settings.max_documents}")
    if request.window > settings.max_document_tokens:
        raise InvalidQuery(f"window: {request.window}, the limit is {settings.max_document_tokens}")
    index = state.index(request.index)
    check_batch(settings, request.queries)
    if len(request.queries) * max(request.limit, 1) > settings.max_batch:
        raise InvalidQuery(f"queries x limit exceeds {settings.max_batch} documents; use smaller batches")
    deadline = state.deadline()
    results = []
    for i, query in enumerate(request.queries):
        if not 1 <= len(query) <= settings.max_phrases:
            raise InvalidQuery(f"queries[{i}]: {len(query)} phrases; give 1 to {settings.max_phrases}")
        engine_query = [spec(settings, v, f"queries[{i}][{j}]") for j, v in enumerate(query)]
        result = index.documents(
            engine_query,
            offset=request.offset,
            limit=request.limit,
            sample=request.sample,
            seed=request.seed,
            window=request.window,
            deadline=deadline,
            space=request.space,
            boundary=request.boundary,
        )
        results.append(dataclasses.asdict(result))
    return results_response(request.index, results)


@router.get(
    "/indexes/{name}/documents/{doc_id}",
    response_model=DocumentModel,
    summary="One document by global doc id",
)
def document(
    name: Annotated[str, Path(max_length=200)],
    doc_id: Annotated[int, Path(ge=0)],
    state: StateDep,
    max_tokens: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    index = state.index(name)  # a doc_id outside the index: the engine's DocumentNotFound, answered 404
    limit = state.settings.max_document_tokens
    max_tokens = limit if max_tokens is None else min(max_tokens, limit)
    result = index.document(doc_id, max_tokens=max_tokens)
    return json_response({"index": name, **dataclasses.asdict(result)})
