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
``batch_size=``, halving a batch the server refuses as too large, the result cache) is written once, with
no I/O, as a generator of :class:`~clients.transports.Operation` values (one API request each). A
transport carries them out (:mod:`clients.transports`): ``Client`` and ``AsyncClient`` send them with
httpx (retrying connection errors and 503 answers with exponential backoff, honouring ``Retry-After``);
``LocalClient`` is a ``Client`` whose transport answers them with the engine in this process
(:mod:`clients.local`), with the same JSON and the same exceptions.

The optional cache (``cache_dir=``, :class:`clients.cache.ResultCache`) is an sqlite3 file keyed by the
index identity (sha256 of its manifest, which lists every file's checksum) + query kind and options + the
query's canonical JSON; reruns of the same queries against the same index cost no server work.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Generator, Mapping, Sequence
from typing import Any, TypeVar

import httpx

from clients.cache import ResultCache, canonical
from clients.errors import (
    PayloadTooLargeError,
    ProtocolError,
    TaskgramError,
    UnknownIndexError,
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
from clients.transports import (
    AsyncBaseTransport,
    AsyncHTTPTransport,
    BaseTransport,
    HTTPTransport,
    Operation,
)
from taskgram.api import BOUNDARIES

__all__ = ["AsyncClient", "Client", "LocalClient", "Phrase", "PhraseSpec", "ResultCache"]

Phrase = str | Sequence[int]
PhraseSpec = Phrase | Sequence[Phrase] | Mapping[str, Sequence[Phrase]]

DEFAULT_URL = "http://127.0.0.1:8000"
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


# --------------------------------------------------------------------------------------------------
# The query logic, written once as generators of requests


_Gen = Generator[Operation, Any, T]


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

    @property
    def cache(self) -> ResultCache | None:
        """The result cache (``cache_dir=``), or None."""
        return self._cache

    # --- small generators -------------------------------------------------------------------------

    def _g_health(self) -> _Gen[dict[str, Any]]:
        data = yield Operation("GET", "/v1/health")
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
        data = yield Operation("GET", "/v1/indexes")
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
                data = yield Operation("POST", path, body)
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
        data = yield Operation(
            "GET",
            "/v1/indexes/{name}/documents/{doc_id}",
            path_params={"name": name, "doc_id": operator.index(doc_id)},
            params=params,
        )
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


class Client(_Core):
    """Synchronous client of a taskgram server (thread-safe: httpx's connection pool is).

    Every query method takes a batch and returns one result per query, in order; long batches are split
    into requests of the server's ``max_batch``. A failed query raises (:mod:`clients.errors`); it never
    becomes a zero.

    Parameters
    ----------
    base_url : str
        The server, e.g. ``http://127.0.0.1:8000``.
    index : str, optional
        The index every query goes to unless a call names another (default: the server's only index).
    api_key : str, optional
        Sent as ``Authorization: Bearer <key>`` (servers started with API keys require one).
    timeout : float or None
        Seconds to wait for each answer (None: no limit).
    retries : int
        How often a connection failure or a 503 answer (time budget exceeded, server busy) is retried.
    backoff, max_backoff : float
        The first retry waits about ``backoff`` seconds, each next one twice as long, at most
        ``max_backoff`` (a server's ``Retry-After`` is honoured, capped the same way).
    batch_size : int, optional
        Queries per request, at most the server's ``max_batch`` (default: that).
    cache_dir : path, optional
        Keep results in an sqlite3 file there, keyed by the index identity: reruns of the same queries
        against the same index send nothing.
    transport : httpx.BaseTransport or clients.transports.BaseTransport, optional
        An httpx transport for the HTTP requests (e.g. ``httpx.MockTransport`` in tests), or a taskgram
        transport that carries out the operations itself (:class:`clients.local.LocalTransport`: the engine
        in this process); then ``api_key``, ``timeout`` and the retry options are the transport's own.

    Raises
    ------
    ValueError
        ``batch_size`` below 1, or negative ``retries`` / ``backoff``.

    See Also
    --------
    AsyncClient : the same methods for asyncio.
    LocalClient : the same methods, answered by the engine in this process.

    Examples
    --------
    >>> from clients import Client
    >>> with Client(server_url, index="sample") as tg:
    ...     tg.count(["garbage collection", "reference count"])
    ...     tg.cooccurrence([["garbage collection", {"any": ["reference count", "reference counts"]}]])
    [5, 22]
    [2]
    """

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
        transport: httpx.BaseTransport | BaseTransport | None = None,
    ) -> None:
        super().__init__(index, batch_size, cache_dir)
        if isinstance(transport, BaseTransport):
            self._transport: BaseTransport = transport
        else:
            self._transport = HTTPTransport(
                base_url,
                api_key=api_key,
                timeout=timeout,
                retries=retries,
                backoff=backoff,
                max_backoff=max_backoff,
                transport=transport,
            )
        self.base_url: str = getattr(self._transport, "base_url", None) or base_url.rstrip("/")

    @property
    def transport(self) -> BaseTransport:
        """What carries out this client's operations (:mod:`clients.transports`)."""
        return self._transport

    def _run(self, gen: _Gen[T]) -> T:
        handle = self._transport.handle
        try:
            op = next(gen)
            while True:
                try:
                    value = handle(op)
                except TaskgramError as err:
                    op = gen.throw(err)
                else:
                    op = gen.send(value)
        except StopIteration as stop:
            return stop.value

    def close(self) -> None:
        self._transport.close()
        if self._cache is not None:
            self._cache.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- public API (twin of AsyncClient and LocalClient) ---------------------------------------------

    def health(self) -> Health:
        """Server status, served index names and the server's limits (``max_batch``, ...).

        Returns
        -------
        Health
        """
        return self._run(self._g_health_model())

    def indexes(self) -> list[IndexInfo]:
        """Served indexes: name, identity (manifest hash, the cache key) and manifest summary.

        Returns
        -------
        list of IndexInfo
        """
        return self._run(self._g_indexes())

    def count(
        self,
        phrases: Sequence[Phrase],
        *,
        index: str | None = None,
        space: str | None = None,
        boundary: str = "token",
    ) -> list[int]:
        """Exact number of occurrences of each phrase in the index (summed over its shards).

        Parameters
        ----------
        phrases : sequence of str or sequence of int
            Text, or token ids. A long list is sent in batches of the server's ``max_batch``.
        index : str, optional
            The served index to query (default: the client's ``index=``, else the server's only index).
        space : {"auto", "exact", "both"}, optional
            How text becomes tokens: ``auto`` prepends a space unless the text starts with whitespace (the
            phrase as in running text), ``exact`` tokenizes it as given, ``both`` is an OR of the two
            (phrase specs only). Default: the server's policy.
        boundary : {"token", "word"}
            ``token`` counts every match of the tokens; ``word`` only matches that neither start nor end
            inside a word (the text's own word boundaries).

        Returns
        -------
        list of int
            One count per phrase, in order; 0 for a phrase that does not occur.

        Raises
        ------
        InvalidQueryError
            A query is invalid (empty phrase, token id outside the vocabulary, bad option); the message
            names the field, e.g. ``queries[3]``.
        UnknownIndexError
            No index of that name is served.
        BudgetExceededError
            The query needed more time or work than the server allows (after the retries).
        TransportError
            The server could not be reached (after the retries).
        """
        return self._run(self._g_count(phrases, index, space, boundary))

    def doc_freq(
        self,
        phrases: Sequence[PhraseSpec],
        *,
        index: str | None = None,
        space: str | None = None,
        boundary: str = "token",
    ) -> list[int]:
        """Number of distinct documents containing each phrase spec.

        Parameters
        ----------
        phrases : sequence of phrase specs
            A phrase, or an OR of variants (a list of phrases, or ``{"any": [...]}``) counted as a union:
            a document containing two variants counts once.
        index : str, optional
            The served index to query (default: the client's ``index=``, else the server's only index).
        space : {"auto", "exact", "both"}, optional
            How text becomes tokens: ``auto`` prepends a space unless the text starts with whitespace (the
            phrase as in running text), ``exact`` tokenizes it as given, ``both`` is an OR of the two
            (phrase specs only). Default: the server's policy.
        boundary : {"token", "word"}
            ``token`` counts every match of the tokens; ``word`` only matches that neither start nor end
            inside a word (the text's own word boundaries).

        Returns
        -------
        list of int
            One document count per phrase spec, in order.

        Raises
        ------
        InvalidQueryError
            A query is invalid (empty phrase, token id outside the vocabulary, bad option); the message
            names the field, e.g. ``queries[3]``.
        UnknownIndexError
            No index of that name is served.
        BudgetExceededError
            The query needed more time or work than the server allows (after the retries).
        TransportError
            The server could not be reached (after the retries).
        """
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
        """Co-occurrence of all phrase specs of each query, exact (the paper's pair count).

        Parameters
        ----------
        queries : sequence of sequences of phrase specs
            Each query lists 2 or more phrase specs.
        index : str, optional
            The served index to query (default: the client's ``index=``, else the server's only index).
        space : {"auto", "exact", "both"}, optional
            How text becomes tokens: ``auto`` prepends a space unless the text starts with whitespace (the
            phrase as in running text), ``exact`` tokenizes it as given, ``both`` is an OR of the two
            (phrase specs only). Default: the server's policy.
        boundary : {"token", "word"}
            ``token`` counts every match of the tokens; ``word`` only matches that neither start nor end
            inside a word (the text's own word boundaries).
        unit : {"documents", "occurrences"}
            ``documents``: the number of documents containing every phrase spec of the query;
            ``occurrences``: the number of occurrences of the first phrase spec in such documents.

        Returns
        -------
        list of int
            One count per query, in order.

        Raises
        ------
        InvalidQueryError
            A query is invalid (empty phrase, token id outside the vocabulary, bad option); the message
            names the field, e.g. ``queries[3]``.
        UnknownIndexError
            No index of that name is served.
        BudgetExceededError
            The query needed more time or work than the server allows (after the retries).
        TransportError
            The server could not be reached (after the retries).
        """
        return self._run(self._g_cooccurrence(queries, index, space, unit, boundary))

    def windowed_cooccurrence(
        self,
        queries: Sequence[Sequence[PhraseSpec]],
        window: int = 100,
        *,
        index: str | None = None,
        space: str | None = None,
    ) -> list[int]:
        """infini-gram's CNF AND, exact: occurrences of the rarest clause with every other clause nearby.

        Parameters
        ----------
        queries : sequence of sequences of phrase specs
            Each query lists 2 or more clauses (phrase specs; an OR clause is the union of its variants).
        window : int
            A partner of every other clause must start within ``window`` tokens (either side) of the
            anchor, in the same document.
        index : str, optional
            The served index to query (default: the client's ``index=``, else the server's only index).
        space : {"auto", "exact", "both"}, optional
            How text becomes tokens: ``auto`` prepends a space unless the text starts with whitespace (the
            phrase as in running text), ``exact`` tokenizes it as given, ``both`` is an OR of the two
            (phrase specs only). Default: the server's policy.

        Returns
        -------
        list of int
            One count per query: the occurrences of its rarest clause that have such partners.

        Raises
        ------
        InvalidQueryError
            A query is invalid (empty phrase, token id outside the vocabulary, bad option); the message
            names the field, e.g. ``queries[3]``.
        UnknownIndexError
            No index of that name is served.
        BudgetExceededError
            The query needed more time or work than the server allows (after the retries).
        TransportError
            The server could not be reached (after the retries).
        """
        return self._run(self._g_windowed(queries, window, index, space))

    def ntd(
        self,
        prompts: Sequence[Phrase],
        *,
        top_k: int | None = None,
        index: str | None = None,
        space: str | None = None,
    ) -> list[NextTokenDistribution]:
        """Exact distribution of the token that follows each prompt (nothing is sampled).

        Parameters
        ----------
        prompts : sequence of str or sequence of int
            Text or token ids; ``""`` gives the unigram distribution.
        top_k : int, optional
            Keep only the ``top_k`` most frequent next tokens.
        index : str, optional
            The served index to query (default: the client's ``index=``, else the server's only index).
        space : {"auto", "exact", "both"}, optional
            How text becomes tokens: ``auto`` prepends a space unless the text starts with whitespace (the
            phrase as in running text), ``exact`` tokenizes it as given, ``both`` is an OR of the two
            (phrase specs only). Default: the server's policy.

        Returns
        -------
        list of NextTokenDistribution
            One per prompt: ``prompt_count``, ``tokens`` (id, token, count, prob; most frequent first),
            ``n_distinct`` and ``ends_of_document``.

        Raises
        ------
        InvalidQueryError
            A query is invalid (empty phrase, token id outside the vocabulary, bad option); the message
            names the field, e.g. ``queries[3]``.
        UnknownIndexError
            No index of that name is served.
        BudgetExceededError
            The query needed more time or work than the server allows (after the retries).
        TransportError
            The server could not be reached (after the retries).
        """
        return self._run(self._g_ntd(prompts, top_k, index, space))

    def prob(
        self, items: Sequence[tuple[Phrase, int]], *, index: str | None = None, space: str | None = None
    ) -> list[ProbResult]:
        """P(token | prompt) = count(prompt + token) / count(prompt), exactly.

        Parameters
        ----------
        items : sequence of (phrase, int)
            Pairs of a prompt (text or token ids) and the id of the next token.
        index : str, optional
            The served index to query (default: the client's ``index=``, else the server's only index).
        space : {"auto", "exact", "both"}, optional
            How text becomes tokens: ``auto`` prepends a space unless the text starts with whitespace (the
            phrase as in running text), ``exact`` tokenizes it as given, ``both`` is an OR of the two
            (phrase specs only). Default: the server's policy.

        Returns
        -------
        list of ProbResult
            ``prompt_count``, ``cont_count`` and ``prob`` (None when the prompt does not occur).

        Raises
        ------
        InvalidQueryError
            A query is invalid (empty phrase, token id outside the vocabulary, bad option); the message
            names the field, e.g. ``queries[3]``.
        UnknownIndexError
            No index of that name is served.
        BudgetExceededError
            The query needed more time or work than the server allows (after the retries).
        TransportError
            The server could not be reached (after the retries).
        """
        return self._run(self._g_prob(items, index, space))

    def infgram_prob(
        self, items: Sequence[tuple[Phrase, Phrase]], *, index: str | None = None, space: str | None = None
    ) -> list[InfgramResult]:
        """∞-gram probability of each token of a continuation after its context.

        Parameters
        ----------
        items : sequence of (phrase, phrase)
            Pairs of a context and a continuation (text or token ids).
        index : str, optional
            The served index to query (default: the client's ``index=``, else the server's only index).
        space : {"auto", "exact", "both"}, optional
            How text becomes tokens: ``auto`` prepends a space unless the text starts with whitespace (the
            phrase as in running text), ``exact`` tokenizes it as given, ``both`` is an OR of the two
            (phrase specs only). Default: the server's policy.

        Returns
        -------
        list of InfgramResult
            Per token: the longest suffix of the context that occurs, its count and the probability;
            ``log_prob`` sums the natural logs (None when a token has probability 0).

        Raises
        ------
        InvalidQueryError
            A query is invalid (empty phrase, token id outside the vocabulary, bad option); the message
            names the field, e.g. ``queries[3]``.
        UnknownIndexError
            No index of that name is served.
        BudgetExceededError
            The query needed more time or work than the server allows (after the retries).
        TransportError
            The server could not be reached (after the retries).
        """
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
        """The documents that contain every phrase spec: the exact total, and one page or a sample of them.

        Parameters
        ----------
        phrases : sequence of phrase specs
            The phrase specs every returned document contains.
        offset, limit : int
            The page: ``limit`` documents from the ``offset``-th, in doc_id order.
        sample : bool
            A uniform random sample of ``limit`` documents (without replacement) instead of a page.
        seed : int, optional
            Seed of the sample (the same seed gives the same sample).
        window : int
            Snippet tokens on each side of the first match.
        index : str, optional
            The served index to query (default: the client's ``index=``, else the server's only index).
        space : {"auto", "exact", "both"}, optional
            How text becomes tokens: ``auto`` prepends a space unless the text starts with whitespace (the
            phrase as in running text), ``exact`` tokenizes it as given, ``both`` is an OR of the two
            (phrase specs only). Default: the server's policy.
        boundary : {"token", "word"}
            ``token`` counts every match of the tokens; ``word`` only matches that neither start nor end
            inside a word (the text's own word boundaries).

        Returns
        -------
        DocumentsResult
            ``total`` and ``docs`` (doc_id, metadata, snippet text with the spans of the matches).

        Raises
        ------
        InvalidQueryError
            A query is invalid (empty phrase, token id outside the vocabulary, bad option); the message
            names the field, e.g. ``queries[3]``.
        UnknownIndexError
            No index of that name is served.
        BudgetExceededError
            The query needed more time or work than the server allows (after the retries).
        TransportError
            The server could not be reached (after the retries).
        """
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
        """One document by its global id.

        Parameters
        ----------
        doc_id : int
            The document's id (``0 <= doc_id < n_docs``).
        max_tokens : int, optional
            Return only its first ``max_tokens`` tokens (``truncated`` says so).
        index : str, optional
            The served index to query (default: the client's ``index=``, else the server's only index).

        Returns
        -------
        Document
            Metadata, token ids and text.

        Raises
        ------
        InvalidQueryError
            A query is invalid (empty phrase, token id outside the vocabulary, bad option); the message
            names the field, e.g. ``queries[3]``.
        UnknownIndexError
            No index of that name is served.
        BudgetExceededError
            The query needed more time or work than the server allows (after the retries).
        TransportError
            The server could not be reached (after the retries).
        DocumentNotFoundError
            ``doc_id`` is outside the index.
        """
        return self._run(self._g_document(doc_id, max_tokens, index))

    def tokenize(
        self, texts: Sequence[str], *, index: str | None = None, space: str | None = None
    ) -> list[Tokenized]:
        """Token ids of each text under the index's tokenizer, normalization and space policy.

        Parameters
        ----------
        texts : sequence of str
        index : str, optional
            The served index to query (default: the client's ``index=``, else the server's only index).
        space : {"auto", "exact", "both"}, optional
            How text becomes tokens: ``auto`` prepends a space unless the text starts with whitespace (the
            phrase as in running text), ``exact`` tokenizes it as given, ``both`` is an OR of the two
            (phrase specs only). Default: the server's policy.

        Returns
        -------
        list of Tokenized
            ``token_ids`` and ``tokens`` of each text.

        Raises
        ------
        InvalidQueryError
            A query is invalid (empty phrase, token id outside the vocabulary, bad option); the message
            names the field, e.g. ``queries[3]``.
        UnknownIndexError
            No index of that name is served.
        BudgetExceededError
            The query needed more time or work than the server allows (after the retries).
        TransportError
            The server could not be reached (after the retries).
        """
        return self._run(self._g_tokenize(texts, index, space))


class AsyncClient(_Core):
    """asyncio client of a taskgram server: the same methods as :class:`Client`, awaitable.

    Parameters
    ----------
    base_url, index, api_key, timeout, retries, backoff, max_backoff, batch_size, cache_dir
        As for :class:`Client`.
    transport : httpx.AsyncBaseTransport or clients.transports.AsyncBaseTransport, optional
        An httpx transport for the requests, or a taskgram transport that carries out the operations.

    Raises
    ------
    ValueError
        ``batch_size`` below 1, or negative ``retries`` / ``backoff``.

    Examples
    --------
    >>> import asyncio
    >>> from clients import AsyncClient
    >>> async def counts():
    ...     async with AsyncClient(server_url, index="sample") as tg:
    ...         phrases = ["garbage collection"]
    ...         return await asyncio.gather(tg.count(phrases), tg.doc_freq(phrases))
    >>> asyncio.run(counts())
    [[5], [4]]
    """

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
        transport: httpx.AsyncBaseTransport | AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(index, batch_size, cache_dir)
        if isinstance(transport, AsyncBaseTransport):
            self._transport: AsyncBaseTransport = transport
        else:
            self._transport = AsyncHTTPTransport(
                base_url,
                api_key=api_key,
                timeout=timeout,
                retries=retries,
                backoff=backoff,
                max_backoff=max_backoff,
                transport=transport,
            )
        self.base_url: str = getattr(self._transport, "base_url", None) or base_url.rstrip("/")

    @property
    def transport(self) -> AsyncBaseTransport:
        """What carries out this client's operations (:mod:`clients.transports`)."""
        return self._transport

    async def _run(self, gen: _Gen[T]) -> T:
        handle = self._transport.handle_async
        try:
            op = next(gen)
            while True:
                try:
                    value = await handle(op)
                except TaskgramError as err:
                    op = gen.throw(err)
                else:
                    op = gen.send(value)
        except StopIteration as stop:
            return stop.value

    async def aclose(self) -> None:
        await self._transport.aclose()
        if self._cache is not None:
            self._cache.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- public API (twin of Client) ------------------------------------------------------------------

    async def health(self) -> Health:
        """Awaitable :meth:`Client.health`: the same parameters, result and exceptions."""
        return await self._run(self._g_health_model())

    async def indexes(self) -> list[IndexInfo]:
        """Awaitable :meth:`Client.indexes`: the same parameters, result and exceptions."""
        return await self._run(self._g_indexes())

    async def count(
        self,
        phrases: Sequence[Phrase],
        *,
        index: str | None = None,
        space: str | None = None,
        boundary: str = "token",
    ) -> list[int]:
        """Awaitable :meth:`Client.count`: the same parameters, result and exceptions."""
        return await self._run(self._g_count(phrases, index, space, boundary))

    async def doc_freq(
        self,
        phrases: Sequence[PhraseSpec],
        *,
        index: str | None = None,
        space: str | None = None,
        boundary: str = "token",
    ) -> list[int]:
        """Awaitable :meth:`Client.doc_freq`: the same parameters, result and exceptions."""
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
        """Awaitable :meth:`Client.cooccurrence`: the same parameters, result and exceptions."""
        return await self._run(self._g_cooccurrence(queries, index, space, unit, boundary))

    async def windowed_cooccurrence(
        self,
        queries: Sequence[Sequence[PhraseSpec]],
        window: int = 100,
        *,
        index: str | None = None,
        space: str | None = None,
    ) -> list[int]:
        """Awaitable :meth:`Client.windowed_cooccurrence`: the same parameters, result and exceptions."""
        return await self._run(self._g_windowed(queries, window, index, space))

    async def ntd(
        self,
        prompts: Sequence[Phrase],
        *,
        top_k: int | None = None,
        index: str | None = None,
        space: str | None = None,
    ) -> list[NextTokenDistribution]:
        """Awaitable :meth:`Client.ntd`: the same parameters, result and exceptions."""
        return await self._run(self._g_ntd(prompts, top_k, index, space))

    async def prob(
        self, items: Sequence[tuple[Phrase, int]], *, index: str | None = None, space: str | None = None
    ) -> list[ProbResult]:
        """Awaitable :meth:`Client.prob`: the same parameters, result and exceptions."""
        return await self._run(self._g_prob(items, index, space))

    async def infgram_prob(
        self, items: Sequence[tuple[Phrase, Phrase]], *, index: str | None = None, space: str | None = None
    ) -> list[InfgramResult]:
        """Awaitable :meth:`Client.infgram_prob`: the same parameters, result and exceptions."""
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
        """Awaitable :meth:`Client.documents`: the same parameters, result and exceptions."""
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
        """Awaitable :meth:`Client.document`: the same parameters, result and exceptions."""
        return await self._run(self._g_document(doc_id, max_tokens, index))

    async def tokenize(
        self, texts: Sequence[str], *, index: str | None = None, space: str | None = None
    ) -> list[Tokenized]:
        """Awaitable :meth:`Client.tokenize`: the same parameters, result and exceptions."""
        return await self._run(self._g_tokenize(texts, index, space))


# --------------------------------------------------------------------------------------------------
# In-process


class LocalClient(Client):
    """The same methods as :class:`Client`, answered by the engine in this process on an index directory
    (no server, no HTTP, no batching limits): a :class:`Client` whose transport is
    :class:`clients.local.LocalTransport`. Answers and exceptions are those of a server.

    Parameters
    ----------
    index_dir : path
        A taskgram index (``taskgram build``).
    name : str, optional
        The index's name (default: the folder's name); queries naming another index fail.
    cache_dir : path, optional
        As for :class:`Client`.
    timeout : float, optional
        The engine deadline of each call in seconds (over it: :class:`~clients.errors.BudgetExceededError`).
    verify_checksums : bool
        Hash every file of the index against its manifest when opening it.
    space : {"auto", "exact", "both"}, optional
        The default space policy of text phrases (default: the index's).
    max_occurrences : int, optional
        The work budget of a document-level or windowed query (occurrences one phrase may touch).

    Attributes
    ----------
    engine : service.engine.Index
        The opened index.
    identity : str
        The index identity, as a server reports it (:meth:`indexer.manifest.Manifest.identity`).

    Raises
    ------
    UnknownIndexError
        The folder is not a readable taskgram index (the message names the file).

    Examples
    --------
    >>> from clients import LocalClient
    >>> with LocalClient(index_dir) as tg:
    ...     tg.count(["garbage collection"])
    ...     tg.ntd(["garbage"], top_k=1)[0].tokens[0].token
    [5]
    'Ġcollector'
    """

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
        from clients.local import LocalTransport

        transport = LocalTransport(
            index_dir,
            name=name,
            timeout=timeout,
            verify_checksums=verify_checksums,
            space=space,
            max_occurrences=max_occurrences,
        )
        super().__init__(transport.base_url, index=transport.name, cache_dir=cache_dir, transport=transport)
        self.engine = transport.engine
        self.name = transport.name
        #: the index identity, as the service reports it (:meth:`indexer.manifest.Manifest.identity`)
        self.identity = transport.identity

    def __enter__(self) -> LocalClient:
        return self
