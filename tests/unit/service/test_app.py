"""The /v1 HTTP API against real indexes: every endpoint against the engine's own answers and a
brute-force oracle on a tiny index, the OpenAPI document, problem+json errors, limits, authentication,
CORS and hostile inputs (path-like names, non-UTF-8 bodies, deep JSON)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.app import create_app
from service.engine import Index
from service.settings import Settings

TINY_DOCS = [
    "the cat sat on the mat",
    "the dog sat on the log and the cat ran",
    "a bird flew over the cat",
    "the mat was red",
    "nothing here matches",
    "cat cat cat",
]
PROBLEM = "application/problem+json"


def _client(settings: Settings, **kw: Any) -> TestClient:
    return TestClient(create_app(settings, **kw), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory: pytest.TempPathFactory, pythia_tokenizer: Any) -> Path:
    from indexer.pipeline import build_index

    root = tmp_path_factory.mktemp("tiny")
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(TINY_DOCS)))
    build_index([corpus], root / "tiny", tokenizer=pythia_tokenizer, progress=False)
    return root / "tiny"


@pytest.fixture(scope="module")
def tiny_docs(tiny_index: Path) -> list[list[int]]:
    index = Index.open(tiny_index)
    return [index.document(i).token_ids for i in range(index.n_docs)]


@pytest.fixture(scope="module")
def api(tiny_index: Path, sample_index: Path) -> Iterator[TestClient]:
    settings = Settings(indexes={"tiny": tiny_index, "sample": sample_index}, access_log=False)
    with _client(settings) as client:
        yield client


@pytest.fixture(scope="module")
def sample_engine(sample_index: Path) -> Index:
    return Index.open(sample_index, name="sample")


def _occurrences(doc: list[int], pattern: list[int]) -> list[int]:
    n = len(pattern)
    return [i for i in range(len(doc) - n + 1) if doc[i : i + n] == pattern]


def _json(results: Any) -> Any:
    """The engine's dataclasses as they look after a JSON round trip (tuples become lists)."""
    if isinstance(results, list):
        return [json.loads(json.dumps(dataclasses.asdict(r))) for r in results]
    return json.loads(json.dumps(dataclasses.asdict(results)))


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:taskgram:problem:")
    assert body["title"] and body["detail"]
    return body


# ------------------------------------------------------------------------------------------------
# Document and metadata endpoints


def test_openapi_and_docs(api: TestClient) -> None:
    schema = api.get("/openapi.json").json()
    paths = set(schema["paths"])
    for path in (
        "/v1/health", "/v1/indexes", "/v1/count", "/v1/doc_freq", "/v1/cooccurrence",
        "/v1/cooccurrence/windowed", "/v1/ntd", "/v1/prob", "/v1/infgram_prob", "/v1/documents",
        "/v1/indexes/{name}/documents/{doc_id}", "/v1/tokenize", "/",
    ):  # fmt: skip
        assert path in paths
    assert "CountRequest" in schema["components"]["schemas"]
    errors = schema["paths"]["/v1/count"]["post"]["responses"]
    for status in ("400", "404", "413", "422", "503"):
        assert "application/problem+json" in errors[status]["content"], status
    assert api.get("/docs").status_code == 200


def test_health_and_indexes(api: TestClient, tiny_index: Path) -> None:
    health = api.get("/v1/health").json()
    assert health["status"] == "ok"
    assert health["indexes"] == ["sample", "tiny"]
    assert health["limits"]["max_batch"] == 100_000
    listed = api.get("/v1/indexes").json()
    assert listed["refused"] == {}
    tiny = next(i for i in listed["indexes"] if i["name"] == "tiny")
    assert tiny["n_docs"] == len(TINY_DOCS)
    manifest = json.loads((tiny_index / "manifest.json").read_text())
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    assert tiny["identity"] == hashlib.sha256(canonical.encode()).hexdigest()


# ------------------------------------------------------------------------------------------------
# Counts against brute force on the tiny index


