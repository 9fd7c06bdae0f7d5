"""``taskgram build`` / ``taskgram verify``: exit codes, one-line errors, summaries."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from indexer.manifest import read_manifest
from taskgram.cli import main

DATA = Path(__file__).resolve().parents[2] / "data" / "indexer"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "idx"
    assert main(["build", str(DATA / "pile_tiny.jsonl.zst"), "--output", str(out), "--quiet"]) == 0
    return out


def test_build_prints_summary_and_verify_passes(capsys, tmp_path):
    out = tmp_path / "idx"
    code, _, err = run(capsys, "build", str(DATA / "pile_tiny.jsonl"), "-o", str(out), "--memory", "64M")
    assert code == 0
    for field in ("tokens", "documents  4 (1 empty)", "shards     1", "bytes/token", "wall time", "peak RSS"):
        assert field in err
    code, out_text, _ = run(capsys, "verify", str(out), "--quiet")
    assert code == 0 and "OK (1 shard(s), full check)" in out_text
    code, out_text, _ = run(capsys, "verify", str(out), "--sample", "5", "--quiet")
    assert code == 0 and "sampled check" in out_text


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("malformed.jsonl", "malformed.jsonl:3: malformed JSON"),
        ("invalid_utf8.jsonl", "invalid_utf8.jsonl:2: invalid UTF-8"),
        ("missing_field.jsonl", "missing_field.jsonl:2: no text field 'text'"),
        ("truncated.jsonl.zst", "truncated.jsonl.zst: truncated zstd file"),
        ("truncated.jsonl.gz", "truncated.jsonl.gz: truncated gzip file"),
        ("empty.jsonl", "empty.jsonl: empty corpus"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, name, where):
    code, out, err = run(capsys, "build", str(DATA / name), "-o", str(tmp_path / "idx"), "-q")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("taskgram build: error: ")
    assert where in err and "Traceback" not in err
    assert not (tmp_path / "idx" / "manifest.json").exists()


def test_skip_bad_lines_reports_counts(capsys, tmp_path):
    code, _, err = run(
        capsys,
        "build",
        str(DATA / "malformed.jsonl"),
        str(DATA / "invalid_utf8.jsonl"),
        "-o",
        str(tmp_path / "i"),
        "--skip-bad-lines",
    )
    assert code == 0
    assert "skipped    1 line(s): invalid_utf8" in err and "skipped    1 line(s): malformed_json" in err
    m = read_manifest(tmp_path / "i")
    assert m.n_docs == 5
    assert m.build["read"]["skipped"] == {"invalid_utf8": 1, "malformed_json": 1}


def test_option_errors_exit_2(capsys, tmp_path):
    code, _, err = run(
        capsys, "build", str(DATA / "pile_tiny.jsonl"), "-o", str(tmp_path / "i"), "--memory", "lots"
    )
    assert code == 2 and "memory budget 'lots'" in err
    code, _, err = run(
        capsys,
        "build",
        str(DATA / "pile_tiny.jsonl"),
        "-o",
        str(tmp_path / "i"),
        "--tokenizer",
        str(tmp_path / "nope.json"),
    )
    assert code == 2 and "cannot load tokenizer" in err
    code, _, err = run(capsys, "build", str(tmp_path / "absent.jsonl"), "-o", str(tmp_path / "i"))
    assert code == 2 and "absent.jsonl: no such file or directory" in err
    with pytest.raises(SystemExit) as info:
        main(["build", "x.jsonl", "-o", str(tmp_path / "i"), "--normalization", "upper"])
    assert info.value.code == 2
    capsys.readouterr()


def test_refuses_different_index_without_force(capsys, built, tmp_path):
    code, _, err = run(capsys, "build", str(DATA / "pile_tiny.jsonl"), "-o", str(built), "-q")
    assert code == 2 and "use --force" in err
    code, _, err = run(capsys, "build", str(DATA / "pile_tiny.jsonl.zst"), "-o", str(built), "-q")
    assert code == 0  # same inputs and options: already built


def test_force_rebuilds(capsys, tmp_path):
    out = tmp_path / "idx"
    assert run(capsys, "build", str(DATA / "pile_tiny.jsonl"), "-o", str(out), "-q")[0] == 0
    code, _, _ = run(
        capsys,
        "build",
        str(DATA / "pile_tiny.jsonl"),
        "-o",
        str(out),
        "-q",
        "--normalization",
        "lower",
        "--force",
    )
    assert code == 0 and read_manifest(out).normalization == "lower"


def test_pretokenized_cli(capsys, tmp_path):
    tokens = np.array([3, 4, 5, 3, 4], dtype="<u2")
    (tmp_path / "t.u16").write_bytes(tokens.tobytes())
    (tmp_path / "offs").write_bytes(np.array([0, 3, 5], dtype="<u8").tobytes())
    code, _, err = run(
        capsys,
        "build",
        str(tmp_path / "t.u16"),
        "-o",
        str(tmp_path / "i"),
        "-q",
        "--pretokenized",
        "raw-u16",
        "--offsets",
        str(tmp_path / "offs"),
        "--vocab-size",
        "6",
    )
    assert code == 0, err
    m = read_manifest(tmp_path / "i")
    assert m.tokenizer.kind == "none" and m.n_tokens == 5 and m.n_docs == 2
    code, _, err = run(
        capsys,
        "build",
        str(tmp_path / "t.u16"),
        "-o",
        str(tmp_path / "j"),
        "-q",
        "--pretokenized",
        "raw-u16",
        "--offsets",
        str(tmp_path / "offs"),
        "--vocab-size",
        "5",
    )
    assert code == 2 and "token id beyond the vocabulary 5, vocabulary size 5" in err


def corrupt_copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_verify_detects_corruption(capsys, built, tmp_path):
    idx = corrupt_copy(built, tmp_path / "c1")
    tokens = idx / "shard-00000" / "tokens.bin"
    data = bytearray(tokens.read_bytes())
    data[0] ^= 1
    tokens.write_bytes(bytes(data))
    code, _, err = run(capsys, "verify", str(idx), "-q")
    assert code == 1 and "tokens.bin: sha256 does not match the manifest" in err

    # a swapped suffix-array pair with checksums updated: only the order check can see it
    idx = corrupt_copy(built, tmp_path / "c2")
    sa_path = idx / "shard-00000" / "suffix_array.bin"
    sa = np.fromfile(sa_path, dtype="<u4")
    sa[[3, 4]] = sa[[4, 3]]
    sa.tofile(sa_path)
    manifest = json.loads((idx / "manifest.json").read_text())
    from indexer.format import sha256_file

    manifest["shards"][0]["files"]["suffix_array.bin"]["sha256"] = sha256_file(sa_path)
    (idx / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run(capsys, "verify", str(idx), "-q")
    assert code == 1 and "suffixes out of order at suffix_array[3]" in err
    code, _, err = run(capsys, "verify", str(idx), "-q", "--sample", "100000")
    assert code == 1 and "suffixes out of order" in err


def test_verify_missing_or_not_an_index(capsys, tmp_path):
    code, _, err = run(capsys, "verify", str(tmp_path / "nothing"))
    assert code == 2 and "not a directory" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "verify", str(tmp_path / "empty"))
    assert code == 2 and "no manifest.json" in err
    code, _, err = run(capsys, "verify", str(tmp_path / "empty"), "--sample", "0")
    assert code == 2 and "--sample must be positive" in err
