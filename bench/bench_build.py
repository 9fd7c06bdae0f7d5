"""Suffix-array build benchmark: taskgram's SA-IS kernel vs infini-gram 2.6.0 and pydivsufsort.

All three sort the same token ids (the corpus tokenized once with ``indexer.tokenize``):

* infini-gram: ``tokenized.0`` (u16, every document as separator 0xFFFF + tokens, little-endian) and
  ``offset.0`` (u64 byte offset of each document) are written into an index directory, then
  ``python -m infini_gram.indexing --data_dir <empty> --save_dir <dir> --token_dtype u16 --shards 1
  --cpus C --mem 20 --ulimit <hard NOFILE>`` skips its tokenizer and builds ``table.0``.
* pydivsufsort: ``divsufsort`` on the u16 array (it sorts the big-endian bytes and keeps even positions).
* taskgram: ``indexer.kernels.build_suffix_array`` on a read-only memmap of the shard's tokens file
  (documents each followed by the separator), result written as the shard's suffix array file.

Each build runs in its own subprocess; wall time and the peak RSS of the process tree (sampled with
psutil every 5 ms) are measured from outside. The workers also report their own timings and the RSS
they had before the build started (interpreter, numpy, numba and the compiled kernels): "own peak" is
the tree peak minus that baseline. Disk bytes/token count every file of the index (ours: tokens, document
offsets, suffix array, metadata and its offsets, laid out by ``indexer.format``).

Usage::

    python bench/bench_build.py [--corpus PATH] [--repeat N] [--cpus C] [--keep]

Results are printed and written to ``bench/results/build-<UTC time>.json``. The script exits with a
message (status 0) when ../shared/data or infini-gram is missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO / ".." / "shared" / "data"
DEFAULT_CORPUS = SHARED_DATA / "corpus" / "techdocs-en.jsonl.zst"
RESULTS_DIR = REPO / "bench" / "results"
ENCODE_BATCH_DOCS = 256

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from proctree import run_monitored  # noqa: E402 - bench/proctree.py, next to this script

# --------------------------------------------------------------------------------------------------
# Measuring a subprocess


def worker_report(output: str) -> dict[str, Any]:
    """The JSON line a worker printed last."""
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"worker printed no report:\n{output[-2000:]}")


def rss_now() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


# --------------------------------------------------------------------------------------------------
# Workers (run as subprocesses of this script)


def worker_taskgram(tokens_path: str, out_path: str) -> None:
    import numpy as np

    from indexer.kernels import build_suffix_array

    start = time.perf_counter()
    warm = np.array([3, 1, 4, 1, 5, 9, 2, 6, 65535, 5, 3, 5], dtype=np.uint16)
    warm = np.tile(warm, 100_000)  # large enough to load every kernel, parallel ones included
    build_suffix_array(warm, 65535)
    warm_s = time.perf_counter() - start
    del warm
    tokens = np.memmap(tokens_path, dtype=np.uint16, mode="r")
    baseline = rss_now()
    cpu_start = time.process_time()
    start = time.perf_counter()
    sa = build_suffix_array(tokens, 65535)
    build_s = time.perf_counter() - start
    build_cpu_s = time.process_time() - cpu_start
    sa.tofile(out_path)
    total_s = time.perf_counter() - start
    report = {"warmup_s": warm_s, "build_s": build_s, "build_cpu_s": build_cpu_s, "build_write_s": total_s,
              "baseline_rss": baseline}  # fmt: skip
    print(json.dumps(report))


def worker_pydivsufsort(tokens_path: str, out_path: str) -> None:
    import numpy as np
    import pydivsufsort

    tokens = np.fromfile(tokens_path, dtype=np.uint16)
    baseline = rss_now()
    cpu_start = time.process_time()
    start = time.perf_counter()
    sa = pydivsufsort.divsufsort(tokens)
    build_s = time.perf_counter() - start
    build_cpu_s = time.process_time() - cpu_start
    sa = sa[tokens[sa] != 65535].astype(np.uint32)
    sa.tofile(out_path)
    total_s = time.perf_counter() - start
    print(json.dumps({"build_s": build_s, "build_cpu_s": build_cpu_s, "build_write_s": total_s,
                      "baseline_rss": baseline}))  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Preparing the inputs


def tokenize_corpus(corpus: Path, work: Path, tokenizer_name: str) -> dict[str, Any]:
    """Tokenize ``corpus`` (JSON lines with a ``text`` field); write our shard files and infini-gram's
    ``tokenized.0``/``offset.0`` holding the same ids. Returns counts and timings."""
    import numpy as np
    import zstandard

    from indexer import format as fmt
    from indexer.tokenize import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_name)
    ours = work / "taskgram" / fmt.shard_dir_name(0)
    infini = work / "infinigram"
    ours.mkdir(parents=True)
    infini.mkdir(parents=True)
    (work / "infinigram-empty-data").mkdir()
    sep = np.array([fmt.separator_id("uint16")], dtype=np.uint16)

    n_docs = n_tokens = text_bytes = 0
    encode_s = 0.0
    doc_offsets = [0]
    metadata: list[dict[str, Any]] = []
    start_all = time.perf_counter()
    with (
        open(corpus, "rb") as raw,
        open(ours / fmt.TOKENS_FILE, "wb") as f_ours,
        open(infini / "tokenized.0", "wb") as f_inf,
        open(infini / "offset.0", "wb") as f_off,
    ):
        stream = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw), encoding="utf-8")
        batch: list[str] = []
        line_no = 0

        def flush() -> None:
            nonlocal n_docs, n_tokens, encode_s
            t0 = time.perf_counter()
            encoded = tokenizer.encode_batch(batch)
            encode_s += time.perf_counter() - t0
            for ids in encoded:
                if ids.size and int(ids.max()) >= int(sep[0]):
                    raise ValueError("token id does not fit below the u16 separator")
                arr = ids.astype(np.uint16)
                np.array([f_inf.tell()], dtype="<u8").tofile(f_off)
                f_inf.write(sep.tobytes())
                f_inf.write(arr.astype("<u2").tobytes())
                f_ours.write(arr.astype("<u2").tobytes())
                f_ours.write(sep.tobytes())
                n_docs += 1
                n_tokens += int(arr.size)
                doc_offsets.append(doc_offsets[-1] + int(arr.size) + 1)
            batch.clear()

        for line in stream:
            line_no += 1
            if not line.strip():
                continue
            record = json.loads(line)
            text = record["text"]
            text_bytes += len(text.encode("utf-8"))
            meta = {"source": str(corpus), "line": line_no}
            if "meta" in record:
                meta["meta"] = record["meta"]
            metadata.append(meta)
            batch.append(text)
            if len(batch) == ENCODE_BATCH_DOCS:
                flush()
        if batch:
            flush()
    total_s = time.perf_counter() - start_all
    np.asarray(doc_offsets, dtype="<u8").tofile(ours / fmt.DOC_OFFSETS_FILE)
    fmt.write_metadata(metadata, ours / fmt.METADATA_FILE, ours / fmt.METADATA_OFFSETS_FILE)
    return {
        "docs": n_docs,
        "tokens": n_tokens,
        "text_bytes": text_bytes,
        "encode_s": encode_s,
        "read_and_encode_s": total_s,
        "encode_MB_per_s": text_bytes / encode_s / 1e6,
        "read_and_encode_MB_per_s": text_bytes / total_s / 1e6,
        "tokenizer": tokenizer_name,
    }


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------------------
# The three builds


def bench_infinigram(work: Path, cpus: int) -> dict[str, Any]:
    save = work / "infinigram"
    (save / "table.0").unlink(missing_ok=True)
    hard_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    ulimit = 1 << 20 if hard_nofile == resource.RLIM_INFINITY else hard_nofile
    cmd = [
        sys.executable, "-m", "infini_gram.indexing",
        "--data_dir", str(work / "infinigram-empty-data"), "--save_dir", str(save),
        "--token_dtype", "u16", "--shards", "1", "--cpus", str(cpus), "--mem", "20", "--ulimit", str(ulimit),
    ]  # fmt: skip
    res = run_monitored(cmd)
    if res["returncode"] != 0 or not (save / "table.0").exists():
        raise RuntimeError(f"infini-gram indexing failed ({res['returncode']}):\n{res['output'][-3000:]}")
    internal = None
    for line in res["output"].splitlines():
        if line.startswith("Step 2 (build_sa): Done. Took"):
            internal = float(line.split("Took")[1].split()[0])
    peak = res["peak_rss"]
    return {"wall_s": res["wall_s"], "cpu_s": res["cpu_s"], "internal_s": internal,
            "peak_rss": peak, "own_peak_rss": peak, "disk_bytes": dir_bytes(save)}  # fmt: skip


def bench_worker(kind: str, tokens_path: Path, out_path: Path, cpus: int) -> dict[str, Any]:
    out_path.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, str(tokens_path), str(out_path)]
    env_threads = {"NUMBA_NUM_THREADS": str(cpus)}
    old = {k: os.environ.get(k) for k in env_threads}
    os.environ.update(env_threads)
    try:
        res = run_monitored(cmd, cwd=REPO)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if res["returncode"] != 0:
        raise RuntimeError(f"{kind} worker failed ({res['returncode']}):\n{res['output'][-3000:]}")
    report = worker_report(res["output"])
    return {
        "wall_s": res["wall_s"],
        "cpu_s": res["cpu_s"],
        "build_cpu_s": report["build_cpu_s"],
        "internal_s": report["build_s"],
        "build_write_s": report["build_write_s"],
        "warmup_s": report.get("warmup_s"),
        "peak_rss": res["peak_rss"],
        "baseline_rss": report["baseline_rss"],
        "own_peak_rss": res["peak_rss"] - report["baseline_rss"],
    }


def bench_pipeline(corpus: Path, work: Path, tokenizer: str) -> dict[str, Any]:
    """``taskgram build`` of the corpus (tokenizing again): wall, peak RSS and every file it writes."""
    from indexer import format as fmt

    out = work / "pipeline-index"
    cmd = [
        sys.executable, "-c", "from taskgram.cli import run; run()",
        "build", str(corpus), "--output", str(out), "--tokenizer", tokenizer, "--quiet",
    ]  # fmt: skip
    res = run_monitored(cmd, cwd=REPO)
    if res["returncode"] != 0:
        raise RuntimeError(f"taskgram build failed ({res['returncode']}):\n{res['output'][-3000:]}")
    manifest = fmt.read_manifest(out)
    files = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    return {
        "wall_s": res["wall_s"],
        "peak_rss": res["peak_rss"],
        "tokens": sum(shard.n_tokens for shard in manifest.shards),
        "shards": len(manifest.shards),
        "disk_bytes": sum(files.values()),
        "disk_files": files,
    }


# --------------------------------------------------------------------------------------------------


def prerequisites(corpus: Path) -> str | None:
    """A reason to skip, or None."""
    if not corpus.exists():
        return f"corpus {corpus} not found (the benchmark needs ../shared/data next to the repository)"
    for module, extra in (("infini_gram", "infini-gram==2.6.0"), ("pydivsufsort", "pydivsufsort"),
                          ("psutil", "psutil")):  # fmt: skip
        if importlib.util.find_spec(module) is None:
            return f"python module {module} is missing; install it with: pip install -e '.[bench]' ({extra})"
    return None


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the smallest wall time; peaks are the maximum over all runs."""
    chosen = dict(min(runs, key=lambda r: r["wall_s"]))
    for key in ("peak_rss", "own_peak_rss"):
        chosen[key] = max(r[key] for r in runs)
    chosen["wall_s_all"] = [r["wall_s"] for r in runs]
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="JSON lines (.jsonl.zst) corpus")
    parser.add_argument("--tokenizer", default="pythia")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs of each builder (best is kept)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="cores given to each builder")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--no-pipeline", action="store_true", help="skip `taskgram build` (disk size from the arrays)"
    )
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "TOKENS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        kind, tokens_path, out_path = args.worker
        {"taskgram": worker_taskgram, "pydivsufsort": worker_pydivsufsort}[kind](tokens_path, out_path)
        return 0

    reason = prerequisites(args.corpus)
    if reason:
        print(f"SKIPPED bench_build: {reason}")
        return 0

    import numpy as np

    from indexer import format as fmt

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-build-", dir=RESULTS_DIR))
    try:
        print(f"tokenizing {args.corpus} with {args.tokenizer} ...", flush=True)
        tok = tokenize_corpus(args.corpus, work, args.tokenizer)
        n = tok["tokens"]
        print(f"  {tok['docs']:,} documents, {tok['text_bytes']:,} bytes of text, {n:,} tokens; encode "
              f"{tok['encode_MB_per_s']:.2f} MB/s, read+encode {tok['read_and_encode_MB_per_s']:.2f} MB/s",
              flush=True)  # fmt: skip
        shard = work / "taskgram" / fmt.shard_dir_name(0)
        tokens_path = shard / fmt.TOKENS_FILE
        ours_sa = shard / fmt.SUFFIX_ARRAY_FILE
        div_sa = work / "pydivsufsort.sa"

        load_before = os.getloadavg()
        runs: dict[str, list[dict[str, Any]]] = {"infini-gram": [], "pydivsufsort": [], "taskgram": []}
        for r in range(args.repeat):
            print(f"run {r + 1}/{args.repeat}: infini-gram ...", flush=True)
            runs["infini-gram"].append(bench_infinigram(work, args.cpus))
            print(f"run {r + 1}/{args.repeat}: pydivsufsort ...", flush=True)
            runs["pydivsufsort"].append(bench_worker("pydivsufsort", tokens_path, div_sa, args.cpus))
            print(f"run {r + 1}/{args.repeat}: taskgram ...", flush=True)
            runs["taskgram"].append(bench_worker("taskgram", tokens_path, ours_sa, args.cpus))
        results = {name: best(rs) for name, rs in runs.items()}
        load_after = os.getloadavg()

        ours = np.fromfile(ours_sa, dtype=np.uint32)
        theirs = np.fromfile(div_sa, dtype=np.uint32)
        agree = bool(np.array_equal(ours, theirs))
        del ours, theirs
        results["taskgram"]["disk_bytes"] = dir_bytes(work / "taskgram")
        results["pydivsufsort"]["disk_bytes"] = None
        results["taskgram"]["disk_files"] = {p.name: p.stat().st_size for p in sorted(shard.iterdir())}
        pipeline = None
        if not args.no_pipeline and importlib.util.find_spec("indexer.pipeline") is not None:
            print("taskgram build (full pipeline, tokenizing again) ...", flush=True)
            pipeline = bench_pipeline(args.corpus, work, args.tokenizer)
            if pipeline["tokens"] != n:
                raise RuntimeError(f"pipeline indexed {pipeline['tokens']} tokens, the benchmark {n}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"{'builder':14s} {'wall s':>8s} {'build s':>8s} {'cpu s':>7s} {'Mtok/s wall':>12s} "
          f"{'Mtok/s build':>13s} {'peak MiB':>9s} {'own peak B/tok':>15s} {'disk B/tok':>11s}")  # fmt: skip
    for name, r in results.items():
        disk = "-" if r.get("disk_bytes") is None else f"{r['disk_bytes'] / n:.3f}"
        internal = r["internal_s"] if r["internal_s"] is not None else r["wall_s"]
        cpu = r.get("build_cpu_s", r["cpu_s"])
        print(f"{name:14s} {r['wall_s']:8.2f} {internal:8.2f} {cpu:7.2f} {n / r['wall_s'] / 1e6:12.2f} "
              f"{n / internal / 1e6:13.2f} {r['peak_rss'] / 2**20:9.0f} {r['own_peak_rss'] / n:15.2f} "
              f"{disk:>11s}")  # fmt: skip
    ig, us = results["infini-gram"], results["taskgram"]
    ratios = {
        # infini-gram's wall is its whole indexing command (Python start-up, make-part, merge, concat);
        # ours is build_suffix_array + writing the array, with the JIT-compiled kernels already loaded.
        "tokens_per_s_vs_infinigram": ig["wall_s"] / us["build_write_s"],
        "tokens_per_s_vs_infinigram_process_wall": ig["wall_s"] / us["wall_s"],
        "cpu_seconds_infinigram_over_ours": ig["cpu_s"] / us["build_cpu_s"],
        "own_peak_bytes_per_token": us["own_peak_rss"] / n,
        "infinigram_peak_bytes_per_token": ig["peak_rss"] / n,
        "disk_bytes_per_token": (pipeline or us)["disk_bytes"] / n,
        "disk_bytes_per_token_shard_arrays": us["disk_bytes"] / n,
        "infinigram_disk_bytes_per_token": ig["disk_bytes"] / n,
    }
    print()
    print(f"machine load average (1 min) {load_before[0]:.1f} before the builds, {load_after[0]:.1f} after; "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print(f"suffix array identical to pydivsufsort's: {agree}")
    print(f"tokenization: {tok['encode_MB_per_s']:.2f} MB/s (encode_batch), "
          f"{tok['read_and_encode_MB_per_s']:.2f} MB/s (read + decompress + parse + encode)")  # fmt: skip
    print(f"tokens/s, ours / infini-gram (build+write vs its indexing wall): "
          f"{ratios['tokens_per_s_vs_infinigram']:.2f}x   (target >= 1.5x)")  # fmt: skip
    print(f"tokens/s, ours / infini-gram (both whole-process wall, ours incl. interpreter, numba import, JIT "
          f"cache load): {ratios['tokens_per_s_vs_infinigram_process_wall']:.2f}x")  # fmt: skip
    print(
        f"CPU seconds, infini-gram's whole process tree / our build: "
        f"{ratios['cpu_seconds_infinigram_over_ours']:.2f}x (less sensitive to the machine's load)"
    )
    print(f"peak build memory: ours {ratios['own_peak_bytes_per_token']:.2f} B/token above the worker's "
          f"pre-build RSS ({us['peak_rss'] / n:.2f} incl. interpreter and numba), infini-gram "
          f"{ratios['infinigram_peak_bytes_per_token']:.2f} B/token   (target <= 12)")  # fmt: skip
    if pipeline is not None:
        shard_files = sum(v for k, v in pipeline["disk_files"].items() if "/" in k)
        peak = pipeline["peak_rss"]
        print(f"taskgram build (tokenize + sort + write): {pipeline['wall_s']:.2f} s wall, "
              f"peak RSS {peak / 2**20:.0f} MiB ({peak / n:.2f} B/token)")  # fmt: skip
        print(f"disk: ours {ratios['disk_bytes_per_token']:.3f} B/token (every file of the index "
              f"`taskgram build` wrote; shard folders alone {shard_files / n:.3f}), infini-gram "
              f"{ratios['infinigram_disk_bytes_per_token']:.3f} B/token   (target <= 6)")  # fmt: skip
        for name, size in pipeline["disk_files"].items():
            print(f"    {name:40s} {size:>12,d} B  {size / n:.4f} B/token")
    else:
        print(f"disk: ours {ratios['disk_bytes_per_token']:.3f} B/token (shard arrays and metadata), "
              f"infini-gram {ratios['infinigram_disk_bytes_per_token']:.3f} B/token"
              "   (target <= 6)")  # fmt: skip

    payload = {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "corpus": str(args.corpus),
        "cpus": args.cpus,
        "repeat": args.repeat,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": sys.platform,
            "python": sys.version.split()[0],
            "loadavg_before_builds": load_before,
            "loadavg_after_builds": load_after,
        },
        "tokenization": tok,
        "results": results,
        "pipeline": pipeline,
        "ratios": ratios,
        "identical_to_pydivsufsort": agree,
    }
    for r in payload["results"].values():
        r.pop("output", None)
    out = RESULTS_DIR / f"build-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps(payload, indent=2))
    print(f"\nwritten {out}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