def test_count_matches_brute_force(api: TestClient, tiny_docs: list[list[int]]) -> None:
    patterns: list[list[int]] = []
    for doc in tiny_docs:
        for n in (1, 2, 3):
            patterns += [doc[i : i + n] for i in range(len(doc) - n + 1)]
    patterns += [[tiny_docs[0][0], tiny_docs[4][0]], [tiny_docs[-1][-1], tiny_docs[0][0], 12]]  # absent
    patterns += [[tiny_docs[0][-1], tiny_docs[1][0]]]  # spans a document boundary: never counted
    want = [sum(len(_occurrences(d, p)) for d in tiny_docs) for p in patterns]
    r = api.post("/v1/count", json={"index": "tiny", "queries": [{"ids": p} for p in patterns]})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == {"index": "tiny", "results": want}
    assert want[-1] == 0 and want[-2] == 0 and want[-3] == 0


def test_text_count_uses_the_index_tokenizer(api: TestClient, tiny_docs: list[list[int]]) -> None:
    cat = api.post("/v1/tokenize", json={"index": "tiny", "queries": ["cat", "the cat"]}).json()["results"]
    ids = cat[1]["token_ids"]
    assert cat[0]["tokens"] == ["Ġcat"]  # auto space policy: the word as in running text
    want = sum(len(_occurrences(d, ids)) for d in tiny_docs)
    got = api.post("/v1/count", json={"index": "tiny", "queries": ["the cat"]}).json()["results"]
    assert got == [want] and want == 2  # "the cat" opening document 0 has no leading space
    exact = api.post("/v1/tokenize", json={"index": "tiny", "queries": ["cat"], "space": "exact"}).json()
    exact_ids = exact["results"][0]["token_ids"]
    assert exact_ids != cat[0]["token_ids"]
    got = api.post("/v1/count", json={"index": "tiny", "queries": ["cat"], "space": "exact"}).json()[
        "results"
    ]
    assert got == [sum(len(_occurrences(d, exact_ids)) for d in tiny_docs)] == [1]


def test_doc_freq_and_cooccurrence_match_brute_force(api: TestClient, tiny_docs: list[list[int]]) -> None:
    def ids(text: str) -> list[int]:
        return api.post("/v1/tokenize", json={"index": "tiny", "queries": [text]}).json()["results"][0][
            "token_ids"
        ]

    words = ["the", "cat", "sat", "mat", "dog", "bird", "red", "zebra"]
    wid = {w: ids(w) for w in words}

    def docs_with(pattern: list[int]) -> set[int]:
        return {i for i, d in enumerate(tiny_docs) if _occurrences(d, pattern)}

    r = api.post(
        "/v1/doc_freq", json={"index": "tiny", "queries": words + [{"any": ["cat", "dog", "zebra"]}]}
    )
    assert r.json()["results"] == [len(docs_with(wid[w])) for w in words] + [
        len(docs_with(wid["cat"]) | docs_with(wid["dog"]))
    ]
    pairs = [[a, b] for a in words for b in words if a < b]
    r = api.post("/v1/cooccurrence", json={"index": "tiny", "queries": pairs})
    assert r.json()["results"] == [len(docs_with(wid[a]) & docs_with(wid[b])) for a, b in pairs]
    triple = [["the", "cat", {"any": ["mat", "log"]}]]
    r = api.post("/v1/cooccurrence", json={"index": "tiny", "queries": triple})
    want = docs_with(wid["the"]) & docs_with(wid["cat"]) & (docs_with(wid["mat"]) | docs_with(ids("log")))
    assert r.json()["results"] == [len(want)]


def test_cooccurrence_in_occurrences_matches_brute_force(api: TestClient, tiny_docs: list[list[int]]) -> None:
    def ids(text: str) -> list[int]:
        return api.post("/v1/tokenize", json={"index": "tiny", "queries": [text]}).json()["results"][0][
            "token_ids"
        ]

    words = ["the", "cat", "sat", "mat", "dog", "zebra"]
    wid = {w: ids(w) for w in words}

    def docs_with(pattern: list[int]) -> set[int]:
        return {i for i, d in enumerate(tiny_docs) if _occurrences(d, pattern)}

    def occurrences_in(pattern: list[int], docs: set[int]) -> int:
        return sum(len(_occurrences(tiny_docs[i], pattern)) for i in docs)

    pairs = [[a, b] for a in words for b in words]  # "cat" x "cat": all 5 of its occurrences
    r = api.post("/v1/cooccurrence", json={"index": "tiny", "queries": pairs, "unit": "occurrences"})
    assert r.status_code == 200, r.text
    want = [occurrences_in(wid[a], docs_with(wid[b])) for a, b in pairs]
    assert r.json() == {"index": "tiny", "results": want}
    # " the" in documents with " cat": 1 + 2 + 1 (a "the" that opens a document has no leading space)
    assert want[pairs.index(["cat", "cat"])] == 5 and want[pairs.index(["the", "cat"])] == 4
    documents = api.post("/v1/cooccurrence", json={"index": "tiny", "queries": pairs, "unit": "documents"})
    default = api.post("/v1/cooccurrence", json={"index": "tiny", "queries": pairs})
    assert documents.json() == default.json()
    assert [d == 0 for d in documents.json()["results"]] == [w == 0 for w in want]
    body = _problem(
        api.post("/v1/cooccurrence", json={"index": "tiny", "queries": pairs, "unit": "tokens"}), 422
    )
    assert "unit" in body["detail"]
    assert body["errors"][0]["loc"] == ["body", "unit"]
    schema = api.get("/openapi.json").json()["components"]["schemas"]["CooccurrenceRequest"]
    assert schema["properties"]["unit"]["default"] == "documents"
    assert schema["properties"]["unit"]["enum"] == ["documents", "occurrences"]


