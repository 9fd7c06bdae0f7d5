"""Exact counts: n-gram occurrences, document frequency, co-occurrence (in documents or in occurrences of the
first phrase), windowed co-occurrence."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from service.deps import ServiceState, StateDep
from service.errors import InvalidQuery
from service.routes._common import (
    FastJsonRoute,
    conjunctions,
    phrases,
    results_response,
    specs,
)
from service.schemas import (
    CooccurrenceRequest,
    CountRequest,
    DocFreqRequest,
    IntResults,
    WindowedCooccurrenceRequest,
)

router = APIRouter(tags=["counts"], route_class=FastJsonRoute)


#: batches of at most this many count queries are answered on the event loop: a count is a few binary
#: searches (microseconds), less than the hand-off to a worker thread; larger batches go to the pool.
INLINE_COUNTS = 64


def _count(request: CountRequest, state: ServiceState) -> Response:
    index = state.index(request.index)
    queries = phrases(state.settings, request.queries)
    results = index.count(queries, deadline=state.deadline(), space=request.space, boundary=request.boundary)
    return results_response(request.index, results)


@router.post("/count", response_model=IntResults, summary="Occurrences of each phrase")
async def count(request: CountRequest, state: StateDep) -> Response:
    if len(request.queries) <= INLINE_COUNTS and not any(type(q) is str for q in request.queries):
        return _count(request, state)  # token ids only: no tokenizer call on the event loop
    return await run_in_threadpool(_count, request, state)


@router.post("/doc_freq", response_model=IntResults, summary="Documents containing each phrase")
def doc_freq(request: DocFreqRequest, state: StateDep) -> Response:
    index = state.index(request.index)
    queries = specs(state.settings, request.queries)
    results = index.doc_freq(
        queries, deadline=state.deadline(), space=request.space, boundary=request.boundary
    )
    return results_response(request.index, results)


@router.post(
    "/cooccurrence",
    response_model=IntResults,
    summary="Documents containing all phrases of each query (or occurrences of its first phrase in them)",
)
def cooccurrence(request: CooccurrenceRequest, state: StateDep) -> Response:
    index = state.index(request.index)
    queries = conjunctions(state.settings, request.queries)
    results = index.cooccurrence(
        queries,
        deadline=state.deadline(),
        space=request.space,
        unit=request.unit,
        boundary=request.boundary,
    )
    return results_response(request.index, results)


@router.post(
    "/cooccurrence/windowed",
    response_model=IntResults,
    summary="Occurrences of the rarest clause with every other clause within a token window (exact CNF AND)",
)
def windowed_cooccurrence(request: WindowedCooccurrenceRequest, state: StateDep) -> Response:
    if request.window > state.settings.max_window:
        raise InvalidQuery(f"window: {request.window}, the limit is {state.settings.max_window}")
    index = state.index(request.index)
    queries = conjunctions(state.settings, request.queries)
    results = index.windowed_cooccurrence(
        queries, request.window, deadline=state.deadline(), space=request.space, boundary=request.boundary
    )
    return results_response(request.index, results)
