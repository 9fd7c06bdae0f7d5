"""Run a build on Ray inside a loopback-only network namespace (started by ``tests/ray/test_ray_build.py``).

Usage: ``python ray_helper.py CONFIG.json``; CONFIG holds ``nodes`` (raylets to simulate with
``ray.cluster_utils.Cluster``), ``kill`` (SIGKILL the worker of the first shard seen half-written),
and ``build`` (keyword arguments of ``indexer.pipeline.build_index``). Prints one JSON line: the node
addresses Ray reported, the workers killed, and the build's resumed shard count.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path


def _kill_first_partial_shard_worker(output: Path, killed: list[int], stop: threading.Event) -> None:
    import psutil

    while not stop.is_set() and not killed:
        if any(output.glob("shard-*.partial")):
            for proc in psutil.process_iter(["pid", "cmdline"]):
                cmd = " ".join(proc.info.get("cmdline") or [])
                if "_ray_shard" in cmd and proc.pid != os.getpid():
                    os.kill(proc.pid, signal.SIGKILL)
                    killed.append(proc.pid)
                    return
        time.sleep(0.01)


def main() -> int:
    config = json.loads(Path(sys.argv[1]).read_text())
    import ray
    from ray.cluster_utils import Cluster

    from indexer.pipeline import build_index

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False},
    )
    for _ in range(config["nodes"] - 1):
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    ray.init(
        address=cluster.address, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False
    )
    try:
        cluster.wait_for_nodes()
        nodes = sorted({n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]})
        n_alive = sum(1 for n in ray.nodes() if n["Alive"])
        if nodes != ["127.0.0.1"]:
            print(json.dumps({"error": f"Ray nodes outside loopback: {nodes}"}))
            return 1
        killed: list[int] = []
        stop = threading.Event()
        watcher = None
        if config.get("kill"):
            output = Path(config["build"]["output"])
            watcher = threading.Thread(target=_kill_first_partial_shard_worker, args=(output, killed, stop))
            watcher.start()
        opts = dict(config["build"])
        inputs, output = opts.pop("inputs"), opts.pop("output")
        manifest = build_index(inputs, output, use_ray=True, progress=False, **opts)
        stop.set()
        if watcher is not None:
            watcher.join()
        print(
            json.dumps(
                {
                    "nodes": nodes,
                    "n_nodes": n_alive,
                    "killed": killed,
                    "resumed": manifest.build["resumed_shards"],
                }
            )
        )
    finally:
        ray.shutdown()
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
