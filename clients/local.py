"""The in-process transport: operations answered by the engine in this process, on one index directory,
with the same JSON the service answers and the same client exceptions (:data:`ENGINE_ERRORS`).

Loaded only by an in-process client (:class:`clients.LocalClient`): it imports the engine (numba, the
mapped index), never the service's web layer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from clients.errors import (
    APIError,
    BudgetExceededError,
    DocumentNotFoundError,
    InvalidQueryError,
    ProtocolError,
    UnknownIndexError,
)
from clients.transports import BaseTransport, Operation
from service.engine import (
    BudgetExceeded,
    DocumentNotFound,
    EngineError,
    Index,
    IndexUnavailable,
    QueryError,
)

__all__ = ["ENGINE_ERRORS", "LocalTransport", "map_engine_errors"]

#: The one table from engine exceptions to client exceptions, most specific first: the first row whose
#: engine class matches wins (like httpx's ``HTTPCORE_EXC_MAP``). The client classes are those the
#: server's answers to the same failures become (same status, problem type and title).
ENGINE_ERRORS: tuple[tuple[type[EngineError], type[APIError]], ...] = (
    (DocumentNotFound, DocumentNotFoundError),
    (QueryError, InvalidQueryError),
    (BudgetExceeded, BudgetExceededError),
    (IndexUnavailable, UnknownIndexError),
    (EngineError, APIError),
)


@contextlib.contextmanager
def map_engine_errors() -> Iterator[None]:
    """Re-raise an engine exception as the client exception :data:`ENGINE_ERRORS` names for it
    (``raise ... from`` the engine's)."""
    try:
        yield
    except EngineError as err:
        for engine_cls, client_cls in ENGINE_ERRORS:
            if isinstance(err, engine_cls):
                raise client_cls.from_detail(str(err)) from err
        raise  # pragma: no cover - EngineError is the last row


def _phrase(value: Any) -> Any:
    """Service JSON -> engine phrase: ``{"ids": [...]}`` -> ids, ``{"any": [...]}`` kept as an OR."""
    if isinstance(value, Mapping):
        if "ids" in value:
            return value["ids"]
        return {"any": [_phrase(v) for v in value["any"]]}
    return value


_Handler = Callable[["LocalTransport", Operation], Any]
_ROUTES: dict[tuple[str, str], _Handler] = {}


def _route(method: str, route: str) -> Callable[[_Handler], _Handler]:
    def register(handler: _Handler) -> _Handler:
        _ROUTES[(method, route)] = handler
        return handler

    return register


class LocalTransport(BaseTransport):
    """Operations answered by the engine in this process, on one index directory: the same JSON the
    service would answer, without a server, HTTP or batching limits. ``timeout`` (seconds) becomes the
    engine deadline of each operation; the other options are those of :meth:`service.engine.Index.open`.
    """

    def __init__(
        self,
        index_dir: str | os.PathLike[str],
        *,
        name: str | None = None,
        timeout: float | None = None,
        verify_checksums: bool = False,
        space: str | None = None,
        max_occurrences: int | None = None,
    ) -> None:

        options: dict[str, Any] = {"max_occurrences": max_occurrences}
        if space is not None:
            options["space"] = space
        with map_engine_errors():  # an index that cannot be opened: UnknownIndexError, naming the file
            self.engine = Index.open(index_dir, name=name, verify_checksums=verify_checksums, **options)
        self.name: str = self.engine.name
        self.identity: str = self.engine.manifest.identity()
        self.timeout = timeout
        self.base_url = f"local:{Path(index_dir)}"

    def handle(self, op: Operation) -> Any:
        handler = _ROUTES.get((op.method, op.route))
        if handler is None:
            raise ProtocolError(f"in-process transport: no route {op.method} {op.route}")
        with map_engine_errors():
            return handler(self, op)

    def close(self) -> None:
        self.engine.close()

    # --- helpers of the routes ---------------------------------------------------------------------

    def _check_name(self, name: str) -> None:
        if name != self.name:
            raise UnknownIndexError.from_detail(
                f"this in-process client serves index {self.name!r}, not {name!r}"
            )

    def _batch(self, op: Operation) -> tuple[list[Any], dict[str, Any]]:
        """The queries of a batch operation and the engine keywords (deadline, space)."""
        body = op.body
        self._check_name(body["index"])
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        return body["queries"], {"deadline": deadline, "space": body.get("space")}

    @staticmethod
    def _boundary(op: Operation) -> dict[str, Any]:
        """The word-boundary option of the endpoints that have one (the service's default: token)."""
        return {"boundary": op.body.get("boundary", "token")}

    def _answer(self, results: list[Any]) -> dict[str, Any]:
        return {"index": self.name, "results": results}

    # --- the routes, as the service declares them ----------------------------------------------------

    @_route("GET", "/v1/health")
    def _health(self, op: Operation) -> Any:
        from taskgram import __version__

        return {
            "status": "ok",
            "version": __version__,
            "indexes": [self.name],
            "limits": {"max_batch": 1 << 62},
        }

    @_route("GET", "/v1/indexes")
    def _indexes(self, op: Operation) -> Any:
        return {"indexes": [{**self.engine.summary(), "name": self.name, "identity": self.identity}]}

    @_route("GET", "/v1/indexes/{name}/documents/{doc_id}")
    def _document(self, op: Operation) -> Any:
        self._check_name(op.path_params["name"])
        params = op.params or {}
        document = self.engine.document(op.path_params["doc_id"], max_tokens=params.get("max_tokens"))
        return {"index": self.name, **dataclasses.asdict(document)}

    @_route("POST", "/v1/count")
    def _count(self, op: Operation) -> Any:
        queries, kw = self._batch(op)
        return self._answer(self.engine.count([_phrase(q) for q in queries], **self._boundary(op), **kw))

    @_route("POST", "/v1/doc_freq")
    def _doc_freq(self, op: Operation) -> Any:
        queries, kw = self._batch(op)
        return self._answer(self.engine.doc_freq([_phrase(q) for q in queries], **self._boundary(op), **kw))

    @_route("POST", "/v1/cooccurrence")
    def _cooccurrence(self, op: Operation) -> Any:
        queries, kw = self._batch(op)
        decoded = [[_phrase(p) for p in q] for q in queries]
        unit = op.body.get("unit", "documents")
        return self._answer(self.engine.cooccurrence(decoded, unit=unit, **self._boundary(op), **kw))

    @_route("POST", "/v1/cooccurrence/windowed")
    def _windowed(self, op: Operation) -> Any:
        queries, kw = self._batch(op)
        decoded = [[_phrase(p) for p in q] for q in queries]
        window = op.body["window"]
        return self._answer(self.engine.windowed_cooccurrence(decoded, window, **self._boundary(op), **kw))

    @_route("POST", "/v1/ntd")
    def _ntd(self, op: Operation) -> Any:
        queries, kw = self._batch(op)
        found = self.engine.ntd([_phrase(q) for q in queries], top_k=op.body["top_k"], **kw)
        return self._answer([dataclasses.asdict(r) for r in found])

    @_route("POST", "/v1/prob")
    def _prob(self, op: Operation) -> Any:
        queries, kw = self._batch(op)
        found = self.engine.prob([(_phrase(q["prompt"]), q["token_id"]) for q in queries], **kw)
        return self._answer([dataclasses.asdict(r) for r in found])

    @_route("POST", "/v1/infgram_prob")
    def _infgram_prob(self, op: Operation) -> Any:
        queries, kw = self._batch(op)
        pairs = [(_phrase(q["context"]), _phrase(q["continuation"])) for q in queries]
        return self._answer([dataclasses.asdict(r) for r in self.engine.infgram_prob(pairs, **kw)])

    @_route("POST", "/v1/documents")
    def _documents(self, op: Operation) -> Any:
        queries, kw = self._batch(op)
        options = {k: op.body[k] for k in ("offset", "limit", "sample", "seed", "window")}
        options.update(self._boundary(op))
        return self._answer(
            [
                dataclasses.asdict(self.engine.documents([_phrase(p) for p in q], **options, **kw))
                for q in queries
            ]
        )

    @_route("POST", "/v1/trace")
    def _trace(self, op: Operation) -> Any:
        queries, kw = self._batch(op)
        names = ("min_len", "max_count", "boundary", "rank", "max_spans", "docs_per_span", "context", "seed")
        options = {k: op.body[k] for k in names if k in op.body}
        found = self.engine.trace(
            [_phrase(q) for q in queries], **options, space=kw["space"] or "auto", deadline=kw["deadline"]
        )
        return self._answer([dataclasses.asdict(r) for r in found])

    @_route("POST", "/v1/tokenize")
    def _tokenize(self, op: Operation) -> Any:
        queries, kw = self._batch(op)
        results = []
        for text in queries:
            ids = self.engine.tokenize(text, space=kw["space"])
            results.append({"token_ids": ids, "tokens": self.engine.id_to_token(ids) if ids else []})
        return self._answer(results)
