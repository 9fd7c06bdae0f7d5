"""The index build: read → tokenize → fill a shard buffer → sort (suffix array) → write, shard by shard.

Memory: a shard holds at most ``shard_capacity(memory_budget_bytes)`` positions (tokens plus one separator
per document). The budget covers the shard's token buffer and the suffix-array build, which together
take about ``BUILD_BYTES_PER_TOKEN`` bytes per position, plus a fixed reserve for the interpreter, the
tokenizer and the read batches. Tokens are appended into one growing numpy buffer (never kept as Python
lists); metadata records are spooled to disk.

Resuming: the build configuration (inputs with sizes and modification times, tokenizer hash,
normalization, text field, shard capacity, ...) has a fingerprint. A rerun with the same fingerprint keeps
the finished shards (see ``indexer.writer``), reads past their documents without tokenizing them, and
builds the rest. A different index in the output folder is refused unless ``force=True``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import resource
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from indexer import writer
from indexer.corpus import CorpusError, InputPlan, ReadStats, discover_inputs, iter_text_documents
from indexer.errors import IndexerError
from indexer.format import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    TOKENIZER_FILE,
    IndexFormatError,
    InputInfo,
    Manifest,
    Normalization,
    ShardInfo,
    TokenDtype,
    TokenizerInfo,
    read_manifest,
    separator_id,
    token_dtype_for_vocab,
    write_manifest,
)
from indexer.tokenize import NORMALIZATIONS, TextTokenizer, load_tokenizer, normalize_text

log = logging.getLogger("taskgram.build")

# Peak bytes per shard position of the suffix-array build including the token buffer (the kernel's
# documented goal is <= 12 for u16 tokens; u32 tokens add 2 bytes per position).
BUILD_BYTES_PER_TOKEN = 12
DEFAULT_MEMORY_BUDGET = 8 << 30
# Memory of the process outside the shard arrays: interpreter, numpy, numba, read batches, and (when
# loaded) the tokenizer library; measured at about 340 MiB with the Pythia tokenizer loaded, 215 without.
PROCESS_RESERVE_BYTES = 512 << 20
PROCESS_RESERVE_NO_TOKENIZER_BYTES = 256 << 20
TEXT_BATCH_DOCS = 1024
TEXT_BATCH_BYTES = 2 << 20  # tokenizer Encodings cost ~100+ bytes per token while a batch is live
PRETOKENIZED_KINDS = ("megatron", "npy", "raw-u16", "raw-u32")


class BuildError(IndexerError):
    """The build cannot proceed as configured (bad option, empty corpus, document too large, ...)."""


def parse_memory(text: str | int) -> int:
    """``"8G"``, ``"512M"``, ``"64K"``, ``"1.5G"`` or a plain number of bytes → bytes (binary units)."""
    if isinstance(text, int):
        if text <= 0:
            raise BuildError(f"memory budget must be positive, got {text}")
        return text
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, flags=re.IGNORECASE)
    if not match:
        raise BuildError(f"memory budget {text!r}: expected a size such as 8G, 512M or 1073741824")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[match.group(2).upper()]
    value = int(float(match.group(1)) * scale)
    if value <= 0:
        raise BuildError(f"memory budget {text!r} must be positive")
    return value


def shard_capacity(
    memory_budget_bytes: int,
    token_dtype: TokenDtype,
    bytes_per_token: int | None = None,
    *,
    with_tokenizer: bool = True,
) -> int:
    """Positions (tokens + separators) one shard may hold under the memory budget: the budget less the
    process reserve (at most half the budget, for tiny test budgets), over the build's bytes per position.
    """
    per = bytes_per_token or (BUILD_BYTES_PER_TOKEN + (2 if token_dtype == "uint32" else 0))
    base = PROCESS_RESERVE_BYTES if with_tokenizer else PROCESS_RESERVE_NO_TOKENIZER_BYTES
    reserve = min(base, memory_budget_bytes // 2)
    return max(2, (memory_budget_bytes - reserve) // per)


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


# --------------------------------------------------------------------------------------------------
# Document batches


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


class _Progress:
    """Thin wrapper over tqdm that does nothing when progress bars are off."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def bar(self, **kwargs: Any) -> Any:
        if not self.enabled:
            return None
        from tqdm import tqdm

        return tqdm(dynamic_ncols=True, mininterval=0.5, **kwargs)


