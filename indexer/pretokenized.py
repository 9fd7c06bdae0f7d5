"""Pre-tokenized inputs: token ids that need no tokenizer.

Kinds (``build_index(..., pretokenized=KIND)``, ``taskgram build --pretokenized KIND``):

``megatron``
    A Megatron-LM / GPT-NeoX indexed dataset: ``PREFIX.bin`` (token ids) + ``PREFIX.idx``. The input may be
    given as ``PREFIX``, ``PREFIX.bin`` or ``PREFIX.idx``. ``.idx`` layout (little-endian)::

        b"MMIDIDX\\x00\\x00"  version u64 (=1)  dtype code u8  sequence_count u64  document_count u64
        sequence_lengths int32[sequence_count]  sequence_pointers int64[sequence_count] (bytes into .bin)
        document_indices int64[document_count]  (sequence index where each document starts, plus a final
        entry = sequence_count)  [sequence_modes int8[sequence_count], multimodal datasets only]

    dtype codes: 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 8 uint16 (6/7 are floats: refused). Document
    ``i`` is the concatenation of sequences ``document_indices[i] .. document_indices[i+1]-1``; the
    sequences must be stored back to back (as every Megatron writer does).
``npy``
    ``TOKENS.npy`` (1-D integer array) with document offsets in ``--offsets FILE`` or beside it as
    ``TOKENS.offsets.npy``.
``raw-u16`` / ``raw-u32``
    A flat little-endian file of uint16/uint32 ids with offsets in ``--offsets FILE`` or ``FILE.offsets``
    (little-endian uint64).

Document offsets (npy and raw): ``n_docs + 1`` non-decreasing token positions, the first 0, the last the
number of tokens; document ``i`` is ``tokens[offsets[i]:offsets[i+1]]``.

Token files are read in chunks (not memory-mapped), past the page cache where the file system allows
it, so reading adds little to the build's memory. Every id is checked against the vocabulary size (and
for negative values); a bad id is a ``CorpusError`` naming the file, the document and the position.
Document metadata: ``{"source": FILE, "doc": i}`` (FILE = the token file's name; 0-based document number
within that file).
"""

from __future__ import annotations

import glob
import json
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexer import directio
from indexer.corpus import CorpusError, DocBatch, ReadStats

MEGATRON_MAGIC = b"MMIDIDX\x00\x00"
MEGATRON_VERSION = 1
MEGATRON_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.uint8),
    2: np.dtype(np.int8),
    3: np.dtype(np.int16),
    4: np.dtype(np.int32),
    5: np.dtype(np.int64),
    8: np.dtype(np.uint16),
}
MEGATRON_FLOAT_CODES = {6: "float64", 7: "float32"}
BATCH_TOKENS = 4 << 20
DIRECT_READ_MIN_BYTES = 1 << 20  # smaller reads go through the page cache


@dataclass
class TokenFile:
    """One pre-tokenized input: where its ids are and where its documents start."""

    path: Path  # the token file
    display: str
    format: str
    bytes: int  # on-disk bytes of the token file plus its index/offsets file
    dtype: np.dtype  # on-disk dtype (little-endian)
    data_offset: int  # byte offset of token 0 in ``path``
    boundaries: np.ndarray  # int64 [n_docs + 1] token positions

    @property
    def n_docs(self) -> int:
        return len(self.boundaries) - 1

    @property
    def n_tokens(self) -> int:
        return int(self.boundaries[-1])

    def read(self, start: int, stop: int) -> np.ndarray:
        """Token ids ``[start, stop)`` (a fresh array). Large ranges are read past the page cache
        (:mod:`indexer.directio`): a build reads each range once."""
        count = stop - start
        size = self.dtype.itemsize
        offset = self.data_offset + start * size
        raw = (
            directio.read(self.path, offset, count * size) if count * size >= DIRECT_READ_MIN_BYTES else None
        )
        if raw is not None:
            data = raw[: len(raw) - len(raw) % size].view(self.dtype)
            if data.ctypes.data % size:  # an odd header length: the kernels want aligned ids
                data = data.copy()
        else:
            with open(self.path, "rb") as f:
                f.seek(offset)
                data = np.fromfile(f, dtype=self.dtype, count=count)
        if len(data) != count:
            raise CorpusError(
                self.display,
                None,
                "truncated_file",
                f"ends after {start + len(data)} tokens, expected {stop}",
            )
        return data


def _err(path: str | Path, reason: str, message: str) -> CorpusError:
    return CorpusError(str(path), None, reason, message)


