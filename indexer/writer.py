"""Atomic, resumable writing of shards.

A shard is written into ``shard-NNNNN.partial/``: every file fsynced and hashed (sha256, computed while
writing, so nothing is read back), then a done-record ``shard.json`` (the shard's ``ShardInfo`` plus the
build fingerprint), then the folder is renamed to ``shard-NNNNN/`` with ``os.replace``. A crash at any point
leaves either a ``.partial`` folder (removed by the next run) or a complete shard with its done-record. The
manifest is written last by the pipeline, so an index directory without it never opens.

Build bookkeeping (not part of the index format, ignored by readers): ``shard.json`` in each shard and
``build-state.json`` in the index folder while a build is unfinished.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from indexer import directio
from indexer.errors import IndexerError
from indexer.format import (
    DOC_OFFSETS_FILE,
    MANIFEST_FILE,
    METADATA_FILE,
    METADATA_OFFSETS_FILE,
    SHARD_FILES,
    SUFFIX_ARRAY_FILE,
    TOKENIZER_FILE,
    TOKENS_FILE,
    SuffixDtype,
    fsync_dir,
    shard_dir_name,
    write_json_atomic,
    write_metadata,
)

if TYPE_CHECKING:
    from indexer.manifest import FileInfo, ShardInfo

DONE_RECORD = "shard.json"
BUILD_STATE = "build-state.json"
PARTIAL_SUFFIX = ".partial"
METADATA_SPOOL = "metadata.spool.jsonl"
PIECES_DIR = "pieces"  # tokenized text spooled by a build (indexer.shardwork), removed when it is published
WRITE_CHUNK_BYTES = 8 << 20
# Files of at least this size are written past the page cache (indexer.directio).
DIRECT_MIN_BYTES = 32 << 20

ProgressFn = Callable[[int], None]


class IndexWriteError(IndexerError):
    """The output folder cannot be written as asked (e.g. it holds a different index)."""


def _write_array(
    path: Path, arr: np.ndarray, dtype: str, progress: ProgressFn | None, *, fsync: bool = True
) -> FileInfo:
    """Write ``arr`` as little-endian ``dtype``, fsync (unless told not to), and return its size and
    sha256. Large arrays bypass the page cache where the file system allows it: the build never reads
    a shard's files back (see :mod:`indexer.directio`)."""
    # Here rather than at the top: the manifest's models import pydantic (0.08 s), and the first array
    # a build writes is a shard's tokens, on the writer thread while the suffix array is sorted.
    from indexer.manifest import FileInfo

    data = np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder("<")).view(np.uint8)
    if len(data) >= DIRECT_MIN_BYTES:
        sha256 = directio.write(path, data, progress, fsync=fsync)
        if sha256 is not None:
            return FileInfo(bytes=len(data), sha256=sha256)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for start in range(0, len(data), WRITE_CHUNK_BYTES):
            chunk = data[start : start + WRITE_CHUNK_BYTES].data
            digest.update(chunk)
            f.write(chunk)
            if progress is not None:
                progress(len(chunk))
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    return FileInfo(bytes=len(data), sha256=digest.hexdigest())


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


