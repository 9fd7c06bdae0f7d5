"""Whole-build benchmark of ``taskgram build`` at scale: workers, Ray, today's build, and the peers.

Every run is a whole ``taskgram build`` (or peer) process, started fresh, measured from outside: wall
time, CPU seconds of the whole process tree, peak RSS of the tree (psutil, sampled every 50 ms), and the
machine's load average before the run (the machine may be shared: a scaling ratio means something only
when the load before the run is low). Ratios are computed between runs of the same invocation.

Subcommands::

    python bench/bench_scale.py text   [--corpus techdocs-en.jsonl.zst] [--mb 200] [--baseline REV] [--ray]
    python bench/bench_scale.py pretok --megatron PREFIX [--memory 8G] [--baseline REV]
    python bench/bench_scale.py peers  (--megatron PREFIX | --corpus techdocs-en.jsonl.zst) [--tokens N]
    python bench/bench_scale.py profile [--corpus ...] [--mb 32]

* ``text``: the corpus is replicated (its zstd frames concatenated) to at least ``--mb`` MB of text as one
  .jsonl.zst; then ``--workers 1``, ``--workers 2``, the default ``--workers``, today's build (the
  package at git revision ``--baseline``, extracted with ``git archive``) and, with ``--ray`` and where
  network namespaces are permitted, ``--ray`` inside a loopback-only namespace. Reports text MB/s per
  core (MB / CPU seconds) and the ratios; checks that every taskgram run wrote the same shards.
* ``pretok``: today's build vs the default ``--workers`` on a Megatron corpus (``make_big_corpus.py``),
  with the peak RSS of the process tree against ``--memory``.
* ``peers``: the same tokens built by taskgram (default ``--workers``), tokengrams 0.3.3
  (``MemmapIndex.build(tokens, table, vocab=2**16)``) and infini-gram 2.6.0 (``infini_gram.indexing``),
  each a whole process; with ``--repeat N``, ratios of the fastest runs and of the median runs.
* ``profile``: where the CPU of reading + tokenizing goes, in this process, one core: reading
  (decompressing, cutting lines), JSON, normalization, tokenizing, copying ids, metadata.

Results are printed and written to ``bench/results/scale-<subcommand>-<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO / ".." / "shared" / "data"
RESULTS_DIR = REPO / "bench" / "results"
SAMPLE_INTERVAL_S = 0.05  # the sampler itself costs CPU: every 5 ms took ~13 % of a core
DEFAULT_BASELINE = "7c23e47"  # the last commit with the one-process build

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def load_average() -> float:
    return os.getloadavg()[0]


def run_monitored(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd``; wall seconds, CPU seconds and peak RSS of its process tree, load before."""
    from proctree import run_monitored as run_tree  # bench/proctree.py, next to this script

    load = load_average()
    run = run_tree(cmd, env=env, interval_s=SAMPLE_INTERVAL_S)
    if run["returncode"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({run['returncode']}):\n{run['output'][-3000:]}")
    return {
        "wall_s": round(run["wall_s"], 2),
        "cpu_s": round(run["cpu_s"], 2),
        "peak_rss": run["peak_rss"],
        "load_before": load,
    }


def checksums(index: Path) -> dict[str, str]:
    manifest = json.loads((index / "manifest.json").read_text())
    return {f"{s['name']}/{n}": f["sha256"] for s in manifest["shards"] for n, f in s["files"].items()}


def baseline_tree(rev: str, work: Path) -> Path:
    """The package at git revision ``rev`` (today's build), extracted once."""
    dest = work / f"baseline-{rev}"
    if not (dest / "indexer").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True)
        with tarfile.open(fileobj=__import__("io").BytesIO(archive.stdout)) as tar:
            tar.extractall(dest, filter="data")
    return dest


def taskgram_cmd(tree: Path, args: list[str]) -> tuple[list[str], dict[str, str]]:
    byte_compile(tree)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # -P: without it ``-m`` puts the working directory first on sys.path, ahead of PYTHONPATH, and a
    # bench started in the checkout would run today's code as the baseline.
    return [sys.executable, "-P", "-m", "taskgram.cli", "build", *args], env


