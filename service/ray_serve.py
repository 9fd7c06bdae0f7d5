"""Serving an index across machines with Ray Serve: ``taskgram serve --ray [ADDRESS]``.

The shards of each index are cut into groups of ``shards_per_replica`` (in manifest order). Every group is
one Ray Serve deployment (``replicas`` replicas); a replica maps its group's shards read-only and answers
the group operations of :class:`service.engine.shards.ShardGroup`. The ingress deployment runs the
service's FastAPI app (:func:`service.app.create_app`); its indexes are :class:`RemoteIndex` objects: the
same merge layer as the in-process :class:`~service.engine.index.Index`, whose groups are deployment
handles. So every endpoint is answered by fan-out + merge, and the answers are those of a single process.

Failure and budget: one deadline (the request's time budget) covers the whole fan-out. A group that
fails or has not answered by then makes the request fail with :class:`ShardsUnavailable` (503
problem+json naming the missing shards); a partial sum is never returned. A group with no running
replica (its node gone) fails the request at once, not at the deadline: a fan-out that waits asks Ray's
actor table and Serve's controller which groups still have a live replica (:class:`GroupLiveness`).
``/v1/health`` and ``/metrics`` report each group's state.

Placement: every node that may run a group replica needs the index directories at the same paths (a
shared file system, or the same copy on each node). With ``pin_groups`` group ``g`` of index ``NAME``
needs the custom resource ``taskgram:NAME:g`` (start nodes with ``ray start --resources
'{"taskgram:NAME:0": 1}'``), so each group runs on the nodes that hold its shards, and the ingress needs
``taskgram:ingress`` (so that it runs where it was meant to, e.g. beside the HTTP proxy on the head,
not on a node that may go away with a group).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.engine.errors import (
    BudgetExceeded,
    EngineError,
    IndexUnavailable,
    QueryError,
    ShardsUnavailable,
)
from service.engine.index import Index, index_word_tables
from service.engine.opening import open_header, open_shards
from service.engine.shards import ShardGroup

log = logging.getLogger("taskgram.service")

#: the operations a group replica answers (methods of ShardGroup)
OPERATIONS = frozenset(
    {
        "counts",
        "word_counts",
        "doc_freq",
        "cooccurrence",
        "windowed",
        "next_tokens",
        "doc_totals",
        "doc_hits",
        "document",
        "probe",
        "cache_info",
        "trace_matches",
        "shard_counts",
        "trace_hits",
        "unigram_counts",
    }
)
_ERRORS: dict[str, type[EngineError]] = {
    cls.__name__: cls for cls in (EngineError, QueryError, BudgetExceeded, IndexUnavailable)
}
STATE_TIMEOUT_S = 2.0  # how long /v1/health and /metrics wait for a group's state
INGRESS_RESOURCE = "taskgram:ingress"  # with pin_groups, the nodes that may run the ingress
LIVENESS_AFTER_S = 0.5  # a fan-out that waits this long asks whether its groups still have a replica
LIVENESS_TTL_S = 1.0  # how old an answer of a liveness view may be


def plan_groups(n_shards: int, shards_per_replica: int) -> list[list[int]]:
    """Shard numbers of each group: consecutive runs of ``shards_per_replica`` shards."""
    if shards_per_replica < 1:
        raise ValueError(f"shards_per_replica must be >= 1, not {shards_per_replica}")
    return [
        list(range(a, min(n_shards, a + shards_per_replica))) for a in range(0, n_shards, shards_per_replica)
    ]


def group_name(index: str, shards: Sequence[int]) -> str:
    """Deployment name of the group of ``shards`` of ``index``."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", index)
    return f"shards-{safe}-{shards[0]}-{shards[-1]}" if shards else f"shards-{safe}-empty"


# --------------------------------------------------------------------------------------------------
# The group replica