class ShardWriter:
    """Collects one shard's metadata while it is read, then writes the shard atomically: the corpus
    files first (:meth:`write_corpus`, which may overlap the sort), then the suffix array (:meth:`finish`),
    which publishes the shard or leaves that to :func:`publish_written_shard`."""

    def __init__(self, index_dir: Path, shard_index: int) -> None:
        self.index_dir = index_dir
        self.name = shard_dir_name(shard_index)
        self.partial = index_dir / (self.name + PARTIAL_SUFFIX)
        if self.partial.exists():
            shutil.rmtree(self.partial)
        self.partial.mkdir(parents=True)
        self._spool: IO[str] | None = open(self.partial / METADATA_SPOOL, "w", encoding="utf-8")  # noqa: SIM115
        self.n_metadata = 0
        self._corpus: tuple[int, int, dict[str, FileInfo]] | None = None  # set by write_corpus

    def add_metadata(self, records: list[dict[str, Any]]) -> None:
        if self._spool is None:
            raise RuntimeError("shard already written")
        for record in records:
            self._spool.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
            self._spool.write("\n")
        self.n_metadata += len(records)

    def add_metadata_lines(self, lines: bytes, count: int) -> None:
        """Add ``count`` metadata records already serialized as JSON lines (as ``add_metadata`` writes)."""
        if self._spool is None:
            raise RuntimeError("shard already written")
        self._spool.write(lines.decode("utf-8"))
        self.n_metadata += count

    def _spooled(self) -> Iterator[dict[str, Any]]:
        with open(self.partial / METADATA_SPOOL, encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)

    def write_corpus(
        self,
        tokens: np.ndarray,
        token_dtype: str,
        doc_offsets: np.ndarray,
        progress: ProgressFn | None = None,
    ) -> None:
        """Write every file but the suffix array: tokens, document offsets and metadata (fsynced and
        hashed). Reads nothing the sort writes, so a build runs it in a thread while the suffix array
        is sorted."""
        if self._spool is None or self._corpus is not None:
            raise RuntimeError("shard already written")
        n_docs = len(doc_offsets) - 1
        if self.n_metadata != n_docs:
            raise RuntimeError(f"{self.name}: {self.n_metadata} metadata records for {n_docs} documents")
        self._spool.close()
        self._spool = None
        files = {
            TOKENS_FILE: _write_array(self.partial / TOKENS_FILE, tokens, token_dtype, progress),
            DOC_OFFSETS_FILE: _write_array(self.partial / DOC_OFFSETS_FILE, doc_offsets, "uint64", progress),
        }
        write_metadata(self._spooled(), self.partial / METADATA_FILE, self.partial / METADATA_OFFSETS_FILE)
        _fsync_file(self.partial / METADATA_OFFSETS_FILE)
        (self.partial / METADATA_SPOOL).unlink()
        from indexer.manifest import file_info  # see _write_array

        for name in (METADATA_FILE, METADATA_OFFSETS_FILE):
            files[name] = file_info(self.partial / name)
        self._corpus = (len(tokens) - n_docs, n_docs, files)

    def finish(
        self,
        suffix_array: np.ndarray,
        *,
        fingerprint: str,
        record: dict[str, Any],
        progress: ProgressFn | None = None,
        publish: bool = True,
    ) -> ShardInfo:
        """Write the suffix array and the done-record (after :meth:`write_corpus`), and publish the
        shard; return its ShardInfo.

        With ``publish=False`` the suffix array is written and hashed but neither fsynced nor published:
        the shard stays in its ``.partial`` folder until :func:`publish_written_shard` (called by any
        process on this machine) syncs and publishes it, so the next sort need not wait for the disk."""
        if self._corpus is None:
            raise RuntimeError(f"{self.name}: write_corpus must come first")
        n_tokens, n_docs, files = self._corpus
        if len(suffix_array) != n_tokens:
            raise RuntimeError(f"{self.name}: suffix array of {len(suffix_array)} for {n_tokens} tokens")
        suffix_dtype: SuffixDtype = "uint32" if suffix_array.dtype == np.uint32 else "uint64"
        files[SUFFIX_ARRAY_FILE] = _write_array(
            self.partial / SUFFIX_ARRAY_FILE, suffix_array, suffix_dtype, progress, fsync=publish
        )
        from indexer.manifest import ShardInfo  # see _write_array

        info = ShardInfo(
            name=self.name,
            n_tokens=n_tokens,
            n_docs=n_docs,
            suffix_dtype=suffix_dtype,
            files={name: files[name] for name in SHARD_FILES},
        )
        if publish:
            _publish(self.index_dir, info, fingerprint, record)
        return info

    def abort(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        shutil.rmtree(self.partial, ignore_errors=True)


def publish_written_shard(index_dir: Path, info: ShardInfo, fingerprint: str, record: dict[str, Any]) -> None:
    """Sync and publish a shard that :meth:`ShardWriter.finish` wrote with ``publish=False``: fsync its
    suffix array (the other files were synced when written), write the done-record, and rename the
    folder into place. fsync of a newly opened file flushes what any process wrote to it."""
    partial = index_dir / (info.name + PARTIAL_SUFFIX)
    if not (partial / SUFFIX_ARRAY_FILE).is_file():
        raise IndexWriteError(f"{partial}: the shard's suffix array is missing; rerun the build")
    _fsync_file(partial / SUFFIX_ARRAY_FILE)
    _publish(index_dir, info, fingerprint, record)


def _publish(index_dir: Path, info: ShardInfo, fingerprint: str, record: dict[str, Any]) -> None:
    """Write the done-record into the shard's synced ``.partial`` folder and rename it into place."""
    partial = index_dir / (info.name + PARTIAL_SUFFIX)
    final = index_dir / info.name
    done = {"fingerprint": fingerprint, "shard": info.model_dump(mode="json"), **record}
    write_json_atomic(partial / DONE_RECORD, done)
    fsync_dir(partial)
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
    fsync_dir(index_dir)


def read_done_shard(
    index_dir: Path, shard_index: int, fingerprint: str
) -> tuple[ShardInfo, dict[str, Any]] | None:
    """A finished shard of this build (done-record present, same fingerprint, files of the recorded
    sizes), or None when the shard must be (re)built."""
    root = index_dir / shard_dir_name(shard_index)
    try:
        done = json.loads((root / DONE_RECORD).read_text(encoding="utf-8"))
        if done.get("fingerprint") != fingerprint:
            return None
        from indexer.manifest import ShardInfo  # see _write_array: only for a shard that may be kept

        info = ShardInfo.model_validate(done["shard"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if info.name != root.name:
        return None
    for name in SHARD_FILES:
        path = root / name
        if name not in info.files or not path.is_file() or path.stat().st_size != info.files[name].bytes:
            return None
    return info, done


def remove_partials(index_dir: Path) -> list[str]:
    """Remove unfinished shard folders and temporary files left by an interrupted build."""
    removed = []
    for path in sorted(index_dir.glob("shard-*" + PARTIAL_SUFFIX)):
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    for path in sorted(index_dir.glob("*.tmp")):
        path.unlink()
        removed.append(path.name)
    return removed


def is_build_entry(name: str) -> bool:
    """Whether a name in an index folder is something a build writes (and ``--force`` may remove)."""
    if name in (MANIFEST_FILE, TOKENIZER_FILE, BUILD_STATE, PIECES_DIR) or name.endswith(".tmp"):
        return True
    if name.startswith("shard-"):
        stem = name[: -len(PARTIAL_SUFFIX)] if name.endswith(PARTIAL_SUFFIX) else name
        return stem[len("shard-") :].isdigit()
    return False


def clear_index_dir(index_dir: Path) -> None:
    """Remove what a previous build wrote (manifest first, so no half-removed index ever opens)."""
    manifest = index_dir / MANIFEST_FILE
    if manifest.exists():
        manifest.unlink()
        fsync_dir(index_dir)
    for entry in sorted(index_dir.iterdir()):
        if not is_build_entry(entry.name):
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    fsync_dir(index_dir)


def remove_shards_from(index_dir: Path, first_unused: int) -> None:
    """Remove shard folders numbered ``first_unused`` and above (left from an earlier, larger build)."""
    for entry in index_dir.glob("shard-*"):
        stem = entry.name[len("shard-") :]
        if stem.isdigit() and int(stem) >= first_unused and entry.is_dir():
            shutil.rmtree(entry)