def _text_batches(
    plan: InputPlan,
    tokenizer: TextTokenizer,
    *,
    text_field: str,
    normalization: Normalization,
    skip_bad_lines: bool,
    skip_docs: int,
    stats: ReadStats,
    on_bytes: Callable[[int], None] | None,
) -> Iterator[DocBatch]:
    texts: list[str] = []
    metas: list[dict[str, Any]] = []
    size = 0
    to_skip = skip_docs

    def encode() -> DocBatch:
        encoded = tokenizer.encode_batch(texts)
        lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
        flat = np.concatenate(encoded) if encoded else np.zeros(0, dtype=np.int64)
        return DocBatch(flat, lengths, list(metas))

    for input_file in plan.files:
        docs = iter_text_documents(
            input_file, text_field, stats, skip_bad_lines=skip_bad_lines, on_bytes=on_bytes
        )
        for doc in docs:
            if to_skip:
                to_skip -= 1
                continue
            texts.append(normalize_text(doc.text, normalization))
            metas.append(doc.metadata)
            size += len(doc.text)
            if len(texts) >= TEXT_BATCH_DOCS or size >= TEXT_BATCH_BYTES:
                yield encode()
                texts.clear()
                metas.clear()
                size = 0
    if texts:
        yield encode()


# --------------------------------------------------------------------------------------------------
# Shard buffer


class _ShardBuffer:
    """A growing token buffer (documents each followed by the separator) and its document offsets."""

    def __init__(self, capacity: int, token_dtype: TokenDtype) -> None:
        self.capacity = capacity
        self.dtype = np.dtype(token_dtype)
        self.separator = separator_id(token_dtype)
        self.tokens = np.empty(min(capacity, 1 << 20), dtype=self.dtype)
        self.offsets = np.zeros(1024, dtype=np.uint64)
        self.n_positions = 0
        self.n_docs = 0

    def reset(self) -> None:
        self.n_positions = 0
        self.n_docs = 0

    def room(self) -> int:
        return self.capacity - self.n_positions

    def _grow(self, positions: int, docs: int) -> None:
        if positions > len(self.tokens):
            new = np.empty(min(self.capacity, max(positions, 2 * len(self.tokens))), dtype=self.dtype)
            new[: self.n_positions] = self.tokens[: self.n_positions]
            self.tokens = new
        if docs + 1 > len(self.offsets):
            new_off = np.zeros(max(docs + 1, 2 * len(self.offsets)), dtype=np.uint64)
            new_off[: self.n_docs + 1] = self.offsets[: self.n_docs + 1]
            self.offsets = new_off

    def fit(self, lengths: np.ndarray) -> int:
        """How many of these documents (from the first) fit in the remaining room."""
        need = np.cumsum(lengths + 1)
        return int(np.searchsorted(need, self.room(), side="right"))

    def append(self, batch: DocBatch) -> None:
        n = len(batch)
        if n == 0:
            return
        total = int(batch.tokens.shape[0]) + n
        start = self.n_positions
        self._grow(start + total, self.n_docs + n)
        # One slice copy per document (no batch-sized index temporaries: they would cost 16 bytes/token).
        tokens, buf, sep = batch.tokens, self.tokens, self.separator
        src = 0
        dst = start
        for length in batch.lengths.tolist():
            buf[dst : dst + length] = tokens[src : src + length]
            dst += length
            buf[dst] = sep
            dst += 1
            src += length
        ends = start + np.cumsum(batch.lengths + 1)  # one past each document's separator
        self.offsets[self.n_docs + 1 : self.n_docs + 1 + n] = ends
        self.n_positions += total
        self.n_docs += n

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self.tokens[: self.n_positions], self.offsets[: self.n_docs + 1]


# --------------------------------------------------------------------------------------------------
# Output folder state


def _fingerprint(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode("utf-8")).hexdigest()


