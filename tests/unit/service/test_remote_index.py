"""The merge layer over remote shard groups (:class:`service.ray_serve.RemoteIndex`) without Ray: fake
deployment handles that pickle every argument and answer (as Ray does) around local shard groups, or
never answer. Remote groups answer as local ones (span tracing included); a group that has no running
replica fails the request with 503 (ShardsUnavailable) at once, not at the deadline; without the
controller's status the deadline still bounds the wait."""

from __future__ import annotations

import pickle
import threading
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from service.engine import Index, ShardsUnavailable
from service.engine.opening import open_header, open_shards
from service.engine.shards import ShardGroup
from service.ray_serve import (
    GroupLiveness,
    LivenessSource,
    RemoteGroup,
    RemoteIndex,
    ShardGroupServer,
    group_name,
    replica_deployment,
)
from tests.index_writer import write_index


class _Response:
    def __init__(self, value: Any = None, ready: bool = True) -> None:
        self._value = value
        self._ready = threading.Event()
        if ready:
            self._ready.set()
        self.cancelled = False

    def result(self, timeout_s: float | None = None) -> Any:
        if not self._ready.wait(timeout_s):
            raise TimeoutError("no answer")
        return pickle.loads(self._value)

    def cancel(self) -> None:
        self.cancelled = True


class _Call:
    def __init__(self, server: Any) -> None:
        self.server = server
        self.sent = 0

    def remote(self, op: str, args: tuple[Any, ...], remaining_s: float | None) -> _Response:
        self.sent += 1
        if self.server is None:  # a group whose replica is gone: Serve's router waits for one
            return _Response(ready=False)
        import asyncio

        answer = asyncio.run(self.server.call(op, pickle.loads(pickle.dumps(args)), remaining_s))
        return _Response(pickle.dumps(answer))


class _Server(ShardGroupServer):
    """A group replica over already opened shards (ShardGroupServer opens them from the directory)."""

    def __init__(self, group: ShardGroup) -> None:
        self.group = group
        self.started = time.time()


def _view(fetch: Any, reason: str = "down: no running replica") -> list[LivenessSource]:
    return [LivenessSource("test view", reason, fetch)]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(5)
    docs = [rng.integers(0, 6, size=int(rng.integers(1, 30))).tolist() for _ in range(40)]
    return write_index(
        tmp_path_factory.mktemp("remote") / "index", docs, shard_docs=[9, 11, 8, 12], vocab_size=6
    )


def remote_index(directory: Path, k: int, *, down: int | None = None, **options: Any) -> RemoteIndex:
    manifest, tokenizer = open_header(directory, "r")
    shards = open_shards(directory, "r", manifest)
    groups = []
    for g, a in enumerate(range(0, len(shards), k)):
        numbers = [s.number for s in shards[a : a + k]]
        server = None if g == down else _Server(ShardGroup(shards[a : a + k]))
        handle = SimpleNamespace(call=_Call(server))
        groups.append(RemoteGroup(group_name("r", numbers), numbers, handle))
    return RemoteIndex(directory, "r", manifest, groups, tokenizer, **options)


def test_remote_groups_answer_as_local_ones(index_dir: Path) -> None:
    local = Index.open(index_dir)
    queries = [[1, 2, 3, 4, 5, 0, 1, 2], [5, 5, 4, 3, 2, 1, 0], [0, 1]]
    options = {"boundary": "token", "max_count": None, "docs_per_span": 3, "context": 2, "seed": 3}
    want = [asdict(r) for r in local.trace(queries, **options)]
    assert any(len({d["shard"] for s in r["spans"] for d in s["documents"]}) > 1 for r in want)
    for k in (1, 3):
        remote = remote_index(index_dir, k)
        assert remote.count([[1, 2], [3], [5, 5, 5]]) == local.count([[1, 2], [3], [5, 5, 5]])
        assert [asdict(r) for r in remote.trace(queries, **options)] == want
        ranked = {"boundary": "token", "rank": "unigram_logprob", "max_spans": 2, "seed": 1}
        assert [asdict(r) for r in remote.trace(queries, **ranked)] == [
            asdict(r) for r in local.trace(queries, **ranked)
        ]