def byte_compile(tree: Path) -> None:
    """Byte-compile the tree's packages, as ``pip install`` does for an installed taskgram and for the
    peers. Where ``PYTHONDONTWRITEBYTECODE`` is set, a source tree is otherwise compiled again by every
    run (0.03 s of a build's start-up)."""
    for package in ("taskgram", "indexer", "service", "clients"):
        if (tree / package).is_dir():
            compileall.compile_dir(tree / package, quiet=1)


def namespace_prefix() -> list[str] | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return None
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):
        if subprocess.run([*prefix, "sh", "-c", "ip link set lo up"], capture_output=True).returncode == 0:
            return prefix
    return None


def write_results(kind: str, results: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"scale-{kind}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps(results, indent=2))
    return path


def show(name: str, run: dict[str, Any]) -> None:
    print(
        f"{name:<28} wall {run['wall_s']:8.1f} s   cpu {run['cpu_s']:8.1f} s   "
        f"peak RSS {run['peak_rss'] / 2**30:6.2f} GiB   load before {run['load_before']:.2f}",
        flush=True,
    )


# --------------------------------------------------------------------------------------------------
# text


def replicated_corpus(corpus: Path, mb: float, work: Path) -> tuple[Path, int]:
    """``corpus`` repeated (zstd frames concatenated) until it holds at least ``mb`` MB of text."""
    from indexer.corpus import ReadStats, discover_inputs, iter_text_documents

    stats = ReadStats()
    for _ in iter_text_documents(discover_inputs([corpus]).files[0], "text", stats):
        pass
    copies = max(1, -(-int(mb * 1e6) // stats.text_bytes))
    out = work / f"{corpus.name.split('.')[0]}-x{copies}.jsonl.zst"
    if not out.exists():
        data = corpus.read_bytes()
        with open(out, "wb") as f:
            for _ in range(copies):
                f.write(data)
    return out, stats.text_bytes * copies


def bench_text(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    corpus, text_bytes = replicated_corpus(Path(args.corpus), args.mb, work)
    mb = text_bytes / 1e6
    print(f"corpus {corpus}: {mb:,.1f} MB of text; cores {len(os.sched_getaffinity(0))}", flush=True)
    base = baseline_tree(args.baseline, work)
    common = [str(corpus), "--memory", args.memory, "-q"]
    runs: dict[str, dict[str, Any]] = {}
    sums: dict[str, dict[str, str]] = {}
    plan = [
        ("workers 1", REPO, ["--workers", "1"]),
        ("workers 2", REPO, ["--workers", "2"]),
        ("default workers", REPO, []),
        (f"today ({args.baseline})", base, []),
    ]
    for _ in range(args.repeat):
        for name, tree, extra in plan:
            out = work / "idx-text"
            shutil.rmtree(out, ignore_errors=True)
            cmd, env = taskgram_cmd(tree, [*common, "-o", str(out), *extra])
            run = run_monitored(cmd, env)
            run["text_MB_per_cpu_s"] = round(mb / run["cpu_s"], 3)
            run["text_MB_per_s"] = round(mb / run["wall_s"], 3)
            show(name, run)
            if name not in runs or run["wall_s"] < runs[name]["wall_s"]:
                runs[name] = run
            sums[name] = checksums(out)
    prefix = namespace_prefix() if args.ray else None
    if args.ray and prefix is None:
        print("ray: skipped (network namespaces are not permitted here)")
    elif prefix is not None:
        out = work / "idx-text"
        shutil.rmtree(out, ignore_errors=True)
        cores = len(os.sched_getaffinity(0))
        inner = " ".join([sys.executable, "-m", "taskgram.cli", "build", *common, "-o", str(out), "--ray"])
        env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
        run = run_monitored([*prefix, "sh", "-c", f"ip link set lo up && exec {inner}"], env)
        show("ray (local, in namespace)", run)
        runs["ray"] = run
        sums["ray"] = checksums(out)
        runs["ray"]["same_plan_as"] = f"workers {cores}"
    ours = [k for k in sums if not k.startswith("today")]
    identical = all(sums[k] == sums[ours[0]] for k in ours)
    w1, w2 = runs["workers 1"], runs["workers 2"]
    ratios = {
        "workers2_vs_workers1_wall": round(w1["wall_s"] / w2["wall_s"], 3),
        "default_vs_today_wall": round(
            runs[f"today ({args.baseline})"]["wall_s"] / runs["default workers"]["wall_s"], 3
        ),
    }
    if "ray" in runs:
        ratios["ray_overhead_vs_default"] = round(
            runs["ray"]["wall_s"] / runs["default workers"]["wall_s"] - 1, 3
        )
    print(f"identical shards across taskgram runs: {identical}")
    for key, value in ratios.items():
        print(f"{key}: {value}")
    print(
        f"text MB per CPU second (one core), workers 1: {w1['text_MB_per_cpu_s']}, "
        f"workers 2: {w2['text_MB_per_cpu_s']}"
    )
    return {"corpus": str(corpus), "text_MB": mb, "runs": runs, "ratios": ratios, "identical": identical}


# --------------------------------------------------------------------------------------------------
# pre-tokenized


def bench_pretok(args: argparse.Namespace) -> dict[str, Any]:
    from indexer.pipeline import parse_memory

    work = Path(args.work)
    base = baseline_tree(args.baseline, work)
    common = [
        args.megatron,
        "--pretokenized",
        "megatron",
        "--vocab-size",
        "50280",
        "--memory",
        args.memory,
        "-q",
    ]
    runs = {}
    for name, tree in (("default workers", REPO), (f"today ({args.baseline})", base)):
        out = work / "idx-pretok"
        shutil.rmtree(out, ignore_errors=True)
        cmd, env = taskgram_cmd(tree, [*common, "-o", str(out)])
        run = run_monitored(cmd, env)
        manifest = json.loads((out / "manifest.json").read_text())
        run["tokens"] = manifest["n_tokens"]
        run["shards"] = len(manifest["shards"])
        run["summary"] = manifest["build"]["summary"]
        run["within_memory"] = run["peak_rss"] <= parse_memory(args.memory)
        show(name, run)
        runs[name] = run
    ratio = round(runs[f"today ({args.baseline})"]["wall_s"] / runs["default workers"]["wall_s"], 3)
    print(
        f"default vs today (wall): {ratio}; peak RSS within --memory {args.memory}: "
        f"{runs['default workers']['within_memory']}"
    )
    return {"megatron": args.megatron, "memory": args.memory, "runs": runs, "default_vs_today_wall": ratio}


# --------------------------------------------------------------------------------------------------
# peers


def peer_tokens(args: argparse.Namespace, work: Path) -> tuple[Path, Path, int]:
    """A raw little-endian u16 token file and its document offsets (u64), the same ids for every tool."""
    import numpy as np

    if args.megatron:
        from indexer.pretokenized import read_megatron

        tf = read_megatron(args.megatron)
        b = tf.boundaries
        n_docs = int(np.searchsorted(b, args.tokens, side="right")) - 1 if args.tokens else tf.n_docs
        n = int(b[n_docs])
        tokens_path = work / f"peer-{n}.u16"
        if not tokens_path.exists():
            tf.read(0, n).astype("<u2").tofile(tokens_path)
        offsets = b[: n_docs + 1].astype("<u8")
    else:
        from indexer.pipeline import build_index

        idx = work / "peer-source-index"
        if not (idx / "manifest.json").exists():
            build_index([args.corpus], idx, progress=False, workers=None, force=True)
        from indexer.manifest import open_shard, read_manifest

        manifest = read_manifest(idx)
        parts, lens = [], []
        for shard in manifest.shards:
            arrays = open_shard(idx, manifest, shard)
            toks = np.asarray(arrays.tokens)
            offs = np.asarray(arrays.doc_offsets).astype(np.int64)
            parts.append(toks[toks != manifest.separator_id])
            lens.append(np.diff(offs) - 1)
        ids = np.concatenate(parts)
        n = len(ids)
        tokens_path = work / f"peer-{n}.u16"
        ids.astype("<u2").tofile(tokens_path)
        offsets = np.concatenate([[0], np.cumsum(np.concatenate(lens))]).astype("<u8")
    offsets_path = Path(str(tokens_path) + ".offsets")
    offsets.tofile(offsets_path)
    return tokens_path, offsets_path, n


def infinigram_files(tokens_path: Path, offsets_path: Path, save: Path) -> None:
    """infini-gram's ``tokenized.0`` (each document as 0xFFFF + tokens) and ``offset.0`` (byte offsets)."""
    import numpy as np

    save.mkdir(parents=True, exist_ok=True)
    ids = np.fromfile(tokens_path, dtype="<u2")
    b = np.fromfile(offsets_path, dtype="<u8").astype(np.int64)
    out = np.empty(len(ids) + len(b) - 1, dtype="<u2")
    starts = b[:-1] + np.arange(len(b) - 1)  # where each document's 0xFFFF goes
    keep = np.ones(len(out), dtype=bool)
    keep[starts] = False
    out[starts] = 0xFFFF
    out[keep] = ids
    out.tofile(save / "tokenized.0")
    (starts * 2).astype("<u8").tofile(save / "offset.0")


def bench_peers(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    tokens_path, offsets_path, n = peer_tokens(args, work)
    print(f"peers on {n:,} tokens ({tokens_path}); cores {len(os.sched_getaffinity(0))}", flush=True)
    runs: dict[str, dict[str, Any]] = {}  # each tool's fastest run
    walls: dict[str, list[float]] = {}  # every run's wall time

    def keep(name: str, run: dict[str, Any]) -> None:
        walls.setdefault(name, []).append(run["wall_s"])
        if name not in runs or run["wall_s"] < runs[name]["wall_s"]:
            runs[name] = run

    for _ in range(args.repeat):
        out = work / "idx-peer"
        shutil.rmtree(out, ignore_errors=True)
        cmd, env = taskgram_cmd(
            REPO,
            [
                str(tokens_path),
                "--pretokenized",
                "raw-u16",
                "--vocab-size",
                "65535",
                "--memory",
                args.memory,
                "-q",
                "-o",
                str(out),
            ],
        )
        run = run_monitored(cmd, env)
        show("taskgram (default workers)", run)
        keep("taskgram", run)
        table = work / "tokengrams.table"
        table.unlink(missing_ok=True)
        code = (
            "import tokengrams; "
            f"tokengrams.MemmapIndex.build({str(tokens_path)!r}, {str(table)!r}, vocab=2**16)"
        )
        run = run_monitored([sys.executable, "-c", code])
        show("tokengrams 0.3.3", run)
        keep("tokengrams", run)
        if not args.no_infinigram:
            save = work / "infinigram"
            shutil.rmtree(save, ignore_errors=True)
            infinigram_files(tokens_path, offsets_path, save)
            empty = work / "infinigram-empty"
            empty.mkdir(exist_ok=True)
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            ulimit = 1 << 20 if hard == resource.RLIM_INFINITY else hard
            cpus, mem = str(len(os.sched_getaffinity(0))), str(max(1, int(args.memory.rstrip("G"))))
            cmd = [sys.executable, "-m", "infini_gram.indexing", "--data_dir", str(empty),
                   "--save_dir", str(save), "--token_dtype", "u16", "--shards", "1", "--cpus", cpus,
                   "--mem", mem, "--ulimit", str(ulimit)]  # fmt: skip
            run = run_monitored(cmd)
            show("infini-gram 2.6.0", run)
            keep("infini-gram", run)
    ratios = {f"taskgram_vs_{k}_wall": round(v["wall_s"] / runs["taskgram"]["wall_s"], 3)
              for k, v in runs.items() if k != "taskgram"}  # fmt: skip
    if args.repeat > 1:  # the fastest runs above; the medians say how much the machine's noise moves them
        mid = {k: statistics.median(v) for k, v in walls.items()}
        ratios |= {f"taskgram_vs_{k}_wall_median": round(v / mid["taskgram"], 3)
                   for k, v in mid.items() if k != "taskgram"}  # fmt: skip
    for key, value in ratios.items():
        print(f"{key}: {value}")
    return {"tokens": n, "runs": runs, "walls": walls, "ratios": ratios}


# --------------------------------------------------------------------------------------------------
# profile


def bench_profile(args: argparse.Namespace) -> dict[str, Any]:
    """Where one core's time goes while reading and tokenizing (the same calls the build's pieces make)."""
    import numpy as np
    import orjson

    from indexer.corpus import discover_inputs, iter_line_blocks
    from indexer.pipeline import _build_tokenizer
    from indexer.tokenize import normalize_text

    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(_build_tokenizer("pythia").json.decode())
    input_file = discover_inputs([args.corpus]).files[0]
    limit = int(args.mb * 1e6)
    t = dict.fromkeys(("reading", "json", "normalization_none", "normalization_nfkc", "tokenizing",
                       "copying_ids", "metadata"), 0.0)  # fmt: skip
    text_bytes = 0
    n_tokens = 0
    clock = time.process_time  # CPU seconds of this process (the tokenizer runs on this thread only)
    t0 = clock()
    blocks = []
    for _, block in iter_line_blocks(input_file, 16 << 20):
        blocks.append(block)
        if sum(map(len, blocks)) >= limit:
            break
    lines = [line for block in blocks for line in block.split(b"\n") if line.strip()]
    t["reading"] = clock() - t0
    t0 = clock()
    records = [orjson.loads(line) for line in lines]
    t["json"] = clock() - t0
    texts = [r["text"] for r in records]
    text_bytes = sum(len(x.encode()) for x in texts)
    t0 = clock()
    texts = [normalize_text(x, "none") for x in texts]
    t["normalization_none"] = clock() - t0
    t0 = clock()
    _ = [normalize_text(x, "nfkc") for x in texts]
    t["normalization_nfkc"] = clock() - t0
    t0 = clock()
    metas = [json.dumps({"source": "x", "line": i, "meta": r.get("meta")}, ensure_ascii=False,
                        separators=(",", ":")).encode() for i, r in enumerate(records)]  # fmt: skip
    t["metadata"] = clock() - t0
    del metas
    for start in range(0, len(texts), 256):
        batch = texts[start : start + 256]
        t0 = clock()
        encodings = tok.encode_batch_fast(batch, add_special_tokens=False)
        t1 = clock()
        arrays = [np.array(e.ids, dtype=np.uint16) for e in encodings]
        flat = np.concatenate(arrays)
        t2 = clock()
        t["tokenizing"] += t1 - t0
        t["copying_ids"] += t2 - t1
        n_tokens += len(flat)
    total = sum(v for k, v in t.items() if k != "normalization_nfkc")
    mb = text_bytes / 1e6
    print(f"{mb:.1f} MB of text, {n_tokens:,} tokens, one core; seconds and share of the build's path:")
    for key, value in t.items():
        share = "" if key == "normalization_nfkc" else f"{100 * value / total:5.1f} %"
        print(f"  {key:<22} {value:7.2f} s  {share}  ({mb / value if value else float('inf'):8.1f} MB/s)")
    print(f"  total {total:.2f} s: {mb / total:.2f} MB/s per core")
    return {"text_MB": mb, "tokens": n_tokens, "seconds": t, "MB_per_s_per_core": mb / total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    corpus_default = str(SHARED_DATA / "corpus" / "techdocs-en.jsonl.zst")
    for name in ("text", "pretok", "peers", "profile"):
        p = sub.add_parser(name)
        p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "taskgram-bench-scale"))
        p.add_argument("--memory", default="8G")
        p.add_argument("--baseline", default=DEFAULT_BASELINE)
        p.add_argument("--repeat", type=int, default=1)
        p.add_argument("--corpus", default=corpus_default)
        p.add_argument("--mb", type=float, default=200 if name == "text" else 32)
        p.add_argument("--megatron", default=None)
        p.add_argument("--tokens", type=lambda s: int(s.replace("_", "")), default=0)
        p.add_argument("--ray", action="store_true")
        p.add_argument("--no-infinigram", action="store_true")
    args = parser.parse_args(argv)
    if args.kind in ("text", "profile") and not Path(args.corpus).is_file():
        print(f"{args.corpus}: missing (give --corpus)")
        return 0
    fn = {"text": bench_text, "pretok": bench_pretok, "peers": bench_peers, "profile": bench_profile}[
        args.kind
    ]
    result = fn(args)
    result["load_after"] = load_average()
    print(f"results: {write_results(args.kind, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
