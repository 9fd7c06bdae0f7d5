"""HTTP benchmark: counts per second over HTTP in batches on loopback, and single-request latency.

    .venv/bin/python bench/bench_http.py [--work DIR] [--index DIR] [--queries N] [--singles N]

Index: ``--index DIR``, else the techdocs index of ``bench/bench_query.py`` (built once into ``--work``
from ``../shared/data/corpus/techdocs-en.jsonl.zst``), else the embedded sample corpus. The server is
``taskgram serve`` as a separate process on 127.0.0.1 (a free port), default settings except the log
level (WARNING: no access log line per request); the client is ``clients.Client`` in this process,
end to end (JSON encoding, HTTP, server validation, engine, JSON decoding).

Measured in the same run:

* counts/s over HTTP, batched: N n-grams (1-5 tokens, sampled from the corpus, plus absent ones) sent
  by ``Client.count`` in batches of 10,000 and 100,000 — as token ids and as text; every count is
  checked against the in-process engine (exact, same answers);
* single-request latency: ``Client.count([one phrase])`` sequentially, p50/p99; and raw ``httpx`` posts
  of a pre-encoded body (the client library's own overhead is the difference); with the CPU time the
  server and client processes spend per request (independent of other load on the machine, unlike
  wall-clock latency on a shared box);
* pair co-occurrence over HTTP: ``--pairs`` (x, y) phrase pairs sampled from the real workloads
  (``../shared/data/workloads/pairs-*.jsonl.zst``), each phrase an OR of " x" and "x" (``space="both"``),
  the paper's pair-count stage — pairs/s over HTTP vs the engine in-process, same answers, cold caches;
* peers: taskgram's engine in-process (batched; the ceiling for HTTP) and infini-gram 2.6.0's engine
  in-process, one call per count with prefetch depths 0 as its API server runs it (its HTTP API adds a
  Flask request per count on top). Ratios are ours / peer.

Targets (issue 3): >= 100,000 counts/s over HTTP in batches; single-request p50 <= 2 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
SAMPLE_CORPUS = REPO / "data" / "sample-en.jsonl.zst"


def log(msg: str) -> None:
    print(msg, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pick_index(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """(our index, infini-gram index or None)."""
    if args.index is not None:
        return args.index, None
    import bench_query

    if bench_query.CORPUS.is_file():
        ours = bench_query.build_ours(args.work)
        return ours, (None if args.no_peer else bench_query.build_peer(args.work, ours))
    out = args.work / "taskgram-sample"
    if not (out / "manifest.json").is_file():
        from indexer.pipeline import build_index

        log("shared data absent: building the embedded sample index ...")
        build_index([SAMPLE_CORPUS], out, tokenizer="pythia", progress=False)
    return out, None


def start_server(index: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TASKGRAM_ACCESS_LOG": "false"}
    cmd = [sys.executable, "-m", "taskgram.cli", "serve", "--name", f"bench={index}",
           "--port", str(port), "--log-level", "WARNING", "--log-format", "text"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start within 180 s")


def sample_queries(index_dir: Path, n: int, rng: np.random.Generator) -> tuple[list[list[int]], list[str]]:
    """n-grams of 1-5 tokens sampled from the corpus (10% absent random 3-grams), and text phrases."""
    from service.engine import Index

    ix = Index.open(index_dir)
    shard = ix.shards[0]
    toks = np.asarray(shard.tokens)
    sep = ix.separator
    out: list[list[int]] = []
    n_present = n - n // 10
    while len(out) < n_present:
        k = int(rng.integers(1, 6))
        p = int(rng.integers(0, len(toks) - k))
        g = toks[p : p + k]
        if np.all(g != sep):
            out.append([int(x) for x in g])
    while len(out) < n:
        out.append([int(x) for x in rng.integers(0, min(ix.vocab_size, 50_000), size=3)])
    rng.shuffle(out)  # type: ignore[arg-type]
    texts = []
    for ids in out[: n // 4]:
        text = ix.decode(ids).strip()
        if text:
            texts.append(text)
    return out, texts


def sample_pairs(n: int, rng: np.random.Generator) -> list[list[str]]:
    """About n (x, y) pairs sampled evenly from the workload files (empty when they are absent)."""
    import bench_query

    files = bench_query.WORKLOADS
    if not files:
        log("workload pairs absent (../shared/data/workloads): pair measurement skipped")
        return []
    lines = {"triviaqa": 47_813, "mmlu": 1_241_047, "gsm8k": 1_086_139, "translation-es": 1_038_029}
    per_file = n / len(files)
    out: list[list[str]] = []
    for path in files:
        key = next((k for k in lines if k in path.name), None)
        rate = min(1.0, per_file / lines.get(key, 1_000_000))
        out += [[x, y] for x, y in bench_query.read_pairs(path, rate, rng)]
    return out[:n]


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "taskgram-bench-query")
    ap.add_argument("--index", type=Path, default=None, help="index to serve (default: techdocs or sample)")
    ap.add_argument("--queries", type=int, default=200_000, help="phrases per batched run")
    ap.add_argument("--singles", type=int, default=2_000, help="sequential single-phrase requests")
    ap.add_argument("--pairs", type=int, default=100_000, help="workload pairs for co-occurrence (0: skip)")
    ap.add_argument("--no-peer", action="store_true", help="skip infini-gram")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)

    from clients import Client
    from service.engine import Index

    index_dir, peer_dir = pick_index(args)
    ix = Index.open(index_dir, name="bench")
    log(f"index: {index_dir} ({ix.n_tokens:,} tokens, {ix.n_docs:,} documents)")
    ids, texts = sample_queries(index_dir, args.queries, rng)
    ix.warm_up()
    want = ix.count(ids)
    t = time.perf_counter()
    ix.count(ids)
    inproc_rate = len(ids) / (time.perf_counter() - t)
    want_text = ix.count(texts)

    peer_rate = peer_us = None
    if peer_dir is not None:
        from infini_gram.engine import InfiniGramEngine

        peer = InfiniGramEngine(index_dir=str(peer_dir), eos_token_id=0, token_dtype="u16",
                                ds_prefetch_depth=0, sa_prefetch_depth=0, od_prefetch_depth=0)  # fmt: skip
        sub = ids[:20_000]
        t = time.perf_counter()
        got = [peer.count(input_ids=q)["count"] for q in sub]
        secs = time.perf_counter() - t
        peer_rate = len(sub) / secs
        peer_us = secs / len(sub) * 1e6
        differ = sum(1 for a, b in zip(got, want[: len(sub)], strict=True) if a != b)
        log(
            f"infini-gram in-process: {peer_rate:,.0f} counts/s ({peer_us:.1f} us/call); "
            f"{differ} differ from ours"
        )

    pairs = sample_pairs(args.pairs, rng) if args.pairs else []
    pair_want: list[int] = []
    pair_inproc = 0.0
    if pairs:
        t = time.perf_counter()
        pair_want = ix.cooccurrence(pairs, space="both")
        pair_inproc = len(pairs) / (time.perf_counter() - t)

    port = free_port()
    log(f"starting taskgram serve on 127.0.0.1:{port} ...")
    server = start_server(index_dir, port)
    rows: list[tuple[str, str, str]] = []
    try:
        url = f"http://127.0.0.1:{port}"
        with Client(url, index="bench", timeout=600) as client:
            client.count(ids[:1000])  # connection + warm-up
            for batch in (10_000, 100_000):
                client._batch_size = batch
                t = time.perf_counter()
                got = client.count(ids)
                secs = time.perf_counter() - t
                if got != want:
                    raise SystemExit(f"HTTP counts differ from the engine's (batch {batch})")
                rate = len(ids) / secs
                ratio = f"{rate / peer_rate:.1f}x infini-gram" if peer_rate else "-"
                rows.append((f"counts/s over HTTP, ids, batches of {batch:,}", f"{rate:,.0f}", ratio))
            client._batch_size = 100_000
            t = time.perf_counter()
            got_text = client.count(texts)
            secs = time.perf_counter() - t
            if got_text != want_text:
                raise SystemExit("HTTP text counts differ from the engine's")
            rate = len(texts) / secs
            ratio = f"{rate / peer_rate:.1f}x infini-gram" if peer_rate else "-"
            rows.append(
                (
                    f"counts/s over HTTP, text ({len(texts):,} phrases, batches of 100,000)",
                    f"{rate:,.0f}",
                    ratio,
                )
            )

            if pairs:
                t = time.perf_counter()
                got_pairs = client.cooccurrence(pairs, space="both")
                secs = time.perf_counter() - t
                if got_pairs != pair_want:
                    raise SystemExit("HTTP pair counts differ from the engine's")
                rate = len(pairs) / secs
                what = f"pairs/s over HTTP ({len(pairs):,} workload pairs, OR of 2 forms)"
                note = f"{rate / pair_inproc:.2f}x in-process; 10^6 pairs in {1e6 / rate / 60:.1f} min"
                rows.append((what, f"{rate:,.0f}", note))

            import psutil

            server_proc = psutil.Process(server.pid)
            lat: list[float] = []
            cpu_server = sum(server_proc.cpu_times()[:2])
            cpu_client = time.process_time()
            for q in ids[: args.singles]:
                t = time.perf_counter()
                client.count([q])
                lat.append(time.perf_counter() - t)
            cpu_server = (sum(server_proc.cpu_times()[:2]) - cpu_server) / len(lat) * 1e3
            cpu_client = (time.process_time() - cpu_client) / len(lat) * 1e3
            rows.append(
                (
                    "CPU ms per single request (server / client process)",
                    f"{cpu_server:.2f} / {cpu_client:.2f}",
                    "load-independent: the latency floor on an idle machine is about their sum",
                )
            )
            raw: list[float] = []
            body = json.dumps({"index": "bench", "queries": [{"ids": ids[0]}]}).encode()
            headers = {"content-type": "application/json"}
            with httpx.Client(base_url=url) as http:
                for _ in range(args.singles):
                    t = time.perf_counter()
                    r = http.post("/v1/count", content=body, headers=headers)
                    raw.append(time.perf_counter() - t)
                    if r.status_code != 200:
                        raise SystemExit(r.text)
            for label, xs in (("Client.count, 1 phrase", lat), ("raw httpx POST /v1/count, 1 phrase", raw)):
                p50, p99 = percentile(xs, 50) * 1e3, percentile(xs, 99) * 1e3
                ratio = f"{p50 * 1e3 / peer_us:.0f}x infini-gram in-process call" if peer_us else "-"
                rows.append((f"single request p50 / p99 ms ({label})", f"{p50:.2f} / {p99:.2f}", ratio))
    finally:
        server.terminate()
        server.wait(timeout=30)

    rows.append(("counts/s in-process (taskgram engine, one batch)", f"{inproc_rate:,.0f}",
                 f"{inproc_rate / peer_rate:.1f}x infini-gram" if peer_rate else "-"))  # fmt: skip
    if pairs:
        rows.append(("pairs/s in-process (taskgram engine, one batch)", f"{pair_inproc:,.0f}", "1.00x"))
    if peer_rate:
        rows.append(("counts/s infini-gram 2.6.0 in-process, one call each", f"{peer_rate:,.0f}", "1.0x"))
    width = max(len(r[0]) for r in rows)
    log("")
    for what, value, ratio in rows:
        log(f"  {what:<{width}}  {value:>16}  {ratio}")
    best = max(float(v.replace(",", "")) for w, v, _ in rows if w.startswith("counts/s over HTTP, ids"))
    p50 = float(
        next(v for w, v, _ in rows if w.startswith("single request p50") and "Client" in w).split(" / ")[0]
    )
    log("")
    log(f"target >= 100,000 counts/s over HTTP: {'met' if best >= 100_000 else 'NOT met'} ({best:,.0f})")
    log(f"target single-request p50 <= 2 ms: {'met' if p50 <= 2.0 else 'NOT met'} ({p50:.2f} ms)")
    log("(latency: sequential requests from 1 client thread to 1 server process, loopback)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
