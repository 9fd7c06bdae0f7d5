"""Clients of taskgram: ``Client`` / ``AsyncClient`` (HTTP) and ``LocalClient`` (in-process engine),
typed results in :mod:`clients.models`, exceptions in :mod:`clients.errors`. ``clients.eval`` is the
paper's evaluation pipeline built on them.

The clients and models are imported on first use (PEP 562), so that commands which only need
``clients.errors`` (every ``taskgram`` command registers its failures) do not load httpx and pydantic."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from clients.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    DocumentNotFoundError,
    InvalidQueryError,
    NotFoundError,
    PayloadTooLargeError,
    ProtocolError,
    RequestTimeout,
    TaskgramError,
    TransportError,
    UnknownIndexError,
)

if TYPE_CHECKING:
    from clients.client import AsyncClient, Client, LocalClient, Phrase, PhraseSpec, ResultCache
    from clients.models import (
        Document,
        DocumentHit,
        DocumentsResult,
        Health,
        IndexInfo,
        InfgramResult,
        InfgramToken,
        NextTokenDistribution,
        ProbResult,
        Tokenized,
        TokenProb,
        TraceDocument,
        TraceResult,
        TraceSpan,
    )

# Where the names of ``__all__`` not imported above live; each module's own ``__all__`` says which.
_LAZY_MODULES = ("clients.client", "clients.models")


def __getattr__(name: str) -> Any:
    if name in __all__:
        for module_name in _LAZY_MODULES:
            module = importlib.import_module(module_name)
            if name in module.__all__:
                value = getattr(module, name)
                globals()[name] = value  # later lookups skip this function
                return value
    raise AttributeError(f"module 'clients' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "APIError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "Client",
    "Document",
    "DocumentHit",
    "DocumentNotFoundError",
    "DocumentsResult",
    "Health",
    "IndexInfo",
    "InfgramResult",
    "InfgramToken",
    "InvalidQueryError",
    "LocalClient",
    "NextTokenDistribution",
    "NotFoundError",
    "PayloadTooLargeError",
    "Phrase",
    "PhraseSpec",
    "ProbResult",
    "ProtocolError",
    "RequestTimeout",
    "ResultCache",
    "TaskgramError",
    "TokenProb",
    "Tokenized",
    "TraceDocument",
    "TraceResult",
    "TraceSpan",
    "TransportError",
    "UnknownIndexError",
]