class ShardGroupServer:
    """A Ray Serve replica of one shard group: maps the group's shards and answers its operations.
    Engine errors come back as values (class name, message, attributes) and are raised again by the
    ingress with their own type."""

    def __init__(
        self,
        directory: str,
        name: str,
        shards: list[int],
        cache_bytes: int = 256 << 20,
        cache_min_occurrences: int = 20_000,
        verify_checksums: bool = False,
        warmup: bool = True,
    ) -> None:
        path = Path(directory)
        manifest, tokenizer = open_header(path, name)
        opened = open_shards(path, name, manifest, shards, verify_checksums=verify_checksums)
        words, _ = index_word_tables(tokenizer, manifest.tokenizer.vocab_size, name)
        self.name = name
        self.group = ShardGroup(
            opened, words=words, cache_bytes=cache_bytes, cache_min_occurrences=cache_min_occurrences
        )
        self.started = time.time()
        if warmup:
            warm_up_group(self.group)

    async def call(self, op: str, args: tuple[Any, ...], remaining_s: float | None) -> tuple[Any, ...]:
        """Run group operation ``op`` within ``remaining_s`` seconds (in a worker thread: the kernels
        release the GIL, so a replica answers several requests at once)."""
        if op not in OPERATIONS:
            return ("error", "EngineError", f"unknown shard-group operation {op!r}", {})
        deadline = None if remaining_s is None else time.monotonic() + remaining_s
        try:
            value = await asyncio.to_thread(getattr(self.group, op), *args, deadline=deadline)
        except EngineError as err:
            attrs = {k: v for k, v in vars(err).items() if isinstance(v, (str, int, float, type(None)))}
            return ("error", type(err).__name__, str(err), attrs)
        return ("ok", value)

    def state(self) -> dict[str, Any]:
        """This replica's shards, process, uptime and document-set cache."""
        return {
            "shards": self.group.shard_numbers,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started, 3),
            "cache": self.group.cache_info(),
        }


def warm_up_group(group: ShardGroup) -> None:
    """Compile (or load from the numba cache) the kernels of every group operation."""
    import numpy as np

    probe = group.probe()
    if not probe:
        return
    flat = np.asarray(probe, dtype=np.int64)
    off = np.array([0, len(probe)], dtype=np.int64)
    key = (tuple(probe),)
    group.counts(flat, off, "warm-up")
    group.doc_freq([key], None)
    q_flat, q_off = np.array([0, 0], dtype=np.int64), np.array([0, 2], dtype=np.int64)
    group.cooccurrence([key], q_flat, q_off, "documents", None)
    group.cooccurrence([key], q_flat, q_off, "occurrences", None)
    clause_off = np.array([0, 1, 2], dtype=np.int64)
    var_flat = np.concatenate([flat, flat])
    var_off = np.array([0, len(probe), 2 * len(probe)], dtype=np.int64)
    group.windowed(var_flat, var_off, clause_off, q_off, np.array([0], dtype=np.int64), 1)
    group.next_tokens(flat, off)
    group.doc_totals([key], None)
    group.trace_matches(flat, off, np.zeros(1, dtype=np.int64), np.array([0, 1], dtype=np.int64))
    first = next(s.number for s in group.shards if s.n_tokens)  # the shard the probe comes from
    group.trace_hits(flat, off, [{first: np.zeros(1, dtype=np.int64)}], 1)
    if group.words is not None:
        group.word_counts(flat, off, None, "warm-up")
        group.doc_freq([key], None, True)


# --------------------------------------------------------------------------------------------------
# The merge layer over remote groups


@dataclass(frozen=True)
class LivenessSource:
    """One view of which shard-group deployments have a live replica: ``fetch`` returns the number of
    live replicas of each deployment it knows (a deployment it does not list has none) or raises when
    the view is unavailable; ``reason`` says why a group it counts 0 for is down."""

    name: str
    reason: str
    fetch: Callable[[], Mapping[str, int]]


def controller_source(app_name: str | None) -> LivenessSource:
    """Serve's controller: the RUNNING replicas of each deployment. It notices a dead replica at its next
    health check (``RayOptions.health_check_period_s``), later on a loaded machine."""

    def fetch() -> dict[str, int]:
        from ray import serve

        running: dict[str, int] = {}
        for name, app in serve.status().applications.items():
            if app_name is None or name == app_name:
                for deployment_name, deployment in app.deployments.items():
                    running[deployment_name] = sum(
                        int(n)
                        for state, n in deployment.replica_states.items()
                        if str(getattr(state, "value", state)) == "RUNNING"
                    )
        return running

    return LivenessSource("serve controller", "down: no running replica", fetch)


