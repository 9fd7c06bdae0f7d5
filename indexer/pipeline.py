"""The index build: the plan, the per-shard work, and publishing.

``build_index`` is three steps:

1. **plan** (``plan_build``, ``start_build``): check the options, load the tokenizer, list the inputs,
   size the shards from the memory budget, fingerprint the configuration and check the output folder;
2. **per-shard work** (``run_build``): text is cut into pieces that worker processes read, normalize and
   tokenize (``indexer.shardwork``); the shard planner fills shards with documents in input order from
   the pieces' token counts; each shard is read, sorted and written by one worker, at most
   ``SHARD_SLOTS`` at once (``indexer.schedule``; on Ray, ``indexer.ray_build``);
3. **publish** (``publish``): check every shard against its done-record and write the manifest last.

Memory: a shard holds at most ``shard_capacity(memory_budget_bytes)`` positions (tokens plus one separator
per document): the budget less a reserve for the processes (interpreters, tokenizers, read batches), shared
by ``SHARD_SLOTS`` shards, at about ``BUILD_BYTES_PER_TOKEN`` bytes per position (the token buffer plus the
suffix-array build). Two shards fit at once, so one is sorted while another is sorted or written.
Pre-tokenized inputs, whose size is known before the build, are cut into equal shards below that capacity
(``shardwork.balanced_target``). The shard size depends on the budget and the inputs only, never on the
number of workers: any ``workers`` (and Ray) give byte-identical shards.

Resuming: the build configuration (inputs with sizes and modification times, tokenizer hash,
normalization, text field, shard capacity, ...) has a fingerprint. A rerun with the same fingerprint keeps
the tokenized pieces and the finished shards (see ``indexer.writer``) and builds the rest. A different
index in the output folder is refused unless ``force=True``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import resource
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer import memory, writer
from indexer.corpus import CorpusError, DocBatch, InputFile, ReadStats, discover_inputs
from indexer.errors import IndexerError
from indexer.format import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    TOKENIZER_FILE,
    IndexFormatError,
    Normalization,
    TokenDtype,
    shard_dir_name,
    token_dtype_for_vocab,
)
from indexer.schedule import Executor, InlineExecutor, ProcessExecutor, ScheduleResult, run_schedule
from indexer.shardwork import (
    BuildSpec,
    DocumentTooLarge,
    PieceResult,
    ShardPlanner,
    ShardResult,
    ShardSpec,
    balanced_target,
    iter_pieces,
    piece_documents,
    piece_metadata,
    remove_pieces,
)
from indexer.tokenize import BUILTIN_TOKENIZERS, NORMALIZATIONS, TextTokenizer, TokenizerError, load_tokenizer
from taskgram.progress import progress_bar

if TYPE_CHECKING:  # imported where used: the manifest's models import pydantic (see indexer.manifest)
    from indexer.manifest import Manifest, ShardInfo

__all__ = ["BuildError", "DocBatch", "build_index", "parse_memory", "shard_capacity", "verify_index"]

log = logging.getLogger("taskgram.build")

# Peak bytes per shard position of the suffix-array build including the token buffer (the kernel's
# documented goal is <= 12 for u16 tokens; u32 tokens add 2 bytes per position).
BUILD_BYTES_PER_TOKEN = 12
DEFAULT_MEMORY_BUDGET = 8 << 30
# Memory of the process outside the shard arrays: interpreter, numpy, numba, read batches, and (when
# loaded) the tokenizer library; measured at about 340 MiB with the Pythia tokenizer loaded, 215 without.
PROCESS_RESERVE_BYTES = 512 << 20
PROCESS_RESERVE_NO_TOKENIZER_BYTES = 256 << 20
# A tokenizing worker process (interpreter, numpy, the Rust tokenizer, a piece's batches).
WORKER_RESERVE_BYTES = 384 << 20
# Shards the budget holds at once (each sorted or written by its own worker).
SHARD_SLOTS = 2
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
    processes' reserve (a quarter of the budget, at least the reserve of one process, at most half the
    budget for tiny test budgets), shared by ``SHARD_SLOTS`` shards, over the build's bytes per position.
    """
    per = bytes_per_token or (BUILD_BYTES_PER_TOKEN + (2 if token_dtype == "uint32" else 0))
    reserve = _reserve(memory_budget_bytes, with_tokenizer)
    return max(2, (memory_budget_bytes - reserve) // (SHARD_SLOTS * per))


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


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
        from indexer.manifest import read_manifest

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
# The build: the plan, the per-shard work (indexer.shardwork, run by indexer.schedule), publishing


@dataclass(frozen=True)
class _BuildTokenizer:
    """What a build needs of its tokenizer: the stored tokenizer.json, its sha256, the vocabulary size."""

    json: bytes
    sha256: str
    vocab_size: int


def _build_tokenizer(spec: str | os.PathLike[str] | TextTokenizer) -> _BuildTokenizer:
    """The tokenizer.json a build stores (and its workers load). A builtin name or a tokenizer.json file
    is read with the Rust ``tokenizers`` alone (the same bytes transformers would save, without its
    two-second import); folders and hub names go through ``indexer.tokenize.load_tokenizer``."""
    if not isinstance(spec, TextTokenizer):
        path = BUILTIN_TOKENIZERS.get(str(spec), Path(spec))
        if path.is_file():
            from tokenizers import Tokenizer

            try:
                data = Tokenizer.from_file(str(path)).to_str(pretty=False).encode("utf-8")
                vocab = Tokenizer.from_str(data.decode("utf-8")).get_vocab_size(with_added_tokens=True)
            except Exception as err:  # the Rust backend raises a bare Exception for a bad file
                raise TokenizerError(f"cannot load tokenizer {str(spec)!r}: {err}") from err
            if vocab <= 1:
                raise TokenizerError(f"tokenizer {str(spec)!r} has an empty vocabulary")
            return _BuildTokenizer(data, hashlib.sha256(data).hexdigest(), vocab)
        spec = load_tokenizer(spec)
    with tempfile.TemporaryDirectory(prefix="taskgram-tok-") as tmp:
        sha = spec.save(tmp)
        data = (Path(tmp) / TOKENIZER_FILE).read_bytes()
    return _BuildTokenizer(data, sha, spec.vocab_size)


@dataclass
class BuildPlan:
    """A build's resolved options, inputs and output folder state (what ``plan_build`` decided)."""

    spec: BuildSpec
    config: dict[str, Any]
    budget: int
    tokenizer: _BuildTokenizer | None
    tokenizer_name: str | None
    tokenizer_bytes: bytes | None
    pretokenized: str | None
    inputs: list[dict[str, Any]]  # InputInfo fields of each input file, for the manifest
    text_files: list[InputFile]
    source: Any  # indexer.pretokenized.PretokenizedSource for pre-tokenized builds
    shard_target: int  # positions at which the planner closes a shard (at most the capacity)
    done: Manifest | None  # the finished index when the same build is already complete

    @property
    def output(self) -> Path:
        return self.spec.output


def default_workers(memory_budget_bytes: int | str = DEFAULT_MEMORY_BUDGET) -> int:
    """All cores this process may use, as far as the memory budget's reserve holds their processes."""
    budget = parse_memory(memory_budget_bytes)
    cores = len(os.sched_getaffinity(0))
    return max(1, min(cores, _reserve(budget, True) // WORKER_RESERVE_BYTES))


def _reserve(budget: int, with_tokenizer: bool) -> int:
    base = PROCESS_RESERVE_BYTES if with_tokenizer else PROCESS_RESERVE_NO_TOKENIZER_BYTES
    return min(max(base, budget // 4), budget // 2)


def plan_build(
    inputs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    tokenizer: str | os.PathLike[str] | TextTokenizer | None = "pythia",
    text_field: str = "text",
    normalization: Normalization = "none",
    memory_budget_bytes: int | str = DEFAULT_MEMORY_BUDGET,
    skip_bad_lines: bool = False,
    force: bool = False,
    pretokenized: str | None = None,
    vocab_size: int | None = None,
    offsets: Sequence[str | os.PathLike[str]] | None = None,
    bytes_per_token: int | None = None,
    progress: bool = False,
) -> BuildPlan:
    """Check the options, load the tokenizer, list the inputs, size the shards, and check the output
    folder (a finished identical build is returned as ``plan.done``). Writes nothing."""
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

    tok = _build_tokenizer(tokenizer) if tokenizer is not None else None
    if isinstance(tokenizer, TextTokenizer):
        tokenizer = tokenizer.name
    tok_sha = tok.sha256 if tok is not None else None
    tok_bytes = tok.json if tok is not None else None

    source = None
    text_files: list[InputFile] = []
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
        input_infos = [
            {"path": str(s.path.resolve()), "bytes": s.bytes, "format": s.format} for s in source.files
        ]
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
        text_files = plan.files
        input_infos = [
            {"path": str(f.path.resolve()), "bytes": f.bytes, "format": f.format} for f in plan.files
        ]
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
    # Pre-tokenized inputs give their size up front, so their shards are cut equal (text is streamed).
    target = (
        balanced_target(source.n_tokens + source.n_docs, capacity, SHARD_SLOTS)
        if source is not None
        else capacity
    )
    reserve = _reserve(budget, tok is not None)
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
    if target != capacity:  # only then does the plan differ from a text build's (whose fingerprints stay)
        config["shard_target_positions"] = target
    fingerprint = _fingerprint(config)
    done = _prepare_output(output, fingerprint, force)
    spec = BuildSpec(
        output=output,
        fingerprint=fingerprint,
        token_dtype=token_dtype,
        vocab_size=vocab_size,
        capacity=capacity,
        text_field=text_field,
        normalization=normalization,
        skip_bad_lines=skip_bad_lines,
        tokenizer_json=tok_bytes.decode("utf-8") if tok_bytes is not None else None,
        progress=progress,
    )
    return BuildPlan(
        spec=spec,
        config=config,
        budget=budget,
        tokenizer=tok,
        tokenizer_name=str(tokenizer) if tokenizer is not None else None,
        tokenizer_bytes=tok_bytes,
        pretokenized=pretokenized,
        inputs=input_infos,
        text_files=text_files,
        source=source,
        shard_target=target,
        done=done,
    )


def start_build(plan: BuildPlan) -> None:
    """Mark the output folder as an unfinished build, clear what an interrupted run left half-written,
    and store the tokenizer."""
    output = plan.output
    writer.write_json_atomic(
        output / writer.BUILD_STATE, {"fingerprint": plan.spec.fingerprint, "config": plan.config}
    )
    removed = writer.remove_partials(output)
    if removed:
        log.info("removed unfinished files of an interrupted build: %s", ", ".join(removed))
    if plan.tokenizer_bytes is not None:
        tmp_tok = output / (TOKENIZER_FILE + ".tmp")
        tmp_tok.write_bytes(plan.tokenizer_bytes)
        os.replace(tmp_tok, output / TOKENIZER_FILE)


def _too_large(plan: BuildPlan, err: DocumentTooLarge) -> BuildError:
    if plan.source is not None:
        from indexer.pretokenized import doc_metadata

        meta = doc_metadata(plan.source.files[err.source], err.doc)
    else:
        meta = piece_metadata(plan.spec, err.source, err.doc)
    where = f"{meta.get('source')}" + (f":{meta['line']}" if "line" in meta else "")
    where += f" (document {meta['doc']})" if "doc" in meta else ""
    where += f" (row {meta['row']})" if "row" in meta else ""
    return BuildError(
        f"{where}: a document of {err.n_tokens} tokens does not fit in a shard of {plan.spec.capacity} "
        "positions; raise the memory budget (--memory)"
    )


def run_build(
    plan: BuildPlan, executor: Executor, *, workers: int, progress: bool
) -> tuple[ScheduleResult, ReadStats]:
    """Tokenize (text), plan the shards and build them with ``executor``; return the task results."""
    spec = plan.spec
    stats = ReadStats()
    planner = ShardPlanner(spec.capacity, plan.shard_target)
    slots = executor.shard_slots
    tokens_read = {"n": 0, "docs": 0}
    started = time.monotonic()

    if plan.source is not None:
        read_bar = progress_bar(
            enabled=progress, desc="read", total=plan.source.n_tokens, unit="tok", unit_scale=True
        )

        def shard_plan() -> Iterator[ShardSpec]:
            for i, tf in enumerate(plan.source.files):
                lengths = np.diff(tf.boundaries)
                stats.docs += len(lengths)
                stats.empty_docs += int(np.count_nonzero(lengths == 0))
                try:
                    yield from planner.add(i, lengths)
                except DocumentTooLarge as err:
                    raise _too_large(plan, err) from None
            yield from planner.finish()

        pieces = None
        plan_iter: Iterator[ShardSpec] | None = shard_plan()
    else:
        read_bar = progress_bar(
            enabled=progress,
            desc="read+tokenize",
            total=sum(f.bytes for f in plan.text_files),
            unit="B",
            unit_scale=True,
        )
        pieces = iter_pieces(plan.text_files, read_bar.update if read_bar is not None else None)
        plan_iter = None

    def plan_piece(result: PieceResult) -> list[ShardSpec]:
        stats.add(result.stats)
        tokens_read["n"] += result.n_tokens
        if read_bar is not None:
            rate = tokens_read["n"] / max(time.monotonic() - started, 1e-9)
            read_bar.set_postfix_str(
                f"{stats.docs:,} docs, {tokens_read['n']:,} tok, {rate:,.0f} tok/s; "
                f"piece {result.index} by {result.worker or 'an earlier run'}",
                refresh=False,
            )
        lengths, _ = piece_documents(spec, result.index)
        try:
            return planner.add(result.index, lengths)
        except DocumentTooLarge as err:
            raise _too_large(plan, err) from None

    def finish_plan() -> list[ShardSpec]:
        return planner.finish()

    def on_shard(result: ShardResult) -> None:
        info = result.info
        if result.kept:
            log.info("shard %d: kept from an earlier run (%d documents)", _shard_no(info.name), info.n_docs)
        else:
            log.info(
                "shard %d: %d tokens, %d documents; %s read it in %.1f s, sorted in %.1f s, wrote in %.1f s; "
                "synced and published in %.1f s",
                _shard_no(info.name),
                info.n_tokens,
                info.n_docs,
                result.worker,
                result.read_s,
                result.sort_s,
                result.write_s,
                result.publish_s,
            )
        if read_bar is not None and plan.source is not None:
            read_bar.update(info.n_tokens)

    try:
        result = run_schedule(
            executor,
            spec,
            workers=workers,
            slots=slots,
            pieces=pieces,
            plan_piece=plan_piece,
            shard_plan=plan_iter,
            finish_plan=finish_plan,
            sources=plan.source,
            on_shard=on_shard,
        )
    finally:
        if read_bar is not None:
            read_bar.close()
    return result, stats


def _shard_no(name: str) -> int:
    return int(name[len("shard-") :])


def publish(plan: BuildPlan, result: ScheduleResult, stats: ReadStats, started: float) -> Manifest:
    """Check every shard against its done-record, then write the manifest atomically (last)."""
    from indexer.manifest import InputInfo, Manifest, TokenizerInfo, write_manifest

    output, spec = plan.output, plan.spec
    shards: list[ShardInfo] = []
    for number, shard in enumerate(result.shards):
        found = writer.read_done_shard(output, number, spec.fingerprint)
        if found is None or found[0] != shard.info:
            raise writer.IndexWriteError(
                f"{output / shard_dir_name(number)}: missing or not the shard this build wrote; "
                "rerun the build"
            )
        shards.append(shard.info)
    n_docs = sum(s.n_docs for s in shards)
    n_tokens = sum(s.n_tokens for s in shards)
    if n_docs == 0 or n_tokens == 0:
        raise CorpusError(
            ", ".join(i["path"] for i in plan.inputs),
            None,
            "empty_corpus",
            "empty corpus: no documents"
            if n_docs == 0
            else f"empty corpus: {n_docs} documents but no tokens",
        )
    writer.remove_shards_from(output, len(shards))

    elapsed = time.monotonic() - started
    disk_bytes = sum(f.bytes for s in shards for f in s.files.values())
    built = [s for s in result.shards if not s.kept]
    build: dict[str, Any] = {
        "fingerprint": spec.fingerprint,
        "config": plan.config,
        "memory_budget_bytes": plan.budget,
        "read": stats.as_dict(),
        "resumed_shards": sum(1 for s in result.shards if s.kept),
        "summary": {
            "wall_time_s": round(elapsed, 3),
            "sort_time_s": round(sum(s.sort_s for s in built), 3),
            "write_time_s": round(sum(s.write_s + s.publish_s for s in built), 3),
            "peak_rss_bytes": peak_rss_bytes(),
            "disk_bytes": disk_bytes,
            "disk_bytes_per_token": round(disk_bytes / n_tokens, 4),
        },
    }
    tok = plan.tokenizer
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        taskgram_version=_version(),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        tokenizer=TokenizerInfo(
            kind="transformers" if tok is not None else "none",
            name=plan.tokenizer_name
            if plan.tokenizer_name is not None
            else f"pretokenized:{plan.pretokenized}",
            sha256=plan.config["tokenizer"]["sha256"],
            vocab_size=spec.vocab_size,
        ),
        normalization=spec.normalization,  # type: ignore[arg-type]
        token_dtype=spec.token_dtype,
        n_tokens=n_tokens,
        n_docs=n_docs,
        shards=shards,
        inputs=[InputInfo(**i) for i in plan.inputs],
        build=build,
    )
    write_manifest(output, manifest)
    remove_pieces(output)
    state = output / writer.BUILD_STATE
    if state.exists():
        state.unlink()
    return manifest


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
    workers: int | None = 1,
    ray_address: str | None = None,
    use_ray: bool = False,
) -> Manifest:
    """Build (or resume building) an index of ``inputs`` in ``output`` and return its manifest.

    Text inputs are tokenized with ``tokenizer`` (a builtin name, a tokenizer.json, a local folder, or
    an already loaded ``TextTokenizer``) after ``normalization``. With ``pretokenized`` (one of
    ``PRETOKENIZED_KINDS``) the inputs are token files; ``tokenizer`` may then be None (queries by token
    id only) and ``vocab_size`` bounds the ids. ``workers`` processes tokenize and build shards
    (None: ``default_workers``; 1: all in this process); with ``use_ray`` the tasks run on Ray (a local
    Ray, or the cluster at ``ray_address``). The shard files are the same for any ``workers`` and on Ray.

    Parameters
    ----------
    inputs : sequence of paths
        JSON Lines (``.jsonl``, ``.jsonl.zst``, ``.jsonl.gz``), ``.txt`` files (one document each),
        Parquet, folders and globs; token files with ``pretokenized``.
    output : path
        The index folder (created; rerunning the same build resumes it).
    tokenizer, normalization, text_field
        How text becomes tokens, and which JSON field holds it.
    memory_budget_bytes : int or str
        Sets the shard size (``"8G"``); a corpus far larger than memory builds shard by shard.
    skip_bad_lines : bool
        Skip (and count) unreadable lines instead of failing.
    progress, force
        Progress bars on stderr; replace a different index already in ``output``.

    Returns
    -------
    indexer.manifest.Manifest
        The manifest written last into ``output``.

    Raises
    ------
    IndexerError
        ``CorpusError`` (bad input, naming the file and line), ``BuildError`` (options, empty corpus),
        ``IndexWriteError`` (the output folder), ``TokenizerError``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from indexer.pipeline import build_index
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (tmp / "cat.txt").write_text("the cat sat on the mat", encoding="utf-8")
    >>> manifest = build_index([tmp / "cat.txt"], tmp / "index", progress=False)
    >>> manifest.n_docs, manifest.n_tokens, manifest.token_dtype
    (1, 6, 'uint16')
    >>> import shutil; shutil.rmtree(tmp)
    """
    started = time.monotonic()
    if workers is None:
        workers = default_workers(memory_budget_bytes)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise BuildError(f"workers must be a positive integer, got {workers!r}")
    try:
        memory.huge_pages()
    except ValueError as err:
        raise BuildError(str(err)) from None
    plan = plan_build(
        inputs,
        output,
        tokenizer=tokenizer,
        text_field=text_field,
        normalization=normalization,
        memory_budget_bytes=memory_budget_bytes,
        skip_bad_lines=skip_bad_lines,
        force=force,
        pretokenized=pretokenized,
        vocab_size=vocab_size,
        offsets=offsets,
        bytes_per_token=bytes_per_token,
        progress=progress,
    )
    if plan.done is not None:
        log.info("%s: already built with the same inputs and configuration; nothing to do", plan.output)
        remove_pieces(plan.output)
        return plan.done
    try:
        return _run_and_publish(plan, workers, use_ray, ray_address, progress, started)
    except OSError as err:
        if err.errno in _WRITE_ERRNOS:  # a full disk, a file size limit, a read-only or forbidden folder
            raise writer.IndexWriteError(f"{plan.output}: cannot write the index: {err.strerror}") from err
        raise


# errno values that mean the output cannot be written (reported as IndexWriteError, not a traceback)
_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _run_and_publish(
    plan: BuildPlan, workers: int, use_ray: bool, ray_address: str | None, progress: bool, started: float
) -> Manifest:
    start_build(plan)
    executor: Executor
    if use_ray or ray_address is not None:
        from indexer.ray_build import RayBuildError, RayExecutor

        try:
            executor = RayExecutor(ray_address, slot_bytes=_slot_bytes(plan))
        except RayBuildError as err:
            raise BuildError(str(err)) from None
        workers = executor.workers
    elif _useful_workers(plan, workers) == 1:
        workers = 1
        executor = InlineExecutor()
    else:
        executor = ProcessExecutor(workers, shard_slots=min(workers, SHARD_SLOTS))
    result, stats = run_build(plan, executor, workers=workers, progress=progress)
    return publish(plan, result, stats, started)


def _useful_workers(plan: BuildPlan, workers: int) -> int:
    """``workers``, or fewer for pre-tokenized inputs, whose shards are known up front: a worker beyond
    the number of shards would only cost its start-up (a one-shard build then runs in this process)."""
    if plan.source is None:
        return workers
    shards = -(-(plan.source.n_tokens + plan.source.n_docs) // plan.shard_target)
    return max(1, min(workers, shards))


def _slot_bytes(plan: BuildPlan) -> int:
    """Memory one shard task may use: its share of the budget."""
    return max(1, (plan.budget - _reserve(plan.budget, plan.tokenizer is not None)) // SHARD_SLOTS)


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
    from indexer.format import iter_metadata
    from indexer.manifest import open_shard, read_manifest, verify_shard
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
    bar = progress_bar(enabled=progress, desc="verify", total=manifest.n_tokens, unit="tok", unit_scale=True)
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
