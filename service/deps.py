"""Dependencies shared by the routes: the service state (settings + opened indexes), index lookup,
the per-request engine deadline and API-key authentication. Handlers stay plain functions."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.engine import Index, IndexSet
from service.errors import Unauthorized
from service.settings import Settings


def index_identity(index: Index) -> str:
    """The index identity (:meth:`indexer.manifest.Manifest.identity`); clients key their caches on it."""
    return index.manifest.identity()


@dataclass
class ServiceState:
    """What the lifespan opened; stored on ``app.state.taskgram``."""

    settings: Settings
    indexes: IndexSet
    identities: dict[str, str] = field(default_factory=dict)

    @property
    def refused(self) -> dict[str, str]:
        """Index name -> why it could not be opened."""
        return self.indexes.failures

    def index(self, name: str) -> Index:
        """The served index ``name``; the engine's lookup raises IndexUnavailable (answered 404
        unknown-index, with the reason when the index was refused)."""
        return self.indexes.get_index(name)

    def deadline(self) -> float:
        """Absolute ``time.monotonic()`` deadline for the engine, from the per-request time budget."""
        return time.monotonic() + self.settings.time_budget_s

    def summary(self, name: str) -> dict[str, Any]:
        index = self.indexes[name]
        return {**index.summary(), "name": name, "identity": self.identities[name]}


# Dependencies are ``async def`` although they do no I/O: FastAPI runs a plain ``def`` dependency in the
# thread pool, a hand-off that cost more than a whole count query (profiled: 8 hops per request).


async def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.taskgram
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]

_bearer = HTTPBearer(auto_error=False, description="an API key from TASKGRAM_API_KEYS / --api-key")


async def require_api_key(
    state: StateDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Accept the request when no keys are configured, or when it carries one of them as a bearer token
    (compared in constant time)."""
    keys = state.settings.api_keys
    if not keys:
        return
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("this server requires an API key: send 'Authorization: Bearer <key>'")
    given = credentials.credentials.encode("utf-8")
    if not any(hmac.compare_digest(given, key.encode("utf-8")) for key in keys):
        raise Unauthorized("the API key is not valid")
