"""Prometheus metrics of the service: requests, latency per endpoint, queries per batch, errors by type,
index sizes, and the process (resident memory, CPU, open files).

Three calls wire it into the app::

    metrics = install_metrics(app, dependencies=auth)   # in create_app: middleware + GET /metrics
    metrics.track_index(name, manifest_or_dir)          # in the lifespan, for each index opened
    record_batch(len(request.queries))                  # in a route: how many queries this request carries

Every metric lives in the ``Metrics`` object's own ``CollectorRegistry`` (never the global one), so two
apps in one process (tests) do not share counts. Endpoints are labelled by their route template
(``/v1/count``, not the raw path), and unmatched paths by ``<unmatched>``, so label sets stay small.

Error types come from the responses themselves: a ``application/problem+json`` answer is labelled by the
last path segment of its ``type`` URI (``.../problems/unknown-index`` → ``unknown-index``), any other
4xx/5xx answer by ``http-<status>``, and an exception that escapes the app by its class name. The
middleware never changes a response.

With several uvicorn worker processes each process keeps its own counts and ``/metrics`` shows the one
that answered; the service is meant to run one process with a thread pool (the numba kernels release
the GIL), which keeps the counts whole.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from indexer.manifest import Manifest, read_manifest

__all__ = [
    "BATCH_BUCKETS",
    "LATENCY_BUCKETS",
    "UNMATCHED_ENDPOINT",
    "Metrics",
    "MetricsMiddleware",
    "install_metrics",
    "metrics_router",
    "record_batch",
]


NAMESPACE = "taskgram"
# Single counts answer in tens of microseconds, large batches in seconds.
LATENCY_BUCKETS = (
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
# A batch may carry 100,000 queries or more.
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000,
                 100_000, 200_000, 500_000, 1_000_000)  # fmt: skip
UNMATCHED_ENDPOINT = "<unmatched>"
MAX_ERROR_TYPES = 64  # distinct error-type labels kept; later ones are counted as "other"
_PROBLEM_BODY_LIMIT = 64 * 1024  # bytes of an error body read to find its problem type
_LABEL_CLEAN = re.compile(r"[^A-Za-z0-9_.:-]+")


@dataclass
class _RequestRecord:
    """What a route tells the middleware about the request it is handling."""

    queries: int | None = None


_current_request: ContextVar[_RequestRecord | None] = ContextVar("taskgram_metrics_request", default=None)


def record_batch(n_queries: int) -> None:
    """Record that the request being handled carries ``n_queries`` queries (called once per request, or
    once per part; the parts add up). Works in ``def`` and ``async def`` routes; outside a request, or
    when metrics are not installed, it does nothing."""
    if isinstance(n_queries, bool) or not isinstance(n_queries, int) or n_queries < 0:
        raise ValueError(f"n_queries must be a non-negative int, got {n_queries!r}")
    record = _current_request.get()
    if record is not None:
        record.queries = (record.queries or 0) + n_queries


@dataclass(frozen=True)
class _IndexSizes:
    tokens: int
    documents: int
    shards: int
    bytes_by_file: dict[str, int]
    info: dict[str, str]


class _IndexCollector(Collector):
    """Index sizes, read from manifests (immutable while an index is served), exported at scrape time."""

    def __init__(self) -> None:
        self.indexes: dict[str, _IndexSizes] = {}

    def collect(self) -> Iterable[Metric]:
        tokens = GaugeMetricFamily(
            f"{NAMESPACE}_index_tokens", "Tokens in the index (separators excluded).", labels=["index"]
        )
        documents = GaugeMetricFamily(
            f"{NAMESPACE}_index_documents", "Documents in the index.", labels=["index"]
        )
        shards = GaugeMetricFamily(f"{NAMESPACE}_index_shards", "Shards of the index.", labels=["index"])
        size = GaugeMetricFamily(
            f"{NAMESPACE}_index_bytes",
            "Bytes on disk of the index's shard files, summed over shards, by file.",
            labels=["index", "file"],
        )
        info = InfoMetricFamily(f"{NAMESPACE}_index", "Identity of each served index.", labels=["index"])
        for name, sizes in sorted(self.indexes.items()):
            tokens.add_metric([name], sizes.tokens)
            documents.add_metric([name], sizes.documents)
            shards.add_metric([name], sizes.shards)
            for file_name, n_bytes in sorted(sizes.bytes_by_file.items()):
                size.add_metric([name, file_name], n_bytes)
            info.add_metric([name], sizes.info)
        return [tokens, documents, shards, size, info]


class _ShardGroupCollector(Collector):
    """State of the shard groups of indexes served across machines (``taskgram serve --ray``), asked at
    scrape time."""

    def __init__(self) -> None:
        self.sources: dict[str, Callable[[], list[dict[str, Any]]]] = {}

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            f"{NAMESPACE}_shard_group_up",
            "1 when the shard group answered its state request, else 0.",
            labels=["index", "group", "shards"],
        )
        failures = GaugeMetricFamily(
            f"{NAMESPACE}_shard_group_failed_requests",
            "Requests that failed because this shard group was down or late, since the ingress started.",
            labels=["index", "group"],
        )
        for name, source in sorted(self.sources.items()):
            for g in source():
                shards = g["shards"]
                span = f"{shards[0]}-{shards[-1]}" if shards else ""
                up.add_metric([name, g["group"], span], 1 if g["state"] == "up" else 0)
                failures.add_metric([name, g["group"]], g.get("failures", 0))
        return [up, failures]


class Metrics:
    """The service's metrics and the registry that exports them."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered, by endpoint and status.",
            ["method", "endpoint", "status"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time from receiving a request to the end of its response, by endpoint.",
            ["method", "endpoint"],
            namespace=NAMESPACE,
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.in_progress = Gauge(
            "http_requests_in_progress", "HTTP requests being handled now.", namespace=NAMESPACE, registry=r
        )
        self.batch_size = Histogram(
            "queries_per_request",
            "Queries carried by one successful request (its batch size), by endpoint.",
            ["endpoint"],
            namespace=NAMESPACE,
            registry=r,
            buckets=BATCH_BUCKETS,
        )
        self.queries = Counter(
            "queries",
            "Queries answered (the sum of successful batch sizes), by endpoint.",
            ["endpoint"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.errors = Counter(
            "errors",
            "Error answers and escaped exceptions, by endpoint and error type.",
            ["endpoint", "type", "status"],
            namespace=NAMESPACE,
            registry=r,
        )
        self._index_collector = _IndexCollector()
        r.register(self._index_collector)
        self._group_collector = _ShardGroupCollector()
        r.register(self._group_collector)
        if process:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        self._error_types: set[str] = set()
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._batch_children: dict[str, tuple[Any, Any]] = {}

    # -- indexes -------------------------------------------------------------------------------------
    def track_index(self, name: str, index: Manifest | str | os.PathLike[str]) -> None:
        """Export the sizes of index ``name`` (a manifest, or an index directory whose manifest is read)."""
        manifest = index if isinstance(index, Manifest) else read_manifest(Path(index))
        bytes_by_file: dict[str, int] = {}
        for shard in manifest.shards:
            for file_name, file_info in shard.files.items():
                bytes_by_file[file_name] = bytes_by_file.get(file_name, 0) + file_info.bytes
        self._index_collector.indexes[name] = _IndexSizes(
            tokens=manifest.n_tokens,
            documents=manifest.n_docs,
            shards=len(manifest.shards),
            bytes_by_file=bytes_by_file,
            info={
                "format_version": str(manifest.format_version),
                "token_dtype": manifest.token_dtype,
                "normalization": manifest.normalization,
                "tokenizer": manifest.tokenizer.name,
            },
        )

    def untrack_index(self, name: str) -> None:
        self._index_collector.indexes.pop(name, None)

    def track_shard_groups(self, name: str, states: Callable[[], list[dict[str, Any]]]) -> None:
        """Export the state of index ``name``'s shard groups, from ``states()`` at scrape time (a list of
        ``{"group", "shards", "state", "failures"}``, see ``service.ray_serve.RemoteIndex.group_states``)."""
        self._group_collector.sources[name] = states

    # -- requests ------------------------------------------------------------------------------------
    def error_type_label(self, error_type: str) -> str:
        """A bounded label for an error type: cleaned, at most 64 characters, and at most
        MAX_ERROR_TYPES distinct values (then ``other``)."""
        label = _LABEL_CLEAN.sub("_", error_type)[:64] or "unknown"
        if label not in self._error_types:
            if len(self._error_types) >= MAX_ERROR_TYPES:
                return "other"
            self._error_types.add(label)
        return label

    def observe(
        self,
        *,
        method: str,
        endpoint: str,
        status: int,
        seconds: float,
        queries: int | None,
        error_type: str | None,
    ) -> None:
        """Record one finished request."""
        key = (method, endpoint, status)
        children = self._children.get(key)
        if children is None:  # label lookups are slow; routes x methods x statuses are few
            children = self._children[key] = (
                self.requests.labels(method, endpoint, str(status)),
                self.latency.labels(method, endpoint),
            )
        children[0].inc()
        children[1].observe(seconds)
        if error_type is not None:
            self.errors.labels(endpoint, self.error_type_label(error_type), str(status)).inc()
        elif queries is not None and status < 400:
            batch = self._batch_children.get(endpoint)
            if batch is None:
                batch = self._batch_children[endpoint] = (
                    self.batch_size.labels(endpoint),
                    self.queries.labels(endpoint),
                )
            batch[0].observe(queries)
            batch[1].inc(queries)

    def exposition(self, accept_header: str = "") -> tuple[bytes, str]:
        """The registry in the text format the scraper asked for (Prometheus text or OpenMetrics)."""
        encoder, content_type = choose_encoder(accept_header)
        return encoder(self.registry), content_type


def _endpoint_label(scope: Scope) -> str:
    """The route template that answered (``/v1/indexes/{name}``), never the raw path.

    A route of a router included with a prefix may carry only its own part of the template (FastAPI
    includes routers lazily); the prefix is then the literal part of the path before the route's own
    pattern matches."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str):
        return UNMATCHED_ENDPOINT
    regex = getattr(route, "path_regex", None)
    path = scope.get("path", "")
    if regex is None or not isinstance(path, str) or regex.match(path):
        return template
    start = path.find("/", 1)
    while start > 0:
        if regex.match(path[start:]):
            return path[:start] + template
        start = path.find("/", start + 1)
    return template


def _problem_type(body: bytes) -> str | None:
    """The last path segment of a problem+json ``type`` (RFC 9457); None when there is none."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    problem_type = payload.get("type") if isinstance(payload, dict) else None
    if not isinstance(problem_type, str) or problem_type in ("", "about:blank"):
        return None
    return problem_type.rstrip("/").rsplit("/", 1)[-1].split("#")[-1] or None


class MetricsMiddleware:
    """Pure ASGI middleware that records every HTTP request in a ``Metrics`` object."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = _RequestRecord()
        token = _current_request.set(record)
        status = 500
        started = False
        is_problem = False
        body = bytearray()

        async def send_and_watch(message: Message) -> None:
            nonlocal status, started, is_problem
            if message["type"] == "http.response.start":
                status = int(message["status"])
                started = True
                if status >= 400:
                    for key, value in message.get("headers", ()):
                        if key.lower() == b"content-type":
                            is_problem = value.split(b";")[0].strip().lower() == b"application/problem+json"
            elif message["type"] == "http.response.body" and is_problem and len(body) < _PROBLEM_BODY_LIMIT:
                body.extend(message.get("body", b""))
            await send(message)

        self.metrics.in_progress.inc()
        t0 = time.perf_counter()
        error_type: str | None = None
        try:
            await self.app(scope, receive, send_and_watch)
        except Exception as exc:
            error_type = type(exc).__name__
            if not started:
                status = 500
            raise
        finally:
            seconds = time.perf_counter() - t0
            self.metrics.in_progress.dec()
            _current_request.reset(token)
            if error_type is None and status >= 400:
                error_type = (_problem_type(bytes(body)) if is_problem else None) or f"http-{status}"
            self.metrics.observe(
                method=scope.get("method", "GET"),
                endpoint=_endpoint_label(scope),
                status=status,
                seconds=seconds,
                queries=record.queries,
                error_type=error_type,
            )


def metrics_router(metrics: Metrics, path: str = "/metrics", dependencies: Sequence[Any] = ()) -> APIRouter:
    """An APIRouter with ``GET {path}`` serving ``metrics`` in the Prometheus text format (OpenMetrics
    when the scraper asks for it), behind ``dependencies`` (e.g. the API-key check). Left out of the
    OpenAPI schema: it is not part of the query API."""
    router = APIRouter(dependencies=list(dependencies))

    @router.get(path, include_in_schema=False)
    def get_metrics(request: Request) -> Response:
        payload, content_type = metrics.exposition(request.headers.get("accept", ""))
        return Response(content=payload, media_type=content_type)

    return router


def install_metrics(
    app: FastAPI,
    *,
    path: str = "/metrics",
    dependencies: Sequence[Any] = (),
    registry: CollectorRegistry | None = None,
    process: bool = True,
) -> Metrics:
    """Add the metrics middleware and ``GET {path}`` (behind ``dependencies``, e.g. ``[Depends(auth)]``) to
    a FastAPI ``app`` before it starts; the ``Metrics`` object is returned and kept as
    ``app.state.metrics``."""
    metrics = Metrics(registry, process=process)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.include_router(metrics_router(metrics, path, dependencies))
    app.state.metrics = metrics
    return metrics
