"""Python clients of taskgram: ``Client`` (sync, httpx), ``AsyncClient`` (asyncio, httpx) and
``LocalClient`` (the engine in-process, no server). The three have the same query methods with the same
signatures and return the same types (:mod:`clients.models`); failures raise :mod:`clients.errors`.

Phrases are text (``"the capital of France"``) or token ids (``[1169, 3139, 273]``); where a *phrase spec*
is allowed (doc_freq, cooccurrence, windowed_cooccurrence, documents) a list of phrases, or
``{"any": [...]}``, is an OR of variants counted as a union::

    from clients import Client
    with Client("http://127.0.0.1:8000", index="sample", cache_dir="~/.cache/taskgram") as tg:
        tg.count(["the capital of France", [1169, 3139]])
        tg.cooccurrence([["Paris", {"any": ["France", "french"]}]])

How a call runs: the query logic (chunking long lists into batches of the server's ``max_batch`` or
``batch_size=``, halving a batch the server refuses as too large, the result cache) is written once as a
generator of requests; ``Client`` sends them with httpx (retrying connection errors and 503 answers with
exponential backoff, honouring ``Retry-After``), ``AsyncClient`` awaits them, and ``LocalClient`` answers
them by calling the engine directly.

The optional cache (``cache_dir=``) is an sqlite3 file keyed by the index identity (sha256 of its
manifest, which lists every file's checksum) + query kind and options + the query's canonical JSON;
reruns of the same queries against the same index cost no server work.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import operator
import os
import random
import socket
import sqlite3
import threading
import time
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import orjson

from clients.errors import (
    APIError,
    BudgetExceededError,
    InvalidQueryError,
    PayloadTooLargeError,
    ProtocolError,
    TaskgramError,
    UnknownIndexError,
    error_from_response,
    error_from_transport,
)
from clients.models import (
    Document,
    DocumentsResult,
    Health,
    IndexInfo,
    InfgramResult,
    NextTokenDistribution,
    ProbResult,
    Tokenized,
    TraceResult,
)

__all__ = ["AsyncClient", "Client", "LocalClient", "Phrase", "PhraseSpec", "ResultCache"]

Phrase = str | Sequence[int]
PhraseSpec = Phrase | Sequence[Phrase] | Mapping[str, Sequence[Phrase]]

DEFAULT_URL = "http://127.0.0.1:8000"
CACHE_FILE = "taskgram-cache.sqlite3"
_SQL_CHUNK = 500
BOUNDARIES = ("token", "word")  # match every token occurrence, or only whole-word matches
T = TypeVar("T")


# --------------------------------------------------------------------------------------------------
# Encoding queries as the service's JSON


def _ids(value: Any, where: str) -> list[int]:
    try:
        ids = [operator.index(x) for x in value]
    except TypeError:
        raise TypeError(f"{where}: a phrase is text or a sequence of int token ids") from None
    if any(isinstance(x, bool) for x in value):
        raise TypeError(f"{where}: token ids must be integers, not booleans")
    return ids


def _json_default(value: Any) -> Any:
    """orjson fallback: numpy integers and arrays (token ids often are) as plain ints and lists."""
    if hasattr(value, "tolist") and hasattr(value, "dtype"):
        return value.tolist()
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{type(value).__name__} is not JSON serializable") from None


def _is_ids(value: Any) -> bool:
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        return False
    try:
        return all(not isinstance(x, bool) and operator.index(x) is not None for x in value)
    except TypeError:
        return False


def encode_phrase(value: Any, where: str = "phrase") -> Any:
    """Text stays text; token ids become ``{"ids": [...]}``."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and set(value) == {"ids"}:
        return {"ids": _ids(value["ids"], where)}
    if _is_ids(value):
        return {"ids": _ids(value, where)}
    raise TypeError(f"{where}: a phrase is text or a sequence of int token ids, not {type(value).__name__}")


def encode_phrases(values: Sequence[Any], where: str = "phrases") -> list[Any]:
    """A batch of phrases; plain ``str`` and ``list[int]`` take a fast path (no copies)."""
    out: list[Any] = []
    append = out.append
    for i, value in enumerate(_listed(values, where)):
        kind = type(value)
        if kind is str:
            append(value)
        elif kind is list and value and type(value[0]) is int:
            append({"ids": value})  # the server checks every id; numpy ints are converted when sending
        else:
            append(encode_phrase(value, f"{where}[{i}]"))
    return out