def _check_boundaries(boundaries: np.ndarray, n_tokens: int, where: str) -> np.ndarray:
    if boundaries.ndim != 1 or len(boundaries) < 1:
        raise _err(where, "bad_offsets", "document offsets must be a 1-D array of n_docs + 1 positions")
    if boundaries.dtype.kind not in "iu":
        raise _err(where, "bad_offsets", f"document offsets must be integers, not {boundaries.dtype}")
    b = boundaries.astype(np.int64)
    if b[0] != 0:
        raise _err(where, "bad_offsets", f"the first document offset is {int(b[0])}, expected 0")
    if b[-1] != n_tokens:
        raise _err(
            where, "bad_offsets", f"the last document offset is {int(b[-1])}, the token file has {n_tokens}"
        )
    steps = np.diff(b)
    if len(steps) and steps.min() < 0:
        bad = int(np.argmax(steps < 0))
        raise _err(where, "bad_offsets", f"document offsets decrease at entry {bad + 1}")
    return b


# --------------------------------------------------------------------------------------------------
# Megatron


def _megatron_paths(item: Path) -> tuple[Path, Path]:
    text = str(item)
    for suffix in (".bin", ".idx"):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    return Path(text + ".bin"), Path(text + ".idx")


def read_megatron(item: str | os.PathLike[str]) -> TokenFile:
    bin_path, idx_path = _megatron_paths(Path(item))
    for p in (bin_path, idx_path):
        if not p.is_file():
            raise _err(p, "no_input", "missing (a Megatron dataset is PREFIX.bin + PREFIX.idx)")
    idx_size = idx_path.stat().st_size
    head_size = len(MEGATRON_MAGIC) + 8 + 1 + 8 + 8
    with open(idx_path, "rb") as f:
        head = f.read(head_size)
        if len(head) < len(MEGATRON_MAGIC) or head[: len(MEGATRON_MAGIC)] != MEGATRON_MAGIC:
            raise _err(
                idx_path,
                "bad_header",
                f"not a Megatron index: bad magic {head[:9]!r}, expected {MEGATRON_MAGIC!r}",
            )
        if len(head) < head_size:
            raise _err(idx_path, "bad_header", f"truncated header ({len(head)} of {head_size} bytes)")
        version, code, n_seq, n_doc_idx = struct.unpack("<QBQQ", head[len(MEGATRON_MAGIC) :])
        if version != MEGATRON_VERSION:
            raise _err(idx_path, "bad_header", f"header version {version}, expected {MEGATRON_VERSION}")
        if code in MEGATRON_FLOAT_CODES:
            raise _err(
                idx_path, "bad_header", f"dtype code {code} ({MEGATRON_FLOAT_CODES[code]}) is not token ids"
            )
        if code not in MEGATRON_DTYPES:
            raise _err(idx_path, "bad_header", f"unknown dtype code {code}")
        if n_doc_idx < 1:
            raise _err(idx_path, "bad_header", "document count 0 (the document index has at least one entry)")
        need = head_size + n_seq * (4 + 8) + n_doc_idx * 8
        if idx_size not in (need, need + n_seq):
            raise _err(
                idx_path,
                "bad_header",
                f"{idx_size} bytes, but the header's counts ({n_seq} sequences, {n_doc_idx} document "
                f"entries) imply {need}",
            )
        sizes = np.fromfile(f, dtype="<i4", count=n_seq).astype(np.int64)
        pointers = np.fromfile(f, dtype="<i8", count=n_seq)
        doc_idx = np.fromfile(f, dtype="<i8", count=n_doc_idx)
    dtype = MEGATRON_DTYPES[code].newbyteorder("<")
    item_size = dtype.itemsize
    if n_seq and sizes.min() < 0:
        raise _err(idx_path, "bad_index", f"negative sequence length at sequence {int(np.argmax(sizes < 0))}")
    expected_ptr = np.zeros(n_seq, dtype=np.int64)
    if n_seq:
        expected_ptr[1:] = np.cumsum(sizes[:-1]) * item_size
    if not np.array_equal(pointers, expected_ptr):
        bad = int(np.argmax(pointers != expected_ptr))
        raise _err(
            idx_path,
            "bad_index",
            f"sequence {bad} starts at byte {int(pointers[bad])}, expected {int(expected_ptr[bad])} "
            "(sequences must be stored back to back from byte 0)",
        )
    total = int(sizes.sum())
    bin_size = bin_path.stat().st_size
    if bin_size != total * item_size:
        raise _err(bin_path, "bad_index", f"{bin_size} bytes, the index describes {total * item_size}")
    if doc_idx[0] != 0 or doc_idx[-1] != n_seq or (len(doc_idx) > 1 and np.diff(doc_idx).min() < 0):
        raise _err(idx_path, "bad_index", "document indices must rise from 0 to the sequence count")
    seq_starts = np.zeros(n_seq + 1, dtype=np.int64)
    np.cumsum(sizes, out=seq_starts[1:])
    boundaries = seq_starts[doc_idx]
    return TokenFile(
        path=bin_path,
        display=str(bin_path),
        format="megatron",
        bytes=bin_size + idx_size,
        dtype=dtype,
        data_offset=0,
        boundaries=boundaries,
    )


