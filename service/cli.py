"""``taskgram serve``: serve one or more indexes over HTTP (uvicorn).

    taskgram serve INDEX_DIR... [--name NAME=DIR] [--host 127.0.0.1] [--port 8000] [--workers N]
                   [--api-key KEY] [--cors-origin URL] [--time-budget S] [--max-batch N]
                   [--eval-run RUN_DIR] ...
                   [--ray [ADDRESS] --shards-per-replica K --replicas R]

The web explorer is at ``/ui`` (indexes, phrase search, co-occurrence, tracing, evaluation runs). With
``--ray`` the shards are served by Ray Serve deployments, one per group of K shards, behind the same API
(:mod:`service.ray_serve`).

An ``INDEX_DIR`` is served under its folder name; ``--name NAME=DIR`` chooses the name. Options not given
on the command line come from ``TASKGRAM_*`` environment variables (see :mod:`service.settings`); API
keys are better passed as ``TASKGRAM_API_KEYS='["..."]'`` than as arguments (visible to other users in
the process list).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from taskgram.errors import UsageError

#: environment variable through which ``--workers N`` passes the settings to each worker process
SETTINGS_ENV = "TASKGRAM_SERVE_SETTINGS"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve indexes over HTTP",
        description="Serve taskgram indexes over HTTP: the /v1 API (OpenAPI at /docs) and the "
        "infini-gram compatible POST /.",
    )
    p.add_argument(
        "index_dirs", nargs="*", metavar="INDEX_DIR", help="index directory, served under its folder name"
    )
    p.add_argument("--name", action="append", default=[], metavar="NAME=DIR", help="serve DIR under NAME")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.add_argument(
        "--workers", type=int, default=None, help="worker processes (default 1; each maps the indexes)"
    )
    p.add_argument("--api-key", action="append", default=None, metavar="KEY", help="require this bearer key")
    p.add_argument(
        "--cors-origin", action="append", default=None, metavar="URL", help="allow this CORS origin"
    )
    p.add_argument("--time-budget", type=float, default=None, metavar="S", help="engine seconds per request")
    p.add_argument("--max-batch", type=int, default=None, metavar="N", help="query items per request")
    p.add_argument("--max-occurrences", type=int, default=None, metavar="N", help="work budget per phrase")
    p.add_argument(
        "--verify-checksums", action="store_true", default=None, help="hash every file at start-up"
    )
    p.add_argument(
        "--no-warmup", dest="warmup", action="store_false", default=None, help="skip kernel warm-up"
    )
    p.add_argument(
        "--no-gc-tuning", dest="gc_tuning", action="store_false", default=True,
        help="keep Python's default garbage-collector settings (see TASKGRAM_GC_TUNING)",
    )  # fmt: skip
    p.add_argument(
        "--eval-run", action="append", default=None, metavar="DIR",
        help="a `taskgram eval` run directory shown by the /ui explorer (repeatable)",
    )  # fmt: skip
    ray = p.add_argument_group(
        "Ray Serve", "serve the shards across machines: one deployment per group of shards, the same API"
    )
    ray.add_argument(
        "--ray", nargs="?", const="", default=None, metavar="ADDRESS",
        help="serve on Ray Serve; ADDRESS of a running cluster (default: start a local Ray on 127.0.0.1)",
    )  # fmt: skip
    ray.add_argument("--shards-per-replica", type=int, default=1, metavar="K", help="shards per group (1)")
    ray.add_argument("--replicas", type=int, default=1, metavar="R", help="replicas of each shard group (1)")
    ray.add_argument("--ingress-replicas", type=int, default=1, metavar="N", help="replicas of the API (1)")
    ray.add_argument("--cpus-per-replica", type=float, default=1.0, metavar="C", help="Ray CPUs each (1)")
    ray.add_argument(
        "--pin-groups", action="store_true",
        help="group g of index NAME needs Ray resource taskgram:NAME:g (place groups by the nodes' disks), "
        "and the API needs taskgram:ingress",
    )  # fmt: skip
    p.add_argument("--log-level", default=None, choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    p.add_argument("--log-format", default=None, choices=["json", "text"])
    p.set_defaults(handler=serve)


def _indexes(args: argparse.Namespace) -> dict[str, str]:
    named: dict[str, str] = {}
    for directory in args.index_dirs:
        name = Path(directory).resolve().name
        if name in named:
            raise UsageError(f"two indexes would be named {name!r}; use --name NAME=DIR")
        named[name] = directory
    for item in args.name:
        name, sep, directory = item.partition("=")
        if not sep or not name or not directory:
            raise UsageError(f"--name expects NAME=DIR, got {item!r}")
        if name in named:
            raise UsageError(f"index name {name!r} given twice")
        named[name] = directory
    return named


def settings_from_args(args: argparse.Namespace) -> Any:
    """Settings from the command line over ``TASKGRAM_*`` variables; raises
    :class:`~taskgram.errors.UsageError` naming the setting if they are invalid."""
    from pydantic import ValidationError

    from service.settings import Settings

    values: dict[str, Any] = {}
    indexes = _indexes(args)
    if indexes:
        values["indexes"] = indexes
    for field, arg in (
        ("host", "host"),
        ("port", "port"),
        ("workers", "workers"),
        ("api_keys", "api_key"),
        ("cors_origins", "cors_origin"),
        ("time_budget_s", "time_budget"),
        ("max_batch", "max_batch"),
        ("max_occurrences", "max_occurrences"),
        ("verify_checksums", "verify_checksums"),
        ("warmup", "warmup"),
        ("gc_tuning", "gc_tuning"),
        ("log_level", "log_level"),
        ("log_format", "log_format"),
        ("eval_runs", "eval_run"),
    ):
        value = getattr(args, arg)
        if value is not None:
            values[field] = value
    try:
        settings = Settings(**values)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        raise UsageError(f"invalid settings: {problems}") from None
    if not settings.indexes:
        raise UsageError("no index given (INDEX_DIR, --name NAME=DIR or TASKGRAM_INDEXES)")
    return settings


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.logs import configure_logging, safe_settings

    settings = settings_from_args(args)
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    if args.ray is not None:
        from service.ray_serve import RayOptions, serve_on_ray

        for flag, value in (
            ("--shards-per-replica", args.shards_per_replica),
            ("--replicas", args.replicas),
            ("--ingress-replicas", args.ingress_replicas),
        ):
            if value < 1:
                raise SystemExit(f"taskgram serve: {flag} must be >= 1, not {value}")
        if args.cpus_per_replica < 0:
            raise SystemExit(f"taskgram serve: --cpus-per-replica must be >= 0, not {args.cpus_per_replica}")
        options = RayOptions(
            shards_per_replica=args.shards_per_replica,
            replicas=args.replicas,
            ingress_replicas=args.ingress_replicas,
            cpus_per_replica=args.cpus_per_replica,
            pin_groups=args.pin_groups,
        )
        return serve_on_ray(settings, options, args.ray or None)
    import logging

    logging.getLogger("taskgram.service").info("starting", extra={"settings": safe_settings(settings)})
    common = {"host": settings.host, "port": settings.port, "log_config": None, "access_log": False}
    if settings.workers == 1:
        from service.app import create_app

        uvicorn.run(create_app(settings), **common)
    else:
        os.environ[SETTINGS_ENV] = json.dumps(settings.model_dump(mode="json"))
        uvicorn.run("service.app:create_app_from_env", factory=True, workers=settings.workers, **common)
    return 0


if __name__ == "__main__":  # pragma: no cover
    from taskgram.cli import main

    sys.exit(main(["serve", *sys.argv[1:]]))
