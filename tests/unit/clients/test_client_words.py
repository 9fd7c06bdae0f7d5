"""``boundary=`` in the three clients: sent only when not the default (so earlier cache entries stay
valid), part of the result-cache key, and answered by LocalClient like the engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from clients import Client, InvalidQueryError, LocalClient
from tests.index_writer import write_index

IDENTITY = "b" * 64
HEALTH = {"status": "ok", "version": "0", "indexes": ["x"], "limits": {"max_batch": 10}}
INDEXES = {"indexes": [{"name": "x", "identity": IDENTITY, "n_docs": 5}], "refused": {}}


def server(log: list[dict[str, Any]]):
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/health":
            return httpx.Response(200, json=HEALTH)
        if request.url.path == "/v1/indexes":
            return httpx.Response(200, json=INDEXES)
        body = json.loads(request.content)
        log.append(body)
        extra = 100 if body.get("boundary") == "word" else 0
        return httpx.Response(
            200, json={"index": "x", "results": [len(body["queries"]) + extra] * len(body["queries"])}
        )

    return handle


def test_boundary_is_sent_and_keys_the_cache(tmp_path: Path) -> None:
    log: list[dict[str, Any]] = []
    with Client("http://t", index="x", transport=httpx.MockTransport(server(log)), cache_dir=tmp_path) as c:
        assert c.count(["a"]) == [1]
        assert c.count(["a"], boundary="word") == [101]  # not answered from the token entry
        assert c.count(["a"], boundary="word") == [101]  # from the cache
        assert c.doc_freq(["a"], boundary="word") == [101]
        assert c.cooccurrence([["a", "b"]], boundary="word", unit="occurrences") == [101]
        with pytest.raises(ValueError, match="boundary"):
            c.count(["a"], boundary="Word")
    assert [b.get("boundary") for b in log] == [None, "word", "word", "word"]
    assert log[3]["unit"] == "occurrences"


def test_async_client_sends_boundary() -> None:
    import asyncio

    from clients import AsyncClient

    log: list[dict[str, Any]] = []

    async def run() -> list[int]:
        async with AsyncClient("http://t", index="x", transport=httpx.MockTransport(server(log))) as c:
            return await c.count(["a", "b"], boundary="word")

    assert asyncio.run(run()) == [102, 102]
    assert log[0]["boundary"] == "word"


def test_local_client_word_boundary(sample_index: Path) -> None:
    from service.engine import Index

    engine = Index.open(sample_index)
    with LocalClient(sample_index) as local:
        assert local.count(["index", "data"], boundary="word") == engine.count(
            ["index", "data"], boundary="word"
        )
        assert local.count(["index"], boundary="word")[0] < local.count(["index"])[0]
        assert local.doc_freq(["index"], boundary="word") == engine.doc_freq(["index"], boundary="word")
        q = [["index", "data"]]
        assert local.cooccurrence(q, boundary="word") == engine.cooccurrence(q, boundary="word")
        assert (
            local.documents(["index"], boundary="word").total
            == engine.documents(["index"], boundary="word").total
        )


def test_local_client_refuses_word_on_an_index_without_tokenizer(tmp_path: Path) -> None:
    with (
        LocalClient(write_index(tmp_path / "ix", [[1, 2]])) as local,
        pytest.raises(InvalidQueryError, match="boundary"),
    ):
        local.count([[1]], boundary="word")