# --------------------------------------------------------------------------------------------------
# npy and raw


def _offsets_from(path: Path) -> np.ndarray:
    if not path.is_file():
        raise _err(path, "no_input", "document offsets file missing (give --offsets)")
    if path.suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise _err(path, "bad_offsets", f"not a readable .npy array: {err}") from err
    size = path.stat().st_size
    if size % 8:
        raise _err(path, "bad_offsets", f"{size} bytes is not a whole number of uint64 offsets")
    return np.fromfile(path, dtype="<u8")


def read_npy(path: str | os.PathLike[str], offsets: str | os.PathLike[str] | None) -> TokenFile:
    path = Path(path)
    if not path.is_file():
        raise _err(path, "no_input", "no such file")
    offsets_path = (
        Path(offsets) if offsets is not None else path.with_name(path.name[: -len(".npy")] + ".offsets.npy")
    )
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        except ValueError as err:
            raise _err(path, "bad_header", f"not a .npy file: {err}") from err
        data_offset = f.tell()
    if len(shape) != 1 or dtype.kind not in "iu":
        raise _err(path, "bad_header", f"expected a 1-D integer array, got shape {shape} of {dtype}")
    if dtype.byteorder == ">" or (dtype.byteorder == "=" and np.little_endian is False):
        raise _err(path, "bad_header", "big-endian arrays are not supported")
    n = int(shape[0])
    if path.stat().st_size < data_offset + n * dtype.itemsize:
        raise _err(path, "truncated_file", f"holds fewer than the {n} values its header announces")
    boundaries = _check_boundaries(_offsets_from(offsets_path), n, str(offsets_path))
    return TokenFile(
        path=path,
        display=str(path),
        format="npy",
        bytes=path.stat().st_size + offsets_path.stat().st_size,
        dtype=dtype.newbyteorder("<"),
        data_offset=data_offset,
        boundaries=boundaries,
    )


