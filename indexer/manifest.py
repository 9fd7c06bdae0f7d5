"""The index manifest (``manifest.json``): its pydantic models, reading and writing it, and opening and
verifying a shard against it.

The rest of the format (file names, dtypes, shard arrays, metadata) is :mod:`indexer.format`, which does
not import pydantic: a build's start-up does without it, and the first shard's writer thread imports this
module while the suffix array is being sorted.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from indexer.format import (
    DOC_OFFSETS_FILE,
    FORMAT_VERSION,
    MANIFEST_FILE,
    METADATA_FILE,
    METADATA_OFFSETS_FILE,
    SHARD_FILES,
    SUFFIX_ARRAY_FILE,
    TOKENS_FILE,
    IndexFormatError,
    Normalization,
    ShardArrays,
    SuffixDtype,
    TokenDtype,
    separator_id,
    sha256_file,
    write_json_atomic,
)

__all__ = [
    "FileInfo",
    "InputInfo",
    "Manifest",
    "ShardInfo",
    "TokenizerInfo",
    "file_info",
    "open_shard",
    "read_manifest",
    "verify_shard",
    "write_manifest",
]


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


def file_info(path: str | os.PathLike[str]) -> FileInfo:
    return FileInfo(bytes=os.path.getsize(path), sha256=sha256_file(path))


# --------------------------------------------------------------------------------------------------
# Shards, checked against the manifest


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
