"""Service configuration: one pydantic-settings model, read from ``TASKGRAM_*`` environment variables or
built in code (``taskgram serve`` does the latter). Nothing is read at import time; every validator runs
when the ``Settings`` object is built, so a bad configuration stops the server before it starts.

Environment variables (all optional except the indexes):

=================================  =========================================================================
``TASKGRAM_INDEXES``               JSON object ``{"name": "/path/to/index", ...}``
``TASKGRAM_API_KEYS``              JSON list of bearer keys; empty = no authentication
``TASKGRAM_CORS_ORIGINS``          JSON list of allowed origins; empty = no CORS headers at all
``TASKGRAM_MAX_BATCH``             most query items in one request (default 100,000)
``TASKGRAM_MAX_QUERY_TOKENS``      most token ids in one phrase (default 1,000)
``TASKGRAM_MAX_QUERY_CHARS``       most characters in one text phrase (default 10,000)
``TASKGRAM_MAX_PHRASES``           most phrases in one co-occurrence query (default 16)
``TASKGRAM_MAX_VARIANTS``          most OR variants of one phrase (default 16)
``TASKGRAM_MAX_BODY_BYTES``        largest request body (default 64 MiB)
``TASKGRAM_TIME_BUDGET_S``         per-request engine time budget in seconds (default 30)
``TASKGRAM_MAX_DOCUMENTS``         most documents in one page of ``/v1/documents`` (default 100)
``TASKGRAM_MAX_DOCUMENT_TOKENS``   most tokens returned for one document (default 100,000)
``TASKGRAM_MAX_WINDOW``            largest token window of windowed co-occurrence (default 100,000)
``TASKGRAM_MAX_OCCURRENCES``       work budget of one phrase of a document-level query (default none)
``TASKGRAM_SPACE``                 default leading-space policy: auto | exact | both (default auto)
``TASKGRAM_VERIFY_CHECKSUMS``      hash every index file at start-up (default false)
``TASKGRAM_WARMUP``                compile the query kernels at start-up (default true)
``TASKGRAM_METRICS``               Prometheus metrics at ``GET /metrics`` (default true)
``TASKGRAM_GC_TUNING``             freeze the start-up heap, fewer GC passes (default false; ``serve``: true)
``TASKGRAM_LOG_LEVEL``             DEBUG | INFO | WARNING | ERROR | CRITICAL (default INFO)
``TASKGRAM_LOG_FORMAT``            json | text (default json)
``TASKGRAM_ACCESS_LOG``            one log record per request (default true)
``TASKGRAM_EVAL_RUNS``             JSON list of ``taskgram eval`` run directories shown by ``/ui``
=================================  =========================================================================
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskgram.api import SpacePolicy

#: Index names appear in URLs (``/v1/indexes/{name}/...``): a conservative alphabet, no path separators.
INDEX_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_INDEX_NAME_RE = re.compile(INDEX_NAME_PATTERN)


class Settings(BaseSettings):
    """Everything the service needs to start. Limits bound the work one request may ask for; a request
    over a limit is refused with a problem+json answer, never answered partially."""

    model_config = SettingsConfigDict(env_prefix="TASKGRAM_", extra="forbid", frozen=True)

    indexes: dict[str, Path] = Field(
        default_factory=dict,
        description="index name -> index directory (the service refuses to start with none)",
    )
    host: str = Field(default="127.0.0.1", description="address `taskgram serve` binds")
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    api_keys: list[str] = Field(
        default_factory=list,
        description="bearer keys accepted on every endpoint except /v1/health and the API docs; "
        "empty = no authentication",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="allowed CORS origins; empty = CORS off"
    )
    max_batch: int = Field(default=100_000, ge=1, description="query items per request")
    max_query_tokens: int = Field(default=1_000, ge=1, description="token ids per phrase")
    max_query_chars: int = Field(default=10_000, ge=1, description="characters per text phrase")
    max_phrases: int = Field(default=16, ge=2, description="phrases per co-occurrence query")
    max_variants: int = Field(default=16, ge=1, description="OR variants per phrase")
    max_body_bytes: int = Field(default=64 << 20, ge=1024, description="request body size")
    time_budget_s: float = Field(default=30.0, gt=0, description="engine time per request, seconds")
    max_documents: int = Field(default=100, ge=1, description="documents per page of /v1/documents")
    max_document_tokens: int = Field(default=100_000, ge=1, description="tokens returned for one document")
    max_window: int = Field(default=100_000, ge=1, description="token window of windowed co-occurrence")
    max_top_k: int = Field(default=100_000, ge=1, description="entries of one next-token distribution")
    max_occurrences: int | None = Field(
        default=None,
        ge=1,
        description="work budget: suffix-array occurrences one phrase of a document-level "
        "or windowed query may touch (None = no limit; over it -> 503)",
    )
    space: SpacePolicy = Field(
        default="auto", description="default leading-space policy for text phrases (see service.engine.query)"
    )
    verify_checksums: bool = Field(default=False, description="hash every index file at start-up")
    warmup: bool = Field(default=True, description="compile/load every query kernel at start-up")
    metrics: bool = Field(default=True, description="serve Prometheus metrics at GET /metrics")
    gc_tuning: bool = Field(
        default=False,
        description="after start-up, freeze the start-up heap out of the garbage collector and raise its "
        "gen-0 threshold: parsing a 100,000-query body gets several times faster (the collector would "
        "otherwise rescan the tokenizer and JIT objects many times per request). Process-wide, so off by "
        "default for an embedded app; `taskgram serve` turns it on (--no-gc-tuning to keep it off).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    access_log: bool = Field(default=True, description="one log record per request (no bodies, no secrets)")
    eval_runs: list[Path] = Field(
        default_factory=list,
        description="`taskgram eval` run directories served read-only at /v1/runs (the /ui explorer's "
        "evaluation page), each under its folder name",
    )

    @field_validator("eval_runs")
    @classmethod
    def _check_runs(cls, value: list[Path]) -> list[Path]:
        names: set[str] = set()
        for directory in value:
            if not directory.is_dir():
                raise ValueError(f"eval run {directory} is not a directory")
            name = directory.resolve().name
            if name in names or not _INDEX_NAME_RE.match(name):
                raise ValueError(f"eval run {directory}: folder name {name!r} is repeated or not URL-safe")
            names.add(name)
        return [d.resolve() for d in value]

    @field_validator("indexes")
    @classmethod
    def _check_indexes(cls, value: dict[str, Path]) -> dict[str, Path]:
        for name, directory in value.items():
            if not _INDEX_NAME_RE.match(name):
                raise ValueError(
                    f"index name {name!r} must match {INDEX_NAME_PATTERN} (letters, digits, '.', '_', '-')"
                )
            if not directory.is_dir():
                raise ValueError(f"index {name!r}: {directory} is not a directory")
        return {name: directory.resolve() for name, directory in value.items()}

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, value: list[str]) -> list[str]:
        for key in value:
            if len(key) < 16 or not key.isprintable() or " " in key:
                raise ValueError("every API key must be at least 16 printable characters without spaces")
        return value

    def limits(self) -> dict[str, int | float]:
        """The limits a client needs to split its work (advertised by ``GET /v1/health``)."""
        return {
            "max_batch": self.max_batch,
            "max_query_tokens": self.max_query_tokens,
            "max_query_chars": self.max_query_chars,
            "max_phrases": self.max_phrases,
            "max_variants": self.max_variants,
            "max_body_bytes": self.max_body_bytes,
            "time_budget_s": self.time_budget_s,
            "max_documents": self.max_documents,
            "max_document_tokens": self.max_document_tokens,
            "max_window": self.max_window,
            "max_top_k": self.max_top_k,
        }