def read_raw(path: str | os.PathLike[str], kind: str, offsets: str | os.PathLike[str] | None) -> TokenFile:
    path = Path(path)
    if not path.is_file():
        raise _err(path, "no_input", "no such file")
    dtype = np.dtype("<u2" if kind == "raw-u16" else "<u4")
    size = path.stat().st_size
    if size % dtype.itemsize:
        raise _err(path, "truncated_file", f"{size} bytes is not a whole number of {kind[4:]} tokens")
    offsets_path = Path(offsets) if offsets is not None else path.with_name(path.name + ".offsets")
    boundaries = _check_boundaries(_offsets_from(offsets_path), size // dtype.itemsize, str(offsets_path))
    return TokenFile(
        path=path,
        display=str(path),
        format=kind,
        bytes=size + offsets_path.stat().st_size,
        dtype=dtype,
        data_offset=0,
        boundaries=boundaries,
    )


# --------------------------------------------------------------------------------------------------
# The source the pipeline reads


@dataclass
class PretokenizedSource:
    files: list[TokenFile]

    @property
    def n_tokens(self) -> int:
        return sum(f.n_tokens for f in self.files)

    @property
    def n_docs(self) -> int:
        return sum(f.n_docs for f in self.files)

    def batches(
        self,
        vocab_size: int,
        *,
        skip_docs: int = 0,
        stats: ReadStats | None = None,
        on_tokens: Callable[[int], None] | None = None,
        batch_tokens: int = BATCH_TOKENS,
    ) -> Iterator[DocBatch]:
        """Documents in batches of about ``batch_tokens`` tokens, after skipping ``skip_docs`` documents."""
        stats = stats if stats is not None else ReadStats()
        to_skip = skip_docs
        for tf in self.files:
            b = tf.boundaries
            first = min(to_skip, tf.n_docs)
            to_skip -= first
            stats.docs += first
            stats.empty_docs += int(np.count_nonzero(np.diff(b[: first + 1]) == 0))
            if on_tokens is not None and first:
                on_tokens(int(b[first]))
            doc = first
            while doc < tf.n_docs:
                # as many documents as fit in batch_tokens (at least one)
                last = int(np.searchsorted(b, b[doc] + batch_tokens, side="right")) - 1
                last = min(max(last, doc + 1), tf.n_docs)
                start, stop = int(b[doc]), int(b[last])
                tokens = tf.read(start, stop)
                check_ids(tokens, vocab_size, tf, start)
                lengths = np.diff(b[doc : last + 1])
                metadata = [doc_metadata(tf, i) for i in range(doc, last)]
                stats.docs += last - doc
                stats.empty_docs += int(np.count_nonzero(lengths == 0))
                if on_tokens is not None:
                    on_tokens(stop - start)
                yield DocBatch(tokens, lengths, metadata)
                doc = last


def doc_metadata(tf: TokenFile, doc: int) -> dict[str, Any]:
    """The metadata record of document ``doc`` of a token file (named by its file name: the absolute
    path is only in the manifest)."""
    return {"source": tf.path.name, "doc": doc}


def metadata_lines(tf: TokenFile, lo: int, hi: int) -> bytes:
    """The metadata records of documents ``[lo, hi)`` as JSON lines (the build's spool format)."""
    dumps = json.dumps
    return "".join(dumps(doc_metadata(tf, i), separators=(",", ":")) + "\n" for i in range(lo, hi)).encode()


def check_ids(tokens: np.ndarray, vocab_size: int, tf: TokenFile, start: int) -> None:
    """Raise CorpusError (naming the file, document and position) for a negative id or one beyond the
    vocabulary in ``tokens``, which start at token ``start`` of ``tf``."""
    if not len(tokens):
        return
    bad_mask = None
    if tokens.dtype.kind == "i" and int(tokens.min()) < 0:
        bad_mask = tokens < 0
        what = "negative token id"
    elif int(tokens.max()) >= vocab_size:
        bad_mask = tokens >= vocab_size
        what = "token id beyond the vocabulary"
    if bad_mask is None:
        return
    pos = start + int(np.argmax(bad_mask))
    doc = int(np.searchsorted(tf.boundaries, pos, side="right")) - 1
    value = int(tokens[pos - start])
    raise CorpusError(
        tf.display,
        None,
        "token_out_of_range",
        f"document {doc} (token {pos - int(tf.boundaries[doc])}, file position {pos}): {what} "
        f"{value}, vocabulary size {vocab_size}",
    )


def _expand(inputs: Sequence[str | os.PathLike[str]]) -> list[str]:
    out: list[str] = []
    for item in inputs:
        text = str(item)
        if not Path(text).exists() and glob.has_magic(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise _err(text, "no_input", "the pattern matches no file")
            out.extend(matches)
        else:
            out.append(text)
    return out


def open_sources(
    inputs: Sequence[str | os.PathLike[str]],
    kind: str,
    *,
    offsets: Sequence[str | os.PathLike[str]] | None = None,
) -> PretokenizedSource:
    """Open pre-tokenized inputs of one kind; ``offsets`` (npy/raw) gives one offsets file per input."""
    items = _expand(inputs)
    if not items:
        raise _err("<inputs>", "no_input", "no input files given")
    if kind == "megatron":
        if offsets:
            raise _err("--offsets", "bad_option", "Megatron datasets carry their own document index")
        seen: dict[Path, None] = {}
        for item in items:
            seen.setdefault(_megatron_paths(Path(item))[0], None)
        return PretokenizedSource([read_megatron(p) for p in seen])
    if offsets is not None and len(offsets) not in (0, len(items)):
        raise _err("--offsets", "bad_option", f"{len(offsets)} offsets files for {len(items)} inputs")
    offs: list[str | os.PathLike[str] | None] = list(offsets) if offsets else [None] * len(items)
    if kind == "npy":
        return PretokenizedSource([read_npy(p, o) for p, o in zip(items, offs, strict=True)])
    if kind in ("raw-u16", "raw-u32"):
        return PretokenizedSource([read_raw(p, kind, o) for p, o in zip(items, offs, strict=True)])
    raise _err("--pretokenized", "bad_option", f"unknown kind {kind!r}")