def test_a_group_without_a_running_replica_fails_the_request_at_once(index_dir: Path) -> None:
    names = [group_name("r", [0, 1]), group_name("r", [2, 3])]
    asked = []

    def status() -> Any:
        asked.append(time.monotonic())
        return {names[0]: 1}

    liveness = GroupLiveness("taskgram", ttl_s=5.0, sources=_view(status))
    index = remote_index(index_dir, 2, down=1, liveness=liveness)
    started = time.monotonic()
    with pytest.raises(ShardsUnavailable) as err:
        index.count([[1, 2]], deadline=time.monotonic() + 30)
    assert time.monotonic() - started < 5
    assert err.value.shards == [2, 3] and list(err.value.groups) == [names[1]]
    assert "no running replica" in err.value.groups[names[1]]
    assert index.groups[1].handle.call.sent == 1
    # the next request knows it from the controller's recent answer: nothing is sent, nothing waited for
    started = time.monotonic()
    with pytest.raises(ShardsUnavailable):
        index.trace([[1, 2, 3]], boundary="token", deadline=time.monotonic() + 30)
    assert time.monotonic() - started < 0.5
    assert index.groups[1].handle.call.sent == 1 and len(asked) == 1
    # a group the controller reports running is waited for until the deadline
    alive = GroupLiveness("taskgram", ttl_s=5.0, sources=_view(lambda: {names[0]: 1, names[1]: 1}))
    index = remote_index(index_dir, 2, down=1, liveness=alive)
    started = time.monotonic()
    with pytest.raises(ShardsUnavailable, match="no answer within"):
        index.count([[1, 2]], deadline=time.monotonic() + 1.5)
    assert 1.4 < time.monotonic() - started < 5


def test_without_the_controllers_status_the_deadline_bounds_the_wait(index_dir: Path) -> None:
    def status() -> Any:
        raise ConnectionError("controller unreachable")

    index = remote_index(index_dir, 2, down=0, liveness=GroupLiveness("taskgram", sources=_view(status)))
    started = time.monotonic()
    with pytest.raises(ShardsUnavailable, match="no answer within") as err:
        index.count([[1, 2]], deadline=time.monotonic() + 1.5)
    assert 1.4 < time.monotonic() - started < 5
    assert err.value.shards == [0, 1]


def test_any_view_that_counts_no_replica_downs_the_group_and_a_slow_view_holds_up_no_other() -> None:
    names = [group_name("r", [0, 1]), group_name("r", [2, 3])]
    release = threading.Event()

    def slow_controller() -> Any:  # a loaded controller: answers late, and still counts both groups
        release.wait(10)
        return {names[0]: 1, names[1]: 1}

    liveness = GroupLiveness(
        "taskgram",
        ttl_s=5.0,
        sources=[
            LivenessSource("controller", "down: no running replica", slow_controller),
            LivenessSource("actors", "down: no live replica actor", lambda: {names[0]: 2}),
        ],
    )
    assert liveness.down(names) == {}  # nothing known yet; both views are asked in the background
    deadline = time.monotonic() + 5
    while not liveness.down(names, refresh=False) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert liveness.down(names, refresh=False) == {names[1]: "down: no live replica actor"}
    release.set()


def test_replica_actor_names_map_to_their_deployment() -> None:
    name = "SERVE_REPLICA::taskgram#shards-k3-3-5#a1b2c3"
    assert replica_deployment(name, "taskgram") == "shards-k3-3-5"
    assert replica_deployment(name, None) == "shards-k3-3-5"
    assert replica_deployment(name, "other") is None
    assert replica_deployment("SERVE_CONTROLLER_ACTOR", None) is None
    assert replica_deployment("SERVE_REPLICA::dep#id", None) is None  # no application: not ours
