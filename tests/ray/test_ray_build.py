"""The build on Ray (``build_index(use_ray=True)``), run only inside a loopback-only network namespace.

Each test runs ``ray_helper.py`` under ``unshare -n`` with only ``lo`` up: Ray can reach nothing but
127.0.0.1 (the helper also checks that every node Ray lists is 127.0.0.1). Several nodes are simulated
with ``ray.cluster_utils.Cluster``. Skipped, with the reason, where Ray is not installed or network
namespaces are not permitted.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from indexer.manifest import read_manifest
from indexer.pipeline import build_index
from tests.namespaces import dead_last_ray_cluster, run_in_loopback_namespace

HELPER = Path(__file__).with_name("ray_helper.py")
REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample-en.jsonl.zst"


def _run_helper(tmp_path: Path, config: dict) -> dict:
    path = tmp_path / "ray-config.json"
    path.write_text(json.dumps(config))
    proc = run_in_loopback_namespace(f"{sys.executable} {HELPER} {path}", timeout=600)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["nodes"] == ["127.0.0.1"]
    return report


def _shard_files(index: Path) -> dict[str, bytes]:
    return {str(p.relative_to(index)): p.read_bytes() for p in sorted(index.glob("shard-*/*")) if p.is_file()}


@pytest.mark.slow
def test_ray_text_build_on_two_nodes_equals_local_build(tmp_path, pythia_tokenizer):
    local = build_index(
        [SAMPLE],
        tmp_path / "local",
        tokenizer=pythia_tokenizer,
        memory_budget_bytes="2M",
        progress=False,
        workers=2,
    )
    out = tmp_path / "ray"
    report = _run_helper(
        tmp_path,
        {"nodes": 2, "build": {"inputs": [str(SAMPLE)], "output": str(out), "memory_budget_bytes": "2M"}},
    )
    assert report["n_nodes"] == 2
    on_ray = read_manifest(out)
    assert len(on_ray.shards) == len(local.shards) > 2
    assert on_ray.shards == local.shards  # names, counts, sizes and sha256 of every file
    assert _shard_files(out) == _shard_files(tmp_path / "local")
    assert not list(out.glob("*.partial")) and not (out / "pieces").exists()


@pytest.mark.slow
def test_ray_worker_killed_mid_shard_is_retried_and_rerun_keeps_finished_shards(tmp_path):
    rng = np.random.default_rng(7)
    tokens = rng.integers(0, 50, size=6_000_000, dtype=np.uint16)  # ~1 M-token shards: a sort takes a while
    data = tmp_path / "tokens.u16"
    tokens.tofile(data)
    np.arange(0, 6_000_001, 100_000, dtype="<u8").tofile(tmp_path / "tokens.u16.offsets")
    opts = {"pretokenized": "raw-u16", "tokenizer": None, "vocab_size": 50, "memory_budget_bytes": "40M"}
    local = build_index([data], tmp_path / "local", progress=False, workers=1, **opts)
    assert len(local.shards) >= 4

    out = tmp_path / "ray"
    report = _run_helper(
        tmp_path, {"nodes": 2, "kill": True, "build": {"inputs": [str(data)], "output": str(out), **opts}}
    )
    assert len(report["killed"]) == 1
    assert read_manifest(out).shards == local.shards
    assert not list(out.glob("*.partial"))

    # An interrupted build (its state file, no manifest, a shard missing) rerun on Ray keeps the other
    # shards and rebuilds that one.
    state = {"fingerprint": read_manifest(out).build["fingerprint"]}
    (out / "manifest.json").unlink()
    (out / "build-state.json").write_text(json.dumps(state))
    shutil.rmtree(out / "shard-00001")
    stamps = {p.name: (p / "tokens.bin").stat().st_mtime_ns for p in out.glob("shard-*")}
    report = _run_helper(tmp_path, {"nodes": 1, "build": {"inputs": [str(data)], "output": str(out), **opts}})
    assert report["resumed"] == len(local.shards) - 1
    assert {p: (out / p / "tokens.bin").stat().st_mtime_ns for p in stamps} == stamps
    assert read_manifest(out).shards == local.shards


@pytest.mark.slow
def test_ray_without_address_starts_its_own_ray_not_the_last_one_on_this_host(tmp_path, pythia_tokenizer):
    # `--ray` with no address is a new local Ray. Ray's own default (ray.init() without an address)
    # connects to the cluster recorded in <ray temp dir>/ray_current_cluster by the host's last
    # `ray start`: here a dead address, which hung the build before.
    out = tmp_path / "ray"
    build = f"{sys.executable} -m taskgram.cli build {SAMPLE} -o {out} --memory 2M -q --ray"
    with dead_last_ray_cluster() as ray_tmp:
        run_in_loopback_namespace(build, timeout=300, RAY_TMPDIR=ray_tmp)
    local = build_index(
        [SAMPLE], tmp_path / "local", tokenizer=pythia_tokenizer, memory_budget_bytes="2M", progress=False
    )
    assert read_manifest(out).shards == local.shards
