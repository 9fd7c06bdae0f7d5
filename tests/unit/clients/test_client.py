"""Client library: retries/backoff, error mapping, chunking and the cache with httpx.MockTransport;
the twin-method guarantee; LocalClient against the engine on a real index."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import clients
from clients import (
    APIError,
    AsyncClient,
    AuthenticationError,
    BudgetExceededError,
    Client,
    DocumentNotFoundError,
    InvalidQueryError,
    LocalClient,
    PayloadTooLargeError,
    ProtocolError,
    RequestTimeout,
    TransportError,
    UnknownIndexError,
)
from clients.client import encode_phrase, encode_spec

IDENTITY = "a" * 64
HEALTH = {"status": "ok", "version": "0", "indexes": ["x"], "limits": {"max_batch": 3}}
INDEXES = {"indexes": [{"name": "x", "identity": IDENTITY, "n_docs": 5}], "refused": {}}


def problem(status: int, slug: str, detail: str) -> httpx.Response:
    body = {"type": f"urn:taskgram:problem:{slug}", "title": slug, "status": status, "detail": detail}
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


class FakeServer:
    """Answers like the service: counts are the length of each text (a function easy to check)."""

    def __init__(self, health: dict[str, Any] | None = None) -> None:
        self.health = health or HEALTH
        self.requests: list[httpx.Request] = []
        self.script: list[Callable[[httpx.Request], httpx.Response]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.script:
            return self.script.pop(0)(request)
        if request.url.path == "/v1/health":
            return httpx.Response(200, json=self.health)
        if request.url.path == "/v1/indexes":
            return httpx.Response(200, json=INDEXES)
        body = json.loads(request.content)
        if request.url.path == "/v1/count":
            return httpx.Response(
                200, json={"index": body["index"], "results": [len(str(q)) for q in body["queries"]]}
            )
        return problem(404, "not-found", "no route")

    def posts(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.method == "POST"]


def make(server: FakeServer, **kw: Any) -> Client:
    kw.setdefault("backoff", 0)
    return Client("http://test", index="x", transport=httpx.MockTransport(server), **kw)


def test_phrase_encoding() -> None:
    import numpy as np

    assert encode_phrase("a b") == "a b"
    assert encode_phrase([1, 2]) == {"ids": [1, 2]}
    assert encode_phrase(np.array([3, 4], dtype=np.uint16)) == {"ids": [3, 4]}
    assert encode_spec(["Paris", " Paris"]) == {"any": ["Paris", " Paris"]}
    assert encode_spec({"any": ["a", [5]]}) == {"any": ["a", {"ids": [5]}]}
    assert encode_spec([[1], [2, 3]]) == {"any": [{"ids": [1]}, {"ids": [2, 3]}]}
    for bad in (3, [True], b"bytes", [1.5], None):
        with pytest.raises(TypeError):
            encode_phrase(bad)
    with pytest.raises(TypeError):
        Client("http://test", transport=httpx.MockTransport(FakeServer())).count("not a list")


def test_chunks_follow_the_server_limit_and_keep_order() -> None:
    server = FakeServer()
    with make(server) as client:
        texts = [f"t{'x' * i}" for i in range(8)]
        assert client.count(texts) == [len(t) for t in texts]
    sizes = [len(p["queries"]) for p in server.posts()]
    assert sizes == [3, 3, 2]
    with make(server, batch_size=2) as client:
        server.requests.clear()
        client.count(["a", "b", "c", "d", "e"])
        assert [len(p["queries"]) for p in server.posts()] == [2, 2, 1]


def test_payload_too_large_halves_the_batch() -> None:
    server = FakeServer({**HEALTH, "limits": {"max_batch": 8}})
    server.script = [lambda r: httpx.Response(200, json=HEALTH | {"limits": {"max_batch": 8}})]
    server.script.append(lambda r: problem(413, "payload-too-large", "too big"))
    with make(server) as client:
        assert client.count(["a"] * 8) == [1] * 8
    assert [len(p["queries"]) for p in server.posts()] == [8, 4, 4]
    server = FakeServer()
    server.script = [lambda r: httpx.Response(200, json=HEALTH)] + [
        lambda r: problem(413, "payload-too-large", "x")
    ] * 3
    with make(server) as client, pytest.raises(PayloadTooLargeError):
        client.count(["a", "b"])


def test_retries_connection_errors_then_succeeds() -> None:
    server = FakeServer()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    server.script = [refuse, refuse]
    with make(server, retries=2) as client:
        assert client.health().status == "ok"
    assert len(server.requests) == 3
    server.script = [refuse] * 4
    with make(server, retries=2) as client, pytest.raises(TransportError, match="ConnectError"):
        client.health()


def test_retries_503_with_backoff_and_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("clients.transports.time.sleep", slept.append)
    server = FakeServer()
    busy = problem(503, "budget-exceeded", "over budget")
    busy.headers["retry-after"] = "2"
    server.script = [lambda r: busy, lambda r: problem(503, "budget-exceeded", "over budget")]
    with make(server, retries=3, backoff=0.5, max_backoff=10) as client:
        assert client.health().status == "ok"
    assert slept[0] == 2.0  # Retry-After honoured
    assert 0.5 <= slept[1] <= 1.0  # 0.5 * 2**1 with jitter in [0.5, 1]
    server.script = [lambda r: problem(503, "budget-exceeded", "still over budget")] * 4
    with make(server, retries=3, backoff=0) as client, pytest.raises(BudgetExceededError, match="still over"):
        client.count(["a"])


def test_no_retry_on_timeouts_or_client_errors() -> None:
    server = FakeServer()

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    server.script = [slow]
    with make(server, retries=5) as client, pytest.raises(RequestTimeout):
        client.health()
    assert len(server.requests) == 1
    server.script = [lambda r: problem(422, "invalid-query", "queries[0]: empty phrase")]
    with make(server, retries=5) as client, pytest.raises(InvalidQueryError) as info:
        client.health()
    assert info.value.status == 422 and info.value.detail == "queries[0]: empty phrase"
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (problem(404, "unknown-index", "no index named 'y'"), UnknownIndexError),
        (problem(404, "document-not-found", "out of range"), DocumentNotFoundError),
        (problem(401, "unauthorized", "key"), AuthenticationError),
        (problem(413, "payload-too-large", "big"), PayloadTooLargeError),
        (
            httpx.Response(502, text="<html>bad gateway</html>", headers={"content-type": "text/html"}),
            APIError,
        ),
        (httpx.Response(400, json={"error": "Invalid index: y"}), APIError),
    ],
)
def test_error_mapping(response: httpx.Response, error: type[Exception]) -> None:
    server = FakeServer()
    server.script = [lambda r: response]
    with make(server, retries=0) as client, pytest.raises(error) as info:
        client.health()
    assert isinstance(info.value, APIError) and info.value.status == response.status_code
    assert info.value.detail


def test_protocol_errors() -> None:
    server = FakeServer()
    server.script = [
        lambda r: httpx.Response(200, json=HEALTH),
        lambda r: httpx.Response(200, json={"results": [1]}),
    ]
    with make(server) as client, pytest.raises(ProtocolError, match="expected 2 results"):
        client.count(["a", "b"])
    server.script = [lambda r: httpx.Response(200, content=b"not json")]
    with make(server) as client, pytest.raises(ProtocolError):
        client.health()


def test_cache_makes_reruns_free(tmp_path: Path) -> None:
    server = FakeServer()
    with make(server, cache_dir=tmp_path) as client:
        first = client.count(["a", "bb", "ccc", "a"])
    posts = len(server.posts())
    server.requests.clear()
    with make(server, cache_dir=tmp_path) as client:
        assert client.count(["ccc", "a", "bb"]) == [first[2], first[0], first[1]]
        assert server.posts() == []
        assert client.count(["a", "new"]) == [first[0], 3]
        assert [p["queries"] for p in server.posts()] == [["new"]]  # only the miss is asked
    assert posts == 2
    other = FakeServer()
    changed = {"indexes": [{"name": "x", "identity": "b" * 64}], "refused": {}}
    other.script = [lambda r: httpx.Response(200, json=changed)]
    with make(other, cache_dir=tmp_path) as client:
        client.count(["a"])
        assert len(other.posts()) == 1  # a different index identity never sees the cached results


def test_cooccurrence_unit_is_sent_and_cached_apart(tmp_path: Path) -> None:
    class UnitServer(FakeServer):
        def __call__(self, request: httpx.Request) -> httpx.Response:
            if request.url.path != "/v1/cooccurrence":
                return super().__call__(request)
            self.requests.append(request)
            body = json.loads(request.content)
            value = 7 if body.get("unit") == "occurrences" else 3
            return httpx.Response(200, json={"index": "x", "results": [value] * len(body["queries"])})

    server = UnitServer()
    with make(server, cache_dir=tmp_path) as client:
        assert client.cooccurrence([["a", "b"]]) == [3]
        assert client.cooccurrence([["a", "b"]], unit="occurrences") == [7]
        assert client.cooccurrence([["a", "b"]], unit="documents") == [3]  # from the cache
        assert client.cooccurrence([["a", "b"]], unit="occurrences") == [7]  # from the cache
    bodies = server.posts()
    assert ["unit" in b for b in bodies] == [False, True] and bodies[1]["unit"] == "occurrences"


def test_default_index_from_a_single_index_server() -> None:
    server = FakeServer()
    with Client("http://test", transport=httpx.MockTransport(server), backoff=0) as client:
        client.count(["a"])
    assert server.posts()[0]["index"] == "x"
    two = FakeServer({**HEALTH, "indexes": ["x", "y"]})
    with (
        Client("http://test", transport=httpx.MockTransport(two)) as client,
        pytest.raises(ValueError, match="index="),
    ):
        client.count(["a"])


def test_api_key_is_sent_as_bearer() -> None:
    server = FakeServer()
    with make(server, api_key="k" * 20) as client:
        client.health()
    assert server.requests[0].headers["authorization"] == "Bearer " + "k" * 20


def test_async_client_retries_and_chunks() -> None:
    server = FakeServer()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    server.script = [refuse]

    async def handler(request: httpx.Request) -> httpx.Response:
        return server(request)

    async def main() -> list[int]:
        transport = httpx.MockTransport(handler)
        async with AsyncClient("http://test", index="x", transport=transport, backoff=0) as client:
            return await client.count(["a", "bb", "ccc", "dddd"])

    assert asyncio.run(main()) == [1, 2, 3, 4]
    assert [len(p["queries"]) for p in server.posts()] == [3, 1]


def test_twin_methods() -> None:
    public = {name for name in dir(Client) if not name.startswith("_")} - {"close", "base_url"}
    async_public = {name for name in dir(AsyncClient) if not name.startswith("_")} - {"aclose"}
    assert public - {"backoff", "max_backoff", "retries"} == async_public - {
        "backoff",
        "max_backoff",
        "retries",
    }
    for name in sorted(public):
        sync = getattr(Client, name)
        if not callable(sync):
            continue
        assert inspect.signature(sync) == inspect.signature(getattr(AsyncClient, name)), name
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name)), name
        assert inspect.signature(getattr(LocalClient, name)) == inspect.signature(sync), name


def test_exported_members() -> None:
    assert sorted(clients.__all__) == sorted(set(clients.__all__))
    for name in clients.__all__:
        assert hasattr(clients, name), name


# ------------------------------------------------------------------------------------------------
# LocalClient on a real index


@pytest.fixture(scope="module")
def local(sample_index: Path) -> Any:
    with LocalClient(sample_index, name="sample") as client:
        yield client


def test_local_client_equals_the_engine(local: LocalClient) -> None:
    engine = local.engine
    phrases = ["the", [273, 253], "zebra quantum"]
    assert local.count(phrases) == engine.count(phrases)
    assert local.doc_freq(["the", ["Python", " python"]]) == engine.doc_freq(["the", ["Python", " python"]])
    queries = [["the", "function"], ["of", {"any": ["value", "values"]}]]
    assert local.cooccurrence(queries) == engine.cooccurrence(queries)
    occurrences = local.cooccurrence(queries, unit="occurrences")
    assert occurrences == engine.cooccurrence(queries, unit="occurrences")
    assert all(o >= d for o, d in zip(occurrences, local.cooccurrence(queries), strict=True))
    assert local.windowed_cooccurrence(queries, 10) == engine.windowed_cooccurrence(queries, 10)
    ntd = local.ntd(["of the"], top_k=3)[0]
    want = engine.ntd(["of the"], top_k=3)[0]
    assert ntd.prompt_count == want.prompt_count and [t.token_id for t in ntd.tokens] == [
        t.token_id for t in want.tokens
    ]
    assert local.prob([("of", 253)])[0].prob == engine.prob([("of", 253)])[0].prob
    inf = local.infgram_prob([("one of the", " best")])[0]
    assert inf.tokens[0].suffix_len == engine.infgram_prob([("one of the", " best")])[0].tokens[0].suffix_len
    docs = local.documents(["the", "function"], limit=2)
    assert docs.total == engine.cooccurrence([["the", "function"]])[0] and len(docs.docs) == 2
    assert local.document(3, max_tokens=5).token_ids == engine.document(3, max_tokens=5).token_ids
    assert local.tokenize(["hello world"])[0].token_ids == engine.tokenize("hello world")
    assert [i.name for i in local.indexes()] == ["sample"] and local.health().indexes == ["sample"]


def test_local_client_errors(local: LocalClient) -> None:
    with pytest.raises(InvalidQueryError, match="out of range"):
        local.count([[10**9]])
    with pytest.raises(UnknownIndexError):
        local.count(["the"], index="other")
    with pytest.raises(DocumentNotFoundError, match="out of range") as info:
        local.document(10**9)  # as over HTTP: 404 document-not-found
    assert info.value.status == 404 and info.value.type == "urn:taskgram:problem:document-not-found"
    with pytest.raises(InvalidQueryError):
        local.document(-1)
    with pytest.raises(InvalidQueryError, match="unit"):
        local.cooccurrence([["the", "of"]], unit="tokens")


def test_local_client_cache(sample_index: Path, tmp_path: Path) -> None:
    with LocalClient(sample_index, cache_dir=tmp_path) as client:
        first = client.cooccurrence([["the", "of"]])
        assert len(client.cache or []) == 1
    with LocalClient(sample_index, cache_dir=tmp_path) as client:
        calls: list[Any] = []
        original = client.engine.cooccurrence
        client.engine.cooccurrence = lambda *a, **k: calls.append(a) or original(*a, **k)  # type: ignore[method-assign]
        assert client.cooccurrence([["the", "of"]]) == first and calls == []
