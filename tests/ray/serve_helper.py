"""Serve an index on Ray Serve inside a loopback-only network namespace and compare every endpoint with the
single-process app (started by ``tests/ray/test_ray_serve.py``).

Usage: ``python serve_helper.py CONFIG.json``. CONFIG holds ``index`` (a multi-shard index directory),
``groupings`` ({served name: shards per replica}), ``nodes`` (raylets simulated with
``ray.cluster_utils.Cluster``) and ``down`` ([served name, group number]: that group is pinned to the
last node, which is then removed). Writes the report, JSON, to CONFIG's ``report`` path: the node
addresses Ray reported, the requests whose answers differed, and what the service said once the node was
gone (Ray's own processes also write to stdout).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def watch_actor_death(deployment: str, report: dict[str, Any]) -> None:
    """Record in ``report["actor_dead_s"]`` how long Ray's actor table still lists a live replica actor of
    ``deployment`` (what the service's fast 503 waits for; for the report, not asserted)."""
    from service.ray_serve import actor_table_source

    view = actor_table_source(None)
    started = time.monotonic()
    while time.monotonic() - started < 60 and view.fetch().get(deployment, 0) > 0:
        time.sleep(0.05)
    report["actor_dead_s"] = round(time.monotonic() - started, 2)


def requests_for(index: Any) -> list[tuple[str, dict[str, Any]]]:
    """(path, body) of a query of every type, on phrases that straddle shards, occur once, or not at all;
    the body's "index" is filled in per served name."""
    import numpy as np

    rng = np.random.default_rng(7)
    shard = index.shards[0]
    toks = np.asarray(shard.tokens, dtype=np.int64)
    sep = index.separator
    grams: list[list[int]] = []
    while len(grams) < 40:
        n = int(rng.integers(1, 4))
        i = int(rng.integers(0, len(toks) - n))
        g = toks[i : i + n].tolist()
        if sep not in g:
            grams.append(g)
    words = ["the", "import", "index", "Python", "function", "file", "data", "return", "zzqx unseen"]
    specs: list[Any] = [*words[:6], {"any": ["import", "return"]}, {"ids": grams[0]}]
    pairs = [[a, b] for a in specs[:5] for b in specs[3:]]
    n_docs = index.n_docs
    out: list[tuple[str, dict[str, Any]]] = [
        ("/v1/count", {"queries": words + [{"ids": g} for g in grams]}),
        ("/v1/count", {"queries": words, "boundary": "word"}),
        ("/v1/count", {"queries": words, "space": "exact"}),
        ("/v1/doc_freq", {"queries": specs + [{"ids": g} for g in grams[:10]]}),
        ("/v1/doc_freq", {"queries": specs, "boundary": "word"}),
        ("/v1/cooccurrence", {"queries": pairs + [specs[:3]]}),
        ("/v1/cooccurrence", {"queries": pairs, "unit": "occurrences"}),
        ("/v1/cooccurrence", {"queries": pairs, "unit": "occurrences", "boundary": "word"}),
        ("/v1/cooccurrence/windowed", {"queries": pairs + [specs[:3]], "window": 20}),
        ("/v1/ntd", {"queries": ["", "the", "import", {"ids": grams[1]}, "zzqx unseen"]}),
        ("/v1/ntd", {"queries": ["the", "of the"], "top_k": 5}),
        (
            "/v1/prob",
            {"queries": [{"prompt": "import", "token_id": int(t)} for t in grams[2][:1] + [15, 273]]},
        ),
        (
            "/v1/infgram_prob",
            {
                "queries": [
                    {"context": "The function returns", "continuation": " the value of the file"},
                    {"context": "", "continuation": "import os"},
                    {"context": {"ids": grams[3]}, "continuation": {"ids": grams[4]}},
                ]
            },
        ),
        ("/v1/tokenize", {"queries": ["import numpy as np", " the index"]}),
        ("/", {"query_type": "count", "query": "import"}),
        ("/", {"query_type": "count", "query": "import AND return OR function"}),
        ("/", {"query_type": "prob", "query": "import os"}),
        ("/", {"query_type": "ntd", "query": "import"}),
        ("/", {"query_type": "infgram_prob", "query": "the function returns the"}),
        ("/", {"query_type": "search_docs", "query": "import AND return", "maxnum": 3}),
        ("/", {"query_type": "search_docs", "query": "import", "maxnum": 2}),
        ("/", {"query_type": "count", "query_ids": [[[1395], [1091]], [[253]]]}),
    ]
    for offset in (0, 5, 17, 40, 120, 10_000):  # pages that cross shard boundaries, and one past the end
        out.append(("/v1/documents", {"queries": [["the"]], "offset": offset, "limit": 7, "window": 8}))
    out.append(("/v1/documents", {"queries": [["import", "return"]], "limit": 5, "window": 5}))
    out.append(("/v1/documents", {"queries": [["index"]], "limit": 4, "window": 5, "boundary": "word"}))
    out.append(("/v1/documents", {"queries": [["the"]], "sample": True, "seed": 3, "limit": 6, "window": 4}))
    for doc_id in (0, 1, n_docs // 3, n_docs // 2, n_docs - 1, n_docs):  # the last one is out of range
        out.append((f"GET /v1/indexes/{{name}}/documents/{doc_id}", {}))
    traced = [
        "The function returns the value of the file object, and the import statement loads the module.",
        "zzqx unseen words, then the Python index of the data",
    ]
    out += [  # span tracing: spans across shards, sampled documents from several shards
        ("/v1/trace", {"queries": traced}),
        ("/v1/trace", {"queries": traced, "max_count": None, "docs_per_span": 6, "context": 4, "seed": 2}),
        (
            "/v1/trace",
            {"queries": traced, "boundary": "token", "min_len": 2, "max_count": 50, "seed": 4, "context": 3},
        ),
        (
            "/v1/trace",
            {
                "queries": [traced[0], {"ids": grams[5] + grams[6]}],
                "rank": "unigram_logprob",
                "max_spans": 3,
                "docs_per_span": 2,
                "seed": 9,
            },
        ),
        ("/v1/trace", {"queries": traced[:1], "space": "exact", "docs_per_span": 0, "min_len": 3}),
        ("/v1/trace", {"queries": traced, "min_len": 0}),  # 422 naming the field
    ]
    return out


def normalized(body: Any, path: str, request: dict[str, Any], name: str) -> Any:
    """The answer without the served name and timings. infini-gram's search_docs samples its documents
    (no seed in that API): their number is kept, not which ones."""
    if not isinstance(body, dict):
        return body
    body = {k: v for k, v in body.items() if k not in ("index", "latency")}
    if isinstance(body.get("detail"), str):
        body["detail"] = body["detail"].replace(repr(name), "<index>")
    if path == "/" and request.get("query_type") == "search_docs" and "documents" in body:
        body["documents"] = len(body["documents"])
        body.pop("idxs", None)
        body.pop("message", None)
    return body


def ask(client: Any, path: str, body: dict[str, Any], name: str) -> tuple[int, Any]:
    if path.startswith("GET "):
        response = client.get(path[4:].replace("{name}", name))
    else:
        response = client.post(path, json={**body, "index": name})
    try:
        payload = response.json()
    except ValueError:
        payload = response.text
    return response.status_code, normalized(payload, path, body, name)


def main() -> int:
    config = json.loads(Path(sys.argv[1]).read_text())
    import httpx
    import ray
    from fastapi.testclient import TestClient
    from ray import serve
    from ray.cluster_utils import Cluster

    from indexer.manifest import read_manifest
    from service.app import create_app
    from service.engine import Index
    from service.ray_serve import (
        INGRESS_RESOURCE,
        RayOptions,
        build_application,
        group_name,
        plan_groups,
    )
    from service.settings import Settings

    index_dir = config["index"]
    groupings: dict[str, int] = config["groupings"]
    n_shards = len(read_manifest(Path(index_dir)).shards)
    down_name, down_group = config["down"]
    down_shards = plan_groups(n_shards, groupings[down_name])[down_group]
    resources = {
        f"taskgram:{name}:{g}": 1
        for name, k in groupings.items()
        for g in range(len(plan_groups(n_shards, k)))
        if (name, g) != (down_name, down_group)
    }
    resources[INGRESS_RESOURCE] = 1  # the ingress stays on the head: only the down group's node goes
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 8,
            "node_ip_address": "127.0.0.1",
            "include_dashboard": False,
            "resources": resources,
        },
    )
    for _ in range(config["nodes"] - 2):
        cluster.add_node(num_cpus=4, node_ip_address="127.0.0.1")
    last = cluster.add_node(
        num_cpus=4, node_ip_address="127.0.0.1", resources={f"taskgram:{down_name}:{down_group}": 1}
    )
    ray.init(
        address=cluster.address, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False
    )
    report: dict[str, Any] = {}
    try:
        cluster.wait_for_nodes()
        report["nodes"] = sorted({n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]})
        report["n_nodes"] = sum(1 for n in ray.nodes() if n["Alive"])
        if report["nodes"] != ["127.0.0.1"]:
            Path(config["report"]).write_text(json.dumps(report))
            return 1
        port = free_port()
        settings = Settings(
            indexes={name: index_dir for name in groupings},
            port=port,
            time_budget_s=config.get("time_budget_s", 30.0),
        )
        options = RayOptions(shards_per_replica=groupings, cpus_per_replica=0.0, pin_groups=True)
        started = time.monotonic()
        # One HTTP proxy, on the head: the simulated nodes share this host's 127.0.0.1, so a proxy on the
        # node removed below could hold the client's connection and reset it.
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_application(settings, options), name="taskgram", route_prefix="/")
        report["deploy_s"] = round(time.monotonic() - started, 1)

        local = TestClient(create_app(Settings(indexes={"local": index_dir}, warmup=False)))
        local.__enter__()
        remote = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
        probe_index = Index.open(index_dir)
        requests = requests_for(probe_index)
        differences = []
        compared = 0
        statuses: dict[str, int] = {}
        for path, body in requests:
            want = ask(local, path, body, "local")
            for name in groupings:
                got = ask(remote, path, body, name)
                compared += 1
                statuses[f"{path} {want[0]}"] = statuses.get(f"{path} {want[0]}", 0) + 1
                if got != want:
                    differences.append({"path": path, "body": body, "name": name, "want": want, "got": got})
        report["compared"] = compared
        report["statuses"] = statuses
        report["differences"] = differences[:5]
        report["n_differences"] = len(differences)
        health = remote.get("/v1/health").json()
        report["health_before"] = {
            name: [g["state"] for g in groups] for name, groups in health.get("shard_groups", {}).items()
        }
        report["status_before"] = health["status"]

        # the node that holds one group goes away: that group cannot be placed anywhere else. The request
        # that needs it fails at once (the deadline is the time budget), not when the deadline is over.
        cluster.remove_node(last)
        # timed from when Ray reports the node dead: how soon Ray's failure detector notices (slower on a
        # loaded machine) is Ray's, not the service's
        gone = time.monotonic()
        while sum(1 for n in ray.nodes() if n["Alive"]) >= report["n_nodes"] and time.monotonic() - gone < 60:
            time.sleep(0.1)
        report["node_gone_s"] = round(time.monotonic() - gone, 2)
        count = {"queries": ["import", "the"]}
        started = time.monotonic()
        down_deployment = group_name(down_name, down_shards)
        watcher = threading.Thread(target=watch_actor_death, args=(down_deployment, report))
        watcher.start()
        failed = remote.post("/v1/count", json={**count, "index": down_name})
        report["down_s"] = round(time.monotonic() - started, 2)
        watcher.join()
        started = time.monotonic()
        again = remote.post("/v1/trace", json={"queries": ["import os"], "index": down_name})
        report["down_again"] = [again.status_code, round(time.monotonic() - started, 2)]
        report["down_status"] = failed.status_code
        report["down_body"] = failed.json()
        report["down_content_type"] = failed.headers.get("content-type")
        report["expected_missing"] = down_shards
        report["down_group"] = group_name(down_name, down_shards)
        others = [name for name in groupings if name != down_name]
        report["others_after"] = [
            remote.post("/v1/count", json={**count, "index": name}).json() for name in others
        ]
        report["local_after"] = local.post("/v1/count", json={**count, "index": "local"}).json()
        health = remote.get("/v1/health").json()
        report["health_after"] = {
            name: {g["group"]: g["state"] for g in groups} for name, groups in health["shard_groups"].items()
        }
        report["status_after"] = health["status"]
        metrics = remote.get("/metrics").text
        report["metrics_group_lines"] = [
            line for line in metrics.splitlines() if line.startswith("taskgram_shard_group_up{")
        ]
        remote.close()
        local.__exit__(None, None, None)
        Path(config["report"]).write_text(json.dumps(report))
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
