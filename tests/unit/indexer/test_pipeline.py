"""The build pipeline: round trips against the tokenizer and a naive suffix array, sharding, resume."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer.format import iter_metadata
from indexer.manifest import open_shard, read_manifest
from indexer.pipeline import BuildError, build_index, parse_memory, shard_capacity


def naive_suffix_array(tokens: np.ndarray, separator: int) -> list[int]:
    seq = [int(t) for t in tokens]
    order = sorted(range(len(seq)), key=lambda i: seq[i:])
    return [i for i in order if seq[i] != separator]


def shard_documents(index_dir: Path) -> list[list[int]]:
    manifest = read_manifest(index_dir)
    docs = []
    for shard in manifest.shards:
        arrays = open_shard(index_dir, manifest, shard)
        offsets = arrays.doc_offsets
        for i in range(shard.n_docs):
            docs.append([int(t) for t in arrays.tokens[int(offsets[i]) : int(offsets[i + 1]) - 1]])
    return docs


def all_metadata(index_dir: Path) -> list[dict]:
    manifest = read_manifest(index_dir)
    out = []
    for shard in manifest.shards:
        out.extend(iter_metadata(open_shard(index_dir, manifest, shard)))
    return out


TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "",
    "the the the the the the",
    "Ünïcödé text — with dashes and emoji 🦊.",
    "a",
    "The quick brown fox again, the quick brown fox.",
]


def test_round_trip_documents_suffix_array_and_metadata(build_small_index, pythia_tokenizer):
    index = build_small_index(TEXTS)
    manifest = read_manifest(index)
    assert manifest.n_docs == len(TEXTS)
    expected = [list(map(int, pythia_tokenizer.encode(t))) for t in TEXTS]
    assert shard_documents(index) == expected
    assert manifest.n_tokens == sum(len(e) for e in expected)
    assert manifest.token_dtype == "uint16"
    assert manifest.tokenizer.kind == "transformers"
    assert manifest.tokenizer.sha256 is not None
    shard = manifest.shards[0]
    arrays = open_shard(index, manifest, shard)
    tokens = np.asarray(arrays.tokens)
    assert list(map(int, arrays.suffix_array)) == naive_suffix_array(tokens, manifest.separator_id)
    # every document is followed by the separator
    assert all(int(tokens[int(o) - 1]) == manifest.separator_id for o in arrays.doc_offsets[1:])
    meta = all_metadata(index)
    assert [m["line"] for m in meta] == list(range(1, len(TEXTS) + 1))
    assert all(m["source"] == "corpus.jsonl" for m in meta)
    assert manifest.build["read"]["empty_docs"] == 1


def test_pile_shape_metadata_and_dotted_field(build_small_index):
    docs = [
        {"doc": {"body": "first text"}, "meta": {"pile_set_name": "Wiki"}, "id": 7},
        {"doc": {"body": "second text"}, "meta": {"pile_set_name": "Books"}},
    ]
    index = build_small_index(docs, text_field="doc.body")
    meta = all_metadata(index)
    assert meta[0]["meta"] == {"pile_set_name": "Wiki"}
    assert meta[0]["fields"] == {"id": 7}
    assert meta[1]["meta"] == {"pile_set_name": "Books"}
    assert "fields" not in meta[1]


@pytest.mark.parametrize("mode", ["lower", "nfkc-lower"])
def test_normalization_is_applied_and_recorded(build_small_index, pythia_tokenizer, mode):
    index = build_small_index(["Hello WORLD", "ＦＵＬＬ width"], normalization=mode)
    manifest = read_manifest(index)
    assert manifest.normalization == mode
    docs = shard_documents(index)
    assert docs[0] == list(map(int, pythia_tokenizer.encode("hello world")))
    if mode == "nfkc-lower":
        assert docs[1] == list(map(int, pythia_tokenizer.encode("full width")))


def test_multi_shard_build_equals_single_shard(build_small_index, pythia_tokenizer):
    texts = [f"document number {i} says {'abc ' * (i % 7)} end" for i in range(60)]
    one = build_small_index(texts)
    many = build_small_index(texts, memory_budget_bytes=12 * 120, bytes_per_token=12)
    m1, mn = read_manifest(one), read_manifest(many)
    assert len(m1.shards) == 1
    assert len(mn.shards) > 3
    assert shard_documents(one) == shard_documents(many)
    assert mn.n_tokens == m1.n_tokens and mn.n_docs == m1.n_docs
    for shard in mn.shards:
        arrays = open_shard(many, mn, shard)
        assert shard.n_tokens + shard.n_docs <= shard_capacity(12 * 120, "uint16", 12)
        assert list(map(int, arrays.suffix_array)) == naive_suffix_array(
            np.asarray(arrays.tokens), mn.separator_id
        )
    # n-gram counts add across shards: count a bigram by brute force in each layout
    target = list(map(int, pythia_tokenizer.encode(" says abc")))

    def count(docs: list[list[int]]) -> int:
        k = len(target)
        return sum(1 for d in docs for i in range(len(d) - k + 1) if d[i : i + k] == target)

    assert count(shard_documents(many)) == count(shard_documents(one)) > 0
    assert [m["line"] for m in all_metadata(many)] == list(range(1, 61))


def test_document_too_large_for_budget(build_small_index):
    with pytest.raises(BuildError, match=r"corpus\.jsonl:2: a document of \d+ tokens does not fit"):
        build_small_index(["short", "word " * 200], memory_budget_bytes=12 * 50, bytes_per_token=12)


def test_rebuild_same_config_is_a_no_op_and_different_needs_force(
    build_small_index, pythia_tokenizer, tmp_path
):
    index = build_small_index(["one doc", "two doc"])
    corpus = index.parent / "corpus.jsonl"
    before = (index / "manifest.json").read_text()
    again = build_index([corpus], index, tokenizer=pythia_tokenizer, progress=False)
    assert (index / "manifest.json").read_text() == before
    assert again.n_docs == 2
    from indexer.writer import IndexWriteError

    with pytest.raises(IndexWriteError, match="different configuration"):
        build_index([corpus], index, tokenizer=pythia_tokenizer, progress=False, normalization="lower")
    rebuilt = build_index(
        [corpus], index, tokenizer=pythia_tokenizer, progress=False, normalization="lower", force=True
    )
    assert rebuilt.normalization == "lower"
    assert json.loads((index / "manifest.json").read_text())["normalization"] == "lower"


def test_refuses_foreign_folder(pythia_tokenizer, tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "x"}\n')
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    from indexer.writer import IndexWriteError

    for force in (False, True):
        with pytest.raises(IndexWriteError, match="not"):
            build_index([corpus], out, tokenizer=pythia_tokenizer, progress=False, force=force)
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("text", "value"), [("8G", 8 << 30), ("512M", 512 << 20), ("1.5G", int(1.5 * (1 << 30))), ("4096", 4096)]
)
def test_parse_memory(text, value):
    assert parse_memory(text) == value


@pytest.mark.parametrize("text", ["", "8X", "-1G", "0", "G"])
def test_parse_memory_rejects(text):
    with pytest.raises(BuildError, match="memory budget"):
        parse_memory(text)


def test_sample_index_fixture(sample_index):
    manifest = read_manifest(sample_index)
    assert manifest.n_docs == 350
    assert manifest.n_tokens > 500_000
    assert manifest.inputs[0].path.endswith("sample-en.jsonl.zst")
    assert (sample_index / "tokenizer.json").is_file()


def test_vocabulary_over_65535_gives_uint32(tmp_path):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    from indexer.tokenize import load_tokenizer

    vocab = {"[UNK]": 0, **{f"w{i}": i for i in range(1, 70_000)}}
    tk = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = Whitespace()
    path = tmp_path / "tokenizer.json"
    tk.save(str(path))
    tok = load_tokenizer(path)
    assert tok.vocab_size == 70_000
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "w69999 w1 w65535 w65536"}\n{"text": "w1 w69999"}\n')
    m = build_index([corpus], tmp_path / "idx", tokenizer=path, progress=False)
    assert m.token_dtype == "uint32" and m.tokenizer.vocab_size == 70_000
    assert shard_documents(tmp_path / "idx") == [[69_999, 1, 65_535, 65_536], [1, 69_999]]
    arrays = open_shard(tmp_path / "idx", m, m.shards[0])
    assert list(map(int, arrays.suffix_array)) == naive_suffix_array(np.asarray(arrays.tokens), 2**32 - 1)


def test_empty_corpus_is_an_error(tmp_path, pythia_tokenizer):
    from indexer.corpus import CorpusError

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(CorpusError, match="empty.jsonl: empty corpus: no documents"):
        build_index([empty], tmp_path / "a", tokenizer=pythia_tokenizer, progress=False)
    only_empty = tmp_path / "only_empty.jsonl"
    only_empty.write_text('{"text": ""}\n{"text": ""}\n')
    with pytest.raises(CorpusError, match="empty corpus: 2 documents but no tokens"):
        build_index([only_empty], tmp_path / "b", tokenizer=pythia_tokenizer, progress=False)
    assert not (tmp_path / "b" / "manifest.json").exists()


def test_runs_of_empty_documents_are_kept(build_small_index, pythia_tokenizer):
    texts = ["", "", "x y", "", "", "", "x", ""]
    index = build_small_index(texts)
    m = read_manifest(index)
    assert m.n_docs == len(texts) and m.build["read"]["empty_docs"] == 6
    assert shard_documents(index) == [list(map(int, pythia_tokenizer.encode(t))) for t in texts]
    from indexer.pipeline import verify_index

    assert verify_index(index).ok


def test_resume_after_failure_keeps_finished_shards(tmp_path, pythia_tokenizer, monkeypatch):
    from indexer import writer

    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        "".join(json.dumps({"text": f"doc {i} " + "word " * (i % 9)}) + "\n" for i in range(80))
    )
    opts = dict(tokenizer=pythia_tokenizer, progress=False, memory_budget_bytes=12 * 100, bytes_per_token=12)
    reference = build_index([corpus], tmp_path / "ref", **opts)
    assert len(reference.shards) >= 5

    real_finish = writer.ShardWriter.finish
    calls = {"n": 0}

    def failing_finish(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("disk on fire")
        return real_finish(self, *args, **kwargs)

    monkeypatch.setattr(writer.ShardWriter, "finish", failing_finish)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk on fire"):
        build_index([corpus], out, **opts)
    assert not (out / "manifest.json").exists()
    assert sorted(p.name for p in out.glob("shard-*")) == ["shard-00000", "shard-00001", "shard-00002"]
    monkeypatch.setattr(writer.ShardWriter, "finish", real_finish)
    before = {p.name: (p / "tokens.bin").stat().st_mtime_ns for p in out.glob("shard-*")}
    resumed = build_index([corpus], out, **opts)
    assert resumed.build["resumed_shards"] == 3
    assert {p: (out / p / "tokens.bin").stat().st_mtime_ns for p in before} == before
    assert resumed.shards == reference.shards
    assert not (out / "build-state.json").exists()
    assert resumed.build["read"]["docs"] == 80


def test_a_failed_sync_fails_the_build_and_the_rerun_keeps_what_was_published(
    tmp_path, pythia_tokenizer, monkeypatch
):
    """Shards are synced and published by the build's own thread while the next one sorts: an error
    there (a full disk) is the build's error, never a shard silently missing."""
    import errno

    from indexer import writer

    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        "".join(json.dumps({"text": f"doc {i} " + "word " * (i % 7)}) + "\n" for i in range(60))
    )
    opts = dict(tokenizer=pythia_tokenizer, progress=False, memory_budget_bytes=12 * 100, bytes_per_token=12)
    real_publish = writer.publish_written_shard
    calls = {"n": 0}

    def failing_publish(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_publish(*args, **kwargs)

    monkeypatch.setattr(writer, "publish_written_shard", failing_publish)
    out = tmp_path / "out"
    with pytest.raises(writer.IndexWriteError, match="No space left on device"):
        build_index([corpus], out, **opts)
    assert not (out / "manifest.json").exists()
    published = sorted(p.name for p in out.glob("shard-*") if not p.name.endswith(".partial"))
    assert published[:2] == ["shard-00000", "shard-00001"] and "shard-00002" not in published
    monkeypatch.setattr(writer, "publish_written_shard", real_publish)
    resumed = build_index([corpus], out, **opts)
    assert resumed.build["resumed_shards"] == len(published)
    assert resumed == build_index([corpus], out, **opts)  # finished: nothing to do
    from indexer.pipeline import verify_index

    assert verify_index(out).ok


def test_a_written_shard_is_not_done_until_published(tmp_path):
    """ShardWriter.finish(publish=False) leaves the shard unfinished (a rerun rebuilds it) until
    publish_written_shard syncs it; the published files equal a shard published at once."""
    from indexer import writer
    from indexer.kernels import build_suffix_array

    tokens = np.array([5, 3, 5, 65535, 3, 3, 65535], dtype=np.uint16)
    offsets = np.array([0, 4, 7], dtype=np.uint64)
    infos = {}
    for publish in (True, False):
        out = tmp_path / str(publish)
        w = writer.ShardWriter(out, 0)
        w.add_metadata([{"doc": 0}, {"doc": 1}])
        w.write_corpus(tokens, "uint16", offsets)
        info = w.finish(
            build_suffix_array(tokens, 65535), fingerprint="f", record={"first_doc": 0}, publish=publish
        )
        if not publish:
            assert writer.read_done_shard(out, 0, "f") is None
            assert (out / "shard-00000.partial").is_dir() and not (out / "shard-00000").exists()
            writer.publish_written_shard(out, info, "f", {"first_doc": 0})
        found = writer.read_done_shard(out, 0, "f")
        assert found is not None and found[0] == info and found[1]["first_doc"] == 0
        infos[publish] = info
    assert infos[True] == infos[False]
    for name in infos[True].files:
        assert (tmp_path / "True" / "shard-00000" / name).read_bytes() == (
            tmp_path / "False" / "shard-00000" / name
        ).read_bytes()
    with pytest.raises(writer.IndexWriteError, match="suffix array is missing"):
        writer.publish_written_shard(tmp_path / "True", infos[True], "f", {})


def test_stale_partial_dirs_are_removed(tmp_path, pythia_tokenizer):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "a b c"}\n')
    out = tmp_path / "out"
    out.mkdir()
    (out / "shard-00000.partial").mkdir()
    (out / "shard-00000.partial" / "tokens.bin").write_bytes(b"junk")
    (out / "build-state.json").write_text('{"fingerprint": "old"}')
    build_index([corpus], out, tokenizer=pythia_tokenizer, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "shard-00000", "tokenizer.json"]


