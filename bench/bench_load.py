"""Bounded load test of ``taskgram serve`` on loopback: many concurrent clients mixing query types.

Starts the server as a subprocess on 127.0.0.1 (a free port), drives it with ``--clients`` concurrent
clients for at most ``--duration`` seconds and ``--max-requests`` requests, and samples the server's RSS
every ``--rss-interval`` seconds. Prints throughput, p50/p99 latency per query type, errors (expected: 0)
and RSS over time (expected: flat), and writes the same as JSON under ``bench/results/``.

    python bench/bench_load.py                                  # the embedded sample index (built if missing)
    python bench/bench_load.py --index /path/to/index --clients 64 --duration 60

Only loopback addresses are used; the request loop is bounded in count and time and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CORPUS = REPO / "data" / "sample-en.jsonl.zst"
DEFAULT_INDEX = REPO / "indexes" / "sample"
WORD = re.compile(r"[A-Za-z][A-Za-z-]+")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_index(path: Path) -> None:
    if (path / "manifest.json").is_file():
        return
    print(f"building {path} from {SAMPLE_CORPUS} ...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "taskgram.cli", "build", str(SAMPLE_CORPUS), "--output", str(path)], check=True
    )


def phrase_pool(index: Path, rng: random.Random, n: int) -> list[str]:
    """Word n-grams (n = 1..4) drawn from the index's own documents, plus some absent phrases."""
    sys.path.insert(0, str(REPO))
    from indexer.manifest import open_shard, read_manifest

    manifest = read_manifest(index)
    shard = manifest.shards[0]
    arrays = open_shard(index, manifest, shard)
    from indexer.tokenize import load_index_tokenizer

    tokenizer = load_index_tokenizer(index, manifest.tokenizer.sha256)
    pool: list[str] = []
    while len(pool) < n:
        doc = rng.randrange(shard.n_docs)
        start, end = int(arrays.doc_offsets[doc]), int(arrays.doc_offsets[doc + 1]) - 1
        if end - start <= 64:
            continue
        a = rng.randrange(start, end - 64)
        words = WORD.findall(tokenizer.decode(arrays.tokens[a : a + 64].tolist()))
        if len(words) < 6:
            continue
        k = rng.randint(1, 4)
        i = rng.randrange(len(words) - k)
        pool.append(" ".join(words[i : i + k]))
    pool += [f"zqx{rng.randrange(10**6)} absent phrase" for _ in range(n // 20)]
    return pool


def make_request(kind: str, index: str, pool: list[str], rng: random.Random, batch: int) -> tuple[str, dict]:
    pick = rng.choice
    if kind == "count":
        return "/v1/count", {"index": index, "queries": [pick(pool) for _ in range(batch)]}
    if kind == "cooccurrence":
        return "/v1/cooccurrence", {
            "index": index,
            "queries": [[pick(pool), pick(pool)] for _ in range(batch)],
        }
    if kind == "windowed":
        return "/v1/cooccurrence/windowed", {
            "index": index,
            "window": 100,
            "queries": [[pick(pool), pick(pool)] for _ in range(max(1, batch // 10))],
        }
    if kind == "ntd":
        return "/v1/ntd", {"index": index, "top_k": 10, "queries": [pick(pool) for _ in range(4)]}
    if kind == "infgram":
        return "/v1/infgram_prob", {
            "index": index,
            "queries": [{"context": pick(pool), "continuation": pick(pool)} for _ in range(4)],
        }
    if kind == "documents":
        return "/v1/documents", {"index": index, "limit": 3, "queries": [[pick(pool)]]}
    raise ValueError(kind)


async def client_loop(
    client: httpx.AsyncClient,
    args: argparse.Namespace,
    pool: list[str],
    seed: int,
    stop_at: float,
    budget: list[int],
    samples: dict[str, list[float]],
    errors: dict[str, int],
) -> None:
    rng = random.Random(seed)
    kinds = ["count", "count", "cooccurrence", "cooccurrence", "windowed", "ntd", "infgram", "documents"]
    while time.monotonic() < stop_at and budget[0] > 0:
        budget[0] -= 1
        kind = rng.choice(kinds)
        path, body = make_request(kind, args.index_name, pool, rng, args.batch)
        t0 = time.perf_counter()
        try:
            response = await client.post(path, json=body)
            ok = response.status_code == 200 and len(response.json()["results"]) == len(body["queries"])
        except httpx.HTTPError as err:
            ok = False
            errors[f"{kind}: {type(err).__name__}"] = errors.get(f"{kind}: {type(err).__name__}", 0) + 1
        else:
            if not ok:
                key = f"{kind}: HTTP {response.status_code}"
                errors[key] = errors.get(key, 0) + 1
        samples.setdefault(kind, []).append(time.perf_counter() - t0)


async def sample_rss(
    proc: psutil.Process, interval: float, stop_at: float, out: list[tuple[float, int]]
) -> None:
    t0 = time.monotonic()
    while time.monotonic() < stop_at:
        out.append((time.monotonic() - t0, proc.memory_info().rss))
        await asyncio.sleep(interval)


async def drive(args: argparse.Namespace, base_url: str, pool: list[str], server: psutil.Process) -> dict:
    samples: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    rss: list[tuple[float, int]] = []
    budget = [args.max_requests]
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=base_url, timeout=60.0, limits=limits) as client:
        t0 = time.monotonic()
        stop_at = t0 + args.duration
        rss_task = asyncio.create_task(sample_rss(server, args.rss_interval, stop_at, rss))
        await asyncio.gather(
            *(
                client_loop(client, args, pool, args.seed + i, stop_at, budget, samples, errors)
                for i in range(args.clients)
            )
        )
        wall = time.monotonic() - t0
        rss_task.cancel()
    return {"samples": samples, "errors": errors, "rss": rss, "wall_s": wall}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--index", type=Path, default=DEFAULT_INDEX)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds (upper bound)")
    parser.add_argument("--max-requests", type=int, default=20_000, help="requests in all (upper bound)")
    parser.add_argument("--batch", type=int, default=100, help="queries per count/cooccurrence request")
    parser.add_argument("--rss-interval", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.duration = min(args.duration, 600.0)
    ensure_index(args.index)
    args.index_name = args.index.name
    pool = phrase_pool(args.index, random.Random(args.seed), 2000)

    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taskgram.cli",
            "serve",
            str(args.index),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "WARNING",
        ],
        env=env,
        cwd=REPO,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base_url}/v1/health", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("server did not start")
            time.sleep(0.2)
        result = asyncio.run(drive(args, base_url, pool, psutil.Process(server.pid)))
    finally:
        server.terminate()
        server.wait(timeout=30)

    samples, errors, rss = result["samples"], result["errors"], result["rss"]
    n_requests = sum(len(v) for v in samples.values())
    n_errors = sum(errors.values())
    print(
        f"\n{n_requests} requests from {args.clients} clients in {result['wall_s']:.1f} s "
        f"= {n_requests / result['wall_s']:.0f} requests/s; errors: {n_errors}"
    )
    print(f"{'query type':<14}{'requests':>10}{'p50 ms':>10}{'p99 ms':>10}")
    table = {}
    for kind, lat in sorted(samples.items()):
        arr = np.asarray(lat) * 1000
        table[kind] = {
            "requests": len(arr),
            "p50_ms": float(np.percentile(arr, 50)),
            "p99_ms": float(np.percentile(arr, 99)),
        }
        print(f"{kind:<14}{len(arr):>10}{table[kind]['p50_ms']:>10.2f}{table[kind]['p99_ms']:>10.2f}")
    for key, count in sorted(errors.items()):
        print(f"  error {key}: {count}")
    mib = [r / 2**20 for _, r in rss]
    if mib:
        half = len(mib) // 2
        first, second = np.mean(mib[: max(half, 1)]), np.mean(mib[half:])
        print(
            f"server RSS MiB: start {mib[0]:.0f}, max {max(mib):.0f}, end {mib[-1]:.0f}; "
            f"mean of first half {first:.0f} vs second half {second:.0f} ({second - first:+.1f} MiB)"
        )
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "load.json").write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "requests": n_requests,
                "wall_s": result["wall_s"],
                "errors": errors,
                "latency": table,
                "rss_bytes": rss,
            },
            indent=2,
        )
    )
    return 1 if n_errors else 0


if __name__ == "__main__":
    sys.exit(main())
