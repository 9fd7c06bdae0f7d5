"""No input crashes the server: random JSON bodies (hypothesis) on every POST endpoint get a 2xx or a
4xx/503 answer in the documented shape, never a 500; and a 100,000-pair request works."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.app import create_app
from service.settings import Settings

ENDPOINTS = [
    "/v1/count", "/v1/doc_freq", "/v1/cooccurrence", "/v1/cooccurrence/windowed", "/v1/ntd", "/v1/prob",
    "/v1/infgram_prob", "/v1/documents", "/v1/tokenize", "/",
]  # fmt: skip

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)
phrase = st.one_of(
    st.text(max_size=12),
    st.fixed_dictionaries({"ids": st.lists(st.integers(-5, 70_000), max_size=4)}),
    st.fixed_dictionaries({"any": st.lists(st.text(max_size=6), max_size=3)}),
    json_values,
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"index": st.sampled_from(["tiny", "nope", "", "../tiny"]), "queries": st.lists(phrase, max_size=4)},
        optional={
            "window": st.integers(-3, 10**6),
            "top_k": json_values,
            "space": st.sampled_from(["auto", "exact", "both", "x"]),
            "limit": st.integers(-1, 1000),
        },
    ),
    st.fixed_dictionaries(
        {"index": st.just("tiny"), "queries": st.lists(st.lists(phrase, max_size=3), max_size=3)},
    ),
    st.fixed_dictionaries(
        {
            "index": st.just("tiny"),
            "query_type": st.sampled_from(["count", "prob", "ntd", "infgram_prob", "search_docs", "find"]),
        },
        optional={"query": st.text(max_size=30), "query_ids": json_values, "maxnum": json_values},
    ),
)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, pythia_tokenizer: Any) -> Iterator[TestClient]:
    from indexer.pipeline import build_index

    root = tmp_path_factory.mktemp("hostile")
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["a b c a b", "b c d", "a AND b OR c"]))
    build_index([corpus], root / "tiny", tokenizer=pythia_tokenizer, progress=False)
    settings_ = Settings(indexes={"tiny": Path(root / "tiny")}, access_log=False, metrics=False)
    with TestClient(create_app(settings_), raise_server_exceptions=False) as client:
        yield client


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(ENDPOINTS), body=bodies)
def test_random_bodies_never_crash(api: TestClient, endpoint: str, body: Any) -> None:
    response = api.post(endpoint, content=json.dumps(body).encode())
    assert response.status_code in (200, 400, 404, 413, 422, 503), (endpoint, body, response.text)
    payload = response.json()
    if response.status_code == 200:
        assert "error" not in payload
    elif endpoint == "/":
        assert set(payload) == {"error"}
    else:
        assert response.headers["content-type"] == "application/problem+json"


def test_hundred_thousand_pairs_in_one_request(api: TestClient) -> None:
    four = [["a", "b"], ["b", "c"], ["b", "d"], [{"ids": [66]}, "c"]]  # " b" and " c": documents 0 and 2
    small = api.post("/v1/cooccurrence", json={"index": "tiny", "queries": four}).json()["results"]
    assert small == [1, 2, 0, small[3]]  # " b d" never: document 1 starts with "b" (no leading space)
    response = api.post("/v1/cooccurrence", json={"index": "tiny", "queries": four * 25_000})
    assert response.status_code == 200
    assert response.json()["results"] == small * 25_000
