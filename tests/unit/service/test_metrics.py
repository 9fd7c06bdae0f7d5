"""The service's observability layer: Prometheus metrics (service.metrics) and structured request logs
(service.logs), exercised through a small FastAPI app wired the way the service's app factory wires
them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, SecretStr

from indexer.manifest import FileInfo, Manifest, ShardInfo, TokenizerInfo, write_manifest
from service.logs import (
    REDACTED,
    RequestIdMiddleware,
    configure_logging,
    current_request_id,
    logging_config,
    redact,
    safe_settings,
)
from service.metrics import MAX_ERROR_TYPES, UNMATCHED_ENDPOINT, Metrics, install_metrics, record_batch

PROBLEM = "application/problem+json"


class UnknownIndexError(Exception):
    pass


class CountRequest(BaseModel):
    queries: list[str]


def make_app(*, process: bool = False) -> FastAPI:
    app = FastAPI()
    log = logging.getLogger("taskgram.test")

    @app.exception_handler(UnknownIndexError)
    def unknown_index(request: Request, exc: UnknownIndexError) -> JSONResponse:
        body = {"type": "https://taskgram.example/problems/unknown-index", "title": "Unknown index",
                "status": 404, "detail": str(exc)}  # fmt: skip
        return JSONResponse(body, status_code=404, media_type=PROBLEM)

    @app.post("/v1/count")
    def count(body: CountRequest) -> dict[str, list[int]]:  # plain def: runs in the thread pool
        record_batch(len(body.queries))
        log.info("counting", extra={"n_queries": len(body.queries)})
        return {"counts": [len(q) for q in body.queries]}

    @app.post("/v1/async")
    async def count_async(body: CountRequest) -> dict[str, int]:
        record_batch(1)
        record_batch(len(body.queries) - 1)
        return {"n": len(body.queries)}

    @app.get("/v1/indexes/{name}")
    def get_index(name: str) -> dict[str, str]:
        raise UnknownIndexError(name)

    @app.get("/v1/request-id")
    def request_id(request: Request) -> dict[str, str | None]:
        return {"context": current_request_id(), "state": request.state.request_id}

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("api_key=hunter2 exploded")

    @app.get("/problem/{kind}")
    def problem(kind: str) -> JSONResponse:
        return JSONResponse(
            {"type": f"urn:problem/{kind}", "status": 400}, status_code=400, media_type=PROBLEM
        )

    router = APIRouter()

    @router.get("/shards/{index}/{shard}")
    def shard(index: str, shard: int) -> dict[str, int]:
        record_batch(1)
        return {"shard": shard}

    app.include_router(router, prefix="/v1")
    install_metrics(app, process=process)
    app.add_middleware(RequestIdMiddleware)
    return app


def scrape(
    client: TestClient, accept: str | None = None
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics", headers={"accept": accept} if accept else {})
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(make_app(), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Logs of the test as JSON lines; the logging configuration is restored afterwards."""
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    saved = {name: (lg.handlers[:], lg.level, lg.propagate)
             for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
             for lg in [logging.getLogger(name)]}  # fmt: skip
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="json", stream=stream)
    yield stream
    root.handlers[:], root.level = saved_root
    for name, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate


