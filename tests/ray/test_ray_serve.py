"""``taskgram serve --ray``: the shards on Ray Serve answer exactly as one process does, and a shard group
that goes away gives 503 problem+json naming its shards, never a partial sum.

The test runs ``serve_helper.py`` under ``unshare -n`` with only ``lo`` up: Ray can reach nothing but
127.0.0.1 (the helper also checks that every node Ray lists is 127.0.0.1). Two nodes are simulated with
``ray.cluster_utils.Cluster``; one 8-shard index is served under three names with 2, 3 and 8 shards per
replica, and every endpoint's answer is compared with the single-process app's (span tracing with several
option sets included). When the node of one group goes away, the 503 comes at once, not at the deadline.
Skipped, with the reason, where Ray is not installed or network namespaces are not permitted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.namespaces import dead_last_ray_cluster, run_in_loopback_namespace

HELPER = Path(__file__).with_name("serve_helper.py")
REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample-en.jsonl.zst"


@pytest.fixture(scope="module")
def eight_shards(tmp_path_factory: pytest.TempPathFactory, pythia_tokenizer) -> Path:
    from indexer.pipeline import build_index

    out = tmp_path_factory.mktemp("ray-serve") / "index"
    manifest = build_index(
        [SAMPLE], out, tokenizer=pythia_tokenizer, memory_budget_bytes="4M", progress=False
    )
    assert len(manifest.shards) >= 6  # 8 with the shard sizing of this writing
    return out


@pytest.mark.slow
def test_ray_serve_answers_as_one_process_and_names_missing_shards(
    eight_shards: Path, tmp_path: Path
) -> None:
    from indexer.manifest import read_manifest
    from service.ray_serve import group_name, plan_groups

    n_shards = len(read_manifest(eight_shards).shards)
    groups = {name: plan_groups(n_shards, k) for name, k in (("k2", 2), ("k3", 3), ("k8", 8))}
    config = {
        "index": str(eight_shards),
        "groupings": {"k2": 2, "k3": 3, "k8": 8},
        "nodes": 2,
        "down": ["k3", 1],
        "time_budget_s": 30.0,
        "report": str(tmp_path / "report.json"),
    }
    path = tmp_path / "serve-config.json"
    path.write_text(json.dumps(config))
    # Serve kills an HTTP proxy that is not ready within 5 s; on a loaded CI machine it can take longer
    run_in_loopback_namespace(
        f"{sys.executable} {HELPER} {path}", timeout=900, RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S="60"
    )
    report = json.loads(Path(config["report"]).read_text())

    assert report["nodes"] == ["127.0.0.1"] and report["n_nodes"] == 2
    # every endpoint, three groupings: identical answers (errors included: the out-of-range document)
    assert report["n_differences"] == 0, report["differences"]
    assert report["compared"] >= 3 * 35
    assert any(key.endswith(" 404") for key in report["statuses"]), report["statuses"]
    assert report["statuses"]["/v1/trace 200"] == 3 * 5 and report["statuses"]["/v1/trace 422"] == 3
    assert report["status_before"] == "ok"
    assert report["health_before"] == {name: ["up"] * len(g) for name, g in groups.items()}

    # the node of group 1 of "k3" (shards 3-5) is gone: 503 problem+json naming them, no partial sum
    down = groups["k3"][1]
    assert report["down_status"] == 503
    assert report["down_content_type"].startswith("application/problem+json")
    body = report["down_body"]
    assert body["type"].endswith("shards-unavailable")
    assert body["missing_shards"] == report["expected_missing"] == down == [3, 4, 5]
    assert list(body["shard_groups"]) == [report["down_group"]]
    assert "results" not in body
    # ... and at once, not at the 30 s deadline: the group has no running replica
    assert report["down_s"] < 10, report["down_s"]
    assert report["down_again"][0] == 503 and report["down_again"][1] < 10, report["down_again"]
    # the other groupings of the same shards still answer, with the single process's numbers
    local = report["local_after"]["results"]
    assert [r["results"] for r in report["others_after"]] == [local, local]
    assert report["status_after"] == "degraded"
    assert report["health_after"]["k3"] == {
        group_name("k3", g): ("down" if g == down else "up") for g in groups["k3"]
    }
    assert all(state == "up" for state in report["health_after"]["k2"].values())
    lines = report["metrics_group_lines"]
    assert len(lines) == sum(len(g) for g in groups.values())
    assert [line for line in lines if line.endswith(" 0.0")] == [
        'taskgram_shard_group_up{group="shards-k3-3-5",index="k3",shards="3-5"} 0.0'
    ]


_SERVE_AND_ASK = """
import json, signal, socket, subprocess, sys, time
import httpx

index, out = sys.argv[1], sys.argv[2]
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
cmd = [sys.executable, "-m", "taskgram.cli", "serve", index, "--ray", "--shards-per-replica", "4",
       "--cpus-per-replica", "0", "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING"]
proc = subprocess.Popen(cmd)
answer = None
deadline = time.monotonic() + 300
while answer is None and proc.poll() is None and time.monotonic() < deadline:
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/v1/count", json={"index": "index", "queries": ["import"]})
        if r.status_code == 200:
            answer = r.json()["results"]
    except httpx.HTTPError:
        pass
    time.sleep(1)
proc.send_signal(signal.SIGTERM)
proc.wait(timeout=120)
open(out, "w").write(json.dumps(answer))
"""


@pytest.mark.slow
def test_serve_ray_without_address_starts_its_own_ray_not_the_last_one_on_this_host(
    eight_shards: Path, tmp_path: Path
) -> None:
    """``taskgram serve --ray`` with no address is a new local Ray: Ray's default (ray.init() without an
    address) joins the cluster recorded by the host's last ``ray start``, here a dead address."""
    from service.engine import Index

    driver, out = tmp_path / "driver.py", tmp_path / "answer.json"
    driver.write_text(_SERVE_AND_ASK)
    with dead_last_ray_cluster() as ray_tmp:
        run_in_loopback_namespace(
            f"{sys.executable} {driver} {eight_shards} {out}", timeout=600, RAY_TMPDIR=ray_tmp
        )
    assert json.loads(out.read_text()) == Index.open(eight_shards).count(["import"])