def encode_spec(value: Any, where: str = "phrase") -> Any:
    """A phrase, or an OR of variants (a list of phrases, or ``{"any": [...]}``) as ``{"any": [...]}``."""
    if isinstance(value, Mapping) and set(value) == {"any"}:
        variants = value["any"]
    elif isinstance(value, str) or (isinstance(value, Mapping) and set(value) == {"ids"}) or _is_ids(value):
        return encode_phrase(value, where)
    elif isinstance(value, Sequence) and not isinstance(value, bytes):
        variants = value
    else:
        raise TypeError(
            f"{where}: expected a phrase or a list of phrase variants, not {type(value).__name__}"
        )
    return {"any": [encode_phrase(v, f"{where}[{j}]") for j, v in enumerate(variants)]}


def _decode_phrase(value: Any) -> Any:
    """Service JSON -> engine phrase (LocalClient)."""
    if isinstance(value, Mapping):
        if "ids" in value:
            return value["ids"]
        return {"any": [_decode_phrase(v) for v in value["any"]]}
    return value


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------------------------------
# Result cache


class ResultCache:
    """Thread-safe sqlite3 store of JSON results keyed by (index identity, kind, query)."""

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
        found: dict[str, Any] = {}
        distinct = list(dict.fromkeys(keys))
        with self._lock:
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


# --------------------------------------------------------------------------------------------------
# The query logic, written once as generators of requests


@dataclasses.dataclass(frozen=True)
class _Call:
    method: str
    path: str
    body: Any = None
    params: dict[str, Any] | None = None


_Gen = Generator[_Call, Any, T]