def records(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------------
# metrics


def test_requests_latency_and_batch_sizes_per_endpoint_template(client: TestClient) -> None:
    for batch in (["a", "bb"], ["x"] * 5, ["q"] * 100_000):
        response = client.post("/v1/count", json={"queries": batch})
        assert response.status_code == 200
        assert response.json()["counts"][0] == len(batch[0])
    assert client.post("/v1/async", json={"queries": ["a", "b", "c"]}).json() == {"n": 3}

    s = scrape(client)
    ep = {"method": "POST", "endpoint": "/v1/count"}
    assert value(s, "taskgram_http_requests_total", **ep, status="200") == 3
    assert value(s, "taskgram_http_request_duration_seconds_count", **ep) == 3
    assert value(s, "taskgram_http_request_duration_seconds_sum", **ep) > 0
    assert value(s, "taskgram_queries_per_request_count", endpoint="/v1/count") == 3
    assert value(s, "taskgram_queries_per_request_sum", endpoint="/v1/count") == 100_007
    assert value(s, "taskgram_queries_per_request_bucket", endpoint="/v1/count", le="5.0") == 2
    assert value(s, "taskgram_queries_per_request_bucket", endpoint="/v1/count", le="50000.0") == 2
    assert value(s, "taskgram_queries_per_request_bucket", endpoint="/v1/count", le="100000.0") == 3
    assert value(s, "taskgram_queries_total", endpoint="/v1/count") == 100_007
    # record_batch in an async route; calls add up
    assert value(s, "taskgram_queries_total", endpoint="/v1/async") == 3
    assert value(s, "taskgram_http_requests_in_progress") == 1  # the scrape itself


def test_routes_of_included_routers_are_labelled_with_their_full_template(client: TestClient) -> None:
    for shard in (0, 1, 2):
        assert client.get(f"/v1/shards/pile/{shard}").json() == {"shard": shard}
    assert client.get("/v1/shards/pile/x").status_code == 422
    s = scrape(client)
    template = "/v1/shards/{index}/{shard}"
    assert value(s, "taskgram_http_requests_total", method="GET", endpoint=template, status="200") == 3
    assert value(s, "taskgram_errors_total", endpoint=template, type="http-422", status="422") == 1
    assert value(s, "taskgram_queries_total", endpoint=template) == 3
    assert value(s, "taskgram_errors_total", endpoint="/v1/count", type="http-422", status="422") == 0


def test_errors_are_counted_by_type_and_status(client: TestClient) -> None:
    assert client.get("/v1/indexes/nope").status_code == 404
    assert client.get("/v1/indexes/other").status_code == 404
    assert client.get("/no/such/path").status_code == 404
    assert client.post("/v1/count", json={"queries": "not a list"}).status_code == 422
    assert client.get("/boom").status_code == 500
    assert client.get("/problem/too-large").status_code == 400

    s = scrape(client)
    assert (
        value(s, "taskgram_errors_total", endpoint="/v1/indexes/{name}", type="unknown-index", status="404")
        == 2
    )
    assert (
        value(s, "taskgram_http_requests_total", method="GET", endpoint="/v1/indexes/{name}", status="404")
        == 2
    )
    assert value(s, "taskgram_errors_total", endpoint=UNMATCHED_ENDPOINT, type="http-404", status="404") == 1
    assert value(s, "taskgram_errors_total", endpoint="/v1/count", type="http-422", status="422") == 1
    assert value(s, "taskgram_errors_total", endpoint="/boom", type="RuntimeError", status="500") == 1
    assert value(s, "taskgram_http_requests_total", method="GET", endpoint="/boom", status="500") == 1
    assert value(s, "taskgram_errors_total", endpoint="/problem/{kind}", type="too-large", status="400") == 1
    # a failed request is not a batch of answered queries
    assert value(s, "taskgram_queries_per_request_count", endpoint="/v1/count") == 0
    assert value(s, "taskgram_http_requests_in_progress") == 1


def test_error_type_labels_are_bounded(client: TestClient) -> None:
    for i in range(MAX_ERROR_TYPES + 6):
        client.get(f"/problem/kind{i}")
    s = scrape(client)
    types = {dict(labels)["type"] for (name, labels) in s if name == "taskgram_errors_total"}
    assert len(types) == MAX_ERROR_TYPES + 1
    assert value(s, "taskgram_errors_total", endpoint="/problem/{kind}", type="other", status="400") == 6


def test_each_app_has_its_own_registry() -> None:
    with TestClient(make_app()) as one, TestClient(make_app()) as two:
        one.post("/v1/count", json={"queries": ["a"]})
        assert value(scrape(one), "taskgram_queries_total", endpoint="/v1/count") == 1
        assert value(scrape(two), "taskgram_queries_total", endpoint="/v1/count") == 0


def test_record_batch_validates_and_is_a_no_op_outside_requests() -> None:
    record_batch(7)  # no request: nothing to record, no error
    for bad in (-1, True, 2.0, "3"):
        with pytest.raises(ValueError, match="non-negative int"):
            record_batch(bad)  # type: ignore[arg-type]


def test_metrics_route_can_sit_behind_the_api_key_check() -> None:
    def require_key(request: Request) -> None:
        if request.headers.get("authorization") != "Bearer k":
            raise HTTPException(status_code=401, detail="missing key")

    app = FastAPI()
    install_metrics(app, dependencies=[Depends(require_key)], process=False)
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401
        answer = client.get("/metrics", headers={"authorization": "Bearer k"})
        assert answer.status_code == 200
        assert 'taskgram_errors_total{endpoint="/metrics",status="401",type="http-401"} 1.0' in answer.text


def test_exposition_formats_and_process_metrics() -> None:
    with TestClient(make_app(process=True)) as client:
        response = client.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        s = scrape(client)
        assert value(s, "process_resident_memory_bytes") > 0
        assert any(name == "python_info" for name, _ in s)
        open_metrics = client.get("/metrics", headers={"accept": "application/openmetrics-text"})
        assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
        assert open_metrics.text.rstrip().endswith("# EOF")
        assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def _manifest(shards: int) -> Manifest:
    shard_infos = [
        ShardInfo(
            name=f"shard-{i:05d}",
            n_tokens=1000 * (i + 1),
            n_docs=10 * (i + 1),
            suffix_dtype="uint32",
            files={
                "tokens.bin": FileInfo(bytes=2 * (1000 * (i + 1) + 10 * (i + 1)), sha256="0" * 64),
                "suffix_array.bin": FileInfo(bytes=4 * 1000 * (i + 1), sha256="1" * 64),
            },
        )
        for i in range(shards)
    ]
    return Manifest(
        format_version=1,
        taskgram_version="0.1.0",
        created_at="2026-01-01T00:00:00Z",
        tokenizer=TokenizerInfo(kind="transformers", name="pythia", sha256="2" * 64, vocab_size=50277),
        normalization="none",
        token_dtype="uint16",
        n_tokens=sum(s.n_tokens for s in shard_infos),
        n_docs=sum(s.n_docs for s in shard_infos),
        shards=shard_infos,
        inputs=[],
    )


def test_index_sizes_from_manifest_and_directory(tmp_path: Path) -> None:
    metrics = Metrics(process=False)
    metrics.track_index("pile", _manifest(2))
    write_manifest(tmp_path, _manifest(1))
    metrics.track_index("sample", tmp_path)
    s = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(metrics.exposition()[0].decode())
        for sample in family.samples
    }
    assert value(s, "taskgram_index_tokens", index="pile") == 3000
    assert value(s, "taskgram_index_documents", index="pile") == 30
    assert value(s, "taskgram_index_shards", index="pile") == 2
    assert value(s, "taskgram_index_bytes", index="pile", file="tokens.bin") == 2 * 1010 + 2 * 2020
    assert value(s, "taskgram_index_bytes", index="pile", file="suffix_array.bin") == 12000
    assert value(s, "taskgram_index_tokens", index="sample") == 1000
    info = {"index": "sample", "format_version": "1", "token_dtype": "uint16", "normalization": "none",
            "tokenizer": "pythia"}  # fmt: skip
    assert value(s, "taskgram_index_info", **info) == 1
    metrics.untrack_index("pile")
    assert b'index="pile"' not in metrics.exposition()[0]


