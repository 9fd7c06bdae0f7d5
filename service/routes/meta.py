"""Service metadata: health (with the limits clients use to split work) and the served indexes."""

from __future__ import annotations

from fastapi import APIRouter
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
    """No engine work: answered on the event loop."""
    from taskgram import __version__

    return json_response(
        {
            "status": "degraded" if state.refused else "ok",
            "version": __version__,
            "indexes": sorted(state.indexes),
            "limits": state.settings.limits(),
        }
    )


@router.get("/indexes", response_model=IndexesResponse, summary="Manifest summary of each served index")
def indexes(state: StateDep) -> Response:
    return json_response(
        {"indexes": [state.summary(name) for name in sorted(state.indexes)], "refused": dict(state.refused)}
    )
