"""The on-disk index format: file names, dtypes, shard arrays and metadata. The manifest's models are
:mod:`indexer.manifest` (pydantic, which this module does not import).

An index is a directory::

    INDEX_DIR/
      manifest.json              written last; an index without it is incomplete and never opened
      tokenizer.json             copy of the tokenizer used to build (absent for id-only indexes)
      shard-00000/
        tokens.bin               token ids (uint16 or uint32, little-endian); every document is
                                 followed by the separator id (the dtype's maximum value)
        doc_offsets.bin          uint64 [n_docs + 1]: position of each document's first token in
                                 tokens.bin; the last entry is the length of tokens.bin in tokens
        suffix_array.bin         uint32 (uint64 for shards of 2^32 tokens or more): the positions of all
                                 non-separator tokens, sorted by the suffix that starts there
                                 (plain lexicographic order of the token values, separators included)
        metadata.zst             document metadata, JSON lines in independent zstd frames of
                                 METADATA_BLOCK_DOCS documents each
        metadata_offsets.bin     uint64 [n_blocks + 1]: byte offset of each frame in metadata.zst

Document ``i`` of a shard is ``tokens[doc_offsets[i] : doc_offsets[i + 1] - 1]``. Queries never contain the
separator, so no match crosses a document boundary. Counts of several shards add up.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zstandard

from indexer.errors import IndexerError

# the atomic writers of the whole project; the index's writers import them from here
from taskgram.files import fsync_dir as fsync_dir
from taskgram.files import write_json_atomic as write_json_atomic

FORMAT_VERSION = 1

MANIFEST_FILE = "manifest.json"
TOKENIZER_FILE = "tokenizer.json"
TOKENS_FILE = "tokens.bin"
DOC_OFFSETS_FILE = "doc_offsets.bin"
SUFFIX_ARRAY_FILE = "suffix_array.bin"
METADATA_FILE = "metadata.zst"
METADATA_OFFSETS_FILE = "metadata_offsets.bin"
SHARD_FILES = (TOKENS_FILE, DOC_OFFSETS_FILE, SUFFIX_ARRAY_FILE, METADATA_FILE, METADATA_OFFSETS_FILE)

METADATA_BLOCK_DOCS = 1024
HASH_CHUNK_BYTES = 8 << 20

TokenDtype = Literal["uint16", "uint32"]
SuffixDtype = Literal["uint32", "uint64"]
Normalization = Literal["none", "lower", "nfkc", "nfkc-lower"]


class IndexFormatError(IndexerError):
    """The index directory is missing, incomplete, corrupt or of an incompatible format."""


def shard_dir_name(shard_index: int) -> str:
    return f"shard-{shard_index:05d}"


def token_dtype_for_vocab(vocab_size: int) -> TokenDtype:
    """uint16 when every id and the separator (the dtype maximum) fit, else uint32."""
    if vocab_size <= np.iinfo(np.uint16).max:
        return "uint16"
    if vocab_size <= np.iinfo(np.uint32).max:
        return "uint32"
    raise ValueError(f"vocabulary of {vocab_size} tokens does not fit in uint32 token ids")


def separator_id(token_dtype: TokenDtype) -> int:
    return int(np.iinfo(np.dtype(token_dtype)).max)


def suffix_dtype_for_length(n_positions: int) -> SuffixDtype:
    """The suffix-array dtype of a shard of ``n_positions`` token positions (the one place of this rule;
    the suffix-array kernel's output follows it)."""
    return "uint32" if n_positions < 2**32 else "uint64"


# --------------------------------------------------------------------------------------------------
# Checksums


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------
# Shard arrays


@dataclass(frozen=True)
class ShardArrays:
    """Read-only memory maps of one shard (the arrays the kernels take)."""

    tokens: np.ndarray
    doc_offsets: np.ndarray
    suffix_array: np.ndarray
    metadata_path: Path
    metadata_offsets: np.ndarray


# --------------------------------------------------------------------------------------------------
# Document metadata: JSON lines in independent zstd frames, so one document's record is one small read.


def write_metadata(
    records: Iterable[dict[str, Any]],
    metadata_path: str | os.PathLike[str],
    offsets_path: str | os.PathLike[str],
) -> int:
    """Write metadata records (one per document, in document order); return how many were written."""
    compressor = zstandard.ZstdCompressor(level=10)
    offsets = [0]
    count = 0
    block: list[str] = []
    with open(metadata_path, "wb") as out:

        def flush() -> None:
            frame = compressor.compress(("\n".join(block) + "\n").encode("utf-8"))
            out.write(frame)
            offsets.append(offsets[-1] + len(frame))
            block.clear()

        for record in records:
            block.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
            count += 1
            if len(block) == METADATA_BLOCK_DOCS:
                flush()
        if block:
            flush()
        out.flush()
        os.fsync(out.fileno())
    np.asarray(offsets, dtype="<u8").tofile(offsets_path)
    return count


def read_metadata(shard: ShardArrays, doc_index: int) -> dict[str, Any]:
    """The metadata record of document ``doc_index`` (0-based, within the shard)."""
    block, line = divmod(doc_index, METADATA_BLOCK_DOCS)
    if not 0 <= block < len(shard.metadata_offsets) - 1:
        raise IndexError(f"document {doc_index} is out of range")
    start, end = int(shard.metadata_offsets[block]), int(shard.metadata_offsets[block + 1])
    with open(shard.metadata_path, "rb") as f:
        f.seek(start)
        frame = f.read(end - start)
    lines = zstandard.ZstdDecompressor().decompress(frame).decode("utf-8").split("\n")
    return json.loads(lines[line])


def iter_metadata(shard: ShardArrays) -> Iterator[dict[str, Any]]:
    decompressor = zstandard.ZstdDecompressor()
    with open(shard.metadata_path, "rb") as f:
        for block in range(len(shard.metadata_offsets) - 1):
            start, end = int(shard.metadata_offsets[block]), int(shard.metadata_offsets[block + 1])
            f.seek(start)
            text = decompressor.decompress(f.read(end - start)).decode("utf-8")
            for line in text.split("\n")[:-1]:
                yield json.loads(line)
