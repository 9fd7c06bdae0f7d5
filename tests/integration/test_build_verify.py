"""End to end: `taskgram build` killed with SIGKILL mid-way leaves no openable index; the rerun resumes,
keeps the finished shards and produces the same shards as an uninterrupted build; `taskgram verify`
passes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from indexer.format import IndexFormatError
from indexer.manifest import open_shard, read_manifest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample-en.jsonl.zst"
MEMORY = "1536K"  # about 65k positions per shard


def taskgram(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "taskgram.cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def finished_shards(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("shard-?????") if p.is_dir())


def subset_corpus(path: Path, n_docs: int) -> Path:
    """The first ``n_docs`` documents of the embedded sample, as plain JSON lines."""
    import io

    import zstandard

    with open(SAMPLE, "rb") as f:
        reader = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8")
        lines = [line for _, line in zip(range(n_docs), reader, strict=False)]
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.mark.slow
def test_sigkill_then_resume_gives_identical_shards(tmp_path, pythia_tokenizer, capsys):
    from indexer.pipeline import build_index
    from taskgram.cli import main

    corpus = subset_corpus(tmp_path / "subset.jsonl", 150)
    out = tmp_path / "idx"
    proc = taskgram("build", str(corpus), "-o", str(out), "--memory", MEMORY, "-q")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if finished_shards(out) or proc.poll() is not None:
            break
        time.sleep(0.005)
    running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    stdout, stderr = proc.communicate()
    assert running, f"the build ended before it could be killed: {stderr}"
    kept = finished_shards(out)
    assert kept
    stamps = {name: (out / name / "tokens.bin").stat().st_mtime_ns for name in kept}
    with pytest.raises(IndexFormatError):
        read_manifest(out)

    code = main(["build", str(corpus), "-o", str(out), "--memory", MEMORY])
    _, err = capsys.readouterr()
    assert code == 0, err
    manifest = read_manifest(out)
    assert manifest.build["resumed_shards"] >= len(kept) >= 1
    assert {name: (out / name / "tokens.bin").stat().st_mtime_ns for name in kept} == stamps  # not redone
    assert f"({manifest.build['resumed_shards']} kept from an earlier run)" in err
    assert not list(out.glob("*.partial")) and not (out / "build-state.json").exists()

    reference = build_index(
        [corpus], tmp_path / "ref", tokenizer="pythia", memory_budget_bytes=MEMORY, progress=False
    )
    assert len(reference.shards) >= 4
    assert manifest.shards == reference.shards  # names, counts, sizes and sha256 of every file
    assert manifest.n_tokens == reference.n_tokens and manifest.n_docs == reference.n_docs == 150

    code = main(["verify", str(out), "-q"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert f"OK ({len(manifest.shards)} shard(s), full check)" in stdout


@pytest.mark.slow
def test_sharded_sample_equals_single_shard_sample(tmp_path, sample_index, pythia_tokenizer):
    """Counts add across shards: every bigram's count summed over shards equals the one-shard count."""
    from indexer.pipeline import build_index

    out = tmp_path / "sharded"
    build_index([SAMPLE], out, tokenizer=pythia_tokenizer, memory_budget_bytes=MEMORY, progress=False)

    def bigram_counts(index: Path) -> dict[int, int]:
        m = read_manifest(index)
        total: dict[int, int] = {}
        for shard in m.shards:
            t = np.asarray(open_shard(index, m, shard).tokens, dtype=np.int64)
            keys = t[:-1] * 65536 + t[1:]
            keys = keys[(t[:-1] != m.separator_id) & (t[1:] != m.separator_id)]
            values, counts = np.unique(keys, return_counts=True)
            for v, c in zip(values.tolist(), counts.tolist(), strict=True):
                total[v] = total.get(v, 0) + c
        return total

    one = read_manifest(sample_index)
    many = read_manifest(out)
    assert len(one.shards) == 1 and len(many.shards) > 5
    assert bigram_counts(out) == bigram_counts(sample_index)


@pytest.mark.shared_data
def test_multilingual_subset_with_normalization(tmp_path, shared_data, pythia_tokenizer):
    """Real multilingual text (LibreOffice help, en/es/fr/de) with nfkc-lower: documents equal the
    tokenizer's output on the normalized text; the index verifies."""
    import io
    import json

    import zstandard

    from indexer.pipeline import build_index, verify_index
    from indexer.tokenize import normalize_text

    source = shared_data / "corpus" / "help-multilingual.jsonl.zst"
    with open(source, "rb") as f:
        reader = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8")
        lines = [line for _, line in zip(range(300), reader, strict=False)]
    corpus = tmp_path / "help.jsonl"
    corpus.write_text("".join(lines), encoding="utf-8")
    m = build_index(
        [corpus], tmp_path / "idx", tokenizer=pythia_tokenizer, normalization="nfkc-lower", progress=False
    )
    assert m.n_docs == 300 and m.normalization == "nfkc-lower"
    a = open_shard(tmp_path / "idx", m, m.shards[0])
    for i in (0, 150, 299):
        text = json.loads(lines[i])["text"]
        want = list(map(int, pythia_tokenizer.encode(normalize_text(text, "nfkc-lower"))))
        got = [int(t) for t in a.tokens[int(a.doc_offsets[i]) : int(a.doc_offsets[i + 1]) - 1]]
        assert got == want
    from indexer.format import read_metadata

    assert read_metadata(a, 299)["meta"] == json.loads(lines[299])["meta"]
    assert verify_index(tmp_path / "idx").ok
