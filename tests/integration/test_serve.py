"""Build -> serve -> client over real HTTP: uvicorn in a thread on 127.0.0.1 (random port), queried by
Client and AsyncClient, whose answers must equal LocalClient's (the engine in-process)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clients import (
    AsyncClient,
    AuthenticationError,
    Client,
    DocumentNotFoundError,
    InvalidQueryError,
    LocalClient,
    TaskgramError,
    UnknownIndexError,
)
from clients.transports import BaseTransport, HTTPTransport, Operation
from service.settings import Settings
from tests.serving import serve_in_thread as serve

ServeInThread = Callable[..., Any]


@pytest.fixture(scope="module", name="serve_in_thread")
def _serve_in_thread() -> ServeInThread:
    """``with serve_in_thread(settings) as url:`` runs a real uvicorn server for the block."""
    return serve


@pytest.fixture(scope="module")
def server_url(serve_in_thread: ServeInThread, sample_index: Path) -> Iterator[str]:
    settings = Settings(indexes={"sample": sample_index}, access_log=False)
    with serve_in_thread(settings) as url:
        yield url


@pytest.fixture(scope="module")
def local(sample_index: Path) -> Iterator[LocalClient]:
    with LocalClient(sample_index, name="sample") as client:
        yield client


def _every_query(client: Any) -> list[Any]:
    queries = [["the", "function"], ["of", {"any": ["value", "values"]}], [[273], "return"]]
    return [
        client.count(["the", [273, 253], "zebra quantum", "return value"]),
        client.doc_freq(["the", ["Python", " python"]]),
        client.cooccurrence(queries),
        client.cooccurrence(queries, unit="occurrences"),
        client.cooccurrence([["the", "the"], [{"any": ["value", "values"]}, "of"]], unit="occurrences"),
        client.windowed_cooccurrence(queries, 20),
        client.ntd(["of the", ""], top_k=5),
        client.prob([("of", 253), ("zebra", 253)]),
        client.infgram_prob([("one of the", " best way"), ("", " the")]),
        client.documents(["the", "function"], limit=3, window=10),
        client.documents(["the"], limit=2, sample=True, seed=3),
        client.document(5, max_tokens=50),
        client.tokenize(["hello world", " x"]),
        client.trace(["the function returns the value of the first argument", [273, 253]], docs_per_span=2),
        client.trace(
            ["return the value"], boundary="token", max_count=None, rank="unigram_logprob", context=5
        ),
    ]


def test_http_client_equals_local_client(server_url: str, local: LocalClient) -> None:
    with Client(server_url) as client:
        assert client.health().indexes == ["sample"]
        assert client.indexes()[0].identity == local.indexes()[0].identity
        assert _every_query(client) == _every_query(local)


def test_async_client_equals_local_client(server_url: str, local: LocalClient) -> None:
    async def run() -> list[Any]:
        async with AsyncClient(server_url, index="sample") as client:
            counts, pairs, occurrences = await asyncio.gather(
                client.count(["the", "of the"]),
                client.cooccurrence([["the", "of"], ["a", "function"]]),
                client.cooccurrence([["the", "of"], ["a", "function"]], unit="occurrences"),
            )
            return [counts, pairs, occurrences, await client.infgram_prob([("one of the", " best")])]

    want = [
        local.count(["the", "of the"]),
        local.cooccurrence([["the", "of"], ["a", "function"]]),
        local.cooccurrence([["the", "of"], ["a", "function"]], unit="occurrences"),
        local.infgram_prob([("one of the", " best")]),
    ]
    assert asyncio.run(run()) == want


def test_large_batches_are_chunked_and_exact(server_url: str, local: LocalClient) -> None:
    tokens = local.document(0).token_ids + local.document(1).token_ids
    phrases = [tokens[i % (len(tokens) - 2) : i % (len(tokens) - 2) + 2] for i in range(100_000)]
    with Client(server_url, batch_size=40_000) as client:
        assert client.count(phrases) == local.count(phrases)
    pairs = [[phrases[i], phrases[i + 1]] for i in range(0, 20_000, 2)]
    with Client(server_url) as client:
        assert client.cooccurrence(pairs) == local.cooccurrence(pairs)


_FAILING_CALLS: list[tuple[str, Callable[[Any], Any]]] = [
    ("token id out of range", lambda c: c.count([[10**9]])),
    ("unknown index", lambda c: c.count(["the"], index="missing")),
    ("one phrase is not a co-occurrence", lambda c: c.cooccurrence([["only one"]])),
    ("unknown unit", lambda c: c.cooccurrence([["the", "of"]], unit="tokens")),
    ("document id outside the index", lambda c: c.document(10**9)),
    ("empty phrase", lambda c: c.doc_freq([[]])),
    ("top_k below 1", lambda c: c.ntd(["the"], top_k=0)),
]


def _failure(call: Callable[[Any], Any], client: Any) -> tuple[type[BaseException], int, str, str]:
    with pytest.raises(TaskgramError) as info:
        call(client)
    err = info.value
    return type(err), getattr(err, "status", 0), getattr(err, "type", ""), getattr(err, "title", "")


@pytest.mark.parametrize(("what", "call"), _FAILING_CALLS, ids=[what for what, _ in _FAILING_CALLS])
def test_errors_over_http_equal_local_errors(
    server_url: str, local: LocalClient, what: str, call: Callable[[Any], Any]
) -> None:
    """The same failure raises the same exception class, with the same status, problem type and title,
    over HTTP and in process."""
    with Client(server_url, index="sample", retries=0) as client:
        assert _failure(call, client) == _failure(call, local), what


def test_errors_over_http(server_url: str) -> None:
    with Client(server_url, index="sample") as client:
        with pytest.raises(InvalidQueryError, match="out of range"):
            client.count([[10**9]])
        with pytest.raises(UnknownIndexError):
            client.count(["the"], index="missing")
        with pytest.raises(DocumentNotFoundError, match="out of range"):
            client.document(10**9)
        with pytest.raises(InvalidQueryError, match="unit"):
            client.cooccurrence([["the", "of"]], unit="tokens")


class _Recording(BaseTransport):
    """Records every operation, then lets ``inner`` carry it out."""

    def __init__(self, inner: BaseTransport) -> None:
        self.inner = inner
        self.ops: list[Operation] = []

    def handle(self, op: Operation) -> Any:
        self.ops.append(op)
        return self.inner.handle(op)

    def close(self) -> None:
        self.inner.close()


def test_cache_over_http(server_url: str, tmp_path: Path) -> None:
    with Client(server_url, cache_dir=tmp_path) as client:
        first = client.cooccurrence([["the", "of"], ["a", "function"]])
    recording = _Recording(HTTPTransport(server_url))
    with Client(server_url, cache_dir=tmp_path, transport=recording) as client:
        assert client.cooccurrence([["the", "of"], ["a", "function"]]) == first
    # only the index name and identity were asked for: the answers came from the cache
    assert [(op.method, op.route) for op in recording.ops] == [("GET", "/v1/health"), ("GET", "/v1/indexes")]


def test_api_keys_over_http(serve_in_thread: ServeInThread, sample_index: Path) -> None:
    key = "s3cret-key-0123456789"
    settings = Settings(indexes={"sample": sample_index}, api_keys=[key], access_log=False, metrics=False)
    with serve_in_thread(settings) as url:
        with Client(url, index="sample") as anonymous, pytest.raises(AuthenticationError):
            anonymous.count(["the"])
        with Client(url, index="sample", api_key=key) as client:
            assert client.count(["the"])[0] > 0


def test_eval_backend_takes_the_api_key_from_the_environment(
    serve_in_thread: ServeInThread, sample_index: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    from clients.eval.cli import _open_backend

    key = "eval-key-0123456789abcdef"
    settings = Settings(indexes={"sample": sample_index}, api_keys=[key], access_log=False, metrics=False)
    with serve_in_thread(settings) as url:
        args = argparse.Namespace(index=None, server=url, index_name="sample")
        monkeypatch.delenv("TASKGRAM_API_KEY", raising=False)
        with pytest.raises(AuthenticationError):
            _open_backend(args)
        monkeypatch.setenv("TASKGRAM_API_KEY", key)
        client, identity = _open_backend(args)
        with client:
            assert client.count(["the"])[0] > 0
        assert identity["served"]
