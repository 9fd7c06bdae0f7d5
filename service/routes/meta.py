"""Service metadata: health (with the limits clients use to split work) and the served indexes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from service.deps import StateDep
from service.routes._common import json_response
from service.schemas import HealthResponse, IndexesResponse

#: open to everyone (liveness probes), even when API keys are configured
public_router = APIRouter(tags=["service"])
router = APIRouter(tags=["service"])


@public_router.get(
    "/health", response_model=HealthResponse, summary="Liveness, served index names and limits"
)
async def health(state: StateDep) -> Response:
    """No engine work: answered on the event loop. An index whose shard groups are served elsewhere
    (``taskgram serve --ray``) adds the state of each group (asked in a worker thread, briefly)."""
    from taskgram import __version__

    body: dict[str, Any] = {
        "status": "degraded" if state.refused else "ok",
        "version": __version__,
        "indexes": sorted(state.indexes),
        "limits": state.settings.limits(),
    }
    groups = {
        name: await run_in_threadpool(index.group_states)
        for name, index in sorted(state.indexes.items())
        if hasattr(index, "group_states")
    }
    if groups:
        body["shard_groups"] = groups
        if any(g["state"] != "up" for states in groups.values() for g in states):
            body["status"] = "degraded"
    return json_response(body)


@router.get("/indexes", response_model=IndexesResponse, summary="Manifest summary of each served index")
def indexes(state: StateDep) -> Response:
    return json_response(
        {"indexes": [state.summary(name) for name in sorted(state.indexes)], "refused": dict(state.refused)}
    )