def test_same_input_by_relative_path_is_the_same_build(tmp_path, pythia_tokenizer, monkeypatch):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "a b c"}\n')
    first = build_index([corpus], tmp_path / "idx", tokenizer=pythia_tokenizer, progress=False)
    monkeypatch.chdir(tmp_path)
    again = build_index(["c.jsonl"], "idx", tokenizer=pythia_tokenizer, progress=False)
    assert again == first


def test_metadata_names_inputs_relative_to_the_argument_manifest_keeps_absolute_paths(
    tmp_path: Path, pythia_tokenizer: Any
) -> None:
    """Document metadata never shows the build machine's directory layout; the manifest does."""
    corpus = tmp_path / "home" / "someone" / "corpus"
    (corpus / "part").mkdir(parents=True)
    (corpus / "part" / "a.jsonl").write_text(json.dumps({"text": "first document"}) + "\n")
    (corpus / "b.jsonl").write_text(json.dumps({"text": "second document"}) + "\n")
    single = tmp_path / "elsewhere" / "c.jsonl"
    single.parent.mkdir()
    single.write_text(json.dumps({"text": "third document"}) + "\n")
    out = tmp_path / "idx"
    manifest = build_index([corpus, single], out, tokenizer=pythia_tokenizer, progress=False)
    meta = all_metadata(out)
    assert [m["source"] for m in meta] == ["b.jsonl", "part/a.jsonl", "c.jsonl"]
    assert not any(str(tmp_path) in json.dumps(m) for m in meta)
    assert [i.path for i in manifest.inputs] == [
        str((corpus / "b.jsonl").resolve()),
        str((corpus / "part" / "a.jsonl").resolve()),
        str(single.resolve()),
    ]


