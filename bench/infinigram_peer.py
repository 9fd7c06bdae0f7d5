"""infini-gram 2.6.0 as the peer of a benchmark: its index of the very token ids of one of ours.

:func:`write_infinigram_files` writes ``tokenized.0`` (every document as the separator 0xFFFF followed by
its tokens, u16 little-endian) and ``offset.0`` (the u64 byte offset of each document) from our shards'
token arrays; :func:`build_infinigram` then has ``python -m infini_gram.indexing`` build ``table.0`` from
them (its tokenizer is skipped: the data folder it is given is empty). Used by ``bench_query.py`` (and
through it ``bench_http.py``) and ``bench_trace.py``; imported as ``infinigram_peer`` (a script's own
folder is first on ``sys.path``).
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def write_infinigram_files(ours: Path, out: Path) -> None:
    """``out/tokenized.0`` and ``out/offset.0`` of the documents of our index ``ours`` (u16 tokens)."""
    from indexer.manifest import open_shard, read_manifest

    manifest = read_manifest(ours)
    if manifest.token_dtype != "uint16":
        raise SystemExit(f"infini-gram's index takes u16 tokens; {ours} has {manifest.token_dtype}")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "tokenized.0", "wb") as ds, open(out / "offset.0", "wb") as od:
        pos = 0
        for info in manifest.shards:
            arr = open_shard(ours, manifest, info)
            toks = np.asarray(arr.tokens)
            starts = np.asarray(arr.doc_offsets, dtype=np.int64)[:-1]
            # ours: each document's tokens, then 0xFFFF; infini-gram: 0xFFFF, then the tokens. Shifting the
            # shard by one token turns one into the other.
            shifted = np.empty(len(toks), dtype="<u2")
            if len(toks):
                shifted[0] = 0xFFFF
                shifted[1:] = toks[:-1]
            ds.write(shifted.tobytes())
            od.write(((pos + starts) * 2).astype("<u8").tobytes())
            pos += len(toks)


def build_infinigram(
    ours: Path, out: Path, temp_dir: Path, *, cpus: int = 2, mem_gib: int = 4, quiet: bool = False
) -> None:
    """infini-gram's index of ``ours`` in ``out``: the files above, then ``table.0``."""
    write_infinigram_files(ours, out)
    empty = Path(tempfile.mkdtemp(prefix="ig-data-"))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    ulimit = min(hard if hard != resource.RLIM_INFINITY else 1 << 20, 1 << 20)
    cmd = [sys.executable, "-m", "infini_gram.indexing", "--data_dir", str(empty), "--save_dir", str(out)]
    cmd += ["--temp_dir", str(temp_dir), "--token_dtype", "u16", "--shards", "1", "--cpus", str(cpus)]
    cmd += ["--mem", str(mem_gib), "--ulimit", str(ulimit)]
    try:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL if quiet else None)
    finally:
        shutil.rmtree(empty, ignore_errors=True)
