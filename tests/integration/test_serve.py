"""Build -> serve -> client over real HTTP: uvicorn in a thread on 127.0.0.1 (random port), queried by
Client and AsyncClient, whose answers must equal LocalClient's (the engine in-process)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from clients import (
    AsyncClient,
    AuthenticationError,
    Client,
    InvalidQueryError,
    LocalClient,
    UnknownIndexError,
)
from service.app import create_app
from service.settings import Settings

ServeInThread = Callable[..., Any]


@contextmanager
def _serve(settings: Settings) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings), log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture(scope="module")
def serve_in_thread() -> ServeInThread:
    """``with serve_in_thread(settings) as url:`` runs a real uvicorn server for the block."""
    return _serve


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


def test_errors_over_http(server_url: str) -> None:
    with Client(server_url, index="sample") as client:
        with pytest.raises(InvalidQueryError, match="out of range"):
            client.count([[10**9]])
        with pytest.raises(UnknownIndexError):
            client.count(["the"], index="missing")
        with pytest.raises(InvalidQueryError):
            client.cooccurrence([["only one"]])
        with pytest.raises(InvalidQueryError, match="unit"):
            client.cooccurrence([["the", "of"]], unit="tokens")


def test_cache_over_http(server_url: str, tmp_path: Path) -> None:
    with Client(server_url, cache_dir=tmp_path) as client:
        first = client.cooccurrence([["the", "of"], ["a", "function"]])
    with Client(server_url, cache_dir=tmp_path, retries=0) as client:
        client._http.close()  # every network call would now fail: the answers must come from the cache
        client._identities["sample"] = next(iter(client._identities.values()), "") or _identity(server_url)
        client._index = "sample"
        assert client.cooccurrence([["the", "of"], ["a", "function"]]) == first


def _identity(url: str) -> str:
    with Client(url) as client:
        return client.indexes()[0].identity


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