@pytest.mark.parametrize("n_bytes", [0, 100, 4096, 3 * 4096 + 17, 70_000])
@pytest.mark.parametrize("block_aligned", [False, True])
def test_large_files_written_past_the_page_cache_have_the_right_bytes_and_hash(
    tmp_path, monkeypatch, n_bytes, block_aligned
):
    """Files at least DIRECT_MIN_BYTES long are written with O_DIRECT in aligned chunks plus a buffered
    tail; lowered thresholds run every branch on small arrays: aligned and unaligned lengths, several
    chunks, data that starts on a block (written as it is) or not (copied through an aligned buffer), a
    file system that refuses O_DIRECT, and a short write that finishes through the page cache."""
    import hashlib
    import os

    from indexer import directio, memory, writer

    monkeypatch.setattr(writer, "DIRECT_MIN_BYTES", 1)
    monkeypatch.setattr(directio, "CHUNK_BYTES", 8192)
    data = np.random.default_rng(n_bytes).integers(0, 2**16, n_bytes // 2 + 1, dtype=np.uint16)[1:]
    if block_aligned:
        data = memory.empty(len(data), np.uint16)
        data[:] = np.random.default_rng(n_bytes).integers(0, 2**16, n_bytes // 2 + 1, dtype=np.uint16)[1:]
    if len(data):
        assert (data.ctypes.data % directio.ALIGN == 0) == block_aligned
    expected = data.astype("<u2").tobytes()
    seen = []

    info = writer._write_array(tmp_path / "direct", data, "uint16", seen.append)
    assert (tmp_path / "direct").read_bytes() == expected
    assert info.bytes == len(expected) and info.sha256 == hashlib.sha256(expected).hexdigest()
    assert sum(seen) == len(expected)

    real_open, real_write = os.open, os.write

    def refusing_open(path, flags, *args):
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refusing_open)
    assert writer._write_array(tmp_path / "buffered", data, "uint16", None) == info
    assert (tmp_path / "buffered").read_bytes() == expected
    monkeypatch.setattr(os, "open", real_open)

    def short_write(fd, buf):  # the kernel may write less than asked: one aligned block here
        return real_write(fd, buf[:4096] if len(buf) > 4096 else buf)

    monkeypatch.setattr(os, "write", short_write)
    assert writer._write_array(tmp_path / "short", data, "uint16", None) == info
    assert (tmp_path / "short").read_bytes() == expected


def test_direct_writes_report_a_full_disk(tmp_path, monkeypatch):
    import os

    from indexer import writer

    monkeypatch.setattr(writer, "DIRECT_MIN_BYTES", 1)

    def full(fd, buf):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError, match="No space left"):
        writer._write_array(tmp_path / "f", np.zeros(10_000, dtype=np.uint32), "uint32", None)