def test_windowed_cooccurrence_matches_brute_force(api: TestClient, tiny_docs: list[list[int]]) -> None:
    def tok(text: str) -> list[int]:
        return api.post("/v1/tokenize", json={"index": "tiny", "queries": [text]}).json()["results"][0][
            "token_ids"
        ]

    def brute(a: list[int], b: list[int], window: int) -> int:
        total_a = sum(len(_occurrences(d, a)) for d in tiny_docs)
        total_b = sum(len(_occurrences(d, b)) for d in tiny_docs)
        anchor, other = (a, b) if total_a <= total_b else (b, a)
        count = 0
        for d in tiny_docs:
            partners = _occurrences(d, other)
            count += sum(1 for s in _occurrences(d, anchor) if any(abs(s - p) <= window for p in partners))
        return count

    pairs = [("cat", "mat"), ("the", "cat"), ("sat", "the"), ("dog", "cat"), ("red", "cat")]
    for window in (1, 2, 5, 50):
        queries = [[a, b] for a, b in pairs]
        r = api.post(
            "/v1/cooccurrence/windowed", json={"index": "tiny", "queries": queries, "window": window}
        )
        assert r.json()["results"] == [brute(tok(a), tok(b), window) for a, b in pairs], window


# ------------------------------------------------------------------------------------------------
# Probabilities and documents: the engine's own answers, through HTTP


def test_probabilities_equal_the_engine(api: TestClient, sample_engine: Index) -> None:
    prompts = ["of the", "the following", "zebra crossing quantum"]
    r = api.post("/v1/ntd", json={"index": "sample", "queries": prompts, "top_k": 5}).json()["results"]
    assert r == _json(sample_engine.ntd(prompts, top_k=5))
    items = [("of", 253), ("the", 1563), ("unseenprompt zebra", 253)]
    body = [{"prompt": p, "token_id": t} for p, t in items]
    r = api.post("/v1/prob", json={"index": "sample", "queries": body}).json()["results"]
    assert r == _json(sample_engine.prob(items))
    assert r[0]["prob"] == r[0]["cont_count"] / r[0]["prompt_count"]
    pairs = [("one of the", " best"), ("", " the"), ({"ids": [273]}, {"ids": [253, 1563]})]
    r = api.post(
        "/v1/infgram_prob",
        json={"index": "sample", "queries": [{"context": c, "continuation": x} for c, x in pairs]},
    ).json()["results"]
    engine_pairs = [
        (c["ids"] if isinstance(c, dict) else c, x["ids"] if isinstance(x, dict) else x) for c, x in pairs
    ]
    assert r == _json(sample_engine.infgram_prob(engine_pairs))