def actor_table_source(app_name: str | None) -> LivenessSource:
    """Ray's actor table (GCS): the ALIVE replica actors of each deployment. Ray marks a replica's actor
    DEAD when its process or node dies, before Serve's controller has health-checked it; a replacement
    that cannot be placed stays PENDING_CREATION. Ray's public state API needs the dashboard, which a
    Serve cluster may not run, so this reads the table that ``ray.util.state`` reads, through
    ``ray._private.state`` (ray is pinned)."""

    def fetch() -> dict[str, int]:
        from ray._private import state

        alive: dict[str, int] = {}
        for actor in state.actors(actor_state_name="ALIVE").values():
            deployment = replica_deployment(str(actor.get("Name", "")), app_name)
            if deployment is not None:
                alive[deployment] = alive.get(deployment, 0) + 1
        return alive

    return LivenessSource("ray actor table", "down: no live replica actor", fetch)


def replica_deployment(actor_name: str, app_name: str | None) -> str | None:
    """The deployment a Serve replica actor belongs to, from its name
    (``SERVE_REPLICA::APP#DEPLOYMENT#ID``), when it is a replica of application ``app_name`` (None: any)."""
    prefix = "SERVE_REPLICA::"
    if not actor_name.startswith(prefix):
        return None
    parts = actor_name[len(prefix) :].split("#")
    if len(parts) != 3 or (app_name is not None and parts[0] != app_name):
        return None
    return parts[1]


class GroupLiveness:
    """Which shard-group deployments have no live replica, from several views (:class:`LivenessSource`;
    by default Ray's actor table and Serve's controller): a group is down when any view's recent answer
    counts no replica for it. A replica that dies (its node gone, its process killed) would otherwise
    leave a request routed to its group waiting in Serve's router for a replica until the deadline.

    The views are asked only when a fan-out has waited :data:`LIVENESS_AFTER_S`, each at most every
    ``ttl_s``, and each in its own background thread: a request never waits for them (a slow
    controller does not hold up the actor table's answer), it reads the last answers at most ``ttl_s``
    old."""

    def __init__(
        self,
        app_name: str | None,
        ttl_s: float = LIVENESS_TTL_S,
        sources: Sequence[LivenessSource] | None = None,
    ) -> None:
        self.ttl_s = ttl_s
        if sources is None:
            sources = [actor_table_source(app_name), controller_source(app_name)]
        self.sources = list(sources)
        self._lock = threading.Lock()
        self._at = [-float("inf")] * len(self.sources)
        self._live: list[Mapping[str, int] | None] = [None] * len(self.sources)
        self._refreshing = [False] * len(self.sources)

    def _refresh(self, i: int) -> None:
        source = self.sources[i]
        try:
            live: Mapping[str, int] | None = source.fetch()
        except Exception as err:  # noqa: BLE001 - no answer is no knowledge, never a failure
            log.warning("shard groups: the %s is unavailable: %s", source.name, err)
            live = None
        with self._lock:
            self._live[i], self._at[i], self._refreshing[i] = live, time.monotonic(), False

    def down(self, names: Sequence[str], *, refresh: bool = True) -> dict[str, str]:
        """The deployments among ``names`` that some view's answer, at most ``ttl_s`` old, counts no live
        replica for, with the reason (no answer is no knowledge). With ``refresh`` an older answer makes
        a background thread ask that view again."""
        down: dict[str, str] = {}
        with self._lock:
            now = time.monotonic()
            answers = []
            for i, source in enumerate(self.sources):
                fresh = now - self._at[i] <= self.ttl_s
                if not fresh and refresh and not self._refreshing[i]:
                    self._refreshing[i] = True
                    threading.Thread(
                        target=self._refresh, args=(i,), name="taskgram-group-liveness", daemon=True
                    ).start()
                answers.append((source, self._live[i] if fresh else None))
        for source, live in answers:
            if live is None:
                continue
            for name in names:
                if name not in down and live.get(name, 0) == 0:
                    down[name] = source.reason
        return down


