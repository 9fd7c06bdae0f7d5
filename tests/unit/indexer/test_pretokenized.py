"""Pre-tokenized inputs: Megatron .bin/.idx, .npy and raw u16/u32 files with offsets."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from indexer.corpus import CorpusError
from indexer.format import iter_metadata
from indexer.manifest import open_shard, read_manifest
from indexer.pipeline import BuildError, build_index
from indexer.pretokenized import open_sources

DOCS = [[5, 6, 7], [], [7, 7, 7, 7], [1], [6, 5, 6, 5, 6]]


def write_megatron(
    prefix: Path,
    docs,
    *,
    dtype_code=8,
    np_dtype="<u2",
    seqs_per_doc=1,
    magic=b"MMIDIDX\x00\x00",
    version=1,
    doc_count=None,
    extra=b"",
):
    """A minimal Megatron indexed-dataset writer (layout of megatron/core/datasets/indexed_dataset.py)."""
    sequences, doc_idx = [], [0]
    for d in docs:
        # split each document into up to seqs_per_doc sequences
        parts = (
            np.array_split(np.asarray(d, dtype=np.int64), seqs_per_doc) if len(d) else [np.zeros(0, np.int64)]
        )
        sequences.extend(parts)
        doc_idx.append(len(sequences))
    sizes = np.array([len(s) for s in sequences], dtype="<i4")
    item = np.dtype(np_dtype).itemsize
    pointers = np.zeros(len(sequences), dtype="<i8")
    pointers[1:] = np.cumsum(sizes[:-1].astype(np.int64)) * item
    prefix.with_suffix(".bin").write_bytes(
        b"".join(np.asarray(s, dtype=np_dtype).tobytes() for s in sequences)
    )
    with open(prefix.with_suffix(".idx"), "wb") as f:
        f.write(magic)
        f.write(struct.pack("<Q", version))
        f.write(struct.pack("<B", dtype_code))
        f.write(struct.pack("<Q", len(sequences)))
        f.write(struct.pack("<Q", len(doc_idx) if doc_count is None else doc_count))
        f.write(sizes.tobytes())
        f.write(pointers.tobytes())
        f.write(np.asarray(doc_idx, dtype="<i8").tobytes())
        f.write(extra)


def index_docs(index: Path) -> list[list[int]]:
    manifest = read_manifest(index)
    out = []
    for shard in manifest.shards:
        a = open_shard(index, manifest, shard)
        for i in range(shard.n_docs):
            out.append([int(t) for t in a.tokens[int(a.doc_offsets[i]) : int(a.doc_offsets[i + 1]) - 1]])
    return out


def naive_sa(tokens, sep):
    seq = [int(t) for t in tokens]
    return [i for i in sorted(range(len(seq)), key=lambda i: seq[i:]) if seq[i] != sep]


@pytest.mark.parametrize("seqs_per_doc", [1, 2])
@pytest.mark.parametrize(("code", "np_dtype"), [(8, "<u2"), (4, "<i4"), (1, "u1"), (5, "<i8")])
def test_megatron_round_trip(tmp_path, code, np_dtype, seqs_per_doc):
    write_megatron(tmp_path / "ds", DOCS, dtype_code=code, np_dtype=np_dtype, seqs_per_doc=seqs_per_doc)
    manifest = build_index(
        [tmp_path / "ds"],
        tmp_path / "idx",
        tokenizer=None,
        pretokenized="megatron",
        vocab_size=100,
        progress=False,
    )
    assert index_docs(tmp_path / "idx") == DOCS
    assert manifest.tokenizer.kind == "none" and manifest.tokenizer.name == "pretokenized:megatron"
    assert manifest.tokenizer.vocab_size == 100 and manifest.token_dtype == "uint16"
    assert manifest.inputs[0].format == "megatron"
    assert not (tmp_path / "idx" / "tokenizer.json").exists()
    a = open_shard(tmp_path / "idx", manifest, manifest.shards[0])
    assert list(map(int, a.suffix_array)) == naive_sa(a.tokens, manifest.separator_id)
    meta = list(iter_metadata(a))
    assert meta[2] == {"source": "ds.bin", "doc": 2}  # the file name; the absolute path only in the manifest
    assert manifest.inputs[0].path == str((tmp_path / "ds.bin").resolve())


def test_megatron_prefix_bin_and_idx_name_the_same_dataset(tmp_path):
    write_megatron(tmp_path / "ds", DOCS)
    src = open_sources([tmp_path / "ds.bin", tmp_path / "ds.idx", tmp_path / "ds"], "megatron")
    assert len(src.files) == 1 and src.n_tokens == sum(map(len, DOCS))


def test_megatron_multimodal_modes_are_tolerated(tmp_path):
    write_megatron(tmp_path / "ds", DOCS, extra=bytes(len(DOCS)))
    assert open_sources([tmp_path / "ds"], "megatron").files[0].n_docs == len(DOCS)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"magic": b"NOTMMIDX\x00"}, "bad magic"),
        ({"version": 2}, "header version 2, expected 1"),
        ({"dtype_code": 7, "np_dtype": "<f4"}, "dtype code 7 \\(float32\\) is not token ids"),
        ({"dtype_code": 9}, "unknown dtype code 9"),
        ({"doc_count": 99}, "imply"),
        ({"extra": b"\x00" * 3}, "imply"),
    ],
)
def test_megatron_bad_header_names_the_file(tmp_path, kwargs, message):
    write_megatron(tmp_path / "ds", DOCS, **kwargs)
    with pytest.raises(CorpusError, match=rf"{tmp_path / 'ds.idx'}: .*{message}"):
        open_sources([tmp_path / "ds"], "megatron")


def test_megatron_truncated_idx_and_bin(tmp_path):
    write_megatron(tmp_path / "ds", DOCS)
    idx = tmp_path / "ds.idx"
    full = idx.read_bytes()
    idx.write_bytes(full[:20])
    with pytest.raises(CorpusError, match="truncated header"):
        open_sources([tmp_path / "ds"], "megatron")
    idx.write_bytes(full)
    binf = tmp_path / "ds.bin"
    binf.write_bytes(binf.read_bytes()[:-2])
    with pytest.raises(CorpusError, match=rf"{binf}: .* bytes, the index describes"):
        open_sources([tmp_path / "ds"], "megatron")
    binf.unlink()
    with pytest.raises(CorpusError, match="ds.bin: missing"):
        open_sources([tmp_path / "ds"], "megatron")


def test_token_beyond_vocabulary_names_file_and_document(tmp_path):
    write_megatron(tmp_path / "ds", [[1, 2], [3, 4, 50]])
    with pytest.raises(
        CorpusError,
        match=r"ds.bin: document 1 \(token 2, file position 4\): token id beyond the "
        r"vocabulary 50, vocabulary size 50",
    ):
        build_index(
            [tmp_path / "ds"],
            tmp_path / "idx",
            tokenizer=None,
            pretokenized="megatron",
            vocab_size=50,
            progress=False,
        )


def test_negative_token_id(tmp_path):
    write_megatron(tmp_path / "ds", [[1, -2]], dtype_code=4, np_dtype="<i4")
    with pytest.raises(CorpusError, match="document 0 .*negative token id -2"):
        build_index(
            [tmp_path / "ds"],
            tmp_path / "idx",
            tokenizer=None,
            pretokenized="megatron",
            vocab_size=50,
            progress=False,
        )


def test_pretokenized_needs_vocab_size_or_tokenizer(tmp_path):
    write_megatron(tmp_path / "ds", DOCS)
    with pytest.raises(BuildError, match="--vocab-size or --tokenizer"):
        build_index(
            [tmp_path / "ds"], tmp_path / "idx", tokenizer=None, pretokenized="megatron", progress=False
        )


def test_pretokenized_with_tokenizer_stores_it(tmp_path, pythia_tokenizer):
    write_megatron(tmp_path / "ds", DOCS)
    m = build_index(
        [tmp_path / "ds"],
        tmp_path / "idx",
        tokenizer=pythia_tokenizer,
        pretokenized="megatron",
        progress=False,
    )
    assert m.tokenizer.kind == "transformers" and m.tokenizer.vocab_size == pythia_tokenizer.vocab_size
    assert (tmp_path / "idx" / "tokenizer.json").is_file()


def flat(docs):
    tokens = np.concatenate([np.asarray(d, dtype=np.int64) for d in docs])
    offsets = np.zeros(len(docs) + 1, dtype=np.uint64)
    offsets[1:] = np.cumsum([len(d) for d in docs])
    return tokens, offsets


def test_npy_with_default_and_explicit_offsets(tmp_path):
    tokens, offsets = flat(DOCS)
    np.save(tmp_path / "toks.npy", tokens.astype(np.int32))
    np.save(tmp_path / "toks.offsets.npy", offsets)
    build_index(
        [tmp_path / "toks.npy"],
        tmp_path / "a",
        tokenizer=None,
        pretokenized="npy",
        vocab_size=10,
        progress=False,
    )
    assert index_docs(tmp_path / "a") == DOCS
    np.save(tmp_path / "other.npy", offsets.astype(np.int64))
    build_index(
        [tmp_path / "toks.npy"],
        tmp_path / "b",
        tokenizer=None,
        pretokenized="npy",
        vocab_size=10,
        offsets=[tmp_path / "other.npy"],
        progress=False,
    )
    assert index_docs(tmp_path / "b") == DOCS


@pytest.mark.parametrize("kind", ["raw-u16", "raw-u32"])
def test_raw_files_and_several_inputs(tmp_path, kind):
    dtype = "<u2" if kind == "raw-u16" else "<u4"
    inputs = []
    for name, docs in (("one", DOCS), ("two", [[9, 9], [8]])):
        tokens, offsets = flat(docs)
        (tmp_path / name).write_bytes(tokens.astype(dtype).tobytes())
        (tmp_path / (name + ".offsets")).write_bytes(offsets.astype("<u8").tobytes())
        inputs.append(tmp_path / name)
    m = build_index(
        inputs, tmp_path / "idx", tokenizer=None, pretokenized=kind, vocab_size=10, progress=False
    )
    assert index_docs(tmp_path / "idx") == DOCS + [[9, 9], [8]]
    assert m.n_docs == len(DOCS) + 2 and [i.format for i in m.inputs] == [kind, kind]


def test_u32_ids_give_u32_index(tmp_path):
    docs = [[70_000, 1, 69_999], [65_535, 65_536]]
    tokens, offsets = flat(docs)
    (tmp_path / "t").write_bytes(tokens.astype("<u4").tobytes())
    (tmp_path / "t.offsets").write_bytes(offsets.astype("<u8").tobytes())
    m = build_index(
        [tmp_path / "t"],
        tmp_path / "idx",
        tokenizer=None,
        pretokenized="raw-u32",
        vocab_size=70_001,
        progress=False,
    )
    assert m.token_dtype == "uint32" and m.separator_id == 2**32 - 1
    assert index_docs(tmp_path / "idx") == docs
    a = open_shard(tmp_path / "idx", m, m.shards[0])
    assert a.tokens.dtype == np.dtype("<u4")
    assert list(map(int, a.suffix_array)) == naive_sa(a.tokens, m.separator_id)


@pytest.mark.parametrize(
    ("offsets", "message"),
    [
        ([1, 3, 13], "first document offset is 1"),
        ([0, 3, 12], "last document offset is 12, the token file has 13"),
        ([0, 7, 3, 13], "decrease at entry 2"),
    ],
)
def test_bad_offsets(tmp_path, offsets, message):
    tokens, _ = flat(DOCS)
    (tmp_path / "t").write_bytes(tokens.astype("<u2").tobytes())
    (tmp_path / "t.offsets").write_bytes(np.asarray(offsets, dtype="<u8").tobytes())
    with pytest.raises(CorpusError, match=rf"t.offsets: .*{message}"):
        open_sources([tmp_path / "t"], "raw-u16")


def test_missing_offsets_and_odd_sizes(tmp_path):
    (tmp_path / "t").write_bytes(b"\x01\x00\x02")
    with pytest.raises(CorpusError, match="not a whole number of u16 tokens"):
        open_sources([tmp_path / "t"], "raw-u16")
    (tmp_path / "t").write_bytes(b"\x01\x00\x02\x00")
    with pytest.raises(CorpusError, match="offsets file missing"):
        open_sources([tmp_path / "t"], "raw-u16")
    with pytest.raises(CorpusError, match="2 offsets files for 1 inputs"):
        open_sources([tmp_path / "t"], "raw-u16", offsets=["a", "b"])


def test_npy_must_be_1d_integers(tmp_path):
    np.save(tmp_path / "f.npy", np.zeros(3, dtype=np.float32))
    with pytest.raises(CorpusError, match="expected a 1-D integer array"):
        open_sources([tmp_path / "f.npy"], "npy")
    (tmp_path / "g.npy").write_bytes(b"not numpy")
    with pytest.raises(CorpusError, match="g.npy: not a .npy file"):
        open_sources([tmp_path / "g.npy"], "npy")


def test_batches_split_documents_and_skip(tmp_path):
    docs = [[i % 7 + 1] * (i % 5) for i in range(40)]
    tokens, offsets = flat(docs)
    (tmp_path / "t").write_bytes(tokens.astype("<u2").tobytes())
    (tmp_path / "t.offsets").write_bytes(offsets.astype("<u8").tobytes())
    src = open_sources([tmp_path / "t"], "raw-u16")
    for skip in (0, 1, 17, 40):
        got = []
        for batch in src.batches(10, skip_docs=skip, batch_tokens=6):
            assert len(batch) >= 1
            got.extend(
                np.split(batch.tokens.astype(int), np.cumsum(batch.lengths)[:-1]) if len(batch) else []
            )
            assert [m["doc"] for m in batch.metadata] == list(
                range(batch.metadata[0]["doc"], batch.metadata[0]["doc"] + len(batch))
            )
        assert [list(g) for g in got] == docs[skip:]


def test_document_larger_than_a_shard_names_file_and_document(tmp_path):
    write_megatron(tmp_path / "ds", [[1, 2], [3] * 100])
    with pytest.raises(BuildError, match=r"ds.bin \(document 1\): a document of 100 tokens does not fit"):
        build_index(
            [tmp_path / "ds"],
            tmp_path / "idx",
            tokenizer=None,
            pretokenized="megatron",
            vocab_size=50,
            memory_budget_bytes=12 * 60,
            bytes_per_token=12,
            progress=False,
        )


def test_reads_past_the_page_cache_equal_ordinary_reads(tmp_path, monkeypatch):
    """Token ranges are read with O_DIRECT (aligned blocks around the range) where the file system allows
    it; a lowered threshold sends every read that way: any start, stop, dtype and header length gives
    the ordinary read's ids, and a file system that refuses O_DIRECT gets ordinary reads."""
    from indexer import directio, pretokenized

    rng = np.random.default_rng(4)
    ids = rng.integers(0, 60_000, 50_000).astype(np.int32)
    np.save(tmp_path / "t.npy", ids)  # a header before the ids
    np.array([0, 20_000, 50_000], dtype=np.uint64).tofile(tmp_path / "t.npy.offsets")
    np.save(tmp_path / "t.offsets.npy", np.array([0, 20_000, 50_000]))
    ids.astype(np.uint16).tofile(tmp_path / "r")
    np.array([0, 50_000], dtype=np.uint64).tofile(tmp_path / "r.offsets")
    files = open_sources([tmp_path / "t.npy"], "npy").files + open_sources([tmp_path / "r"], "raw-u16").files
    ranges = [(0, 50_000), (0, 1), (49_999, 50_000), (1_000, 1_000)]
    ranges += [tuple(sorted(map(int, rng.integers(0, 50_001, 2)))) for _ in range(30)]
    monkeypatch.setattr(pretokenized, "DIRECT_READ_MIN_BYTES", 1)
    for tf in files:
        for start, stop in ranges:
            got = tf.read(start, stop)
            assert got.dtype == tf.dtype and got.flags.aligned
            np.testing.assert_array_equal(got, ids[start:stop].astype(tf.dtype))
    monkeypatch.setattr(directio, "_open", lambda path, flags: None)  # refused: ordinary reads
    np.testing.assert_array_equal(files[1].read(7, 40_007), ids[7:40_007].astype(np.uint16))


@pytest.mark.parametrize("offset", [0, 1, 4095, 4096, 10_000])
@pytest.mark.parametrize("n_bytes", [0, 1, 4096, 9_000])
def test_direct_read_of_any_range_and_past_the_end(tmp_path, offset, n_bytes):
    from indexer import directio

    data = np.random.default_rng(1).integers(0, 256, 12_345, dtype=np.uint8)
    data.tofile(tmp_path / "f")
    got = directio.read(tmp_path / "f", offset, n_bytes)
    if got is None:
        pytest.skip("this file system refuses O_DIRECT")
    np.testing.assert_array_equal(got, data[offset : offset + n_bytes])  # shorter past the end