def test_track_index_refuses_a_directory_without_manifest(tmp_path: Path) -> None:
    from indexer.format import IndexFormatError

    with pytest.raises(IndexFormatError, match="manifest"):
        Metrics(process=False).track_index("x", tmp_path)


# --------------------------------------------------------------------------------------------------
# logs


def test_access_log_is_json_with_request_id_and_no_query_string(client: TestClient, log_stream) -> None:
    response = client.post("/v1/count?api_key=hunter2", json={"queries": ["a"]},
                           headers={"authorization": "Bearer sekrit"})  # fmt: skip
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 32

    logged = records(log_stream)
    inner = [r for r in logged if r["msg"] == "counting"]
    access = [r for r in logged if r["logger"] == "taskgram.access"]
    assert len(inner) == 1 and inner[0]["request_id"] == request_id and inner[0]["n_queries"] == 1
    assert len(access) == 1
    line = access[0]
    assert line["request_id"] == request_id
    assert (line["method"], line["path"], line["status"], line["level"]) == ("POST", "/v1/count", 200, "info")
    assert line["duration_ms"] >= 0
    assert line["ts"].endswith("Z")
    text = log_stream.getvalue()
    assert "hunter2" not in text and "sekrit" not in text


def test_request_id_is_taken_from_the_caller_only_when_well_formed(client: TestClient) -> None:
    sent = client.get("/v1/request-id", headers={"x-request-id": "trace-42.a:b"})
    assert sent.headers["x-request-id"] == "trace-42.a:b"
    assert sent.json() == {"context": "trace-42.a:b", "state": "trace-42.a:b"}
    for bad in ("has space", "x" * 129, "new\\nline", ""):
        answer = client.get("/v1/request-id", headers={"x-request-id": bad})
        assert answer.headers["x-request-id"] != bad
        assert len(answer.headers["x-request-id"]) == 32
        assert answer.json()["context"] == answer.headers["x-request-id"]
    assert current_request_id() is None


