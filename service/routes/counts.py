"""Exact counts: n-gram occurrences, document frequency, document co-occurrence, windowed co-occurrence."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from service.deps import StateDep
from service.errors import InvalidQuery
from service.routes._common import FastJsonRoute, conjunctions, json_response, phrases, specs
from service.schemas import (
    CooccurrenceRequest,
    CountRequest,
    DocFreqRequest,
    IntResults,
    WindowedCooccurrenceRequest,
)

router = APIRouter(tags=["counts"], route_class=FastJsonRoute)


@router.post("/count", response_model=IntResults, summary="Occurrences of each phrase")
def count(request: CountRequest, state: StateDep) -> Response:
    index = state.index(request.index)
    queries = phrases(state.settings, request.queries)
    results = index.count(queries, deadline=state.deadline(), space=request.space)
    return json_response({"index": request.index, "results": results})


@router.post("/doc_freq", response_model=IntResults, summary="Documents containing each phrase")
def doc_freq(request: DocFreqRequest, state: StateDep) -> Response:
    index = state.index(request.index)
    queries = specs(state.settings, request.queries)
    results = index.doc_freq(queries, deadline=state.deadline(), space=request.space)
    return json_response({"index": request.index, "results": results})


@router.post(
    "/cooccurrence", response_model=IntResults, summary="Documents containing all phrases of each query"
)
def cooccurrence(request: CooccurrenceRequest, state: StateDep) -> Response:
    index = state.index(request.index)
    queries = conjunctions(state.settings, request.queries)
    results = index.cooccurrence(queries, deadline=state.deadline(), space=request.space)
    return json_response({"index": request.index, "results": results})


@router.post(
    "/cooccurrence/windowed",
    response_model=IntResults,
    summary="Occurrences of the first phrase with all others within a token window (exact CNF AND)",
)
def windowed_cooccurrence(request: WindowedCooccurrenceRequest, state: StateDep) -> Response:
    if request.window > state.settings.max_window:
        raise InvalidQuery(f"window: {request.window}, the limit is {state.settings.max_window}")
    index = state.index(request.index)
    queries = conjunctions(state.settings, request.queries)
    results = index.windowed_cooccurrence(
        queries, request.window, deadline=state.deadline(), space=request.space
    )
    return json_response({"index": request.index, "results": results})
