"""The result cache of the clients and of the evaluation: one sqlite3 file (:data:`CACHE_FILE`) of JSON
results, one row per (identity, kind, key):

* ``identity``: what the results were computed against. The clients use the index identity the service
  reports (sha256 of its manifest, which lists every file's checksum); the evaluation uses a hash of that
  identity and its phrase-variant options (``clients.eval.pairs.CountCache``).
* ``kind``: what was asked, with every option that changes the answer. The clients use the API path
  and the canonical JSON of the request options (``/v1/cooccurrence{"boundary":"word",...}``); the
  evaluation ``counts:<quantity>:<boundary>``, the quantity naming the unit (``df``, ``occ``, ``co``,
  ``occ-co``, ``ex``).
* ``key``: the query, as canonical JSON or text.

Writes are transactions (a batch is stored whole or not at all; an interrupted run keeps every batch it
finished), and one lock serializes the connection, so threads may share a cache.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["CACHE_FILE", "ResultCache", "canonical"]

CACHE_FILE = "taskgram-cache.sqlite3"
_SQL_CHUNK = 500
_SCAN_OVER = 5_000  # above this many keys, get_many reads the rows of the (identity, kind) in one pass


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(value: Any) -> str:
    """The canonical JSON of ``value`` (sorted keys, no spaces): equal queries give equal keys."""
    if type(value) is int:  # the common value (a count): what the encoder writes, without its overhead
        return str(value)
    return _CANONICAL.encode(value)


class ResultCache:
    """Thread-safe sqlite3 store of JSON results keyed by (identity, kind, key), in
    ``directory/taskgram-cache.sqlite3``.

    Examples
    --------
    >>> import tempfile
    >>> cache = ResultCache(tempfile.mkdtemp())
    >>> cache.put_many("index-sha", "/v1/count{}", [('"Paris"', 3)])
    >>> cache.get_many("index-sha", "/v1/count{}", ['"Paris"', '"Rome"'])
    {'"Paris"': 3}
    >>> cache.get_many("other-index", "/v1/count{}", ['"Paris"'])
    {}
    >>> cache.close()
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        path = Path(directory).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        self.path = path / CACHE_FILE
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS results (identity TEXT NOT NULL, kind TEXT NOT NULL, "
            "key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (identity, kind, key)) WITHOUT ROWID"
        )

    def get_many(self, identity: str, kind: str, keys: Sequence[str]) -> dict[str, Any]:
        """The stored results among ``keys`` (missing keys are absent from the answer)."""
        found: dict[str, Any] = {}
        distinct = list(dict.fromkeys(keys))
        with self._lock:
            if len(distinct) > _SCAN_OVER:  # many keys: one pass over the (identity, kind) rows
                wanted = set(distinct)
                rows = self._db.execute(
                    "SELECT key, value FROM results WHERE identity = ? AND kind = ?", (identity, kind)
                )
                for key, value in rows:
                    if key in wanted:
                        found[key] = json.loads(value)
                return found
            for start in range(0, len(distinct), _SQL_CHUNK):
                chunk = distinct[start : start + _SQL_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, value FROM results WHERE identity = ? AND kind = ? AND key IN ({marks})",
                    (identity, kind, *chunk),
                )
                for key, value in rows:
                    found[key] = json.loads(value)
        return found

    def put_many(self, identity: str, kind: str, items: Sequence[tuple[str, Any]]) -> None:
        """Store ``(key, result)`` pairs in one transaction (all or none)."""
        rows = [(identity, kind, key, canonical(value)) for key, value in items]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?)", rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
