"""Reading text corpora: discovering input files and streaming their documents.

Supported inputs (``discover_inputs``):

* JSON Lines: ``.jsonl``, ``.json`` (read as JSON lines), ``.jsonl.zst``/``.json.zst`` (streamed frame by
  frame; a truncated file is an error), ``.jsonl.gz``/``.json.gz``. Each non-blank line is one JSON
  object; its text is at ``text_field`` (a dotted path such as ``doc.body`` is allowed).
* Plain text: ``.txt`` (and ``.txt.zst``/``.txt.gz``): one document per file, the whole file.
* Parquet: ``.parquet`` (FineWeb, DCLM-style shards), streamed a record batch at a time with pyarrow; the
  text is the string column ``text_field``.
* Folders written by HF ``datasets`` ``save_to_disk`` (``state.json`` + Arrow stream files): the Arrow
  files in the order ``state.json`` lists them, the text column ``text_field``.
* Directories (recursively, files with a supported suffix, in sorted path order; other files are listed
  in :attr:`InputPlan.ignored`) and glob patterns (``*``, ``?``, ``[``).

Document metadata (stored per document in the index, see ``indexer.format``)::

    {"source": "<input file>", "line": <1-based line number>,              # JSON lines
     "meta": <the record's "meta" value, when the record has one>,        # the Pile's shape
     "fields": {<other top-level fields except the text field>}}         # only when there are any
    {"source": "<input file>"}                                           # plain text files
    {"source": "<input file>", "row": <0-based row number>}              # Parquet and Arrow

``source`` is the file's path relative to the directory given as input, or its file name when the file
was given directly: never the build machine's absolute path (that is only in the manifest's ``inputs``).

Blank lines (only whitespace) are not documents; they are counted (``ReadStats.blank_lines``). A record
whose text is the empty string IS a document (an empty one: it keeps document numbering aligned with the
input lines); empty documents are counted in ``ReadStats.empty_docs``.

Errors are :class:`CorpusError` naming the file and line. With ``skip_bad_lines`` the bad line is skipped
and counted per reason in :class:`ReadStats` instead (a truncated compressed file is never skipped: the
rest of the file is unknowable).
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson
import zstandard

from indexer.errors import IndexerError

READ_CHUNK_BYTES = 1 << 20

TEXT_SUFFIXES = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".jsonl.zst": "jsonl.zst",
    ".json.zst": "jsonl.zst",
    ".jsonl.gz": "jsonl.gz",
    ".json.gz": "jsonl.gz",
    ".txt": "txt",
    ".txt.zst": "txt.zst",
    ".txt.gz": "txt.gz",
    ".parquet": "parquet",
}
COLUMNAR_FORMATS = ("parquet", "arrow")
DATASETS_STATE_FILE = "state.json"  # what HF datasets' save_to_disk writes beside its Arrow files
DATASET_DICT_FILE = "dataset_dict.json"  # a DatasetDict's save_to_disk: one folder per split


class CorpusError(IndexerError):
    """An input file cannot be read as a corpus. ``str(err)`` is ``"FILE:LINE: what is wrong"``."""

    def __init__(self, path: str | os.PathLike[str], line: int | None, reason: str, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else self.path
        self.message = message
        super().__init__(f"{where}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Worker processes raise it; the default pickling would call __init__ with the message only.
        return (CorpusError, (self.path, self.line, self.reason, self.message))


@dataclass(frozen=True)
class InputFile:
    path: Path
    display: str
    format: str
    bytes: int
    #: the name recorded in document metadata: the path relative to the directory given as input, or
    #: the file name for a file given directly (never the build machine's absolute path)
    source: str = ""


@dataclass
class DocBatch:
    """Documents as flat token ids plus per-document lengths (ragged batch) and their metadata."""

    tokens: np.ndarray
    lengths: np.ndarray
    metadata: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.lengths)

    def split(self, n_docs: int) -> tuple[DocBatch, DocBatch]:
        cut = int(self.lengths[:n_docs].sum())
        return (
            DocBatch(self.tokens[:cut], self.lengths[:n_docs], self.metadata[:n_docs]),
            DocBatch(self.tokens[cut:], self.lengths[n_docs:], self.metadata[n_docs:]),
        )


@dataclass
class InputPlan:
    files: list[InputFile]
    ignored: list[str] = field(default_factory=list)


@dataclass
class ReadStats:
    """What the reader saw, for the build summary; nothing is dropped without being counted here."""

    lines: int = 0
    docs: int = 0
    empty_docs: int = 0
    blank_lines: int = 0
    text_bytes: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    first_skipped: dict[str, str] = field(default_factory=dict)

    def skip(self, err: CorpusError) -> None:
        self.skipped[err.reason] += 1
        self.first_skipped.setdefault(err.reason, str(err))

    def add(self, other: dict[str, Any]) -> None:
        """Add the counts of another reader (``as_dict`` of a part read elsewhere, in input order)."""
        for name in ("lines", "docs", "empty_docs", "blank_lines", "text_bytes"):
            setattr(self, name, getattr(self, name) + int(other[name]))
        self.skipped.update(other["skipped"])
        for reason, first in other["first_skipped"].items():
            self.first_skipped.setdefault(reason, first)

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "docs": self.docs,
            "empty_docs": self.empty_docs,
            "blank_lines": self.blank_lines,
            "text_bytes": self.text_bytes,
            "skipped": dict(sorted(self.skipped.items())),
            "first_skipped": dict(sorted(self.first_skipped.items())),
        }


@dataclass(frozen=True)
class TextDocument:
    text: str
    metadata: dict[str, Any]


def text_format_of(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in sorted(TEXT_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return TEXT_SUFFIXES[suffix]
    return None


def discover_inputs(inputs: Sequence[str | os.PathLike[str]]) -> InputPlan:
    """Expand files, directories (recursive) and glob patterns into an ordered list of input files."""
    if not inputs:
        raise CorpusError("<inputs>", None, "no_input", "no input files given")
    plan = InputPlan(files=[])
    seen: set[Path] = set()

    def add(path: Path, display: str, explicit: bool, base: Path | None = None) -> None:
        fmt = text_format_of(path)
        if fmt is None:
            if explicit:
                raise CorpusError(
                    display,
                    None,
                    "unknown_format",
                    f"unsupported input type; expected one of {', '.join(sorted(TEXT_SUFFIXES))}"
                    " (or --pretokenized for token files)",
                )
            plan.ignored.append(display)
            return
        resolved = path.resolve()
        if resolved in seen:
            return
        seen.add(resolved)
        source = path.relative_to(base).as_posix() if base is not None else path.name
        plan.files.append(InputFile(path, display, fmt, path.stat().st_size, source))

    def add_dataset(folder: Path, display: str) -> None:
        for arrow in arrow_files_of_dataset(folder, display):
            resolved = arrow.resolve()
            if resolved not in seen:
                seen.add(resolved)
                source = arrow.relative_to(folder).as_posix()  # inside the dataset folder given
                plan.files.append(InputFile(arrow, str(arrow), "arrow", arrow.stat().st_size, source))

    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_dir() and (path / DATASETS_STATE_FILE).is_file():
            add_dataset(path, text)
        elif path.is_dir() and (path / DATASET_DICT_FILE).is_file():
            for split in _dataset_dict_splits(path, text):
                add_dataset(path / split, str(path / split))
        elif path.is_dir():
            children = sorted(p for p in path.rglob("*") if p.is_file())
            for child in children:
                add(child, str(child), explicit=False, base=path)
        elif path.is_file():
            add(path, text, explicit=True)
        elif glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise CorpusError(text, None, "no_input", "the pattern matches no file")
            for match in matches:
                if Path(match).is_dir():
                    for child in sorted(p for p in Path(match).rglob("*") if p.is_file()):
                        add(child, str(child), explicit=False, base=Path(match))
                else:
                    add(Path(match), match, explicit=True)
        else:
            raise CorpusError(text, None, "no_input", "no such file or directory")
    if not plan.files:
        raise CorpusError(
            ", ".join(str(i) for i in inputs), None, "no_input", "no input file with a supported suffix found"
        )
    return plan


def _read_json_file(path: Path, display: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CorpusError(display, None, "bad_dataset", f"cannot read {path.name}: {err}") from err


def arrow_files_of_dataset(folder: Path, display: str) -> list[Path]:
    """The Arrow files of a ``datasets`` ``save_to_disk`` folder, in the order its ``state.json`` lists."""
    state = _read_json_file(folder / DATASETS_STATE_FILE, display)
    try:
        names = [entry["filename"] for entry in state["_data_files"]]
    except (TypeError, KeyError) as err:
        raise CorpusError(
            display, None, "bad_dataset", f"{DATASETS_STATE_FILE} lists no _data_files ({err})"
        ) from None
    files = []
    for name in names:
        path = folder / str(name)
        if not path.is_file():
            raise CorpusError(
                display, None, "bad_dataset", f"{name} is listed in {DATASETS_STATE_FILE} but missing"
            )
        files.append(path)
    if not files:
        raise CorpusError(display, None, "bad_dataset", "the dataset has no Arrow files")
    return files


def _dataset_dict_splits(folder: Path, display: str) -> list[str]:
    info = _read_json_file(folder / DATASET_DICT_FILE, display)
    splits = info.get("splits") if isinstance(info, dict) else None
    if not isinstance(splits, list) or not splits:
        raise CorpusError(display, None, "bad_dataset", f"{DATASET_DICT_FILE} lists no splits")
    return [str(s) for s in splits]


# --------------------------------------------------------------------------------------------------
# Byte streams


ByteCounter = Callable[[int], None]


class _CountingReader:
    """Wraps a binary file and reports how many (compressed) bytes have been read, for progress bars."""

    def __init__(self, f: BinaryIO, on_bytes: ByteCounter | None) -> None:
        self._f = f
        self._on_bytes = on_bytes

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        if self._on_bytes is not None and data:
            self._on_bytes(len(data))
        return data

    def readable(self) -> bool:
        return True


def _iter_zstd_chunks(f: Any, display: str) -> Iterator[bytes]:
    """Decompress a zstd file chunk by chunk (all frames); raise CorpusError if it ends mid-frame."""
    dctx = zstandard.ZstdDecompressor()
    dobj = dctx.decompressobj()
    in_frame = False
    while True:
        chunk = f.read(READ_CHUNK_BYTES)
        if not chunk:
            break
        while chunk:
            in_frame = True
            try:
                out = dobj.decompress(chunk)
            except zstandard.ZstdError as err:
                raise CorpusError(display, None, "corrupt_file", f"corrupt zstd data: {err}") from err
            if out:
                yield out
            if dobj.eof:
                chunk = dobj.unused_data
                dobj = dctx.decompressobj()
                in_frame = False
            else:
                chunk = b""
    if in_frame:
        raise CorpusError(display, None, "truncated_file", "truncated zstd file (ends inside a frame)")


def _iter_gzip_chunks(f: Any, display: str) -> Iterator[bytes]:
    try:
        with gzip.GzipFile(fileobj=f, mode="rb") as gz:
            while chunk := gz.read(READ_CHUNK_BYTES):
                yield chunk
    except EOFError as err:
        raise CorpusError(display, None, "truncated_file", "truncated gzip file") from err
    except (OSError, zlib.error) as err:
        raise CorpusError(display, None, "corrupt_file", f"corrupt gzip data: {err}") from err


def _iter_plain_chunks(f: Any, display: str) -> Iterator[bytes]:
    while chunk := f.read(READ_CHUNK_BYTES):
        yield chunk


def iter_chunks(input_file: InputFile, on_bytes: ByteCounter | None = None) -> Iterator[bytes]:
    """The decompressed bytes of an input file, in chunks; ``on_bytes`` hears of every raw byte read."""
    try:
        raw = open(input_file.path, "rb")  # noqa: SIM115 - closed in finally (this is a generator)
    except OSError as err:
        raise CorpusError(input_file.display, None, "unreadable", f"cannot open: {err.strerror}") from err
    f = _CountingReader(raw, on_bytes)
    try:
        if input_file.format.endswith(".zst"):
            yield from _iter_zstd_chunks(f, input_file.display)
        elif input_file.format.endswith(".gz"):
            yield from _iter_gzip_chunks(f, input_file.display)
        else:
            yield from _iter_plain_chunks(f, input_file.display)
    finally:
        raw.close()


def iter_lines(input_file: InputFile, on_bytes: ByteCounter | None = None) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line bytes without the line end) of an input file, streamed."""
    pending = b""
    number = 0
    for chunk in iter_chunks(input_file, on_bytes):
        data = pending + chunk
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            number += 1
            yield number, data[start:end]
            start = end + 1
        pending = data[start:]
    if pending:
        number += 1
        yield number, pending