class _Core:
    """State and query logic shared by the three clients (no I/O here)."""

    def __init__(
        self, index: str | None, batch_size: int | None, cache_dir: str | os.PathLike[str] | None
    ) -> None:
        if batch_size is not None and batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._index = index
        self._batch_size = batch_size
        self._server_batch: int | None = None
        self._identities: dict[str, str] = {}
        self._cache = ResultCache(cache_dir) if cache_dir is not None else None

    # --- small generators -------------------------------------------------------------------------

    def _g_health(self) -> _Gen[dict[str, Any]]:
        data = yield _Call("GET", "/v1/health")
        if not isinstance(data, dict) or not isinstance(data.get("limits"), dict):
            raise ProtocolError("GET /v1/health: no limits in the answer")
        return data

    def _g_chunk_size(self) -> _Gen[int]:
        if self._server_batch is None:
            health = yield from self._g_health()
            try:
                self._server_batch = max(1, int(health["limits"]["max_batch"]))
            except (KeyError, TypeError, ValueError) as err:
                raise ProtocolError("GET /v1/health: limits.max_batch missing") from err
        if self._batch_size is None:
            return self._server_batch
        return min(self._batch_size, self._server_batch)

    def _g_index_list(self) -> _Gen[list[dict[str, Any]]]:
        data = yield _Call("GET", "/v1/indexes")
        if not isinstance(data, dict) or not isinstance(data.get("indexes"), list):
            raise ProtocolError("GET /v1/indexes: no index list in the answer")
        for info in data["indexes"]:
            self._identities[info["name"]] = info["identity"]
        return data["indexes"]

    def _g_index(self, index: str | None) -> _Gen[str]:
        if index is not None:
            return index
        if self._index is not None:
            return self._index
        health = yield from self._g_health()
        names = health.get("indexes", [])
        if len(names) != 1:
            raise ValueError(f"the server serves {len(names)} indexes ({', '.join(names)}); pass index=")
        self._index = names[0]
        return self._index

    def _g_identity(self, index: str) -> _Gen[str]:
        if index not in self._identities:
            yield from self._g_index_list()
        if index not in self._identities:
            raise UnknownIndexError(f"no index named {index!r}", status=404)
        return self._identities[index]

    # --- the batched query driver ------------------------------------------------------------------

    def _g_batched(
        self, path: str, index: str | None, items: list[Any], options: dict[str, Any], cacheable: bool = True
    ) -> _Gen[list[Any]]:
        """POST ``items`` in chunks; results in order. Cached results are reused and new ones stored."""
        name = yield from self._g_index(index)
        results: list[Any] = [None] * len(items)
        todo = list(range(len(items)))
        keys: list[str] = []
        identity = kind = ""
        if self._cache is not None and cacheable and items:
            identity = yield from self._g_identity(name)
            kind = path + canonical(options)
            keys = [canonical(item) for item in items]
            hits = self._cache.get_many(identity, kind, keys)
            if hits:
                todo = []
                for i, key in enumerate(keys):
                    if key in hits:
                        results[i] = hits[key]
                    else:
                        todo.append(i)
        if not todo:
            return results
        size = yield from self._g_chunk_size()
        pos = 0
        while pos < len(todo):
            chunk = todo[pos : pos + size]
            body = {"index": name, "queries": [items[i] for i in chunk], **options}
            try:
                data = yield _Call("POST", path, body)
            except PayloadTooLargeError:
                if len(chunk) == 1:
                    raise
                size = max(1, len(chunk) // 2)  # the body was over the server's byte limit: halve and retry
                continue
            got = data.get("results") if isinstance(data, dict) else None
            if not isinstance(got, list) or len(got) != len(chunk):
                raise ProtocolError(f"POST {path}: expected {len(chunk)} results")
            for i, value in zip(chunk, got, strict=True):
                results[i] = value
            if self._cache is not None and cacheable:
                fresh = [(keys[i], value) for i, value in zip(chunk, got, strict=True)]
                self._cache.put_many(identity, kind, fresh)
            pos += len(chunk)
        return results

    # --- one generator per query type ----------------------------------------------------------------

    @staticmethod
    def _space(space: str | None) -> dict[str, Any]:
        return {} if space is None else {"space": space}

    @staticmethod
    def _boundary(boundary: str) -> dict[str, Any]:
        """The boundary option; the server's default "token" is omitted, so that results cached before the
        option existed stay valid (the cache key holds the options: word results never mix with them)."""
        if boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {', '.join(BOUNDARIES)}, not {boundary!r}")
        return {} if boundary == "token" else {"boundary": boundary}

    def _g_count(
        self, phrases: Sequence[Phrase], index: str | None, space: str | None, boundary: str
    ) -> _Gen[list[int]]:
        items = encode_phrases(phrases)
        options = {**self._space(space), **self._boundary(boundary)}
        return (yield from self._g_batched("/v1/count", index, items, options))

    def _g_doc_freq(
        self, phrases: Sequence[PhraseSpec], index: str | None, space: str | None, boundary: str
    ) -> _Gen[list[int]]:
        items = [encode_spec(p, f"phrases[{i}]") for i, p in enumerate(_listed(phrases, "phrases"))]
        options = {**self._space(space), **self._boundary(boundary)}
        return (yield from self._g_batched("/v1/doc_freq", index, items, options))

    @staticmethod
    def _conjunctions(queries: Sequence[Sequence[PhraseSpec]]) -> list[list[Any]]:
        out = []
        for q, query in enumerate(_listed(queries, "queries")):
            out.append(
                [encode_spec(p, f"queries[{q}][{j}]") for j, p in enumerate(_listed(query, f"queries[{q}]"))]
            )
        return out

    def _g_cooccurrence(
        self,
        queries: Sequence[Sequence[PhraseSpec]],
        index: str | None,
        space: str | None,
        unit: str,
        boundary: str,
    ) -> _Gen[list[int]]:
        items = self._conjunctions(queries)
        options = {**self._space(space), **self._boundary(boundary)}
        if unit != "documents":  # the server's default; omitted so that cached document counts stay valid
            options["unit"] = unit
        return (yield from self._g_batched("/v1/cooccurrence", index, items, options))

    def _g_windowed(
        self, queries: Sequence[Sequence[PhraseSpec]], window: int, index: str | None, space: str | None
    ) -> _Gen[list[int]]:
        items = self._conjunctions(queries)
        options = {"window": operator.index(window), **self._space(space)}
        return (yield from self._g_batched("/v1/cooccurrence/windowed", index, items, options))

    def _g_ntd(
        self, prompts: Sequence[Phrase], top_k: int | None, index: str | None, space: str | None
    ) -> _Gen[list[NextTokenDistribution]]:
        items = [
            p if isinstance(p, str) else {"ids": _ids(p, f"prompts[{i}]")}
            for i, p in enumerate(_listed(prompts, "prompts"))
        ]
        options = {"top_k": top_k, **self._space(space)}
        raw = yield from self._g_batched("/v1/ntd", index, items, options)
        return [_parse(NextTokenDistribution, r) for r in raw]

    def _g_prob(
        self, items: Sequence[tuple[Phrase, int]], index: str | None, space: str | None
    ) -> _Gen[list[ProbResult]]:
        encoded = []
        for i, item in enumerate(_listed(items, "items")):
            prompt, token = _pair(item, i)
            encoded.append(
                {
                    "prompt": prompt if isinstance(prompt, str) else {"ids": _ids(prompt, f"items[{i}][0]")},
                    "token_id": operator.index(token),
                }
            )
        raw = yield from self._g_batched("/v1/prob", index, encoded, self._space(space))
        return [_parse(ProbResult, r) for r in raw]

    def _g_infgram(
        self, items: Sequence[tuple[Phrase, Phrase]], index: str | None, space: str | None
    ) -> _Gen[list[InfgramResult]]:
        encoded = []
        for i, item in enumerate(_listed(items, "items")):
            context, continuation = _pair(item, i)
            encoded.append(
                {
                    "context": context
                    if isinstance(context, str)
                    else {"ids": _ids(context, f"items[{i}][0]")},
                    "continuation": encode_phrase(continuation, f"items[{i}][1]"),
                }
            )
        raw = yield from self._g_batched("/v1/infgram_prob", index, encoded, self._space(space))
        return [_parse(InfgramResult, r) for r in raw]

    def _g_documents(
        self,
        phrases: Sequence[PhraseSpec],
        offset: int,
        limit: int,
        sample: bool,
        seed: int | None,
        window: int,
        index: str | None,
        space: str | None,
        boundary: str,
    ) -> _Gen[DocumentsResult]:
        query = [encode_spec(p, f"phrases[{j}]") for j, p in enumerate(_listed(phrases, "phrases"))]
        options = {"offset": offset, "limit": limit, "sample": sample, "seed": seed, "window": window}
        options.update(self._space(space))
        options.update(self._boundary(boundary))
        cacheable = not sample or seed is not None
        raw = yield from self._g_batched("/v1/documents", index, [query], options, cacheable)
        return _parse(DocumentsResult, raw[0])

    def _g_document(self, doc_id: int, max_tokens: int | None, index: str | None) -> _Gen[Document]:
        name = yield from self._g_index(index)
        params = {} if max_tokens is None else {"max_tokens": operator.index(max_tokens)}
        path = f"/v1/indexes/{quote(name, safe='')}/documents/{operator.index(doc_id)}"
        data = yield _Call("GET", path, None, params)
        return _parse(Document, data)

    def _g_tokenize(
        self, texts: Sequence[str], index: str | None, space: str | None
    ) -> _Gen[list[Tokenized]]:
        items = list(_listed(texts, "texts"))
        for i, text in enumerate(items):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}]: expected str, not {type(text).__name__}")
        raw = yield from self._g_batched("/v1/tokenize", index, items, self._space(space), cacheable=False)
        return [_parse(Tokenized, r) for r in raw]

    def _g_trace(
        self, texts: Sequence[Phrase], options: dict[str, Any], index: str | None
    ) -> _Gen[list[TraceResult]]:
        items = [
            text if isinstance(text, str) else {"ids": _ids(text, f"texts[{i}]")}
            for i, text in enumerate(_listed(texts, "texts"))
        ]
        body = {k: v for k, v in options.items() if v is not None or k in ("max_count", "seed")}
        raw = yield from self._g_batched("/v1/trace", index, items, body, cacheable=False)
        return [_parse(TraceResult, r) for r in raw]

    def _g_indexes(self) -> _Gen[list[IndexInfo]]:
        raw = yield from self._g_index_list()
        return [_parse(IndexInfo, r) for r in raw]

    def _g_health_model(self) -> _Gen[Health]:
        data = yield from self._g_health()
        return _parse(Health, data)