def test_documents_and_document(api: TestClient, sample_engine: Index) -> None:
    body = {"index": "sample", "queries": [["the", "function"], [{"any": ["Python", " python"]}]], "limit": 3}
    r = api.post("/v1/documents", json=body).json()["results"]
    assert r[0] == _json(sample_engine.documents(["the", "function"], limit=3))
    assert r[0]["total"] == sample_engine.cooccurrence([["the", "function"]])[0] > 3
    assert len(r[0]["docs"]) == 3
    hit = r[0]["docs"][0]
    for start, end, phrase_index in hit["spans"]:
        assert hit["text"][start:end].strip().lower() in {"the", "function"}
        assert phrase_index in (0, 1)
    doc = api.get(f"/v1/indexes/sample/documents/{hit['doc_id']}?max_tokens=7").json()
    assert doc["token_ids"] == sample_engine.document(hit["doc_id"], max_tokens=7).token_ids
    assert doc["truncated"] is True and doc["index"] == "sample"
    sampled = {"index": "sample", "queries": [["the"]], "limit": 4, "sample": True, "seed": 7}
    first, second = (api.post("/v1/documents", json=sampled).json() for _ in range(2))
    assert first == second  # a seeded sample is reproducible


def test_empty_batches(api: TestClient) -> None:
    for path in ("/v1/count", "/v1/doc_freq", "/v1/cooccurrence", "/v1/ntd", "/v1/prob", "/v1/tokenize"):
        assert api.post(path, json={"index": "tiny", "queries": []}).json() == {
            "index": "tiny",
            "results": [],
        }


