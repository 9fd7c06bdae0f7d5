"""Probabilities: next-token distributions, n-gram probabilities, ∞-gram probabilities."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from service.deps import StateDep
from service.errors import InvalidQuery
from service.routes._common import (
    FastJsonRoute,
    as_dicts,
    check_batch,
    phrase,
    phrases,
    results_response,
)
from service.schemas import InfgramRequest, InfgramResults, NtdRequest, NtdResults, ProbRequest, ProbResults

router = APIRouter(tags=["probabilities"], route_class=FastJsonRoute)


@router.post("/ntd", response_model=NtdResults, summary="Exact next-token distribution after each prompt")
def ntd(request: NtdRequest, state: StateDep) -> Response:
    if request.top_k is not None and request.top_k > state.settings.max_top_k:
        raise InvalidQuery(f"top_k: {request.top_k}, the limit is {state.settings.max_top_k}")
    index = state.index(request.index)
    prompts = phrases(state.settings, request.queries, allow_empty=True)  # '' = unigram distribution
    results = index.ntd(
        prompts, top_k=request.top_k, deadline=state.deadline(), space=request.space
    )
    return results_response(request.index, as_dicts(results))


@router.post("/prob", response_model=ProbResults, summary="P(token | prompt) for each (prompt, token)")
def prob(request: ProbRequest, state: StateDep) -> Response:
    index = state.index(request.index)
    check_batch(state.settings, request.queries)
    items = [
        (phrase(state.settings, q.prompt, f"queries[{i}].prompt", allow_empty=True), q.token_id)
        for i, q in enumerate(request.queries)
    ]
    results = index.prob(items, deadline=state.deadline(), space=request.space)
    return results_response(request.index, as_dicts(results))


@router.post(
    "/infgram_prob", response_model=InfgramResults, summary="∞-gram probability of each continuation"
)
def infgram_prob(request: InfgramRequest, state: StateDep) -> Response:
    index = state.index(request.index)
    check_batch(state.settings, request.queries)
    items = [
        (
            phrase(state.settings, q.context, f"queries[{i}].context", allow_empty=True),
            phrase(state.settings, q.continuation, f"queries[{i}].continuation"),
        )
        for i, q in enumerate(request.queries)
    ]
    results = index.infgram_prob(items, deadline=state.deadline(), space=request.space)
    return results_response(request.index, as_dicts(results))
