"""Reading corpora: formats, discovery, metadata, and every bad-input case naming file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.corpus import (
    CorpusError,
    InputFile,
    ReadStats,
    discover_inputs,
    iter_lines,
    iter_text_documents,
    text_format_of,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "indexer"


def read_all(path: Path, text_field: str = "text", skip: bool = False) -> tuple[list, ReadStats]:
    plan = discover_inputs([path])
    stats = ReadStats()
    docs = []
    for f in plan.files:
        docs.extend(iter_text_documents(f, text_field, stats, skip_bad_lines=skip))
    return docs, stats


PILE_TEXTS = [
    "The Pile has documents with metadata.",
    "Second document of the tiny corpus.",
    "",
    "Ünïcödé and emoji 🦊 stay intact.",
]


@pytest.mark.parametrize("name", ["pile_tiny.jsonl", "pile_tiny.jsonl.zst", "pile_tiny.jsonl.gz"])
def test_jsonl_formats_give_same_documents_and_pile_metadata(name):
    docs, stats = read_all(DATA / name)
    assert [d.text for d in docs] == PILE_TEXTS
    assert [d.metadata["line"] for d in docs] == [1, 2, 3, 4]
    assert docs[0].metadata["meta"] == {"pile_set_name": "Pile-CC"}
    assert docs[3].metadata["source"].endswith(name)
    assert stats.docs == 4 and stats.empty_docs == 1 and stats.lines == 4
    assert not stats.skipped


def test_multi_frame_zst_is_read_completely():
    raw = (DATA / "pile_tiny.jsonl.zst").read_bytes()
    import zstandard

    frames = 0
    data = raw
    while data:
        dobj = zstandard.ZstdDecompressor().decompressobj()
        dobj.decompress(data)
        data = dobj.unused_data
        frames += 1
    assert frames == 2
    docs, _ = read_all(DATA / "pile_tiny.jsonl.zst")
    assert len(docs) == 4


def test_zst_is_streamed_in_chunks(monkeypatch, tmp_path):
    import zstandard

    from indexer import corpus

    lines = [json.dumps({"text": f"doc {i} " + "x" * 50}) for i in range(3000)]
    path = tmp_path / "many.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(("\n".join(lines) + "\n").encode()))
    monkeypatch.setattr(corpus, "READ_CHUNK_BYTES", 256)
    reads: list[int] = []
    f = InputFile(path, str(path), "jsonl.zst", path.stat().st_size)
    numbered = list(iter_lines(f, on_bytes=reads.append))
    assert len(numbered) == 3000 and numbered[-1][0] == 3000
    assert max(reads) <= 256 and sum(reads) == path.stat().st_size


def test_blank_lines_crlf_and_missing_final_newline():
    docs, stats = read_all(DATA / "blank_lines.jsonl")
    assert [d.text for d in docs] == ["one", "two", "three"]
    assert [d.metadata["line"] for d in docs] == [1, 4, 5]
    assert stats.blank_lines == 2


@pytest.mark.parametrize(
    ("name", "line", "reason", "message"),
    [
        ("malformed.jsonl", 3, "malformed_json", "malformed JSON"),
        ("invalid_utf8.jsonl", 2, "invalid_utf8", "invalid UTF-8"),
        ("missing_field.jsonl", 2, "missing_text_field", "no text field 'text'"),
        ("not_string.jsonl", 2, "text_not_a_string", "is list, not a string"),
        ("not_object.jsonl", 2, "not_an_object", "expected a JSON object"),
        ("invalid_utf8.txt", 2, "invalid_utf8", "invalid UTF-8"),
    ],
)
def test_bad_lines_name_file_and_line(name, line, reason, message):
    with pytest.raises(CorpusError) as info:
        read_all(DATA / name)
    err = info.value
    assert err.line == line and err.reason == reason
    assert str(err).startswith(f"{DATA / name}:{line}: ")
    assert message in str(err)


@pytest.mark.parametrize("name", ["truncated.jsonl.zst", "truncated.jsonl.gz"])
def test_truncated_compressed_file_is_an_error_even_when_skipping(name):
    for skip in (False, True):
        with pytest.raises(CorpusError, match=rf"{name}: truncated") as info:
            read_all(DATA / name, skip=skip)
        assert info.value.reason == "truncated_file"


def test_skip_bad_lines_counts_per_reason():
    docs, stats = read_all(DATA / "malformed.jsonl", skip=True)
    # line 3 is '{"text": "broken' and line 4 '{"text": "after"}' parses
    assert [d.text for d in docs] == ["fine", "also fine", "after"]
    assert stats.skipped == {"malformed_json": 1}
    assert "malformed.jsonl:3" in stats.first_skipped["malformed_json"]
    docs, stats = read_all(DATA / "invalid_utf8.jsonl", skip=True)
    assert [d.text for d in docs] == ["ok", "ok again"]
    assert stats.as_dict()["skipped"] == {"invalid_utf8": 1}


def test_dotted_text_field_and_extra_fields(tmp_path):
    path = tmp_path / "nested.jsonl"
    path.write_text(json.dumps({"doc": {"body": "deep"}, "id": 3, "meta": {"k": 1}}) + "\n")
    docs, _ = read_all(path, text_field="doc.body")
    assert docs[0].text == "deep"
    assert docs[0].metadata == {"source": "nested.jsonl", "line": 1, "meta": {"k": 1}, "fields": {"id": 3}}
    with pytest.raises(CorpusError, match=r"nested.jsonl:1: no text field 'doc.title'"):
        read_all(path, text_field="doc.title")


def test_directory_recursive_with_ignored_files():
    plan = discover_inputs([DATA / "corpus_dir"])
    names = [f.path.name for f in plan.files]
    assert names == ["a.txt", "b.jsonl", "c.txt"]
    assert [f.format for f in plan.files] == ["txt", "jsonl", "txt"]
    assert len(plan.ignored) == 1 and plan.ignored[0].endswith("README.md")
    docs, stats = read_all(DATA / "corpus_dir")
    assert [d.text for d in docs] == [
        "A plain text document.\nWith two lines.\n",
        "json in a folder",
        "Nested plain text.",
    ]
    # the path relative to the directory given, never the build machine's absolute path
    assert docs[0].metadata == {"source": "a.txt"}
    assert [f.source for f in plan.files] == ["a.txt", "b.jsonl", "nested/c.txt"]


def test_globs_and_deduplication():
    plan = discover_inputs([str(DATA / "pile_tiny.jsonl*"), DATA / "pile_tiny.jsonl"])
    assert [f.path.name for f in plan.files] == [
        "pile_tiny.jsonl",
        "pile_tiny.jsonl.gz",
        "pile_tiny.jsonl.zst",
    ]


def test_discovery_errors(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        discover_inputs([tmp_path / "absent.jsonl"])
    with pytest.raises(CorpusError, match="matches no file"):
        discover_inputs([str(tmp_path / "*.jsonl")])
    odd = tmp_path / "data.xlsx"
    odd.write_bytes(b"x")
    with pytest.raises(CorpusError, match="unsupported input type"):
        discover_inputs([odd])
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.csv").write_text("a")
    with pytest.raises(CorpusError, match="no input file with a supported suffix"):
        discover_inputs([tmp_path / "sub"])
    with pytest.raises(CorpusError, match="no input files given"):
        discover_inputs([])


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.jsonl", "jsonl"),
        ("a.JSON", "jsonl"),
        ("a.jsonl.zst", "jsonl.zst"),
        ("a.json.gz", "jsonl.gz"),
        ("a.txt", "txt"),
        ("a.csv", None),
        ("a.zst", None),
    ],
)
def test_text_format_of(name, fmt):
    assert text_format_of(Path(name)) == fmt


def test_corrupt_zst_is_an_error(tmp_path):
    path = tmp_path / "junk.jsonl.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00garbage" * 10)
    with pytest.raises(CorpusError, match="junk.jsonl.zst: (corrupt|truncated)"):
        read_all(path)