def _prepare_output(output: Path, fingerprint: str, force: bool) -> Manifest | None:
    """Check the output folder; return the existing manifest when the same index is already complete."""
    if output.exists() and not output.is_dir():
        raise writer.IndexWriteError(f"{output}: exists and is not a directory")
    if not output.exists():
        output.mkdir(parents=True)
        return None
    entries = [e.name for e in output.iterdir()]
    if not entries:
        return None
    existing: str | None = None
    manifest: Manifest | None = None
    if (output / MANIFEST_FILE).exists():
        try:
            manifest = read_manifest(output)
            existing = manifest.build.get("fingerprint")
        except IndexFormatError:
            existing = None
    elif (output / writer.BUILD_STATE).exists():
        try:
            existing = json.loads((output / writer.BUILD_STATE).read_text(encoding="utf-8")).get(
                "fingerprint"
            )
        except (OSError, ValueError, AttributeError):
            existing = None
    foreign = [name for name in entries if not writer.is_build_entry(name)]
    if force:
        if foreign:
            raise writer.IndexWriteError(
                f"{output}: holds files that are not part of an index ({', '.join(sorted(foreign)[:5])}); "
                "refusing to build into it even with --force; choose an empty or new folder"
            )
        writer.clear_index_dir(output)
        return None
    if foreign:
        raise writer.IndexWriteError(
            f"{output}: not empty and not a taskgram index ({', '.join(sorted(foreign)[:5])}); "
            "choose an empty or new folder"
        )
    if existing != fingerprint:
        if manifest is None and (output / writer.BUILD_STATE).exists():
            # An unfinished build of other inputs or options holds no usable index: start over.
            log.warning("%s: replacing an unfinished build with a different configuration", output)
            writer.clear_index_dir(output)
            return None
        what = "a complete index" if manifest is not None else "files of an unknown build"
        raise writer.IndexWriteError(
            f"{output}: holds {what} with a different configuration or inputs; use --force to replace it"
        )
    if manifest is not None:
        return manifest
    return None


# --------------------------------------------------------------------------------------------------
# The build