def test_unhandled_exception_is_logged_once_with_type_and_redacted(client: TestClient, log_stream) -> None:
    response = client.get("/boom")
    assert response.status_code == 500
    failed = [r for r in records(log_stream) if r["logger"] == "taskgram.access"]
    assert len(failed) == 1
    assert failed[0]["level"] == "error" and failed[0]["status"] == 500
    assert failed[0]["exc_type"] == "RuntimeError"
    assert "request_id" in failed[0] and "RuntimeError" in failed[0]["exc"]
    assert "hunter2" not in log_stream.getvalue()


def test_text_format_and_reconfiguration(log_stream) -> None:
    configure_logging(level="warning", fmt="text", stream=log_stream)
    configure_logging(level="warning", fmt="text", stream=log_stream)  # replaces, never duplicates
    assert len(logging.getLogger().handlers) == 1
    logging.getLogger("taskgram.x").warning("token=abc value %d", 3, extra={"shard": 2})
    logging.getLogger("taskgram.x").info("not shown at WARNING")
    lines = log_stream.getvalue().splitlines()
    assert len(lines) == 1
    assert f" WARNING taskgram.x [-] token={REDACTED} value 3 shard=2" in lines[0]


def test_logging_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="log format"):
        logging_config(fmt="xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="log level"):
        logging_config(level="LOUD")
    config = logging_config(level="debug", fmt="json")
    assert config["root"]["level"] == "DEBUG"
    assert config["loggers"]["uvicorn.access"]["propagate"] is False


def test_redaction_masks_secrets_but_not_token_counts() -> None:
    assert "abc.def" not in redact("Authorization: Bearer abc.def-1")
    assert redact("GET /x?api_key=xyz&n=1") == f"GET /x?api_key={REDACTED}&n=1"
    assert redact('password: "a b" next') == f"password: {REDACTED} next"
    assert redact("built: tokens=500 max_query_tokens=5 tokenizer=pythia") == (
        "built: tokens=500 max_query_tokens=5 tokenizer=pythia"
    )


def test_safe_settings_masks_secret_fields() -> None:
    class Settings(BaseModel):
        host: str = "127.0.0.1"
        api_keys: list[str] = ["k1", "k2"]
        admin_token: str = "t0"
        signing: SecretStr = SecretStr("s3")
        max_query_tokens: int = 500

    safe = safe_settings(Settings())
    assert safe == {"host": "127.0.0.1", "api_keys": REDACTED, "admin_token": REDACTED, "signing": REDACTED,
                    "max_query_tokens": 500}  # fmt: skip
    assert safe_settings({"password": "p", "port": 8000}) == {"password": REDACTED, "port": 8000}
    with pytest.raises(TypeError):
        safe_settings(42)