def _listed(value: Any, where: str) -> Sequence[Any]:
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__len__"):
        raise TypeError(f"{where}: expected a list (a batch), got {type(value).__name__}")
    return value


def _pair(item: Any, i: int) -> tuple[Any, Any]:
    if isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) != 2:
        raise TypeError(f"items[{i}]: expected a pair")
    return item[0], item[1]


M = TypeVar("M")


def _parse(model: type[M], data: Any) -> M:
    from pydantic import ValidationError

    try:
        return model.model_validate(data)  # type: ignore[attr-defined]
    except ValidationError as err:
        raise ProtocolError(f"unexpected {model.__name__} in the answer: {err}") from err


# --------------------------------------------------------------------------------------------------
# HTTP transport policy shared by Client and AsyncClient

_SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
_RETRYABLE = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


class _HttpBase(_Core):
    def __init__(
        self,
        base_url: str,
        index: str | None,
        api_key: str | None,
        timeout: float | None,
        retries: int,
        backoff: float,
        max_backoff: float,
        batch_size: int | None,
        cache_dir: str | os.PathLike[str] | None,
    ) -> None:
        super().__init__(index, batch_size, cache_dir)
        if retries < 0 or backoff < 0 or max_backoff < 0:
            raise ValueError("retries, backoff and max_backoff must be >= 0")
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._headers = {"Accept": "application/json"}
        if api_key is not None:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = httpx.Timeout(timeout)

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Exponential backoff with jitter; a server's Retry-After (seconds) is honoured, capped."""
        if response is not None:
            retry_after = response.headers.get("retry-after", "")
            if retry_after.isdigit():
                return min(float(retry_after), self.max_backoff)
        return min(self.backoff * (2**attempt), self.max_backoff) * (0.5 + random.random() / 2)

    @staticmethod
    def _encode(call: _Call) -> bytes | None:
        if call.body is None:
            return None
        return orjson.dumps(call.body, default=_json_default)

    def _result(self, call: _Call, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise error_from_response(
                response.status_code, response.headers.get("content-type", ""), response.content
            )
        try:
            return orjson.loads(response.content)
        except ValueError as err:
            raise ProtocolError(f"{call.method} {call.path}: the answer is not JSON") from err

    def _retryable(self, attempt: int, err: Exception | None, response: httpx.Response | None) -> bool:
        if attempt >= self.retries:
            return False
        if response is not None:
            return response.status_code == 503
        return isinstance(err, _RETRYABLE)

    def _transport_error(self, call: _Call, err: httpx.HTTPError) -> TaskgramError:
        return error_from_transport(call.method, f"{self.base_url}{call.path}", err)


class Client(_HttpBase):
    """Synchronous client of a taskgram server (thread-safe: httpx's connection pool is)."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        index: str | None = None,
        api_key: str | None = None,
        timeout: float | None = 120.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 10.0,
        batch_size: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url, index, api_key, timeout, retries, backoff, max_backoff, batch_size, cache_dir
        )
        if transport is None:  # TCP_NODELAY: httpx writes headers and body separately (Nagle would delay)
            transport = httpx.HTTPTransport(socket_options=_SOCKET_OPTIONS)
        self._http = httpx.Client(
            base_url=self.base_url, headers=self._headers, timeout=self._timeout, transport=transport
        )

    def _send(self, call: _Call) -> Any:
        content = self._encode(call)
        headers = {"Content-Type": "application/json"} if content is not None else None
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = self._http.request(
                    call.method, call.path, content=content, params=call.params, headers=headers
                )
            except httpx.HTTPError as err:
                if not self._retryable(attempt, err, None):
                    raise self._transport_error(call, err) from err
            else:
                if not self._retryable(attempt, None, response):
                    return self._result(call, response)
            time.sleep(self._delay(attempt, response))
            attempt += 1

    def _run(self, gen: _Gen[T]) -> T:
        try:
            call = next(gen)
            while True:
                try:
                    value = self._send(call)
                except TaskgramError as err:
                    call = gen.throw(err)
                else:
                    call = gen.send(value)
        except StopIteration as stop:
            return stop.value

    def close(self) -> None:
        self._http.close()
        if self._cache is not None:
            self._cache.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- public API (twin of AsyncClient and LocalClient) ---------------------------------------------

    def health(self) -> Health:
        """Server status, served index names and the server's limits."""
        return self._run(self._g_health_model())

    def indexes(self) -> list[IndexInfo]:
        """Served indexes: name, identity (manifest hash) and manifest summary."""
        return self._run(self._g_indexes())

    def count(
        self,
        phrases: Sequence[Phrase],
        *,
        index: str | None = None,
        space: str | None = None,
        boundary: str = "token",
    ) -> list[int]:
        """Exact occurrences of each phrase; ``boundary="word"``: only those that neither start nor end
        inside a word."""
        return self._run(self._g_count(phrases, index, space, boundary))

    def doc_freq(
        self,
        phrases: Sequence[PhraseSpec],
        *,
        index: str | None = None,
        space: str | None = None,
        boundary: str = "token",
    ) -> list[int]:
        """Number of documents containing each phrase spec (OR variants as a union)."""
        return self._run(self._g_doc_freq(phrases, index, space, boundary))

    def cooccurrence(
        self,
        queries: Sequence[Sequence[PhraseSpec]],
        *,
        index: str | None = None,
        space: str | None = None,
        unit: str = "documents",
        boundary: str = "token",
    ) -> list[int]:
        """Co-occurrence of all phrase specs of each query (2 or more): with ``unit="documents"`` the
        number of documents containing them all; with ``unit="occurrences"`` the number of occurrences of
        the first phrase spec in documents containing all the others."""
        return self._run(self._g_cooccurrence(queries, index, space, unit, boundary))

    def windowed_cooccurrence(
        self,
        queries: Sequence[Sequence[PhraseSpec]],
        window: int = 100,
        *,
        index: str | None = None,
        space: str | None = None,
    ) -> list[int]:
        """infini-gram's CNF AND, exact: anchors with every other clause within ``window`` tokens."""
        return self._run(self._g_windowed(queries, window, index, space))

    def ntd(
        self,
        prompts: Sequence[Phrase],
        *,
        top_k: int | None = None,
        index: str | None = None,
        space: str | None = None,
    ) -> list[NextTokenDistribution]:
        """Exact next-token distribution after each prompt."""
        return self._run(self._g_ntd(prompts, top_k, index, space))

    def prob(
        self, items: Sequence[tuple[Phrase, int]], *, index: str | None = None, space: str | None = None
    ) -> list[ProbResult]:
        """P(token | prompt) for each (prompt, token id)."""
        return self._run(self._g_prob(items, index, space))

    def infgram_prob(
        self, items: Sequence[tuple[Phrase, Phrase]], *, index: str | None = None, space: str | None = None
    ) -> list[InfgramResult]:
        """∞-gram probability of each token of each (context, continuation)."""
        return self._run(self._g_infgram(items, index, space))

    def documents(
        self,
        phrases: Sequence[PhraseSpec],
        *,
        offset: int = 0,
        limit: int = 10,
        sample: bool = False,
        seed: int | None = None,
        window: int = 100,
        index: str | None = None,
        space: str | None = None,
        boundary: str = "token",
    ) -> DocumentsResult:
        """Documents containing all phrase specs: exact total and one page (or a seeded sample)."""
        return self._run(
            self._g_documents(phrases, offset, limit, sample, seed, window, index, space, boundary)
        )

    def trace(
        self,
        texts: Sequence[Phrase],
        *,
        min_len: int = 1,
        max_count: int | None = 10,
        boundary: str = "word",
        rank: str = "length",
        max_spans: int | None = None,
        docs_per_span: int = 10,
        context: int = 100,
        seed: int | None = 0,
        index: str | None = None,
        space: str | None = None,
    ) -> list[TraceResult]:
        """Maximal spans of each text (or token-id list) that occur verbatim in the corpus: exact counts,
        sampled documents, span density (OLMoTrace's method, exact across shards).

        Examples
        --------
        >>> [r.spans[0].text for r in client.trace(["the quick brown fox"])]  # doctest: +SKIP
        ['the quick brown fox']
        """
        options = {
            "min_len": min_len,
            "max_count": max_count,
            "boundary": boundary,
            "rank": rank,
            "max_spans": max_spans,
            "docs_per_span": docs_per_span,
            "context": context,
            "seed": seed,
            "space": space,
        }
        return self._run(self._g_trace(texts, options, index))

    def document(self, doc_id: int, *, max_tokens: int | None = None, index: str | None = None) -> Document:
        """One document by global id."""
        return self._run(self._g_document(doc_id, max_tokens, index))

    def tokenize(
        self, texts: Sequence[str], *, index: str | None = None, space: str | None = None
    ) -> list[Tokenized]:
        """Token ids of each text under the index's tokenizer and space policy."""
        return self._run(self._g_tokenize(texts, index, space))


class AsyncClient(_HttpBase):
    """asyncio client of a taskgram server; the same methods as :class:`Client`, awaitable."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        index: str | None = None,
        api_key: str | None = None,
        timeout: float | None = 120.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 10.0,
        batch_size: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url, index, api_key, timeout, retries, backoff, max_backoff, batch_size, cache_dir
        )
        if transport is None:
            transport = httpx.AsyncHTTPTransport(socket_options=_SOCKET_OPTIONS)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self._headers, timeout=self._timeout, transport=transport
        )

    async def _send(self, call: _Call) -> Any:
        content = self._encode(call)
        headers = {"Content-Type": "application/json"} if content is not None else None
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = await self._http.request(
                    call.method, call.path, content=content, params=call.params, headers=headers
                )
            except httpx.HTTPError as err:
                if not self._retryable(attempt, err, None):
                    raise self._transport_error(call, err) from err
            else:
                if not self._retryable(attempt, None, response):
                    return self._result(call, response)
            await asyncio.sleep(self._delay(attempt, response))
            attempt += 1

    async def _run(self, gen: _Gen[T]) -> T:
        try:
            call = next(gen)
            while True:
                try:
                    value = await self._send(call)
                except TaskgramError as err:
                    call = gen.throw(err)
                else:
                    call = gen.send(value)
        except StopIteration as stop:
            return stop.value

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._cache is not None:
            self._cache.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- public API (twin of Client) ------------------------------------------------------------------

    async def health(self) -> Health:
        """Server status, served index names and the server's limits."""
        return await self._run(self._g_health_model())

    async def indexes(self) -> list[IndexInfo]:
        """Served indexes: name, identity (manifest hash) and manifest summary."""
        return await self._run(self._g_indexes())

    async def count(
        self,
        phrases: Sequence[Phrase],
        *,
        index: str | None = None,
        space: str | None = None,
        boundary: str = "token",
    ) -> list[int]:
        """Exact occurrences of each phrase; ``boundary="word"``: only those that neither start nor end
        inside a word."""
        return await self._run(self._g_count(phrases, index, space, boundary))

    async def doc_freq(
        self,
        phrases: Sequence[PhraseSpec],
        *,
        index: str | None = None,
        space: str | None = None,
        boundary: str = "token",
    ) -> list[int]:
        """Number of documents containing each phrase spec (OR variants as a union)."""
        return await self._run(self._g_doc_freq(phrases, index, space, boundary))

    async def cooccurrence(
        self,
        queries: Sequence[Sequence[PhraseSpec]],
        *,
        index: str | None = None,
        space: str | None = None,
        unit: str = "documents",
        boundary: str = "token",
    ) -> list[int]:
        """Co-occurrence of all phrase specs of each query (2 or more): with ``unit="documents"`` the
        number of documents containing them all; with ``unit="occurrences"`` the number of occurrences of
        the first phrase spec in documents containing all the others."""
        return await self._run(self._g_cooccurrence(queries, index, space, unit, boundary))

    async def windowed_cooccurrence(
        self,
        queries: Sequence[Sequence[PhraseSpec]],
        window: int = 100,
        *,
        index: str | None = None,
        space: str | None = None,
    ) -> list[int]:
        """infini-gram's CNF AND, exact: anchors with every other clause within ``window`` tokens."""
        return await self._run(self._g_windowed(queries, window, index, space))

    async def ntd(
        self,
        prompts: Sequence[Phrase],
        *,
        top_k: int | None = None,
        index: str | None = None,
        space: str | None = None,
    ) -> list[NextTokenDistribution]:
        """Exact next-token distribution after each prompt."""
        return await self._run(self._g_ntd(prompts, top_k, index, space))

    async def prob(
        self, items: Sequence[tuple[Phrase, int]], *, index: str | None = None, space: str | None = None
    ) -> list[ProbResult]:
        """P(token | prompt) for each (prompt, token id)."""
        return await self._run(self._g_prob(items, index, space))

    async def infgram_prob(
        self, items: Sequence[tuple[Phrase, Phrase]], *, index: str | None = None, space: str | None = None
    ) -> list[InfgramResult]:
        """∞-gram probability of each token of each (context, continuation)."""
        return await self._run(self._g_infgram(items, index, space))

    async def documents(
        self,
        phrases: Sequence[PhraseSpec],
        *,
        offset: int = 0,
        limit: int = 10,
        sample: bool = False,
        seed: int | None = None,
        window: int = 100,
        index: str | None = None,
        space: str | None = None,
        boundary: str = "token",
    ) -> DocumentsResult:
        """Documents containing all phrase specs: exact total and one page (or a seeded sample)."""
        return await self._run(
            self._g_documents(phrases, offset, limit, sample, seed, window, index, space, boundary)
        )

    async def trace(
        self,
        texts: Sequence[Phrase],
        *,
        min_len: int = 1,
        max_count: int | None = 10,
        boundary: str = "word",
        rank: str = "length",
        max_spans: int | None = None,
        docs_per_span: int = 10,
        context: int = 100,
        seed: int | None = 0,
        index: str | None = None,
        space: str | None = None,
    ) -> list[TraceResult]:
        """Maximal spans of each text (or token-id list) that occur verbatim in the corpus: exact counts,
        sampled documents, span density (OLMoTrace's method, exact across shards).

        Examples
        --------
        >>> [r.spans[0].text for r in await client.trace(["the quick brown fox"])]  # doctest: +SKIP
        ['the quick brown fox']
        """
        options = {
            "min_len": min_len,
            "max_count": max_count,
            "boundary": boundary,
            "rank": rank,
            "max_spans": max_spans,
            "docs_per_span": docs_per_span,
            "context": context,
            "seed": seed,
            "space": space,
        }
        return await self._run(self._g_trace(texts, options, index))

    async def document(
        self, doc_id: int, *, max_tokens: int | None = None, index: str | None = None
    ) -> Document:
        """One document by global id."""
        return await self._run(self._g_document(doc_id, max_tokens, index))

    async def tokenize(
        self, texts: Sequence[str], *, index: str | None = None, space: str | None = None
    ) -> list[Tokenized]:
        """Token ids of each text under the index's tokenizer and space policy."""
        return await self._run(self._g_tokenize(texts, index, space))


# --------------------------------------------------------------------------------------------------
# In-process


class LocalClient(Client):
    """The same methods as :class:`Client`, answered by the engine in-process on an index directory
    (no server, no HTTP, no chunking). ``timeout`` becomes the engine deadline of each call."""

    def __init__(
        self,
        index_dir: str | os.PathLike[str],
        *,
        name: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        timeout: float | None = None,
        verify_checksums: bool = False,
        space: str | None = None,
        max_occurrences: int | None = None,
    ) -> None:
        from service.deps import index_identity
        from service.engine import Index

        _Core.__init__(self, None, None, cache_dir)
        options: dict[str, Any] = {"max_occurrences": max_occurrences}
        if space is not None:
            options["space"] = space
        self.engine = Index.open(index_dir, name=name, verify_checksums=verify_checksums, **options)
        self.name = self.engine.name
        self._index = self.name
        self._identities = {self.name: index_identity(self.engine)}
        self._server_batch = 1 << 62
        self._deadline_s = timeout
        self.base_url = f"local:{Path(index_dir)}"

    def _send(self, call: _Call) -> Any:
        from service.engine import BudgetExceeded, EngineError, IndexUnavailable, QueryError

        try:
            return self._answer(call)
        except QueryError as err:
            raise InvalidQueryError(str(err), status=422, title="Invalid query") from err
        except BudgetExceeded as err:
            raise BudgetExceededError(str(err), status=503, title="Query budget exceeded") from err
        except IndexUnavailable as err:
            raise UnknownIndexError(str(err), status=404, title="Unknown index") from err
        except EngineError as err:
            raise APIError(str(err), status=500, title="Engine error") from err

    def _answer(self, call: _Call) -> Any:
        from taskgram import __version__

        engine = self.engine
        if call.method == "GET":
            if call.path == "/v1/health":
                return {
                    "status": "ok",
                    "version": __version__,
                    "indexes": [self.name],
                    "limits": {"max_batch": 1 << 62},
                }
            if call.path == "/v1/indexes":
                return {"indexes": [{**engine.summary(), "identity": self._identities[self.name]}]}
            from urllib.parse import unquote

            doc_id = int(call.path.rsplit("/", 1)[1])
            self._check_name(unquote(call.path.split("/")[3]))
            params = call.params or {}
            return dataclasses.asdict(engine.document(doc_id, max_tokens=params.get("max_tokens")))
        body = call.body
        self._check_name(body["index"])
        queries = body["queries"]
        space = body.get("space")
        deadline = None if self._deadline_s is None else time.monotonic() + self._deadline_s
        kw: dict[str, Any] = {"deadline": deadline, "space": space}
        boundary = body.get("boundary", "token")
        path = call.path
        if path == "/v1/count":
            results: Any = engine.count([_decode_phrase(q) for q in queries], boundary=boundary, **kw)
        elif path == "/v1/doc_freq":
            results = engine.doc_freq([_decode_phrase(q) for q in queries], boundary=boundary, **kw)
        elif path == "/v1/cooccurrence":
            decoded = [[_decode_phrase(p) for p in q] for q in queries]
            unit = body.get("unit", "documents")
            results = engine.cooccurrence(decoded, unit=unit, boundary=boundary, **kw)
        elif path == "/v1/cooccurrence/windowed":
            decoded = [[_decode_phrase(p) for p in q] for q in queries]
            results = engine.windowed_cooccurrence(decoded, body["window"], **kw)
        elif path == "/v1/ntd":
            distributions = engine.next_token_distribution(
                [_decode_phrase(q) for q in queries], top_k=body["top_k"], **kw
            )
            results = [dataclasses.asdict(r) for r in distributions]
        elif path == "/v1/prob":
            found = engine.prob([(_decode_phrase(q["prompt"]), q["token_id"]) for q in queries], **kw)
            results = [dataclasses.asdict(r) for r in found]
        elif path == "/v1/infgram_prob":
            pairs = [(_decode_phrase(q["context"]), _decode_phrase(q["continuation"])) for q in queries]
            results = [dataclasses.asdict(r) for r in engine.infgram_prob(pairs, **kw)]
        elif path == "/v1/documents":
            options = {k: body[k] for k in ("offset", "limit", "sample", "seed", "window")}
            results = [
                dataclasses.asdict(
                    engine.documents([_decode_phrase(p) for p in q], boundary=boundary, **options, **kw)
                )
                for q in queries
            ]
        elif path == "/v1/trace":
            names = (
                "min_len",
                "max_count",
                "boundary",
                "rank",
                "max_spans",
                "docs_per_span",
                "context",
                "seed",
            )
            options = {k: body[k] for k in names if k in body}
            found = engine.trace(
                [_decode_phrase(q) for q in queries], **options, space=space or "auto", deadline=deadline
            )
            results = [dataclasses.asdict(r) for r in found]
        elif path == "/v1/tokenize":
            results = []
            for text in queries:
                ids = engine.tokenize(text, space=space)
                results.append({"token_ids": ids, "tokens": engine.id_to_token(ids) if ids else []})
        else:  # pragma: no cover - every generator above targets one of these paths
            raise ProtocolError(f"LocalClient: no handler for {path}")
        return {"index": self.name, "results": results}

    def _check_name(self, name: str) -> None:
        if name != self.name:
            raise UnknownIndexError(f"this LocalClient serves index {self.name!r}, not {name!r}", status=404)

    def close(self) -> None:
        self.engine.close()
        if self._cache is not None:
            self._cache.close()

    def __enter__(self) -> LocalClient:
        return self
