"""Helpers of the route modules: turning validated request phrases into engine phrases while enforcing
the configured limits, and fast JSON answers for large batches."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import orjson
from fastapi import Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from service.errors import InvalidQuery, PayloadTooLarge
from service.metrics import record_batch
from service.schemas import AnyPhrase, IdsPhrase
from service.settings import Settings

EnginePhrase = str | list[int]
EngineSpec = EnginePhrase | list[EnginePhrase]


class FastJsonRequest(Request):
    """A request whose JSON body is parsed with orjson (several times faster than the stdlib on
    100,000-query batches). Invalid JSON, invalid UTF-8 and nesting deeper than 1024 levels raise
    ``orjson.JSONDecodeError``, a ``json.JSONDecodeError``, which FastAPI reports as invalid JSON (400)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class FastJsonRoute(APIRoute):
    """Route class of the /v1 routers: request bodies parsed by :class:`FastJsonRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def parse_fast(request: Request) -> Response:
            return await handler(FastJsonRequest(request.scope, request.receive))

        return parse_fast


def json_response(payload: Any) -> Response:
    """Compact JSON without FastAPI's generic encoder (100,000 results encode in milliseconds).
    NaN/Infinity are refused: a probability that is not a number is a bug, not an answer."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Response(body.encode("utf-8"), media_type="application/json")


def results_response(index: str, results: list[Any]) -> Response:
    """The answer of every batch endpoint, :class:`taskgram.api.Results`: ``{"index", "results"}``."""
    return json_response({"index": index, "results": results})


def as_dicts(results: Sequence[Any]) -> list[Any]:
    return [dataclasses.asdict(r) for r in results]


def check_batch(settings: Settings, queries: Sequence[Any]) -> None:
    if len(queries) > settings.max_batch:
        raise PayloadTooLarge(
            f"queries: {len(queries)} items, the limit is {settings.max_batch} per request; split the batch"
        )
    record_batch(len(queries))


_PHRASE_SHAPE = 'a phrase is text or {"ids": [token ids]}'


def phrase(settings: Settings, value: Any, where: str, *, allow_empty: bool = False) -> EnginePhrase:
    """One phrase (a validated model or a plain JSON value) -> engine phrase, within the limits. Token
    ids are range-checked by the engine."""
    if isinstance(value, IdsPhrase):
        value = {"ids": value.ids}
    if type(value) is str:
        if len(value) > settings.max_query_chars:
            raise InvalidQuery(f"{where}: {len(value)} characters, the limit is {settings.max_query_chars}")
        if not value and not allow_empty:
            raise InvalidQuery(f"{where}: empty phrase")
        return value
    if type(value) is dict and len(value) == 1 and type(value.get("ids")) is list:
        ids: list[int] = value["ids"]
        if len(ids) > settings.max_query_tokens:
            raise InvalidQuery(f"{where}: {len(ids)} token ids, the limit is {settings.max_query_tokens}")
        if not ids and not allow_empty:
            raise InvalidQuery(f"{where}: empty phrase")
        return ids
    raise InvalidQuery(f"{where}: {_PHRASE_SHAPE}")


def phrases(
    settings: Settings, values: Sequence[Any], where: str = "queries", *, allow_empty: bool = False
) -> list[EnginePhrase]:
    """A batch of phrases; the common cases take a fast path, anything else gets the exact error."""
    check_batch(settings, values)
    limit_chars, limit_ids = settings.max_query_chars, settings.max_query_tokens
    out: list[EnginePhrase] = []
    append = out.append
    for i, value in enumerate(values):
        kind = type(value)
        if kind is str:
            if 0 < len(value) <= limit_chars:
                append(value)
                continue
        elif kind is dict and len(value) == 1:
            ids = value.get("ids")
            if type(ids) is list and 0 < len(ids) <= limit_ids:
                append(ids)
                continue
        append(phrase(settings, value, f"{where}[{i}]", allow_empty=allow_empty))
    return out


def spec(settings: Settings, value: Any, where: str) -> EngineSpec:
    """A phrase or ``{"any": [phrases]}`` (an OR of variants, passed to the engine as a list)."""
    if isinstance(value, AnyPhrase):
        value = {"any": [v if isinstance(v, str) else {"ids": v.ids} for v in value.any]}
    if type(value) is dict and "any" in value:
        variants = value["any"]
        if len(value) != 1 or type(variants) is not list or not variants:
            raise InvalidQuery(f'{where}: an OR of variants is {{"any": [phrases]}} with at least one phrase')
        if len(variants) > settings.max_variants:
            raise InvalidQuery(f"{where}.any: {len(variants)} variants, the limit is {settings.max_variants}")
        return [phrase(settings, v, f"{where}.any[{j}]") for j, v in enumerate(variants)]
    return phrase(settings, value, where)


def specs(settings: Settings, values: Sequence[Any], where: str = "queries") -> list[EngineSpec]:
    check_batch(settings, values)
    return [spec(settings, v, f"{where}[{i}]") for i, v in enumerate(values)]


def conjunctions(settings: Settings, values: Sequence[Any], where: str = "queries") -> list[list[EngineSpec]]:
    """Queries of 2 or more phrase specs (co-occurrence, windowed co-occurrence)."""
    check_batch(settings, values)
    out = []
    for i, query in enumerate(values):
        if type(query) is not list or not 2 <= len(query) <= settings.max_phrases:
            raise InvalidQuery(f"{where}[{i}]: a query is a list of 2 to {settings.max_phrases} phrase specs")
        out.append([spec(settings, v, f"{where}[{i}][{j}]") for j, v in enumerate(query)])
    return out
