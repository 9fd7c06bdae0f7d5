"""The build on Ray Core (``taskgram build --ray [ADDRESS]``, the ``ray`` extra).

The tasks are the local build's (``indexer.shardwork``), run as Ray tasks: each tokenize task reads one
piece and spools its tokens into the output folder; each shard task reads, sorts and writes one shard
there, declaring its share of ``--memory`` as Ray's ``memory`` resource, so Ray never places more shards
on a node than its memory holds. The output folder must be storage every node sees (NFS, a shared
volume). The driver plans the shards and, last, checks every shard and publishes the manifest
atomically (``indexer.pipeline.publish``).

Faults: a worker that dies mid-task is retried by Ray (``max_retries``); a shard is written under
``shard-NNNNN.partial/`` and renamed only when complete, and a retry starts that folder afresh, so no
half-written shard is ever published. Rerunning the command keeps the finished shards and pieces. Since
the shard plan and the tasks are the local build's, the shards are byte-identical to ``--workers N``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

from indexer.errors import IndexerError
from indexer.shardwork import (
    BuildSpec,
    Piece,
    PieceResult,
    ShardResult,
    ShardSpec,
    build_shard,
    tokenize_piece,
)

TASK_RETRIES = 3
# Set for the processes of a local Ray that a build starts, unless the user set them. At shutdown, Ray's
# v1 autoscaler monitor is stopped after the GCS and spends its 1 s grace period trying to report to it
# (1.0 s of the 1.3 s shutdown, measured); v2's monitor exits at once. A local Ray never autoscales, and
# v2 is what ``ray up`` (since Ray 2.50) and ``ray.cluster_utils.Cluster`` start.
LOCAL_RAY_ENV = {"RAY_enable_autoscaler_v2": "1"}


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set the variables of ``values`` that are not set yet, for the processes started inside."""
    added = {k: v for k, v in values.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


class RayBuildError(IndexerError):
    """Ray cannot run the build as asked (e.g. no node has the memory one shard needs)."""


def _label() -> str:
    import ray

    return f"ray {ray.util.get_node_ip_address()} pid {os.getpid()}"


def _ray_piece(spec: BuildSpec, piece: Piece) -> PieceResult:
    from indexer.shardwork import init_worker

    init_worker(_label(), 1)
    return tokenize_piece(spec, piece)


def _ray_shard(spec: BuildSpec, shard: ShardSpec, sources: Any, cpus: int = 1) -> ShardResult:
    from indexer.shardwork import init_worker

    init_worker(_label(), cpus)  # this task's numba threads, the sort's included
    return build_shard(spec, shard, sources)


class RayExecutor:
    """Runs the build's tasks on a Ray cluster: the one this process is connected to, else a local Ray
    (``address`` None) or the cluster at ``address``."""

    def __init__(self, address: str | None, *, slot_bytes: int) -> None:
        try:
            import ray
        except ImportError as err:  # pragma: no cover - depends on the installed extras
            raise RayBuildError("--ray needs Ray: pip install 'taskgram[ray]'") from err
        self._ray = ray
        self._owns = False
        if not ray.is_initialized():
            # No job-wide runtime_env: it would keep Ray from using the workers it prestarts (0.6 s to
            # the first tasks, measured); each task sets up its own process (init_worker).
            if address:
                ray.init(address=address, log_to_driver=False)
            else:  # a new local Ray, never another one found on this host; it listens on loopback only
                with _environment(LOCAL_RAY_ENV):
                    ray.init(
                        address="local",
                        _node_ip_address="127.0.0.1",
                        include_dashboard=False,
                        log_to_driver=False,
                    )
            self._owns = True
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        most = max((n.get("Resources", {}).get("memory", 0.0) for n in nodes), default=0.0)
        if slot_bytes > most:
            self.close(cancel=True)
            raise RayBuildError(
                f"a shard task needs {slot_bytes >> 20} MiB (its share of --memory), but the largest Ray "
                f"node offers {int(most) >> 20} MiB of memory; lower --memory"
            )
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        # the CPUs of the smallest node: what a shard that runs alone may ask for and still fit anywhere
        self._node_cpus = max(1, int(min(n.get("Resources", {}).get("CPU", 1.0) for n in nodes)))
        self.shard_slots = self.workers  # Ray's memory resource decides how many fit on each node
        self._piece = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(_ray_piece)
        self._shard = ray.remote(num_cpus=1, memory=slot_bytes, max_retries=TASK_RETRIES)(_ray_shard)
        self._sources_ref: Any = None
        self._spec: tuple[BuildSpec, Any] | None = None

    def _spec_ref(self, spec: BuildSpec) -> Any:
        """The spec (with the tokenizer's JSON, megabytes) in the object store once, not once per task."""
        if self._spec is None or self._spec[0] is not spec:
            self._spec = (spec, self._ray.put(dataclasses.replace(spec, progress=False)))
        return self._spec[1]

    def submit_piece(self, spec: BuildSpec, piece: Piece) -> Any:
        return self._piece.remote(self._spec_ref(spec), piece)

    def submit_shard(self, spec: BuildSpec, shard: ShardSpec, sources: Any, alone: bool = False) -> Any:
        if sources is not None and self._sources_ref is None:
            self._sources_ref = self._ray.put(sources)  # the token files' document index, shipped once
        ref = self._sources_ref if sources is not None else None
        if alone and self._node_cpus > 1:
            # Nothing else of the build runs: the shard asks Ray for a whole node's CPUs and sorts with
            # that many numba threads, as a --workers build's last shard does.
            task = self._shard.options(num_cpus=self._node_cpus)
            return task.remote(self._spec_ref(spec), shard, ref, self._node_cpus)
        return self._shard.remote(self._spec_ref(spec), shard, ref)

    def wait_any(self, handles: list[Any]) -> None:
        self._ray.wait(handles, num_returns=1)

    def done(self, handle: Any) -> bool:
        ready, _ = self._ray.wait([handle], num_returns=1, timeout=0)
        return bool(ready)

    def result(self, handle: Any) -> Any:
        from ray.exceptions import RayTaskError

        try:
            return self._ray.get(handle)
        except RayTaskError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None  # the task's own error (e.g. CorpusError naming file and line)
            raise

    def close(self, cancel: bool) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
            self._owns = False
