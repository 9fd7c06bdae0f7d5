"""The work of a build, cut into tasks that any process (a local worker or a Ray task) can run.

A build has two kinds of tasks, both pure functions of a picklable :class:`BuildSpec` and their own
arguments, writing only their own files in the output folder:

* **tokenize a piece** (text inputs only): a block of whole JSON lines (about ``PIECE_BYTES``), a range
  of Parquet row groups or Arrow record batches, or one text file. The piece's token ids, document
  lengths and metadata lines are spooled into ``pieces/`` with a done-record written last.
* **build a shard**: read its documents (from spooled pieces, or straight from pre-tokenized token files),
  place them with separators, sort the suffix array, then write, hash and publish the shard atomically
  (``indexer.writer``); a local build leaves the last sync and the publishing to :func:`publish_shard`,
  run by the driver while the worker sorts its next shard. A shard whose done-record matches is kept as
  it is.

The shard plan (:class:`ShardPlanner`) fills shards with documents in input order, exactly as a single
reader would, from the token counts of the pieces; so the shard files depend on the inputs and options
only, never on how many workers ran the tasks or in what order they finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indexer import writer
from indexer.corpus import (
    COLUMNAR_FORMATS,
    CorpusError,
    InputFile,
    ReadStats,
    TextDocument,
    columnar_units,
    iter_block_documents,
    iter_columnar_documents,
    iter_line_blocks,
    iter_text_documents,
)
from indexer.errors import IndexerError
from indexer.format import TokenDtype, separator_id, write_json_atomic
from indexer.tokenize import normalize_text
from taskgram.progress import progress_bar

PIECES_DIR = writer.PIECES_DIR
PIECE_BYTES = 4 << 20  # text bytes of one tokenize task (small: the last pieces end unevenly)
ENCODE_BATCH_BYTES = 2 << 20  # tokenizer Encodings cost ~100+ bytes per token while a batch is live
READ_TOKENS = 4 << 20  # token ids read from a file at a time while a shard is filled

# The worker that runs the tasks of this process, for progress output ("main", "worker 2", "ray 1234").
_WORKER = {"label": "main"}
# The shard buffers and sort work arrays this process keeps between its shards (None: it frees them).
_KEPT: dict[str, Any] = {"workspace": None}


def worker_label() -> str:
    return _WORKER["label"]


def keep_shard_buffers(keep: bool) -> None:
    """Whether this process keeps a shard's token buffer and sort work arrays for its next shard (about
    9 bytes per position of the largest shard it built) instead of faulting fresh memory in for each.
    Only for a process that counts as one of the budget's shard slots; ``False`` frees them."""
    if not keep:
        _KEPT["workspace"] = None
    elif _KEPT["workspace"] is None:
        from indexer.kernels import Workspace

        _KEPT["workspace"] = Workspace()


def init_worker(label: str, numba_threads: int, *, keep_buffers: bool = False) -> None:
    """Set up a worker process: its label, one tokenizer thread, its share of the numba threads, and
    whether it keeps its shard buffers between shards (:func:`keep_shard_buffers`)."""
    _WORKER["label"] = label
    keep_shard_buffers(keep_buffers)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["RAYON_NUM_THREADS"] = "1"
    if "numba" not in sys.modules:  # numba starts NUMBA_NUM_THREADS threads, read at its import
        os.environ["NUMBA_NUM_THREADS"] = str(max(1, numba_threads))
    _set_numba_threads(numba_threads)


def _set_numba_threads(threads: int) -> int:
    """Let this thread's numba kernels use ``threads`` threads (at least 1, at most the ones numba
    started); return the count it had."""
    import numba

    before = int(numba.get_num_threads())
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
    return before


