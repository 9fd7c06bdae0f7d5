"""Tokenization under an index's own tokenizer and normalization (what text phrases turn into)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from service.deps import StateDep
from service.errors import InvalidQuery
from service.routes._common import FastJsonRoute, check_batch, results_response
from service.schemas import TokenizeRequest, TokenizeResults

router = APIRouter(tags=["tokenize"], route_class=FastJsonRoute)


@router.post("/tokenize", response_model=TokenizeResults, summary="Token ids of each text")
def tokenize(request: TokenizeRequest, state: StateDep) -> Response:
    index = state.index(request.index)
    check_batch(state.settings, request.queries)
    results = []
    for i, text in enumerate(request.queries):
        if len(text) > state.settings.max_query_chars:
            raise InvalidQuery(
                f"queries[{i}]: {len(text)} characters, the limit is {state.settings.max_query_chars}"
            )
        ids = [int(t) for t in index.tokenize(text, space=request.space)]
        results.append({"token_ids": ids, "tokens": index.id_to_token(ids) if ids else []})
    return results_response(request.index, results)