def build_index(
    inputs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    tokenizer: str | os.PathLike[str] | TextTokenizer | None = "pythia",
    text_field: str = "text",
    normalization: Normalization = "none",
    memory_budget_bytes: int | str = DEFAULT_MEMORY_BUDGET,
    skip_bad_lines: bool = False,
    progress: bool = True,
    force: bool = False,
    pretokenized: str | None = None,
    vocab_size: int | None = None,
    offsets: Sequence[str | os.PathLike[str]] | None = None,
    bytes_per_token: int | None = None,
) -> Manifest:
    """Build (or resume building) an index of ``inputs`` in ``output`` and return its manifest.

    Text inputs are tokenized with ``tokenizer`` (a builtin name, a tokenizer.json, a local folder, or
    an already loaded ``TextTokenizer``) after ``normalization``. With ``pretokenized`` (one of
    ``PRETOKENIZED_KINDS``) the inputs are token files; ``tokenizer`` may then be None (queries by token
    id only) and ``vocab_size`` bounds the ids. Raises CorpusError (bad input, naming file and line),
    BuildError, IndexWriteError, TokenizerError.
    """
    started = time.monotonic()
    output = Path(output)
    budget = parse_memory(memory_budget_bytes)
    if normalization not in NORMALIZATIONS:
        raise BuildError(f"normalization {normalization!r}: choose one of {', '.join(NORMALIZATIONS)}")
    if pretokenized is not None and pretokenized not in PRETOKENIZED_KINDS:
        raise BuildError(f"pretokenized {pretokenized!r}: choose one of {', '.join(PRETOKENIZED_KINDS)}")
    if pretokenized is None and tokenizer is None:
        raise BuildError("text inputs need a tokenizer")
    if vocab_size is not None and vocab_size < 1:
        raise BuildError(f"vocab size must be positive, got {vocab_size}")

    stats = ReadStats()
    if isinstance(tokenizer, TextTokenizer):
        tok: TextTokenizer | None = tokenizer
        tokenizer = tokenizer.name
    else:
        tok = load_tokenizer(tokenizer) if tokenizer is not None else None
    with tempfile.TemporaryDirectory(prefix="taskgram-tok-") as tmp:
        tok_sha = tok.save(tmp) if tok is not None else None
        tok_bytes = (Path(tmp) / TOKENIZER_FILE).read_bytes() if tok is not None else None

    if pretokenized is not None:
        from indexer import pretokenized as pretok

        source = pretok.open_sources(inputs, pretokenized, offsets=offsets)
        if vocab_size is None:
            if tok is None:
                raise BuildError(
                    "pre-tokenized inputs need --vocab-size or --tokenizer to bound the token ids"
                )
            vocab_size = tok.vocab_size
        elif tok is not None and vocab_size < tok.vocab_size:
            raise BuildError(f"--vocab-size {vocab_size} is smaller than the tokenizer's {tok.vocab_size}")
        input_infos = [InputInfo(path=s.display, bytes=s.bytes, format=s.format) for s in source.files]
        input_keys = [
            {"path": str(s.path.resolve()), "bytes": s.bytes, "mtime_ns": os.stat(s.path).st_mtime_ns}
            for s in source.files
        ]
    else:
        plan = discover_inputs(inputs)
        assert tok is not None  # checked above: text inputs need a tokenizer
        if vocab_size is not None and vocab_size < tok.vocab_size:
            raise BuildError(f"--vocab-size {vocab_size} is smaller than the tokenizer's {tok.vocab_size}")
        vocab_size = vocab_size or tok.vocab_size
        input_infos = [InputInfo(path=f.display, bytes=f.bytes, format=f.format) for f in plan.files]
        input_keys = [
            {"path": str(f.path.resolve()), "bytes": f.bytes, "mtime_ns": os.stat(f.path).st_mtime_ns}
            for f in plan.files
        ]
        if plan.ignored:
            log.warning(
                "ignoring %d file(s) without a supported suffix, e.g. %s", len(plan.ignored), plan.ignored[0]
            )

    token_dtype = token_dtype_for_vocab(vocab_size)
    capacity = shard_capacity(budget, token_dtype, bytes_per_token, with_tokenizer=tok is not None)
    reserve = PROCESS_RESERVE_BYTES if tok is not None else PROCESS_RESERVE_NO_TOKENIZER_BYTES
    if budget < 2 * reserve:
        log.warning(
            "memory budget %d MiB is below twice the process's own use (about %d MiB): shards are sized "
            "to half the budget, and the process will use more than the budget",
            budget >> 20,
            reserve >> 20,
        )
    config: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "inputs": input_keys,
        "pretokenized": pretokenized,
        "tokenizer": {"name": str(tokenizer) if tokenizer is not None else None, "sha256": tok_sha},
        "vocab_size": vocab_size,
        "text_field": text_field,
        "normalization": normalization,
        "skip_bad_lines": skip_bad_lines,
        "shard_capacity_positions": capacity,
    }
    fingerprint = _fingerprint(config)
    done_manifest = _prepare_output(output, fingerprint, force)
    if done_manifest is not None:
        log.info("%s: already built with the same inputs and configuration; nothing to do", output)
        return done_manifest

    writer.write_json_atomic(output / writer.BUILD_STATE, {"fingerprint": fingerprint, "config": config})
    removed = writer.remove_partials(output)
    if removed:
        log.info("removed unfinished files of an interrupted build: %s", ", ".join(removed))
    if tok_bytes is not None:
        tmp_tok = output / (TOKENIZER_FILE + ".tmp")
        tmp_tok.write_bytes(tok_bytes)
        os.replace(tmp_tok, output / TOKENIZER_FILE)

    # Finished shards of an interrupted build with the same fingerprint.
    shards: list[ShardInfo] = []
    while (found := writer.read_done_shard(output, len(shards), fingerprint)) is not None:
        shards.append(found[0])
    resumed = len(shards)
    skip_docs = sum(s.n_docs for s in shards)
    if resumed:
        log.info("resuming: %d finished shard(s) kept (%d documents)", resumed, skip_docs)

    bars = _Progress(progress)
    read_bar = None
    if pretokenized is not None:
        total_tokens = source.n_tokens
        read_bar = bars.bar(desc="read", total=total_tokens, unit="tok", unit_scale=True)
        batches = source.batches(
            vocab_size, skip_docs=skip_docs, stats=stats, on_tokens=read_bar.update if read_bar else None
        )
    else:
        read_bar = bars.bar(
            desc="read+tokenize", total=sum(f.bytes for f in plan.files), unit="B", unit_scale=True
        )
        batches = _text_batches(
            plan,
            tok,  # type: ignore[arg-type]
            text_field=text_field,
            normalization=normalization,
            skip_bad_lines=skip_bad_lines,
            skip_docs=skip_docs,
            stats=stats,
            on_bytes=read_bar.update if read_bar is not None else None,
        )

    buffer = _ShardBuffer(capacity, token_dtype)
    timings = {"sort_s": 0.0, "write_s": 0.0}

    def flush(shard_writer: writer.ShardWriter) -> None:
        index = len(shards)
        tokens, doc_offsets = buffer.arrays()
        n_tokens = buffer.n_positions - buffer.n_docs
        log.info("shard %d: sorting %d tokens (%d documents)", index, n_tokens, buffer.n_docs)
        from indexer.kernels import build_suffix_array

        t0 = time.monotonic()
        sort_bar = bars.bar(
            desc=f"sort shard {index}", total=n_tokens, unit="tok", unit_scale=True, leave=False
        )
        suffix_array = build_suffix_array(tokens, buffer.separator)
        if sort_bar is not None:
            sort_bar.update(n_tokens)
            sort_bar.close()
        timings["sort_s"] += time.monotonic() - t0
        t0 = time.monotonic()
        total_bytes = tokens.nbytes + doc_offsets.nbytes + suffix_array.nbytes
        write_bar = bars.bar(
            desc=f"write+hash shard {index}", total=total_bytes, unit="B", unit_scale=True, leave=False
        )
        info = shard_writer.finish(
            tokens,
            token_dtype,
            doc_offsets,
            suffix_array,
            fingerprint=fingerprint,
            record={"first_doc": sum(s.n_docs for s in shards)},
            progress=write_bar.update if write_bar is not None else None,
        )
        if write_bar is not None:
            write_bar.close()
        timings["write_s"] += time.monotonic() - t0
        del suffix_array
        shards.append(info)
        buffer.reset()

    shard_writer: writer.ShardWriter | None = None
    tokens_read = 0
    read_started = time.monotonic()
    try:
        for batch in batches:
            rest = batch
            while len(rest):
                fits = buffer.fit(rest.lengths)
                if fits == 0:
                    if buffer.n_docs == 0:
                        meta = rest.metadata[0]
                        where = f"{meta.get('source')}" + (f":{meta['line']}" if "line" in meta else "")
                        where += f" (document {meta['doc']})" if "doc" in meta else ""
                        raise BuildError(
                            f"{where}: a document of {int(rest.lengths[0])} tokens does not fit in a "
                            f"shard of {capacity} positions; raise the memory budget (--memory)"
                        )
                    assert shard_writer is not None  # a non-empty buffer has a writer
                    flush(shard_writer)
                    shard_writer = None
                    continue
                head, rest = rest.split(fits)
                if shard_writer is None:
                    shard_writer = writer.ShardWriter(output, len(shards))
                buffer.append(head)
                shard_writer.add_metadata(head.metadata)
                tokens_read += int(head.tokens.shape[0])
                if read_bar is not None:
                    rate = tokens_read / max(time.monotonic() - read_started, 1e-9)
                    read_bar.set_postfix_str(
                        f"{stats.docs:,} docs, {tokens_read:,} tok, {rate:,.0f} tok/s", refresh=False
                    )
        if buffer.n_docs:
            assert shard_writer is not None
            flush(shard_writer)
            shard_writer = None
    except BaseException:
        if shard_writer is not None:
            shard_writer.abort()
        raise
    finally:
        if read_bar is not None:
            read_bar.close()

    n_docs = sum(s.n_docs for s in shards)
    n_tokens = sum(s.n_tokens for s in shards)
    if n_docs == 0 or n_tokens == 0:
        raise CorpusError(
            ", ".join(i.path for i in input_infos),
            None,
            "empty_corpus",
            "empty corpus: no documents"
            if n_docs == 0
            else f"empty corpus: {n_docs} documents but no tokens",
        )
    writer.remove_shards_from(output, len(shards))

    elapsed = time.monotonic() - started
    disk_bytes = sum(f.bytes for s in shards for f in s.files.values())
    build: dict[str, Any] = {
        "fingerprint": fingerprint,
        "config": config,
        "memory_budget_bytes": budget,
        "read": stats.as_dict(),
        "resumed_shards": resumed,
        "summary": {
            "wall_time_s": round(elapsed, 3),
            "sort_time_s": round(timings["sort_s"], 3),
            "write_time_s": round(timings["write_s"], 3),
            "peak_rss_bytes": peak_rss_bytes(),
            "disk_bytes": disk_bytes,
            "disk_bytes_per_token": round(disk_bytes / n_tokens, 4),
        },
    }
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        taskgram_version=_version(),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        tokenizer=TokenizerInfo(
            kind="transformers" if tok is not None else "none",
            name=str(tokenizer) if tokenizer is not None else f"pretokenized:{pretokenized}",
            sha256=tok_sha,
            vocab_size=vocab_size,
        ),
        normalization=normalization,
        token_dtype=token_dtype,
        n_tokens=n_tokens,
        n_docs=n_docs,
        shards=shards,
        inputs=input_infos,
        build=build,
    )
    write_manifest(output, manifest)
    state = output / writer.BUILD_STATE
    if state.exists():
        state.unlink()
    return manifest