def test_app_factory_from_environment(tiny_index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.app import create_app_from_env

    passed = Settings(indexes={"tiny": tiny_index}, max_batch=5, access_log=False, metrics=False)
    monkeypatch.setenv("TASKGRAM_SERVE_SETTINGS", json.dumps(passed.model_dump(mode="json")))
    with TestClient(create_app_from_env()) as api:
        assert api.get("/v1/health").json()["limits"]["max_batch"] == 5


def test_hundred_thousand_counts_in_one_request(api: TestClient, tiny_docs: list[list[int]]) -> None:
    queries = [{"ids": tiny_docs[i % len(tiny_docs)][:2]} for i in range(100_000)]
    r = api.post("/v1/count", json={"index": "tiny", "queries": queries})
    assert r.status_code == 200
    results = r.json()["results"]
    assert len(results) == 100_000
    want = [sum(len(_occurrences(d, doc[:2])) for d in tiny_docs) for doc in tiny_docs]
    assert results[: len(tiny_docs)] == want and results[-1] == want[(100_000 - 1) % len(tiny_docs)]


# ------------------------------------------------------------------------------------------------
# Errors: problem+json everywhere, never a number


@pytest.mark.parametrize("name", ["nope", "../tiny", "tiny/../tiny", "..", "/etc/passwd", "tiny\x00", "TINY"])
def test_unknown_and_path_like_index_names_are_404(api: TestClient, name: str) -> None:
    body = _problem(api.post("/v1/count", json={"index": name, "queries": ["the"]}), 404)
    assert body["type"].endswith("unknown-index")


def test_path_like_names_in_urls(api: TestClient) -> None:
    for path in (
        "/v1/indexes/..%2Ftiny/documents/0",
        "/v1/indexes/%2e%2e/documents/0",
        "/v1/indexes/x/documents/0",
    ):
        _problem(api.get(path), 404)
    _problem(api.get("/v1/indexes/tiny/documents/999"), 404)
    _problem(api.get("/v1/indexes/tiny/documents/-1"), 422)
    _problem(api.get("/v1/nothing-here"), 404)
    _problem(api.get("/v1/count"), 405)


def test_invalid_queries_are_422_with_the_field(api: TestClient) -> None:
    body = _problem(api.post("/v1/count", json={"index": "tiny", "queries": [{"ids": [10**9]}]}), 422)
    assert "out of range" in body["detail"]
    body = _problem(api.post("/v1/count", json={"index": "tiny", "queries": ["a", {"ids": [-1]}]}), 422)
    assert "[1]" in body["detail"] and "out of range" in body["detail"]
    body = _problem(api.post("/v1/count", json={"index": "tiny", "queries": ["a", {"idz": [1]}]}), 422)
    assert body["detail"].startswith("queries[1]:")
    body = _problem(
        api.post("/v1/prob", json={"index": "tiny", "queries": [{"prompt": 3, "token_id": 1}]}), 422
    )
    assert body["errors"][0]["loc"][:3] == ["body", "queries", "0"]
    _problem(api.post("/v1/count", json={"index": "tiny", "queries": [""]}), 422)
    _problem(api.post("/v1/count", json={"index": "tiny", "queries": [{"ids": []}]}), 422)
    _problem(api.post("/v1/count", json={"index": "tiny", "queries": [{"any": ["a"]}]}), 422)  # count: no OR
    _problem(api.post("/v1/count", json={"index": "tiny", "queries": "the"}), 422)
    _problem(api.post("/v1/count", json={"index": "tiny", "queries": [True]}), 422)
    _problem(api.post("/v1/count", json={"queries": ["the"]}), 422)
    _problem(api.post("/v1/count", json={"index": "tiny", "queries": ["a"], "surprise": 1}), 422)
    _problem(api.post("/v1/cooccurrence", json={"index": "tiny", "queries": [["only one"]]}), 422)
    _problem(api.post("/v1/doc_freq", json={"index": "tiny", "queries": [{"any": []}]}), 422)
    _problem(api.post("/v1/ntd", json={"index": "tiny", "queries": ["a"], "top_k": 0}), 422)
    _problem(api.post("/v1/count", json={"index": "tiny", "queries": ["a"], "space": "both"}), 422)
    body = _problem(
        api.post("/v1/documents", json={"index": "tiny", "queries": [["a"]], "limit": 10**6}), 422
    )
    assert "limit" in body["detail"]


def test_malformed_bodies_are_400(api: TestClient) -> None:
    headers = {"content-type": "application/json"}
    _problem(
        api.post("/v1/count", content=b'{"index": "tiny", "queries": ["\xff\xfe"]}', headers=headers), 400
    )
    _problem(api.post("/v1/count", content=b'{"index": "tiny", "queries": [', headers=headers), 400)
    deep = b"[" * 100_000 + b"]" * 100_000
    response = api.post("/v1/count", content=b'{"index": "tiny", "queries": ' + deep + b"}", headers=headers)
    assert response.status_code in (400, 422) and response.headers["content-type"] == PROBLEM
    assert (
        api.post("/v1/count", json={"index": "tiny", "queries": ["cat"]}).status_code == 200
    )  # still serving


def test_limits(tiny_index: Path) -> None:
    settings = Settings(
        indexes={"tiny": tiny_index}, max_batch=3, max_query_tokens=4, max_query_chars=20,
        max_body_bytes=2048, max_phrases=3, max_variants=2, access_log=False, metrics=False,
    )  # fmt: skip
    with _client(settings) as api:
        body = _problem(api.post("/v1/count", json={"index": "tiny", "queries": ["a", "b", "c", "d"]}), 413)
        assert "limit is 3" in body["detail"]
        assert api.post("/v1/count", json={"index": "tiny", "queries": ["a", "b", "c"]}).status_code == 200
        _problem(api.post("/v1/count", json={"index": "tiny", "queries": [{"ids": [1, 2, 3, 4, 5]}]}), 422)
        _problem(api.post("/v1/count", json={"index": "tiny", "queries": ["x" * 21]}), 422)
        _problem(api.post("/v1/cooccurrence", json={"index": "tiny", "queries": [["a", "b", "c", "d"]]}), 422)
        _problem(api.post("/v1/doc_freq", json={"index": "tiny", "queries": [{"any": ["a", "b", "c"]}]}), 422)
        big = {"index": "tiny", "queries": ["y" * 10] * 3, "pad": "z" * 4000}
        _problem(api.post("/v1/count", json=big), 413)  # declared Content-Length over the limit

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
            yield b'{"index": "tiny", "queries": ["'
            for _ in range(10):
                yield b"a" * 500
            yield b'"]}'

        _problem(api.post("/v1/count", content=chunks(), headers={"content-type": "application/json"}), 413)


def test_time_and_work_budgets_are_503_never_a_number(tiny_index: Path) -> None:
    settings = Settings(indexes={"tiny": tiny_index}, time_budget_s=1e-9, access_log=False, metrics=False)
    with _client(settings) as api:
        response = api.post("/v1/count", json={"index": "tiny", "queries": ["cat"]})
        body = _problem(response, 503)
        assert body["type"].endswith("budget-exceeded") and response.headers["retry-after"]
    settings = Settings(indexes={"tiny": tiny_index}, max_occurrences=2, access_log=False, metrics=False)
    with _client(settings) as api:
        _problem(
            api.post("/v1/cooccurrence/windowed", json={"index": "tiny", "queries": [["the", "cat"]]}), 503
        )
        assert api.post("/v1/count", json={"index": "tiny", "queries": ["the"]}).json()["results"] == [4]


def test_internal_errors_do_not_leak(tiny_index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> list[int]:
        raise RuntimeError("secret internal detail /srv/path")

    monkeypatch.setattr(Index, "count", broken)
    settings = Settings(indexes={"tiny": tiny_index}, access_log=False, metrics=False, warmup=False)
    with _client(settings) as api:
        response = api.post("/v1/count", json={"index": "tiny", "queries": ["cat"]})
        body = _problem(response, 500)
        assert "secret" not in response.text and "Traceback" not in response.text
        assert "server log" in body["detail"]
        compat = api.post("/", json={"index": "tiny", "query_type": "count", "query": "cat"})
        assert compat.status_code == 500 and "secret" not in compat.text and "error" in compat.json()


def test_api_keys(tiny_index: Path) -> None:
    key = "k" * 24
    settings = Settings(indexes={"tiny": tiny_index}, api_keys=[key], access_log=False, metrics=False)
    with _client(settings) as api:
        assert api.get("/v1/health").status_code == 200  # liveness stays open
        response = api.post("/v1/count", json={"index": "tiny", "queries": ["cat"]})
        _problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
        wrong = api.post(
            "/v1/count", json={"index": "tiny", "queries": ["cat"]}, headers={"Authorization": "Bearer x"}
        )
        _problem(wrong, 401)
        ok = api.post(
            "/v1/count",
            json={"index": "tiny", "queries": ["cat"]},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert ok.status_code == 200
        assert api.get("/v1/indexes").status_code == 401
        assert api.post("/", json={"index": "tiny", "query_type": "count", "query": "cat"}).status_code == 401


def test_cors_off_unless_configured(tiny_index: Path) -> None:
    preflight = {"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}
    with _client(Settings(indexes={"tiny": tiny_index}, access_log=False, metrics=False)) as api:
        assert (
            "access-control-allow-origin"
            not in api.get("/v1/health", headers={"Origin": "https://example.org"}).headers
        )
    settings = Settings(
        indexes={"tiny": tiny_index}, cors_origins=["https://example.org"], access_log=False, metrics=False
    )
    with _client(settings) as api:
        response = api.options("/v1/count", headers=preflight)
        assert response.headers["access-control-allow-origin"] == "https://example.org"


# ------------------------------------------------------------------------------------------------
# Settings and start-up


def test_settings_validation(tiny_index: Path, tmp_path: Path) -> None:
    for bad in ({"../x": tiny_index}, {"a/b": tiny_index}, {"": tiny_index}, {"ok": tmp_path / "missing"}):
        with pytest.raises(ValidationError):
            Settings(indexes=bad)
    with pytest.raises(ValidationError):
        Settings(indexes={"tiny": tiny_index}, api_keys=["short"])
    with pytest.raises(ValidationError):
        Settings(indexes={"tiny": tiny_index}, max_batch=0)
    with pytest.raises(ValidationError):
        Settings(indexes={"tiny": tiny_index}, unknown_option=1)


def test_settings_from_environment(tiny_index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKGRAM_INDEXES", json.dumps({"tiny": str(tiny_index)}))
    monkeypatch.setenv("TASKGRAM_MAX_BATCH", "7")
    monkeypatch.setenv("TASKGRAM_API_KEYS", json.dumps(["x" * 20]))
    settings = Settings()
    assert settings.indexes == {"tiny": tiny_index.resolve()} and settings.max_batch == 7
    assert settings.api_keys == ["x" * 20] and settings.host == "127.0.0.1"


def test_broken_indexes_are_refused_with_the_reason(tiny_index: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    settings = Settings(indexes={"tiny": tiny_index, "broken": broken}, access_log=False, metrics=False)
    with _client(settings) as api:
        assert api.get("/v1/health").json()["status"] == "degraded"
        refused = api.get("/v1/indexes").json()["refused"]
        assert "manifest" in refused["broken"]
        body = _problem(api.post("/v1/count", json={"index": "broken", "queries": ["a"]}), 404)
        assert "could not be opened" in body["detail"] and "manifest" in body["detail"]
    only_broken = Settings(indexes={"broken": broken}, access_log=False, metrics=False)
    with pytest.raises(RuntimeError, match="no index could be opened"), _client(only_broken):
        pass


def test_metrics_count_batches(api: TestClient) -> None:
    api.post("/v1/count", json={"index": "tiny", "queries": ["cat", "dog"]})
    text = api.get("/metrics").text
    assert "taskgram" in text
