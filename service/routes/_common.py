"""Helpers of the route modules: turning validated request phrases into engine phrases while enforcing
the configured limits, and fast JSON answers for large batches."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from starlette.responses import Response

from service.errors import InvalidQuery, PayloadTooLarge
from service.metrics import record_batch
from service.schemas import AnyPhrase, IdsPhrase
from service.settings import Settings

EnginePhrase = str | list[int]
EngineSpec = EnginePhrase | list[EnginePhrase]


def json_response(payload: Any) -> Response:
    """Compact JSON without FastAPI's generic encoder (100,000 results encode in milliseconds).
    NaN/Infinity are refused: a probability that is not a number is a bug, not an answer."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Response(body.encode("utf-8"), media_type="application/json")


def as_dicts(results: Sequence[Any]) -> list[Any]:
    return [dataclasses.asdict(r) for r in results]


def check_batch(settings: Settings, queries: Sequence[Any]) -> None:
    if len(queries) > settings.max_batch:
        raise PayloadTooLarge(
            f"queries: {len(queries)} items, the limit is {settings.max_batch} per request; split the batch"
        )
    record_batch(len(queries))


def phrase(
    settings: Settings, value: str | IdsPhrase, where: str, *, allow_empty: bool = False
) -> EnginePhrase:
    if isinstance(value, str):
        if len(value) > settings.max_query_chars:
            raise InvalidQuery(f"{where}: {len(value)} characters, the limit is {settings.max_query_chars}")
        if not value and not allow_empty:
            raise InvalidQuery(f"{where}: empty phrase")
        return value
    ids = value.ids
    if len(ids) > settings.max_query_tokens:
        raise InvalidQuery(f"{where}: {len(ids)} token ids, the limit is {settings.max_query_tokens}")
    return ids


def phrases(
    settings: Settings,
    values: Sequence[str | IdsPhrase],
    where: str = "queries",
    *,
    allow_empty: bool = False,
) -> list[EnginePhrase]:
    check_batch(settings, values)
    limit_chars, limit_ids = settings.max_query_chars, settings.max_query_tokens
    out: list[EnginePhrase] = []
    append = out.append
    for i, value in enumerate(values):
        # fast path for the common case; the slow path produces the error message
        if isinstance(value, str):
            if 0 < len(value) <= limit_chars:
                append(value)
                continue
        elif len(value.ids) <= limit_ids:
            append(value.ids)
            continue
        append(phrase(settings, value, f"{where}[{i}]", allow_empty=allow_empty))
    return out


def spec(settings: Settings, value: str | IdsPhrase | AnyPhrase, where: str) -> EngineSpec:
    if isinstance(value, AnyPhrase):
        if len(value.any) > settings.max_variants:
            raise InvalidQuery(
                f"{where}.any: {len(value.any)} variants, the limit is {settings.max_variants}"
            )
        return [phrase(settings, v, f"{where}.any[{j}]") for j, v in enumerate(value.any)]
    return phrase(settings, value, where)


def specs(
    settings: Settings, values: Sequence[str | IdsPhrase | AnyPhrase], where: str = "queries"
) -> list[EngineSpec]:
    check_batch(settings, values)
    return [spec(settings, v, f"{where}[{i}]") for i, v in enumerate(values)]


def conjunctions(
    settings: Settings, values: Sequence[Sequence[str | IdsPhrase | AnyPhrase]], where: str = "queries"
) -> list[list[EngineSpec]]:
    """Queries of 2 or more phrase specs (co-occurrence, windowed co-occurrence)."""
    check_batch(settings, values)
    out = []
    for i, query in enumerate(values):
        if not 2 <= len(query) <= settings.max_phrases:
            raise InvalidQuery(f"{where}[{i}]: {len(query)} phrases; give 2 to {settings.max_phrases}")
        out.append([spec(settings, v, f"{where}[{i}][{j}]") for j, v in enumerate(query)])
    return out