@dataclass
class RemoteGroup:
    """One shard group as the ingress sees it: its deployment handle and what happened to it."""

    name: str
    shard_numbers: list[int]
    handle: Any
    failures: int = 0
    last_error: str = ""
    last_ok: float = field(default=0.0)


class RemoteIndex(Index):
    """:class:`Index` whose shard groups are Ray Serve deployments: every operation fans out to the groups
    at once, and the request's deadline (or ``default_timeout_s`` for operations that have none) bounds
    the wait for all of them. Sync methods: call them from a worker thread, not the event loop."""

    def __init__(
        self,
        *args: Any,
        default_timeout_s: float = 30.0,
        liveness: GroupLiveness | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.default_timeout_s = default_timeout_s
        self.liveness = liveness
        self._lock = threading.Lock()

    def _remaining(self, deadline: float | None) -> float:
        if deadline is None:
            return self.default_timeout_s
        return deadline - time.monotonic()

    def _fan_out(self, op: str, *args: Any, deadline: float | None = None) -> list[Any]:
        return self._gather(self._open_groups(), op, args, deadline)

    def _ask(self, group: Any, op: str, *args: Any, deadline: float | None = None) -> Any:
        return self._gather([group], op, args, deadline)[0]

    def _gather(
        self, groups: Sequence[RemoteGroup], op: str, args: tuple[Any, ...], deadline: float | None
    ) -> list[Any]:
        remaining = self._remaining(deadline)
        if remaining <= 0:
            raise BudgetExceeded(f"{op}: the time budget ran out before the shards were asked", kind="time")
        end = time.monotonic() + remaining
        missing: dict[str, str] = {}
        if self.liveness is not None:  # a group already known to be down: no need to ask anyone
            missing = self.liveness.down([g.name for g in groups], refresh=False)
        answers: list[Any] = [None] * len(groups)
        if not missing:
            answers, missing = self._wait(groups, op, args, remaining, end)
        with self._lock:
            now = time.time()
            for group, answer in zip(groups, answers, strict=True):
                if group.name in missing:
                    group.failures += 1
                    group.last_error = missing[group.name]
                elif answer is not None:
                    group.last_ok = now
        if missing:
            shards = sorted(n for g in groups if g.name in missing for n in g.shard_numbers)
            names = ", ".join(f"{n} ({why})" for n, why in missing.items())
            raise ShardsUnavailable(
                f"index {self.name!r}: shards {_ranges_text(shards)} did not answer {op}: {names}; "
                "no partial answer is given",
                shards=shards,
                groups=missing,
            )
        values = []
        for answer in answers:
            if answer[0] == "error":
                _, cls_name, message, attrs = answer
                raise _rebuild_error(cls_name, message, attrs)
            values.append(answer[1])
        return values

    def _wait(
        self, groups: Sequence[RemoteGroup], op: str, args: tuple[Any, ...], remaining: float, end: float
    ) -> tuple[list[Any], dict[str, str]]:
        """Send ``op`` to every group and wait for the answers until ``end``; a group that fails, does not
        answer in time or (:class:`GroupLiveness`) has no running replica any more is missing. Once one
        is, the others are not waited for: the request fails anyway."""
        sent = [g.handle.call.remote(op, args, remaining) for g in groups]
        answers: list[Any] = [None] * len(groups)
        missing: dict[str, str] = {}
        pending = list(range(len(groups)))
        check_at = time.monotonic() + LIVENESS_AFTER_S
        while pending and not missing:
            i = pending[0]
            now = time.monotonic()
            if now >= end:  # the deadline: whoever has not answered by now is missing
                for j in pending:
                    try:
                        answers[j] = sent[j].result(timeout_s=0)
                    except TimeoutError:
                        missing[groups[j].name] = f"no answer within {remaining:.3g} s"
                    except Exception as err:  # noqa: BLE001 - as below
                        missing[groups[j].name] = _down(err)
                pending = [j for j in pending if groups[j].name in missing]
                break
            wait = end - now if self.liveness is None else max(0.0, min(end, check_at) - now)
            try:
                answers[i] = sent[i].result(timeout_s=wait)
                pending.pop(0)
                continue
            except TimeoutError:
                pass
            except Exception as err:  # noqa: BLE001 - a replica that died, a cluster that went away, ...
                missing[groups[i].name] = _down(err)
                break
            if self.liveness is not None and time.monotonic() >= check_at:
                missing = self.liveness.down([groups[j].name for j in pending])
                check_at = time.monotonic() + LIVENESS_AFTER_S
        for j in pending:
            sent[j].cancel()
        return answers, missing

    def group_states(self, timeout_s: float = STATE_TIMEOUT_S) -> list[dict[str, Any]]:
        """Each group: name, shards, ``state`` ("up" or "down"), the replica's state or the reason, and
        how many requests it failed so far."""
        sent = [(g, g.handle.state.remote()) for g in self._groups]
        end = time.monotonic() + timeout_s
        out = []
        for group, response in sent:
            entry: dict[str, Any] = {
                "group": group.name,
                "shards": group.shard_numbers,
                "failures": group.failures,
            }
            try:
                entry["replica"] = response.result(timeout_s=max(0.0, end - time.monotonic()))
                entry["state"] = "up"
            except Exception as err:  # noqa: BLE001 - down or late: reported, not raised
                response.cancel()
                entry["state"] = "down"
                entry["reason"] = "no answer" if isinstance(err, TimeoutError) else type(err).__name__
            if group.last_error:
                entry["last_error"] = group.last_error
            out.append(entry)
        return out

    def warm_up(self) -> None:
        """The replicas warm their kernels when they start; the ingress only loads its word tables."""

    def close(self) -> None:
        self._groups = []
        self._group_of = {}


def _down(err: Exception) -> str:
    return f"down: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"


def _rebuild_error(cls_name: str, message: str, attrs: Mapping[str, Any]) -> EngineError:
    cls = _ERRORS.get(cls_name, EngineError)
    if cls is QueryError:
        return QueryError(message, field=attrs.get("field"), item=attrs.get("item"))
    if cls is BudgetExceeded:
        return BudgetExceeded(message, kind=attrs.get("kind", "time"))
    if cls is IndexUnavailable:
        return IndexUnavailable(message, name=attrs.get("name"))
    return EngineError(message)


def _ranges_text(numbers: Sequence[int]) -> str:
    """[0, 1, 2, 5] -> "0-2, 5"."""
    parts: list[str] = []
    for n in numbers:
        if parts and parts[-1].split("-")[-1] == str(n - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{n}"
        else:
            parts.append(str(n))
    return ", ".join(parts)


def open_remote_index(
    directory: str | os.PathLike[str],
    name: str,
    groups: Sequence[tuple[list[int], Any]],
    settings: Any,
    liveness: GroupLiveness | None = None,
) -> RemoteIndex:
    """The merge layer of index ``name`` over its group deployments (``groups``: shard numbers and
    handle of each); ``liveness`` tells a group that has no running replica (a fast 503)."""
    path = Path(directory)
    manifest, tokenizer = open_header(path, name)
    remote = [RemoteGroup(group_name(name, shards), list(shards), handle) for shards, handle in groups]
    return RemoteIndex(
        path,
        name,
        manifest,
        remote,
        tokenizer,
        max_occurrences=settings.max_occurrences,
        space=settings.space,
        default_timeout_s=settings.time_budget_s,
        liveness=liveness,
    )


# --------------------------------------------------------------------------------------------------
# The ingress and the application


class TaskgramIngress:
    """The ingress replica: the service's FastAPI app over :class:`RemoteIndex` objects."""

    def __init__(self, settings_json: str, groups: dict[str, list[tuple[list[int], Any]]]) -> None:
        from service.settings import Settings

        self.settings = Settings(**json.loads(settings_json))
        self.groups = groups

    def __serve_build_asgi_app__(self) -> Any:
        from ray import serve

        from service.app import create_app

        try:
            app_name: str | None = serve.get_replica_context().app_name
        except Exception:  # noqa: BLE001 - outside a replica (the app built directly): every app's groups
            app_name = None
        liveness = GroupLiveness(app_name)
        indexes = {
            name: open_remote_index(directory, name, self.groups[name], self.settings, liveness)
            for name, directory in self.settings.indexes.items()
        }
        # warm-up runs in the group replicas; the lifespan must not wait on them from the event loop
        return create_app(self.settings.model_copy(update={"warmup": False}), indexes=indexes)


@dataclass(frozen=True)
class RayOptions:
    """How ``taskgram serve --ray`` lays out the deployments. ``shards_per_replica`` may differ per index
    (a mapping from index name)."""

    shards_per_replica: int | Mapping[str, int] = 1
    replicas: int = 1
    ingress_replicas: int = 1
    cpus_per_replica: float = 1.0
    pin_groups: bool = False
    max_ongoing_requests: int = 64
    #: how often Serve's controller checks a group replica: a dead one is noticed within this, and the
    #: requests that need its group then answer 503 at once (:class:`GroupLiveness`)
    health_check_period_s: float = 2.0


def build_application(settings: Any, options: RayOptions) -> Any:
    """The Ray Serve application: one deployment per shard group of every index, and the ingress."""
    from ray import serve

    from indexer.manifest import read_manifest

    deployment_of: Any = serve.deployment  # its overloads do not type the class + options form
    ingress_cls = serve.ingress()(TaskgramIngress)
    groups: dict[str, list[tuple[list[int], Any]]] = {}
    for name, directory in settings.indexes.items():
        manifest = read_manifest(Path(directory))
        groups[name] = []
        k = options.shards_per_replica
        per_group = k if isinstance(k, int) else k[name]
        for g, shards in enumerate(plan_groups(len(manifest.shards), per_group)):
            actor_options: dict[str, Any] = {"num_cpus": options.cpus_per_replica}
            if options.pin_groups:
                actor_options["resources"] = {f"taskgram:{name}:{g}": 0.001}
            deployment = deployment_of(ShardGroupServer).options(
                name=group_name(name, shards),
                num_replicas=options.replicas,
                ray_actor_options=actor_options,
                max_ongoing_requests=options.max_ongoing_requests,
                health_check_period_s=options.health_check_period_s,
            )
            bound = deployment.bind(
                str(directory),
                name,
                shards,
                verify_checksums=settings.verify_checksums,
                warmup=settings.warmup,
            )
            groups[name].append((shards, bound))
    ingress_options: dict[str, Any] = {"num_cpus": options.cpus_per_replica}
    if options.pin_groups:
        ingress_options["resources"] = {INGRESS_RESOURCE: 0.001}
    ingress = deployment_of(ingress_cls).options(
        name="taskgram-ingress",
        num_replicas=options.ingress_replicas,
        ray_actor_options=ingress_options,
        max_ongoing_requests=options.max_ongoing_requests,
    )
    return ingress.bind(json.dumps(settings.model_dump(mode="json")), groups)


def deploy(settings: Any, options: RayOptions, *, app_name: str = "taskgram") -> None:
    """Start Serve's HTTP proxy on ``settings.host:settings.port`` and deploy the application (the caller
    has connected to Ray)."""
    from ray import serve

    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(build_application(settings, options), name=app_name, route_prefix="/")


def serve_on_ray(settings: Any, options: RayOptions, address: str | None) -> int:
    """``taskgram serve --ray``: connect to the cluster at ``address`` (None: start a local Ray bound to
    127.0.0.1), deploy, and serve until SIGINT/SIGTERM; then remove the application."""
    import ray
    from ray import serve

    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        # a new local Ray, never another one found on this host (Ray's default joins the host's last
        # `ray start` cluster, dead or alive); it listens on loopback only
        ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        deploy(settings, options)
        log.info("serving on Ray", extra={"host": settings.host, "port": settings.port})
        stop.wait()
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0
