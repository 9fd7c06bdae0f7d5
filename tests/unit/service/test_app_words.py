"""``boundary`` over HTTP: /v1/count, /v1/doc_freq, /v1/cooccurrence (both units) and /v1/documents
answer word-bounded counts equal to the engine's; windowed co-occurrence and an index without a tokenizer
refuse ``"word"`` with a 422 naming the field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.engine import Index
from service.settings import Settings
from tests.index_writer import write_index

DOCS = ["the index of indexes", "reindex the index, index", "indexed data", "data index_1 index"]


@pytest.fixture(scope="module")
def word_index(tmp_path_factory: pytest.TempPathFactory, pythia_tokenizer: Any) -> Path:
    from indexer.pipeline import build_index

    root = tmp_path_factory.mktemp("words")
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in DOCS))
    build_index([corpus], root / "index", tokenizer=pythia_tokenizer, progress=False)
    return root / "index"


@pytest.fixture(scope="module")
def ids_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_index(tmp_path_factory.mktemp("ids") / "index", [[1, 2, 3]])


@pytest.fixture(scope="module")
def api(word_index: Path, ids_index: Path) -> Iterator[TestClient]:
    settings = Settings(indexes={"w": word_index, "ids": ids_index}, access_log=False)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _post(api: TestClient, path: str, **body: Any) -> Any:
    r = api.post(path, json=body)
    assert r.status_code == 200, r.text
    return r.json()["results"]


def test_word_counts_over_http(api: TestClient, word_index: Path) -> None:
    engine = Index.open(word_index)
    phrases = ["index", "data", "index of", {"ids": engine.tokenize("index", space="exact")}]
    engine_phrases = ["index", "data", "index of", engine.tokenize("index", space="exact")]
    word = _post(api, "/v1/count", index="w", queries=phrases, boundary="word")
    token = _post(api, "/v1/count", index="w", queries=phrases)
    assert word == engine.count(engine_phrases, boundary="word")
    assert (
        token
        == engine.count(engine_phrases)
        == _post(api, "/v1/count", index="w", queries=phrases, boundary="token")
    )
    # " index" 5 times as a token, 4 times as a word (not in " index_1"); "index" mid-word in "reindex"
    assert (token[0], word[0]) == (5, 4)
    assert word[3] == 0 and token[3] >= 1
    specs = ["index", {"any": ["index", "data"]}]
    assert _post(api, "/v1/doc_freq", index="w", queries=specs, boundary="word") == engine.doc_freq(
        ["index", ["index", "data"]], boundary="word"
    )
    pairs = [["index", "data"], ["data", "index"]]
    for unit in ("documents", "occurrences"):
        got = _post(api, "/v1/cooccurrence", index="w", queries=pairs, unit=unit, boundary="word")
        assert got == engine.cooccurrence(pairs, unit=unit, boundary="word")
    selves = _post(
        api, "/v1/cooccurrence", index="w", queries=[["index", "index"]], unit="occurrences", boundary="word"
    )
    assert selves == [4]  # [s, s] in occurrences: the word count of s
    docs = _post(api, "/v1/documents", index="w", queries=[["index"]], boundary="word")
    assert docs[0]["total"] == engine.documents(["index"], boundary="word").total == 3


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/count", {"index": "ids", "queries": [{"ids": [1]}], "boundary": "word"}),
        ("/v1/doc_freq", {"index": "ids", "queries": [{"ids": [1]}], "boundary": "word"}),
        ("/v1/cooccurrence", {"index": "ids", "queries": [[{"ids": [1]}, {"ids": [2]}]], "boundary": "word"}),
        ("/v1/documents", {"index": "ids", "queries": [[{"ids": [1]}]], "boundary": "word"}),
        ("/v1/cooccurrence/windowed", {"index": "w", "queries": [["index", "data"]], "boundary": "word"}),
        ("/v1/count", {"index": "w", "queries": ["index"], "boundary": "words"}),
    ],
)
def test_word_refusals_name_the_field(api: TestClient, path: str, body: dict[str, Any]) -> None:
    r = api.post(path, json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "boundary" in r.text
