"""Transports of the taskgram clients: what carries out an :class:`Operation`.

The query logic of the clients (:mod:`clients.client`: batching, halving a refused batch, the result cache)
does no I/O: it yields :class:`Operation` values, one API request each, and gets back the decoded JSON
answer. A transport carries an operation out::

    BaseTransport.handle(op) -> JSON           AsyncBaseTransport.handle_async(op) -> JSON
     ├── HTTPTransport       httpx, retries     └── AsyncHTTPTransport    httpx, retries
     └── LocalTransport      the engine in this process (no server, no HTTP): clients.local

Both kinds answer with the same JSON and fail with the same :mod:`clients.errors` exceptions: over HTTP
:func:`clients.errors.error_from_response` reads the server's problem+json; in process the one table
:data:`clients.local.ENGINE_ERRORS` maps the engine's exceptions (most specific first, like httpx's
``HTTPCORE_EXC_MAP``) onto the classes the server's answers become, with the same status, type and title.
Nothing here imports the web framework or the service; :mod:`clients.local` imports the engine (not the
service's web layer) and is loaded only by an in-process client.
"""

from __future__ import annotations

import dataclasses
import operator
import random
import socket
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from clients.errors import (
    ProtocolError,
    TaskgramError,
    error_from_response,
    error_from_transport,
)

__all__ = [
    "AsyncBaseTransport",
    "AsyncHTTPTransport",
    "BaseTransport",
    "HTTPTransport",
    "Operation",
]


@dataclasses.dataclass(frozen=True)
class Operation:
    """One request of the taskgram API, before any I/O.

    ``route`` is the route as the service declares it (``"/v1/count"``,
    ``"/v1/indexes/{name}/documents/{doc_id}"``); ``path_params`` fill its ``{...}`` fields, ``params`` are
    the query string and ``body`` the JSON body of a POST (``{"index", "queries", **options}``).
    """

    method: str
    route: str
    body: Any = None
    path_params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    params: Mapping[str, Any] | None = None

    def path(self) -> str:
        """The URL path: ``route`` with each path parameter filled in, percent-encoded."""
        return self.route.format(**{k: quote(str(v), safe="") for k, v in self.path_params.items()})


class BaseTransport:
    """Carries out operations synchronously. ``handle`` returns the decoded JSON answer or raises a
    :class:`clients.errors.TaskgramError`."""

    def handle(self, op: Operation) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the transport holds (connections, mapped files)."""


class AsyncBaseTransport:
    """Carries out operations on an asyncio event loop."""

    async def handle_async(self, op: Operation) -> Any:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release what the transport holds."""


# --------------------------------------------------------------------------------------------------
# HTTP

_SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
_RETRYABLE = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


def _json_default(value: Any) -> Any:
    """orjson fallback: numpy integers and arrays (token ids often are) as plain ints and lists."""
    if hasattr(value, "tolist") and hasattr(value, "dtype"):
        return value.tolist()
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{type(value).__name__} is not JSON serializable") from None


class _HttpPolicy:
    """What the sync and async HTTP transports share: headers, body encoding, answer decoding and the
    retry policy (connection errors and 503 answers, exponential backoff with jitter, ``Retry-After``)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        timeout: float | None,
        retries: int,
        backoff: float,
        max_backoff: float,
    ) -> None:
        if retries < 0 or backoff < 0 or max_backoff < 0:
            raise ValueError("retries, backoff and max_backoff must be >= 0")
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.headers = {"Accept": "application/json"}
        if api_key is not None:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = httpx.Timeout(timeout)

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Exponential backoff with jitter; a server's Retry-After (seconds) is honoured, capped."""
        if response is not None:
            retry_after = response.headers.get("retry-after", "")
            if retry_after.isdigit():
                return min(float(retry_after), self.max_backoff)
        return min(self.backoff * (2**attempt), self.max_backoff) * (0.5 + random.random() / 2)

    @staticmethod
    def request(op: Operation) -> dict[str, Any]:
        """The keyword arguments of ``httpx.Client.request`` for ``op``."""
        content = None if op.body is None else orjson.dumps(op.body, default=_json_default)
        headers = {"Content-Type": "application/json"} if content is not None else None
        return {
            "method": op.method,
            "url": op.path(),
            "content": content,
            "params": dict(op.params) if op.params else None,
            "headers": headers,
        }

    @staticmethod
    def result(op: Operation, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise error_from_response(
                response.status_code, response.headers.get("content-type", ""), response.content
            )
        try:
            return orjson.loads(response.content)
        except ValueError as err:
            raise ProtocolError(f"{op.method} {op.path()}: the answer is not JSON") from err

    def retryable(self, attempt: int, err: Exception | None, response: httpx.Response | None) -> bool:
        if attempt >= self.retries:
            return False
        if response is not None:
            return response.status_code == 503
        return isinstance(err, _RETRYABLE)

    def transport_error(self, op: Operation, err: httpx.HTTPError) -> TaskgramError:
        return error_from_transport(op.method, f"{self.base_url}{op.path()}", err)


class HTTPTransport(BaseTransport):
    """Operations as HTTP requests to a taskgram server (httpx; thread-safe, pooled connections).

    ``transport`` is an httpx transport (e.g. ``httpx.MockTransport`` in tests); by default one with
    TCP_NODELAY (httpx writes headers and body separately: Nagle's algorithm would delay the body).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float | None = 120.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.policy = _HttpPolicy(base_url, api_key, timeout, retries, backoff, max_backoff)
        if transport is None:
            transport = httpx.HTTPTransport(socket_options=_SOCKET_OPTIONS)
        self._http = httpx.Client(
            base_url=self.policy.base_url,
            headers=self.policy.headers,
            timeout=self.policy.timeout,
            transport=transport,
        )

    def handle(self, op: Operation) -> Any:
        policy = self.policy
        request = policy.request(op)
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = self._http.request(**request)
            except httpx.HTTPError as err:
                if not policy.retryable(attempt, err, None):
                    raise policy.transport_error(op, err) from err
            else:
                if not policy.retryable(attempt, None, response):
                    return policy.result(op, response)
            time.sleep(policy.delay(attempt, response))
            attempt += 1

    def close(self) -> None:
        self._http.close()


class AsyncHTTPTransport(AsyncBaseTransport):
    """:class:`HTTPTransport` for asyncio (``httpx.AsyncClient``)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float | None = 120.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.policy = _HttpPolicy(base_url, api_key, timeout, retries, backoff, max_backoff)
        if transport is None:
            transport = httpx.AsyncHTTPTransport(socket_options=_SOCKET_OPTIONS)
        self._http = httpx.AsyncClient(
            base_url=self.policy.base_url,
            headers=self.policy.headers,
            timeout=self.policy.timeout,
            transport=transport,
        )

    async def handle_async(self, op: Operation) -> Any:
        import asyncio

        policy = self.policy
        request = policy.request(op)
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = await self._http.request(**request)
            except httpx.HTTPError as err:
                if not policy.retryable(attempt, err, None):
                    raise policy.transport_error(op, err) from err
            else:
                if not policy.retryable(attempt, None, response):
                    return policy.result(op, response)
            await asyncio.sleep(policy.delay(attempt, response))
            attempt += 1

    async def aclose(self) -> None:
        await self._http.aclose()
