"""The infini-gram compatible endpoint ``POST /``: infini-gram's request and response fields, exact
answers (checked against /v1, the engine and brute force on a tiny index), and ``{"error"}`` answers."""

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

DOCS = [
    "the cat sat on the mat near the dog",
    "a dog and a cat",
    "the mat",
    "cat",
    "dog dog dog the cat",
]


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory: pytest.TempPathFactory, pythia_tokenizer: Any) -> Path:
    from indexer.pipeline import build_index

    root = tmp_path_factory.mktemp("compat")
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(DOCS)))
    build_index([corpus], root / "tiny", tokenizer=pythia_tokenizer, progress=False)
    return root / "tiny"


@pytest.fixture(scope="module")
def engine(tiny_index: Path) -> Index:
    return Index.open(tiny_index, name="tiny")


@pytest.fixture(scope="module")
def api(tiny_index: Path) -> Iterator[TestClient]:
    settings = Settings(indexes={"tiny": tiny_index}, access_log=False, metrics=False)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _docs(engine: Index) -> list[list[int]]:
    return [engine.document(i).token_ids for i in range(engine.n_docs)]


def _occ(doc: list[int], pattern: list[int]) -> list[int]:
    return [i for i in range(len(doc) - len(pattern) + 1) if doc[i : i + len(pattern)] == pattern]


def _post(api: TestClient, **body: Any) -> dict[str, Any]:
    response = api.post("/", json={"index": "tiny", **body})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def test_paper_script_count_request_works_unchanged(api: TestClient, engine: Index) -> None:
    # the paper's script: requests.post(url, json={"index": ..., "query_type": "count", "query": text})
    result = _post(api, query_type="count", query="the cat")
    assert set(result) == {"count", "approx", "latency", "token_ids", "tokens"}
    ids = engine.tokenize("the cat")
    assert result["token_ids"] == ids and result["tokens"] == ["Ġthe", "Ġcat"]
    # " the cat" occurs once: "the cat" opening documents 0 has no leading space (auto space policy)
    assert result["count"] == sum(len(_occ(d, ids)) for d in _docs(engine)) == 1
    assert result["approx"] is False and result["latency"] >= 0


