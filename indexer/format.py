"""The on-disk index format. This is the only module that knows file names, dtypes and the manifest.

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
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
# Manifest


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileInfo(_Model):
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ShardInfo(_Model):
    name: str = Field(pattern=r"^shard-\d{5}$")
    n_tokens: int = Field(ge=0, description="tokens in documents, separators excluded")
    n_docs: int = Field(ge=0)
    suffix_dtype: SuffixDtype
    files: dict[str, FileInfo]

    @property
    def n_positions(self) -> int:
        """Length of tokens.bin: the documents' tokens plus one separator per document."""
        return self.n_tokens + self.n_docs


class TokenizerInfo(_Model):
    kind: Literal["transformers", "none"]
    name: str = Field(description="what the user asked for: a builtin name, a path or a hub name")
    sha256: str | None = Field(default=None, description="sha256 of the stored tokenizer.json")
    vocab_size: int = Field(ge=1)


class InputInfo(_Model):
    path: str
    bytes: int = Field(ge=0)
    format: str


class Manifest(_Model):
    format_version: int
    taskgram_version: str
    created_at: str
    tokenizer: TokenizerInfo
    normalization: Normalization
    token_dtype: TokenDtype
    n_tokens: int = Field(ge=0)
    n_docs: int = Field(ge=0)
    shards: list[ShardInfo]
    inputs: list[InputInfo]
    build: dict[str, Any] = Field(default_factory=dict, description="the build configuration, verbatim")

    @property
    def separator_id(self) -> int:
        return separator_id(self.token_dtype)

    def identity(self) -> str:
        """The index identity: sha256 of this manifest in canonical JSON (sorted keys, no spaces). The
        manifest lists every file's sha256, so the identity changes whenever the index does; the service
        reports it (``GET /v1/indexes``), clients key their result caches on it and evaluation reports
        record it. This is the only place it is computed."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def read_manifest(index_dir: str | os.PathLike[str]) -> Manifest:
    """Load and validate ``manifest.json``; raise IndexFormatError saying what is wrong."""
    path = Path(index_dir) / MANIFEST_FILE
    if not Path(index_dir).is_dir():
        raise IndexFormatError(f"{index_dir}: not a directory")
    if not path.is_file():
        raise IndexFormatError(f"{index_dir}: no {MANIFEST_FILE}; the index is incomplete or not an index")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise IndexFormatError(f"{path}: unreadable manifest: {err}") from err
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if version != FORMAT_VERSION:
        raise IndexFormatError(
            f"{path}: format_version {version!r}, this taskgram reads format_version {FORMAT_VERSION}"
        )
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as err:
        raise IndexFormatError(f"{path}: invalid manifest: {err}") from err
    if sum(s.n_tokens for s in manifest.shards) != manifest.n_tokens:
        raise IndexFormatError(f"{path}: n_tokens does not equal the sum over shards")
    if sum(s.n_docs for s in manifest.shards) != manifest.n_docs:
        raise IndexFormatError(f"{path}: n_docs does not equal the sum over shards")
    return manifest


def write_manifest(index_dir: str | os.PathLike[str], manifest: Manifest) -> None:
    write_json_atomic(Path(index_dir) / MANIFEST_FILE, manifest.model_dump(mode="json"))


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def file_info(path: str | os.PathLike[str]) -> FileInfo:
    return FileInfo(bytes=os.path.getsize(path), sha256=sha256_file(path))


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


def _map(path: Path, dtype: str, expected_bytes: int | None) -> np.ndarray:
    if not path.is_file():
        raise IndexFormatError(f"{path}: missing")
    size = path.stat().st_size
    if expected_bytes is not None and size != expected_bytes:
        raise IndexFormatError(f"{path}: {size} bytes, the manifest says {expected_bytes}")
    itemsize = np.dtype(dtype).itemsize
    if size % itemsize:
        raise IndexFormatError(f"{path}: {size} bytes is not a whole number of {dtype} values")
    if size == 0:
        return np.zeros(0, dtype=dtype)
    arr = np.memmap(path, dtype=np.dtype(dtype).newbyteorder("<"), mode="r")
    return arr


def open_shard(index_dir: str | os.PathLike[str], manifest: Manifest, shard: ShardInfo) -> ShardArrays:
    """Map a shard read-only and check every array's length against the manifest (not the checksums:
    see :func:`verify_shard`)."""
    root = Path(index_dir) / shard.name
    missing = [name for name in SHARD_FILES if name not in shard.files]
    if missing:
        raise IndexFormatError(f"{root}: manifest lists no {', '.join(missing)}")
    sizes = {name: shard.files[name].bytes for name in SHARD_FILES}
    token_item = np.dtype(manifest.token_dtype).itemsize
    sa_item = np.dtype(shard.suffix_dtype).itemsize
    expected = {
        TOKENS_FILE: shard.n_positions * token_item,
        DOC_OFFSETS_FILE: (shard.n_docs + 1) * 8,
        SUFFIX_ARRAY_FILE: shard.n_tokens * sa_item,
    }
    for name, want in expected.items():
        if sizes[name] != want:
            raise IndexFormatError(
                f"{root / name}: the manifest says {sizes[name]} bytes, its counts imply {want}"
            )
    tokens = _map(root / TOKENS_FILE, manifest.token_dtype, sizes[TOKENS_FILE])
    doc_offsets = _map(root / DOC_OFFSETS_FILE, "uint64", sizes[DOC_OFFSETS_FILE])
    suffix_array = _map(root / SUFFIX_ARRAY_FILE, shard.suffix_dtype, sizes[SUFFIX_ARRAY_FILE])
    metadata_offsets = _map(root / METADATA_OFFSETS_FILE, "uint64", sizes[METADATA_OFFSETS_FILE])
    metadata_path = root / METADATA_FILE
    if not metadata_path.is_file() or metadata_path.stat().st_size != sizes[METADATA_FILE]:
        raise IndexFormatError(f"{metadata_path}: missing or not {sizes[METADATA_FILE]} bytes")
    if shard.n_docs and (int(doc_offsets[0]) != 0 or int(doc_offsets[-1]) != shard.n_positions):
        raise IndexFormatError(f"{root / DOC_OFFSETS_FILE}: does not span tokens.bin")
    return ShardArrays(tokens, doc_offsets, suffix_array, metadata_path, metadata_offsets)


def verify_shard(index_dir: str | os.PathLike[str], shard: ShardInfo) -> list[str]:
    """Compare every file of a shard with the manifest's size and sha256; return the problems found."""
    problems = []
    root = Path(index_dir) / shard.name
    for name, info in sorted(shard.files.items()):
        path = root / name
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        size = path.stat().st_size
        if size != info.bytes:
            problems.append(f"{path}: {size} bytes, the manifest says {info.bytes}")
        elif sha256_file(path) != info.sha256:
            problems.append(f"{path}: sha256 does not match the manifest")
    return problems


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