@contextlib.contextmanager
def numba_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` numba threads in this thread (None: unchanged), then restore the
    count. A worker's share is ``cores // workers``; a shard sorted while the other workers are idle may
    use every core for the sort's parallel passes."""
    if threads is None:
        yield
        return
    before = _set_numba_threads(threads)
    try:
        yield
    finally:
        _set_numba_threads(before)


@dataclass(frozen=True)
class BuildSpec:
    """What every task of one build needs to know (picklable; the same for every worker)."""

    output: Path
    fingerprint: str
    token_dtype: TokenDtype
    vocab_size: int
    capacity: int
    text_field: str = "text"
    normalization: str = "none"
    skip_bad_lines: bool = False
    tokenizer_json: str | None = None
    progress: bool = False


# --------------------------------------------------------------------------------------------------
# Pieces (text inputs)


@dataclass(frozen=True)
class Piece:
    """One tokenize task: a block of JSON lines (``data``), a range of columnar units, or a text file."""

    index: int
    file_no: int
    file: InputFile
    first_line: int = 1
    data: bytes | None = None
    units: tuple[int, int] | None = None

    @property
    def key(self) -> dict[str, Any]:
        """What identifies the piece's content, checked before a spooled piece is reused."""
        size = len(self.data) if self.data is not None else None
        return {"file": self.file_no, "first_line": self.first_line, "bytes": size, "units": self.units}

    @property
    def text_bytes(self) -> int:
        return len(self.data) if self.data is not None else 0

    def describe(self) -> str:
        if self.data is not None:
            return f"{self.file.display}:{self.first_line}"
        if self.units is not None:
            return f"{self.file.display} row groups {self.units[0]}..{self.units[1] - 1}"
        return self.file.display


def iter_pieces(files: list[InputFile], on_bytes: Callable[[int], None] | None = None) -> Iterator[Piece]:
    """The pieces of the text inputs, in input order (they depend on the inputs only)."""
    index = 0
    for file_no, input_file in enumerate(files):
        if input_file.format in COLUMNAR_FORMATS:
            units = columnar_units(input_file)
            start, size = 0, 0
            for i, (_rows, nbytes) in enumerate(units):
                size += nbytes
                if size >= PIECE_BYTES or i == len(units) - 1:
                    yield Piece(index, file_no, input_file, units=(start, i + 1))
                    index += 1
                    start, size = i + 1, 0
            if on_bytes is not None:
                on_bytes(input_file.bytes)
        elif input_file.format.startswith("txt"):
            yield Piece(index, file_no, input_file)
            index += 1
            if on_bytes is not None:
                on_bytes(input_file.bytes)
        else:
            for first_line, block in iter_line_blocks(input_file, PIECE_BYTES, on_bytes):
                yield Piece(index, file_no, input_file, first_line=first_line, data=block)
                index += 1


def _piece_path(output: Path, index: int, suffix: str) -> Path:
    return output / PIECES_DIR / f"piece-{index:07d}{suffix}"


def _piece_documents(spec: BuildSpec, piece: Piece, stats: ReadStats) -> Iterator[TextDocument]:
    if piece.data is not None:
        return iter_block_documents(
            piece.file,
            piece.first_line,
            piece.data,
            spec.text_field,
            stats,
            skip_bad_lines=spec.skip_bad_lines,
        )
    if piece.units is not None:
        return iter_columnar_documents(piece.file, spec.text_field, stats, units=range(*piece.units))
    return iter_text_documents(piece.file, spec.text_field, stats, skip_bad_lines=spec.skip_bad_lines)


_TOKENIZERS: dict[str, Any] = {}


def _tokenizer(spec: BuildSpec) -> Any:
    """The build's tokenizer, loaded once per process from the stored tokenizer.json (Rust, no Python
    wrapper: every worker encodes exactly as the index's stored tokenizer does)."""
    assert spec.tokenizer_json is not None  # text builds always carry one
    found = _TOKENIZERS.get(spec.fingerprint)
    if found is None:
        from tokenizers import Tokenizer

        found = _TOKENIZERS[spec.fingerprint] = Tokenizer.from_str(spec.tokenizer_json)
    return found


@dataclass
class PieceResult:
    index: int
    n_docs: int
    n_tokens: int
    stats: dict[str, Any]
    worker: str = ""
    seconds: float = 0.0
    kept: bool = False
    text_bytes: int = 0


def read_piece_record(spec: BuildSpec, piece: Piece) -> PieceResult | None:
    """The result of a piece spooled by an earlier run of this build, or None."""
    try:
        done = json.loads(_piece_path(spec.output, piece.index, ".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if done.get("fingerprint") != spec.fingerprint or done.get("key") != piece.key:
        return None
    sizes = {".tokens": done["n_tokens"] * np.dtype(spec.token_dtype).itemsize, ".docs.npy": None}
    for suffix, size in sizes.items():
        path = _piece_path(spec.output, piece.index, suffix)
        if not path.is_file() or (size is not None and path.stat().st_size != size):
            return None
    return PieceResult(piece.index, done["n_docs"], done["n_tokens"], done["stats"], kept=True)


def tokenize_piece(spec: BuildSpec, piece: Piece) -> PieceResult:
    """Read, normalize and tokenize one piece; spool its tokens, lengths and metadata lines."""
    started = time.monotonic()
    kept = read_piece_record(spec, piece)
    if kept is not None:
        return kept
    tokenizer = _tokenizer(spec)
    dtype = np.dtype(spec.token_dtype)
    stats = ReadStats()
    tmp = {s: _piece_path(spec.output, piece.index, s + ".tmp") for s in (".tokens", ".meta", ".docs.npy")}
    tmp[".tokens"].parent.mkdir(exist_ok=True)
    lengths: list[int] = []
    meta_sizes: list[int] = []
    n_tokens = 0
    with open(tmp[".tokens"], "wb") as tok_out, open(tmp[".meta"], "wb") as meta_out:
        texts: list[str] = []
        size = 0

        def encode() -> None:
            nonlocal n_tokens, size
            encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
            arrays = [np.array(e.ids, dtype=dtype) for e in encodings]
            if arrays:
                tok_out.write(np.concatenate(arrays).data)
            counts = [len(a) for a in arrays]
            lengths.extend(counts)
            n_tokens += sum(counts)
            texts.clear()
            size = 0

        for doc in _piece_documents(spec, piece, stats):
            line = json.dumps(doc.metadata, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
            meta_out.write(line)
            meta_sizes.append(len(line))
            texts.append(normalize_text(doc.text, spec.normalization))  # type: ignore[arg-type]
            size += len(doc.text)
            if size >= ENCODE_BATCH_BYTES:
                encode()
        if texts:
            encode()
    with open(tmp[".docs.npy"], "wb") as f:
        np.save(f, np.array([lengths, meta_sizes], dtype=np.int64).reshape(2, -1))
    for suffix, path in tmp.items():
        os.replace(path, _piece_path(spec.output, piece.index, suffix))
    counts = stats.as_dict()
    done = {
        "fingerprint": spec.fingerprint,
        "key": piece.key,
        "n_docs": len(lengths),
        "n_tokens": n_tokens,
        "stats": counts,
    }
    write_json_atomic(_piece_path(spec.output, piece.index, ".json"), done)
    return PieceResult(
        piece.index, len(lengths), n_tokens, counts, worker_label(), time.monotonic() - started
    )


def piece_documents(spec: BuildSpec, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(token lengths, metadata line sizes) of the documents of a spooled piece."""
    both = np.load(_piece_path(spec.output, index, ".docs.npy"))
    return both[0], both[1]


def piece_metadata(spec: BuildSpec, index: int, doc: int) -> dict[str, Any]:
    """The metadata record of one document of a spooled piece (for error messages)."""
    _, sizes = piece_documents(spec, index)
    start = int(sizes[:doc].sum())
    with open(_piece_path(spec.output, index, ".meta"), "rb") as f:
        f.seek(start)
        return dict(json.loads(f.read(int(sizes[doc]))))


def remove_pieces(output: Path) -> None:
    shutil.rmtree(output / PIECES_DIR, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# The shard plan


@dataclass(frozen=True)
class Segment:
    """Documents ``[doc_lo, doc_hi)`` of one source: a spooled piece (text) or a token file."""

    source: int
    doc_lo: int
    doc_hi: int


@dataclass(frozen=True)
class ShardSpec:
    index: int
    first_doc: int
    n_docs: int
    n_positions: int
    segments: tuple[Segment, ...]


class DocumentTooLarge(IndexerError):
    """A document longer than a shard; ``source`` and ``doc`` say which (the planner's caller names it)."""

    def __init__(self, source: int, doc: int, n_tokens: int) -> None:
        super().__init__(source, doc, n_tokens)
        self.source, self.doc, self.n_tokens = source, doc, n_tokens


@dataclass
class ShardPlanner:
    """Fills shards with documents in input order (the plan of a build): a shard never holds more than
    ``capacity`` positions, and is closed once it holds ``target`` (default: ``capacity``). A target
    below the capacity evens out the shards when the total is known up front (see
    :func:`balanced_target`)."""

    capacity: int
    target: int | None = None
    next_index: int = 0
    first_doc: int = 0
    _segments: list[Segment] = field(default_factory=list)
    _positions: int = 0
    _docs: int = 0

    def add(self, source: int, lengths: np.ndarray) -> list[ShardSpec]:
        """Add the documents of one source (their token lengths); return the shards this closes."""
        closed: list[ShardSpec] = []
        target = min(self.target or self.capacity, self.capacity)
        need = np.cumsum(lengths.astype(np.int64) + 1)
        doc, base = 0, 0
        n = len(lengths)
        while doc < n:
            room = self.capacity - self._positions
            fit = int(np.searchsorted(need, base + room, side="right"))  # documents [doc, fit) fit
            if fit == doc:
                if self._docs == 0:
                    raise DocumentTooLarge(source, doc, int(lengths[doc]))
                closed.append(self._close())
                continue
            # documents [doc, reach) bring the shard to its target
            reach = int(np.searchsorted(need, base + target - self._positions, side="left")) + 1
            last = min(fit, reach)
            self._segments.append(Segment(source, doc, last))
            self._positions += int(need[last - 1]) - base
            self._docs += last - doc
            base = int(need[last - 1])
            doc = last
            if self._positions >= target:
                closed.append(self._close())
        return closed

    def _close(self) -> ShardSpec:
        spec = ShardSpec(self.next_index, self.first_doc, self._docs, self._positions, tuple(self._segments))
        self.next_index += 1
        self.first_doc += self._docs
        self._segments, self._positions, self._docs = [], 0, 0
        return spec

    def finish(self) -> list[ShardSpec]:
        return [self._close()] if self._docs else []


def balanced_target(total_positions: int, capacity: int, slots: int) -> int:
    """The shard target that cuts ``total_positions`` into equal shards, as few as the capacity allows,
    rounded up to a multiple of ``slots`` (shards built at once) when that keeps shards at least half
    full: the last round of shards then keeps every slot busy, instead of one shard sorting alone."""
    if total_positions <= 0:
        return capacity
    n_shards = -(-total_positions // capacity)
    rounded = -(-n_shards // slots) * slots
    if n_shards > 1 and total_positions >= rounded * (capacity // 2):
        n_shards = rounded
    return min(capacity, -(-total_positions // n_shards))


# --------------------------------------------------------------------------------------------------
# Building one shard


@dataclass
class ShardResult:
    info: Any  # ShardInfo
    kept: bool
    worker: str = ""
    read_s: float = 0.0
    sort_s: float = 0.0
    write_s: float = 0.0
    published: bool = True  # False: written, left for publish_shard (its suffix array not yet synced)
    publish_s: float = 0.0
    record: dict[str, Any] = field(default_factory=dict)  # the done-record's build fields


def _bar(spec: BuildSpec, desc: str, total: int, unit: str) -> Any:
    return progress_bar(
        enabled=spec.progress,
        desc=f"{worker_label()}: {desc}",
        total=total,
        unit=unit,
        unit_scale=True,
        leave=False,
        dynamic_ncols=False,
    )


def build_shard(
    spec: BuildSpec,
    shard: ShardSpec,
    sources: Any = None,
    *,
    publish: bool = True,
    sort_threads: int | None = None,
) -> ShardResult:
    """Read, sort, write and publish one shard (or keep it when an earlier run finished it).
    ``sort_threads`` numba threads sort it (None: this process's share, see :func:`numba_threads`).

    ``sources`` is None for text builds (the documents are in the spooled pieces) or the pre-tokenized
    inputs (``indexer.pretokenized.PretokenizedSource``). With ``publish=False`` the shard is written
    but its suffix array is neither synced nor published: :func:`publish_shard` does that, on this
    machine, while this worker sorts its next shard."""
    found = writer.read_done_shard(spec.output, shard.index, spec.fingerprint)
    if found is not None:
        info, done = found
        if done.get("first_doc") == shard.first_doc and info.n_docs == shard.n_docs:
            return ShardResult(info, kept=True, worker=worker_label())
    from indexer.kernels import (
        Workspace,
        build_suffix_array,
        fault_in,
        load_sort_kernels,
        place_documents,
        sort_work_arrays,
        suffix_array_dtype,
    )

    t0 = time.monotonic()
    sep = separator_id(spec.token_dtype)
    workspace = _KEPT["workspace"] or Workspace()
    tokens = workspace.array("shard tokens", shard.n_positions, np.dtype(spec.token_dtype))
    doc_offsets = np.zeros(shard.n_docs + 1, dtype=np.uint64)
    shard_writer = writer.ShardWriter(spec.output, shard.index)
    # One thread beside the kernel: while the shard is read, it faults the sort's memory in and loads
    # the sort's kernels; then it writes (and fsyncs) the corpus files while the kernel sorts without
    # the GIL, so that only the suffix array is left to write once the sort ends.
    pool = ThreadPoolExecutor(1, thread_name_prefix=f"shard-{shard.index}")
    try:
        faulted = pool.submit(fault_in, sort_work_arrays(workspace, shard.n_positions, spec.token_dtype))
        loaded = pool.submit(load_sort_kernels, shard.n_positions, spec.token_dtype)
        pos, doc = 0, 0
        for seg in shard.segments:
            for ids, lengths, meta in _segment_batches(spec, seg, sources):
                ends = place_documents(tokens, pos, ids, lengths, sep)
                doc_offsets[doc + 1 : doc + 1 + len(lengths)] = ends
                doc += len(lengths)
                pos = int(ends[-1]) if len(ends) else pos
                shard_writer.add_metadata_lines(meta, len(lengths))
        if pos != shard.n_positions or doc != shard.n_docs:
            raise RuntimeError(
                f"shard {shard.index}: read {pos} positions and {doc} documents, planned "
                f"{shard.n_positions} and {shard.n_docs} (an input changed during the build)"
            )
        t1 = time.monotonic()
        n_tokens = shard.n_positions - shard.n_docs
        sa_bytes = np.dtype(suffix_array_dtype(shard.n_positions)).itemsize * n_tokens
        total = tokens.nbytes + doc_offsets.nbytes + sa_bytes
        write_bar = _bar(spec, f"write+hash shard {shard.index}", total, "B")
        progress = write_bar.update if write_bar is not None else None
        sort_bar = _bar(spec, f"sort shard {shard.index}", n_tokens, "tok")
        corpus_written = pool.submit(
            shard_writer.write_corpus, tokens, spec.token_dtype, doc_offsets, progress
        )
        faulted.result()  # the thread runs its tasks in order: the sort's memory is ready before this
        with numba_threads(sort_threads):
            suffix_array = build_suffix_array(tokens, sep, workspace=workspace)
        loaded.result()  # done by now; raises what it raised
        if sort_bar is not None:
            sort_bar.update(n_tokens)
            sort_bar.close()
        t2 = time.monotonic()
        corpus_written.result()
        record = {"first_doc": shard.first_doc}
        info = shard_writer.finish(
            suffix_array, fingerprint=spec.fingerprint, record=record, progress=progress, publish=publish
        )
        if write_bar is not None:
            write_bar.close()
        t3 = time.monotonic()
    except BaseException:
        pool.shutdown(wait=True)  # the thread may still write into the shard's files or arrays
        shard_writer.abort()
        raise
    pool.shutdown(wait=True)
    return ShardResult(info, False, worker_label(), t1 - t0, t2 - t1, t3 - t2, publish, record=record)


def publish_shard(spec: BuildSpec, result: ShardResult) -> ShardResult:
    """Sync and publish a shard that :func:`build_shard` wrote with ``publish=False``; return its result
    with the time this took."""
    if result.published:
        return result
    t0 = time.monotonic()
    writer.publish_written_shard(spec.output, result.info, spec.fingerprint, result.record)
    result.published, result.publish_s = True, time.monotonic() - t0
    return result


def _segment_batches(
    spec: BuildSpec, seg: Segment, sources: Any
) -> Iterator[tuple[np.ndarray, np.ndarray, bytes]]:
    """(ids, lengths, metadata lines) of a segment's documents, a few million tokens at a time."""
    if sources is None:
        lengths, meta_sizes = piece_documents(spec, seg.source)
        tok_start = int(lengths[: seg.doc_lo].sum())
        meta_start = int(meta_sizes[: seg.doc_lo].sum())
        lens = lengths[seg.doc_lo : seg.doc_hi]
        n_tok = int(lens.sum())
        n_meta = int(meta_sizes[seg.doc_lo : seg.doc_hi].sum())
        dtype = np.dtype(spec.token_dtype)
        with open(_piece_path(spec.output, seg.source, ".tokens"), "rb") as f:
            f.seek(tok_start * dtype.itemsize)
            ids = np.fromfile(f, dtype=dtype, count=n_tok)
        with open(_piece_path(spec.output, seg.source, ".meta"), "rb") as f:
            f.seek(meta_start)
            meta = f.read(n_meta)
        if len(ids) != n_tok or len(meta) != n_meta:
            raise CorpusError(
                str(_piece_path(spec.output, seg.source, "")), None, "truncated_file", "spool cut short"
            )
        yield ids, lens, meta
        return
    from indexer.pretokenized import check_ids, metadata_lines

    tf = sources.files[seg.source]
    b = tf.boundaries
    doc = seg.doc_lo
    while doc < seg.doc_hi:
        last = int(np.searchsorted(b, b[doc] + READ_TOKENS, side="right")) - 1
        last = min(max(last, doc + 1), seg.doc_hi)
        start, stop = int(b[doc]), int(b[last])
        ids = tf.read(start, stop)
        check_ids(ids, spec.vocab_size, tf, start)
        yield ids, np.diff(b[doc : last + 1]), metadata_lines(tf, doc, last)
        doc = last