def test_form_encoded_bodies_are_read_as_json(api: TestClient) -> None:
    body = json.dumps({"index": "tiny", "query_type": "count", "query": "cat"})
    response = api.post("/", content=body, headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200 and response.json()["count"] == 3


def test_count_with_query_ids_and_empty_query(api: TestClient, engine: Index) -> None:
    ids = engine.tokenize("the mat")
    assert (
        _post(api, query_type="count", query_ids=ids)["count"]
        == sum(len(_occ(d, ids)) for d in _docs(engine))
        == 1
    )
    assert _post(api, query_type="count", query="")["count"] == engine.n_tokens


def test_cnf_count_is_exact_windowed_and(api: TestClient, engine: Index) -> None:
    docs = _docs(engine)
    cat, dog, mat = (engine.tokenize(w) for w in ("cat", "dog", "mat"))

    def brute(a: list[int], b_terms: list[list[int]], window: int) -> int:
        total_a = sum(len(_occ(d, a)) for d in docs)
        total_b = sum(len(_occ(d, t)) for d in docs for t in b_terms)
        count = 0
        for d in docs:
            occ_a = set(_occ(d, a))
            occ_b = {p for t in b_terms for p in _occ(d, t)}
            anchors, partners = (occ_a, occ_b) if total_a <= total_b else (occ_b, occ_a)
            count += sum(1 for s in anchors if any(abs(s - p) <= window for p in partners))
        return count

    for window in (1, 3, 100):
        got = _post(api, query_type="count", query="cat AND dog OR mat", max_diff_tokens=window)
        assert got["count"] == brute(cat, [dog, mat], window), window
        assert got["approx"] is False
        assert got["token_ids"] == [[cat], [dog, mat]]
        assert got["tokens"] == [[["Ġcat"]], [["Ġdog"], ["Ġmat"]]]
    by_ids = _post(api, query_type="count", query_ids=[[cat], [dog, mat]], max_diff_tokens=3)
    assert by_ids["count"] == brute(cat, [dog, mat], 3)
    default = _post(api, query_type="count", query="cat AND dog")
    windowed = api.post(
        "/v1/cooccurrence/windowed", json={"index": "tiny", "queries": [["cat", "dog"]], "window": 100}
    )
    assert default["count"] == windowed.json()["results"][0]


def test_single_or_clause_sums_term_counts_like_infinigram(api: TestClient) -> None:
    cat = _post(api, query_type="count", query="cat")["count"]
    dog = _post(api, query_type="count", query="dog")["count"]
    assert _post(api, query_type="count", query="cat OR dog")["count"] == cat + dog


def test_prob(api: TestClient, engine: Index) -> None:
    result = _post(api, query_type="prob", query="the cat")
    assert set(result) == {"prompt_cnt", "cont_cnt", "prob", "latency", "token_ids", "tokens"}
    the, cat = engine.tokenize("the cat")
    assert result["prompt_cnt"] == engine.count([[the]])[0]
    assert result["cont_cnt"] == engine.count([[the, cat]])[0]
    assert result["prob"] == result["cont_cnt"] / result["prompt_cnt"]
    unseen = _post(api, query_type="prob", query="zebra cat")
    assert unseen["prompt_cnt"] == 0 and unseen["prob"] == -1  # infini-gram's value for an unseen prompt


def test_ntd(api: TestClient, engine: Index) -> None:
    result = _post(api, query_type="ntd", query="the")
    assert set(result) == {"prompt_cnt", "result_by_token_id", "approx", "latency", "token_ids", "tokens"}
    dist = engine.ntd([engine.tokenize("the")])[0]
    assert result["prompt_cnt"] == dist.prompt_count
    assert result["result_by_token_id"] == {
        str(t.token_id): {"cont_cnt": t.count, "prob": t.prob, "token": t.token.replace("Ġ", " ")}
        for t in dist.tokens
    }
    assert result["result_by_token_id"][str(engine.tokenize("cat")[0])]["token"] == " cat"


def test_infgram_prob(api: TestClient, engine: Index) -> None:
    result = _post(api, query_type="infgram_prob", query="zebra the cat")
    assert set(result) == {
        "prompt_cnt", "cont_cnt", "prob", "suffix_len", "longest_suffix", "latency", "token_ids", "tokens",
    }  # fmt: skip
    assert result["suffix_len"] == 1 and result["longest_suffix"] == " the"
    the, cat = engine.tokenize("the cat")
    assert result["prompt_cnt"] == engine.count([[the]])[0]
    assert result["cont_cnt"] == engine.count([[the, cat]])[0]
    assert result["prob"] == result["cont_cnt"] / result["prompt_cnt"]


def test_search_docs(api: TestClient, engine: Index) -> None:
    result = _post(api, query_type="search_docs", query="dog", maxnum=2, max_disp_len=20)
    assert set(result) >= {"cnt", "approx", "idxs", "documents", "message", "latency", "token_ids", "tokens"}
    assert result["cnt"] == engine.count(["dog"])[0] == 4
    assert len(result["documents"]) == 2 and len(set(result["idxs"])) == 2
    for doc in result["documents"]:
        assert set(doc) == {
            "doc_ix",
            "doc_len",
            "disp_len",
            "needle_offset",
            "metadata",
            "token_ids",
            "blocked",
            "spans",
        }
        assert "dog" in engine.document(doc["doc_ix"]).text
        assert "".join(text for text, _ in doc["spans"]) == engine.decode(doc["token_ids"])
        assert any(label == "0" and text.strip() == "dog" for text, label in doc["spans"])
        assert json.loads(doc["metadata"])["line"] >= 1
    cnf = _post(api, query_type="search_docs", query="cat AND dog", maxnum=10)
    assert cnf["cnt"] == _post(api, query_type="count", query="cat AND dog")["count"]
    assert {d["doc_ix"] for d in cnf["documents"]} == {0, 1, 4}  # documents containing both
    none = _post(api, query_type="search_docs", query="zebra")
    assert none["cnt"] == 0 and none["documents"] == [] and none["message"] == "0 occurrences found"


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"index": "nope", "query_type": "count", "query": "a"}, 400, "Invalid index"),
        ({"index": "../tiny", "query_type": "count", "query": "a"}, 400, "Invalid index"),
        ({"query_type": "count", "query": "a"}, 400, "index"),
        ({"index": "tiny", "query_type": "count"}, 400, "Exactly one"),
        ({"index": "tiny", "query_type": "count", "query": "a", "query_ids": [1]}, 400, "Exactly one"),
        ({"index": "tiny", "query_type": "find", "query": "a"}, 400, "query_type"),
        ({"index": "tiny", "query_type": "count", "query_ids": [10**9]}, 400, "out of range"),
        ({"index": "tiny", "query_type": "count", "query_ids": "abc"}, 400, "query_ids"),
        ({"index": "tiny", "query_type": "count", "query_ids": [[[]]]}, 400, "empty"),
        ({"index": "tiny", "query_type": "prob", "query": ""}, 400, "non-empty"),
        ({"index": "tiny", "query_type": "prob", "query": "a AND b"}, 400, "CNF"),
        ({"index": "tiny", "query_type": "count", "query": "x" * 20_000}, 400, "characters"),
        (
            {"index": "tiny", "query_type": "count", "query": "a", "max_diff_tokens": 0},
            400,
            "max_diff_tokens",
        ),
    ],
)
def test_errors_are_error_objects(api: TestClient, body: dict[str, Any], status: int, needle: str) -> None:
    response = api.post("/", json=body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()
    assert set(error) == {"error"} and needle in error["error"]


def test_malformed_bodies(api: TestClient) -> None:
    for content in (b"\xff\xfe{", b"{", b"[" * 50_000 + b"]" * 50_000, b"[1, 2]"):
        response = api.post("/", content=content, headers={"content-type": "application/json"})
        assert response.status_code == 400 and "error" in response.json()
    assert _post(api, query_type="count", query="cat")["count"] == 3


def test_body_over_the_limit_is_an_error_object(tiny_index: Path) -> None:
    settings = Settings(indexes={"tiny": tiny_index}, max_body_bytes=1024, access_log=False, metrics=False)
    with TestClient(create_app(settings)) as api:
        response = api.post("/", json={"index": "tiny", "query_type": "count", "query": "x" * 2000})
        assert response.status_code == 413 and "limit" in response.json()["error"]
        schema = api.get("/openapi.json").json()["paths"]["/"]["post"]["responses"]
        assert {"400", "413", "503"} <= set(schema)


def test_query_ids_on_an_index_without_tokenizer(tmp_path: Path) -> None:
    """An index built from token ids (no tokenizer) answers query_ids; the text fields are null."""
    docs = [[1, 2, 3, 1, 2], [2, 3], [4]]
    root = write_index(tmp_path / "ids", docs, vocab_size=5)
    settings = Settings(indexes={"ids": root}, access_log=False, metrics=False)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:

        def post(**body: Any) -> dict[str, Any]:
            response = client.post("/", json={"index": "ids", **body})
            assert response.status_code == 200, response.text
            return response.json()

        answer = post(query_type="count", query_ids=[1, 2])
        assert (answer["count"], answer["token_ids"], answer["tokens"]) == (2, [1, 2], None)
        assert post(query_type="count", query_ids=[[[2, 3]], [[1]]])["tokens"] is None
        prob = post(query_type="prob", query_ids=[2, 3])
        assert (prob["prompt_cnt"], prob["cont_cnt"]) == (3, 2)
        ntd = post(query_type="ntd", query_ids=[2])
        assert ntd["result_by_token_id"]["3"] == {"cont_cnt": 2, "prob": 2 / 3, "token": None}
        inf = post(query_type="infgram_prob", query_ids=[1, 2, 3])
        assert (inf["suffix_len"], inf["longest_suffix"], inf["cont_cnt"]) == (2, None, 1)
        docs = post(query_type="search_docs", query_ids=[2, 3], maxnum=2)
        assert docs["cnt"] == 2 and sorted(docs["idxs"]) == [0, 1]
        assert all(d["spans"] is None for d in docs["documents"])
        refused = client.post("/", json={"index": "ids", "query_type": "count", "query": "text"})
        assert refused.status_code == 400 and "token ids" in refused.json()["error"]
