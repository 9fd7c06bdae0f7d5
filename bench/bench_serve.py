"""Serving benchmark: ``taskgram serve --ray`` (Ray Serve, shards in groups) against ``taskgram serve``
(one process) on the same index, in the same run, with ratios.

    python bench/bench_serve.py [--index DIR] [--work DIR] [--groupings 7,2] [--replicas 1]
                                [--layouts 0x1,0x2,2x1] [--load-only] [--load-seconds 20] [--quick]

Both servers run as subprocesses of ``taskgram serve`` on 127.0.0.1, inside a loopback-only network
namespace (the script re-runs itself under ``unshare -n`` with ``lo`` up; Ray must never reach anything
else). The index defaults to the techdocs corpus (``../shared/data``) built with a small ``--memory`` so
that it has several shards (cached in ``--work``). Each server is measured alone, warm, one after the
other:

* batched counts: ``POST /v1/count`` with batches of phrases from ``workloads/phrases.jsonl.zst`` (phrases/s);
* workload pairs: ``POST /v1/cooccurrence`` (documents, ``space="both"``) with the pairs of the four
  ``workloads/pairs-*.jsonl.zst`` files (pairs/s);
* one count: sequential single-phrase requests (p50 / p99 ms);
* mixed load: ``bench_load.py``'s request mix from ``--clients`` concurrent clients for ``--load-seconds``
  (requests/s, errors, p50 and p99 per query type, and their ratios to the single process's).

The Ray layouts are ``--groupings`` x ``--replicas``, or exactly ``--layouts`` (``KxR``: K shards per
replica, 0 = all shards in one group, R replicas of each group). For what replicas and shard groups do
to tail latency under mixed load (issue 15): ``--layouts 0x1,0x2,2x1 --load-only`` (one group of all
shards, the same with two replicas, groups of two shards; ``--load-only`` skips the throughput
measurements and checks a smaller set of answers).

Every answer of the Ray server is compared with the single process's (they must be equal). Skips (exit 0,
saying why) when ../shared/data is absent and no ``--index`` is given, or when Ray or network namespaces
are unavailable.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
SHARED = REPO / ".." / "shared" / "data"
INSIDE = "TASKGRAM_BENCH_IN_NAMESPACE"


def log(msg: str) -> None:
    print(msg, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_jsonl_zst(path: Path) -> list[dict[str, Any]]:
    import zstandard

    with open(path, "rb") as f:
        text = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8")
        return [json.loads(line) for line in text]


def reexec_in_namespace() -> int | None:
    """Run this script again inside ``unshare -n`` (loopback only); None when already inside."""
    if os.environ.get(INSIDE) == "1":
        return None
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        log("skipped: needs unshare and ip for a loopback-only network namespace")
        return 0
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):
        if subprocess.run([*prefix, "sh", "-c", "ip link set lo up"], capture_output=True).returncode == 0:
            break
    else:
        log("skipped: network namespaces are not permitted here")
        return 0
    env = {**os.environ, INSIDE: "1", "RAY_USAGE_STATS_ENABLED": "0"}
    args = " ".join(f"'{a}'" for a in sys.argv[1:])
    cmd = f"ip link set lo up && exec {sys.executable} {Path(__file__).resolve()} {args}"
    return subprocess.run([*prefix, "sh", "-c", cmd], env=env).returncode


def ensure_index(work: Path, memory: str, corpus: Path) -> Path:
    out = work / f"techdocs-{memory}"
    if (out / "manifest.json").is_file():
        return out
    log(f"building {out} from {corpus} (--memory {memory}) ...")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "taskgram.cli",
            "build",
            str(corpus),
            "--output",
            str(out),
            "--memory",
            memory,
            "-q",
        ],
        check=True,
        cwd=REPO,
    )
    return out


class Server:
    """``taskgram serve`` (one process, or ``--ray``) as a subprocess on a free loopback port."""

    def __init__(self, index: Path, ray: tuple[int, int] | None, time_budget: float) -> None:
        self.port = free_port()
        cmd = [sys.executable, "-m", "taskgram.cli", "serve", str(index), "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--log-level", "WARNING", "--time-budget", str(time_budget)]
        cmd += ["--max-batch", "100000"]
        if ray is not None:
            k, replicas = ray
            cmd += ["--ray", "--shards-per-replica", str(k), "--replicas", str(replicas)]
            cmd += ["--cpus-per-replica", "0"]
        self.label = "single process" if ray is None else f"ray K={ray[0]} R={ray[1]}"
        self.proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.url = f"http://127.0.0.1:{self.port}"

    def wait(self, timeout: float = 600.0) -> float:
        import httpx

        t0 = time.monotonic()
        while True:
            try:
                health = httpx.get(f"{self.url}/v1/health", timeout=5.0)
                if health.status_code == 200 and health.json()["status"] == "ok":
                    return time.monotonic() - t0
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            if self.proc.poll() is not None or time.monotonic() - t0 > timeout:
                raise SystemExit(f"{self.label}: server did not start")
            time.sleep(1.0)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def post(client: Any, path: str, body: dict[str, Any]) -> Any:
    response = client.post(path, json=body)
    if response.status_code != 200:
        raise SystemExit(f"{path}: HTTP {response.status_code}: {response.text[:300]}")
    return response.json()["results"]


def measure(
    server: Server, name: str, phrases: list[str], pairs: list[list[str]], args: Any
) -> dict[str, Any]:
    import httpx
    import numpy as np

    out: dict[str, Any] = {"answers": {}}
    with httpx.Client(base_url=server.url, timeout=600.0) as client:
        post(client, "/v1/count", {"index": name, "queries": phrases[:100]})  # warm
        if args.load_only:  # the answers are still compared, on fewer queries
            out["answers"]["count"] = post(client, "/v1/count", {"index": name, "queries": phrases[:5000]})
            body = {"index": name, "queries": pairs[:1000], "space": "both"}
            out["answers"]["pairs"] = post(client, "/v1/cooccurrence", body)
            out["load"] = mixed_load(server, name, args)
            return out
        best = float("inf")
        answers: list[int] = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            answers = []
            for a in range(0, len(phrases), args.count_batch):
                answers += post(
                    client, "/v1/count", {"index": name, "queries": phrases[a : a + args.count_batch]}
                )
            best = min(best, time.perf_counter() - t0)
        out["counts_per_s"] = len(phrases) / best
        out["answers"]["count"] = answers
        best = float("inf")
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            answers = []
            for a in range(0, len(pairs), args.pair_batch):
                body = {"index": name, "queries": pairs[a : a + args.pair_batch], "space": "both"}
                answers += post(client, "/v1/cooccurrence", body)
            best = min(best, time.perf_counter() - t0)
        out["pairs_per_s"] = len(pairs) / best
        out["answers"]["pairs"] = answers
        lat = []
        singles = phrases[: args.singles]
        for phrase in singles:
            t0 = time.perf_counter()
            post(client, "/v1/count", {"index": name, "queries": [phrase]})
            lat.append(time.perf_counter() - t0)
        arr = np.asarray(lat) * 1000
        out["one_count_p50_ms"] = float(np.percentile(arr, 50))
        out["one_count_p99_ms"] = float(np.percentile(arr, 99))
    if args.load_seconds > 0:
        out["load"] = mixed_load(server, name, args)
    return out


def mixed_load(server: Server, name: str, args: Any) -> dict[str, Any]:
    import bench_load
    import numpy as np
    import psutil

    load_args = argparse.Namespace(
        clients=args.clients, duration=args.load_seconds, max_requests=100_000, batch=100, rss_interval=1.0,
        seed=0, index_name=name,
    )  # fmt: skip
    pool = bench_load.phrase_pool(args.index, random.Random(0), 2000)
    load_before = os.getloadavg()[0]
    result = asyncio.run(bench_load.drive(load_args, server.url, pool, psutil.Process(server.proc.pid)))
    n = sum(len(v) for v in result["samples"].values())
    return {
        "machine_load": (load_before, os.getloadavg()[0]),  # 1-minute load average, before and after
        "requests_per_s": n / result["wall_s"],
        "errors": sum(result["errors"].values()),
        "p99_ms": {
            k: float(np.percentile(np.asarray(v) * 1000, 99)) for k, v in sorted(result["samples"].items())
        },
        "p50_ms": {
            k: float(np.percentile(np.asarray(v) * 1000, 50)) for k, v in sorted(result["samples"].items())
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--index", type=Path, default=None, help="a multi-shard index (default: build one)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/taskgram-bench"))
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder")
    parser.add_argument("--memory", default="48M", help="--memory of the default index's build")
    parser.add_argument("--groupings", default="0,2", help="shards per replica of each Ray run (0 = all)")
    parser.add_argument("--replicas", default="1", help="replicas of each group, per Ray run (e.g. 1,2)")
    parser.add_argument(
        "--layouts", default=None, help="exact Ray runs, KxR each (e.g. 0x1,0x2,2x1); overrides the two above"
    )
    parser.add_argument(
        "--load-only", action="store_true", help="only the mixed load (and a check of fewer answers)"
    )
    parser.add_argument("--phrases", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--count-batch", type=int, default=10_000)
    parser.add_argument("--pair-batch", type=int, default=2_000)
    parser.add_argument("--singles", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--load-seconds", type=float, default=20.0)
    parser.add_argument("--time-budget", type=float, default=120.0)
    parser.add_argument("--quick", action="store_true", help="small workloads (a smoke run)")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "serve.json")
    args = parser.parse_args()
    if args.quick:
        args.phrases, args.pairs, args.singles, args.rounds, args.load_seconds = 5000, 1000, 50, 1, 5.0
    workloads = args.shared / "workloads"
    corpus = args.shared / "corpus" / "techdocs-en.jsonl.zst"
    if not (workloads / "phrases.jsonl.zst").is_file() or (args.index is None and not corpus.is_file()):
        log(f"skipped: {args.shared} (workloads, techdocs corpus) is absent")
        return 0
    try:
        import ray  # noqa: F401
    except ImportError:
        log("skipped: Ray is not installed (pip install 'taskgram[ray]')")
        return 0
    outer = reexec_in_namespace()
    if outer is not None:
        return outer

    from indexer.manifest import read_manifest

    args.work.mkdir(parents=True, exist_ok=True)
    index = args.index or ensure_index(args.work, args.memory, corpus)
    args.index = index
    n_shards = len(read_manifest(index).shards)
    name = index.resolve().name
    phrases = [r["phrase"] for r in read_jsonl_zst(workloads / "phrases.jsonl.zst")][: args.phrases]
    pairs: list[list[str]] = []
    files = sorted(workloads.glob("pairs-*.jsonl.zst"))
    per_file = args.pairs // max(1, len(files))
    for path in files:
        pairs += [[r["x"], r["y"]] for r in read_jsonl_zst(path)[:per_file]]
    log(
        f"index {index}: {n_shards} shards; {len(phrases)} phrases, {len(pairs)} pairs; {os.cpu_count()} CPUs"
    )

    if args.layouts:
        layouts = [tuple(int(x) for x in layout.lower().split("x")) for layout in args.layouts.split(",")]
        pairs_kr = [(k or n_shards, r) for k, r in layouts]
    else:
        groupings = [int(k) or n_shards for k in args.groupings.split(",")]
        replicas = [int(r) for r in args.replicas.split(",")]
        pairs_kr = [(k, r) for k in groupings for r in replicas]
    runs: list[tuple[int, int] | None] = [None, *pairs_kr]
    results: dict[str, Any] = {}
    for ray_layout in runs:
        server = Server(index, ray_layout, args.time_budget)
        try:
            start_s = server.wait()
            log(f"{server.label}: ready in {start_s:.1f} s")
            results[server.label] = measure(server, name, phrases, pairs, args)
            results[server.label]["start_s"] = start_s
        finally:
            server.stop()

    base = results["single process"]
    for label, r in results.items():
        if label != "single process" and r["answers"] != base["answers"]:
            raise SystemExit(f"{label}: answers differ from the single process's")
    if not args.load_only:
        log(
            f"\n{'server':<22}{'counts/s':>12}{'pairs/s':>12}{'1 count p50':>13}{'p99 ms':>9}"
            f"{'ratio c':>9}{'ratio p':>9}"
        )
        for label, r in results.items():
            log(
                f"{label:<22}{r['counts_per_s']:>12,.0f}{r['pairs_per_s']:>12,.0f}"
                f"{r['one_count_p50_ms']:>13.2f}{r['one_count_p99_ms']:>9.2f}"
                f"{r['counts_per_s'] / base['counts_per_s']:>9.2f}"
                f"{r['pairs_per_s'] / base['pairs_per_s']:>9.2f}"
            )
    if args.load_seconds > 0:
        log(f"\nmixed load, {args.clients} clients, {args.load_seconds:.0f} s each, one server after another")
        log(f"{'server':<22}{'requests/s':>11}{'ratio':>7}{'errors':>8}   machine load before / after")
        for label, r in results.items():
            load = r["load"]
            ratio = load["requests_per_s"] / base["load"]["requests_per_s"]
            before, after = load["machine_load"]
            log(
                f"{label:<22}{load['requests_per_s']:>11.1f}{ratio:>7.2f}{load['errors']:>8}"
                f"   {before:.1f} / {after:.1f}"
            )
        log(f"\n{'query type':<14}{'server':<22}{'p50 ms':>9}{'p99 ms':>9}{'p50 ratio':>11}{'p99 ratio':>11}")
        for kind in sorted(base["load"]["p99_ms"]):
            for label, r in results.items():
                p50 = r["load"]["p50_ms"].get(kind, float("nan"))
                p99 = r["load"]["p99_ms"].get(kind, float("nan"))
                log(
                    f"{kind:<14}{label:<22}{p50:>9.0f}{p99:>9.0f}"
                    f"{p50 / base['load']['p50_ms'][kind]:>11.2f}{p99 / base['load']['p99_ms'][kind]:>11.2f}"
                )
    log("answers: identical across servers")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    for r in results.values():
        r.pop("answers")
    args.json.write_text(
        json.dumps(
            {"index": str(index), "n_shards": n_shards, "cpus": os.cpu_count(), "results": results}, indent=2
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