def _version() -> str:
    from taskgram import __version__

    return __version__


# --------------------------------------------------------------------------------------------------
# Verification


@dataclass
class VerifyReport:
    index_dir: Path
    problems: list[str]
    shards_checked: int
    sampled: bool

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_index(
    index_dir: str | os.PathLike[str], *, sample: int | None = None, seed: int = 0, progress: bool = False
) -> VerifyReport:
    """Check an index: manifest, file sizes and sha256 checksums, document offsets and separators, token
    ids below the vocabulary, metadata record counts, and the suffix order of every shard.

    With ``sample=K`` the check is partial and fast: sizes instead of checksums, and ``K`` random adjacent
    suffix pairs per shard compared directly instead of the full linear-time order check.
    """
    from indexer.format import iter_metadata, open_shard, verify_shard
    from indexer.verify_kernels import (
        ShardCheckError,
        check_doc_offsets,
        check_suffix_array,
        check_suffix_pairs,
    )

    index_dir = Path(index_dir)
    manifest = read_manifest(index_dir)
    problems: list[str] = []
    if manifest.tokenizer.kind == "transformers":
        tok_path = index_dir / TOKENIZER_FILE
        if not tok_path.is_file():
            problems.append(f"{tok_path}: missing")
        elif sample is None:
            from indexer.format import sha256_file

            if sha256_file(tok_path) != manifest.tokenizer.sha256:
                problems.append(f"{tok_path}: sha256 does not match the manifest")
    rng = np.random.default_rng(seed)
    bars = _Progress(progress)
    bar = bars.bar(desc="verify", total=manifest.n_tokens, unit="tok", unit_scale=True)
    checked = 0
    for shard in manifest.shards:
        root = index_dir / shard.name
        if sample is None:
            found = verify_shard(index_dir, shard)
            if found:
                problems.extend(found)
                continue
        try:
            arrays = open_shard(index_dir, manifest, shard)
        except IndexFormatError as err:
            problems.append(str(err))
            continue
        try:
            check_doc_offsets(
                arrays.tokens, arrays.doc_offsets, manifest.separator_id, manifest.tokenizer.vocab_size
            )
            n_blocks = len(arrays.metadata_offsets) - 1
            want_blocks = -(-shard.n_docs // 1024)
            if n_blocks != want_blocks:
                raise ShardCheckError(f"{n_blocks} metadata blocks for {shard.n_docs} documents")
            if sample is None:
                n_meta = sum(1 for _ in iter_metadata(arrays))
                if n_meta != shard.n_docs:
                    raise ShardCheckError(f"{n_meta} metadata records for {shard.n_docs} documents")
                check_suffix_array(
                    arrays.tokens, arrays.doc_offsets, arrays.suffix_array, manifest.separator_id
                )
            elif len(arrays.suffix_array) > 1:
                n_pairs = len(arrays.suffix_array) - 1
                if sample >= n_pairs:
                    ks = np.arange(n_pairs, dtype=np.int64)
                else:
                    ks = np.unique(rng.integers(0, n_pairs, size=sample))
                check_suffix_pairs(arrays.tokens, arrays.suffix_array, ks)
        except ShardCheckError as err:
            problems.append(f"{root}: {err}")
        checked += 1
        if bar is not None:
            bar.update(shard.n_tokens)
    if bar is not None:
        bar.close()
    return VerifyReport(index_dir, problems, checked, sample is not None)
