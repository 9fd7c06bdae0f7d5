"""The engine's exceptions. Every failed query raises one of these; none is ever turned into a count.

::

    EngineError
     ├── QueryError          the query is malformed (empty phrase, token id out of range, bad option)
     │    └── DocumentNotFound   a document id outside the index
     ├── BudgetExceeded      the query needs more work or time than its budget allows
     ├── IndexUnavailable    the index is missing, corrupt or of an incompatible format
     └── ShardsUnavailable   shard groups serving part of the index are down or missed the deadline
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class of the engine's exceptions."""


class QueryError(EngineError, ValueError):
    """A bad query. ``field`` names what is wrong (e.g. ``phrases[3]``), ``item`` its batch position."""

    def __init__(self, message: str, *, field: str | None = None, item: int | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.item = item


class DocumentNotFound(QueryError):
    """A document id outside the index (``0 <= doc_id < n_docs``); the service answers 404."""


class BudgetExceeded(EngineError):
    """A query exceeded its time (``deadline``) or work (``max_occurrences``) budget. No partial result
    is returned. ``kind`` is ``"time"`` or ``"work"``."""

    def __init__(self, message: str, *, kind: str = "time") -> None:
        super().__init__(message)
        self.kind = kind


class IndexUnavailable(EngineError):
    """An index cannot be opened or used: the message says which file and what is wrong."""

    def __init__(self, message: str, *, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name


class ShardsUnavailable(EngineError):
    """Some shard groups of a distributed index (:mod:`service.ray_serve`) did not answer: down, or not
    within the request's deadline. No partial sum is returned. ``shards`` are the shard numbers without
    an answer, ``groups`` the groups' names with what happened to each."""

    def __init__(self, message: str, *, shards: list[int], groups: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.shards = shards
        self.groups = dict(groups or {})