def iter_line_blocks(
    input_file: InputFile, block_bytes: int, on_bytes: ByteCounter | None = None
) -> Iterator[tuple[int, bytes]]:
    """The decompressed bytes of a JSON Lines file in blocks of whole lines (about ``block_bytes`` each,
    the last line possibly without its line end), each with the 1-based number of its first line.

    The blocks depend only on the file and ``block_bytes``, so a build that parses them in several
    processes sees the same documents in the same order as one that reads the file in one go."""
    pending = bytearray()
    first_line = 1
    for chunk in iter_chunks(input_file, on_bytes):
        pending += chunk
        while len(pending) >= block_bytes:
            cut = pending.rfind(b"\n", 0, block_bytes)
            if cut < 0:
                cut = pending.find(b"\n", block_bytes)
                if cut < 0:
                    break  # one line longer than a block: wait for its end
            block = bytes(pending[: cut + 1])
            del pending[: cut + 1]
            yield first_line, block
            first_line += block.count(b"\n")
    if pending:
        yield first_line, bytes(pending)


# --------------------------------------------------------------------------------------------------
# Documents


def _lookup(record: dict[str, Any], dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(dotted)
        value = value[part]
    return value


def _parse_json_line(
    input_file: InputFile, number: int, raw: bytes, text_field: str
) -> tuple[str, dict[str, Any]] | None:
    """The (text, metadata) of one JSON line; None for a blank line; CorpusError when bad."""
    display = input_file.display
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorpusError(
            display, number, "invalid_utf8", f"invalid UTF-8 at byte {err.start} of the line"
        ) from err
    if line.endswith("\r"):
        line = line[:-1]
    if not line.strip():
        return None
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # json accepts what orjson refuses (NaN, integers beyond 64 bits) or names the error
        record = _json_loads(input_file, number, line)
    if not isinstance(record, dict):
        raise CorpusError(
            display, number, "not_an_object", f"expected a JSON object, got {type(record).__name__}"
        )
    return _document_of_record(input_file, number, record, text_field)


def _json_loads(input_file: InputFile, number: int, line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise CorpusError(
            input_file.display, number, "malformed_json", f"malformed JSON: {err.msg} (column {err.colno})"
        ) from err


def _document_of_record(
    input_file: InputFile, number: int, record: dict[str, Any], text_field: str
) -> tuple[str, dict[str, Any]]:
    display = input_file.display
    try:
        text = _lookup(record, text_field)
    except KeyError:
        raise CorpusError(
            display, number, "missing_text_field", f"no text field {text_field!r} (keys: {', '.join(record)})"
        ) from None
    if not isinstance(text, str):
        raise CorpusError(
            display,
            number,
            "text_not_a_string",
            f"field {text_field!r} is {type(text).__name__}, not a string",
        )
    metadata: dict[str, Any] = {"source": input_file.source or input_file.path.name, "line": number}
    top = text_field.split(".", 1)[0]
    if "meta" in record and top != "meta":
        metadata["meta"] = record["meta"]
    others = {k: v for k, v in record.items() if k not in (top, "meta")}
    if others:
        metadata["fields"] = others
    return text, metadata


def iter_text_documents(
    input_file: InputFile,
    text_field: str,
    stats: ReadStats,
    *,
    skip_bad_lines: bool = False,
    on_bytes: ByteCounter | None = None,
) -> Iterator[TextDocument]:
    """Stream the documents of one input file."""
    if input_file.format.startswith("txt"):
        data = b"".join(iter_chunks(input_file, on_bytes))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = data[: err.start].count(b"\n") + 1
            error = CorpusError(input_file.display, line, "invalid_utf8", "invalid UTF-8 in a text file")
            if not skip_bad_lines:
                raise error from err
            stats.skip(error)
            return
        stats.lines += data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
        stats.docs += 1
        stats.text_bytes += len(data)
        if not text:
            stats.empty_docs += 1
        yield TextDocument(text, {"source": input_file.source or input_file.path.name})
        return
    if input_file.format in COLUMNAR_FORMATS:
        yield from iter_columnar_documents(input_file, text_field, stats, on_bytes=on_bytes)
        return
    yield from _documents_of_lines(
        input_file, iter_lines(input_file, on_bytes), text_field, stats, skip_bad_lines
    )


def iter_block_documents(
    input_file: InputFile,
    first_line: int,
    block: bytes,
    text_field: str,
    stats: ReadStats,
    *,
    skip_bad_lines: bool = False,
) -> Iterator[TextDocument]:
    """The documents of one block of :func:`iter_line_blocks` (lines numbered from ``first_line``)."""
    lines = block.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    numbered = zip(range(first_line, first_line + len(lines)), lines, strict=True)
    yield from _documents_of_lines(input_file, numbered, text_field, stats, skip_bad_lines)


def _documents_of_lines(
    input_file: InputFile,
    numbered: Iterable[tuple[int, bytes]],
    text_field: str,
    stats: ReadStats,
    skip_bad_lines: bool,
) -> Iterator[TextDocument]:
    for number, raw in numbered:
        stats.lines += 1
        try:
            parsed = _parse_json_line(input_file, number, raw, text_field)
        except CorpusError as err:
            if not skip_bad_lines:
                raise
            stats.skip(err)
            continue
        if parsed is None:
            stats.blank_lines += 1
            continue
        text, metadata = parsed
        stats.docs += 1
        stats.text_bytes += len(text.encode("utf-8"))
        if not text:
            stats.empty_docs += 1
        yield TextDocument(text, metadata)


# --------------------------------------------------------------------------------------------------
# Parquet and Arrow (pyarrow, the `parquet` extra)


def _pyarrow() -> Any:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.ipc
        import pyarrow.parquet
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        raise CorpusError(
            "<inputs>",
            None,
            "unsupported",
            "Parquet and Arrow inputs need pyarrow: pip install 'taskgram[parquet]'",
        ) from err
    return pyarrow


def columnar_units(input_file: InputFile) -> list[tuple[int, int]]:
    """(rows, bytes) of each row group (Parquet) or record batch (Arrow stream): the units at which a
    build may split the file."""
    pa = _pyarrow()
    try:
        if input_file.format == "parquet":
            meta = pa.parquet.ParquetFile(input_file.path).metadata
            groups = (meta.row_group(i) for i in range(meta.num_row_groups))
            return [(g.num_rows, g.total_byte_size) for g in groups]
        with pa.memory_map(str(input_file.path)) as source:
            return [(batch.num_rows, batch.nbytes) for batch in pa.ipc.open_stream(source)]
    except (OSError, pa.ArrowException) as err:
        raise CorpusError(
            input_file.display, None, "corrupt_file", f"not a readable {input_file.format} file: {err}"
        ) from err


def iter_columnar_documents(
    input_file: InputFile,
    text_field: str,
    stats: ReadStats,
    *,
    units: range | None = None,
    on_bytes: ByteCounter | None = None,
) -> Iterator[TextDocument]:
    """The rows of a Parquet file or an Arrow stream file as documents (the string column
    ``text_field``), a record batch at a time; ``units`` limits them to those row groups (batches)."""
    pa = _pyarrow()
    display = input_file.display
    sizes = [rows for rows, _ in columnar_units(input_file)]
    wanted = units if units is not None else range(len(sizes))
    row = sum(sizes[: wanted.start]) if len(wanted) else 0
    try:
        if input_file.format == "parquet":
            pf = pa.parquet.ParquetFile(input_file.path)
            if text_field not in pf.schema_arrow.names:
                raise CorpusError(
                    display,
                    None,
                    "missing_text_field",
                    f"no column {text_field!r} (columns: {', '.join(pf.schema_arrow.names)})",
                )
            columns = (
                list(pf.iter_batches(row_groups=list(wanted), columns=[text_field])) if len(wanted) else []
            )
        else:
            with pa.memory_map(str(input_file.path)) as source:
                reader = pa.ipc.open_stream(source)
                if text_field not in reader.schema.names:
                    raise CorpusError(
                        display,
                        None,
                        "missing_text_field",
                        f"no column {text_field!r} (columns: {', '.join(reader.schema.names)})",
                    )
                columns = [b.select([text_field]) for i, b in enumerate(reader) if i in wanted]
    except (OSError, pa.ArrowException) as err:
        raise CorpusError(
            display, None, "corrupt_file", f"not a readable {input_file.format} file: {err}"
        ) from err
    for batch in columns:
        column = batch.column(0)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            raise CorpusError(
                display, None, "text_not_a_string", f"column {text_field!r} is {column.type}, not a string"
            )
        for text in column.to_pylist():
            stats.lines += 1
            if text is None:
                raise CorpusError(
                    display, None, "text_not_a_string", f"row {row}: column {text_field!r} is null"
                )
            stats.docs += 1
            size = len(text.encode("utf-8"))
            stats.text_bytes += size
            if on_bytes is not None:
                on_bytes(size)
            if not text:
                stats.empty_docs += 1
            yield TextDocument(text, {"source": input_file.source or input_file.path.name, "row": row})
            row += 1
