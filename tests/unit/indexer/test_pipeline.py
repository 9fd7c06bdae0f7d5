"""The build pipeline: round trips against the tokenizer and a naive suffix array, sharding, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from indexer.format import iter_metadata, open_shard, read_manifest
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
    assert all(m["source"].endswith("corpus.jsonl") for m in meta)
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
