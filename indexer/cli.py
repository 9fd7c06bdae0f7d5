"""``taskgram build`` and ``taskgram verify``.

Exit codes: 0 success; 1 ``verify`` found problems; 2 bad input or options (one line on stderr naming the
file and line, no traceback); 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from indexer.errors import IndexerError
from taskgram.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_PROBLEMS, UsageError

NORMALIZATIONS = ("none", "lower", "nfkc", "nfkc-lower")
PRETOKENIZED_KINDS = ("megatron", "npy", "raw-u16", "raw-u32")


def register(subparsers: Any) -> None:
    build = subparsers.add_parser(
        "build",
        help="build an index from corpora",
        description=(
            "Build a suffix-array index. INPUT: .jsonl/.json/.jsonl.zst/.jsonl.gz files (one JSON object per "
            "line), .txt files (one document each), directories (recursive) or glob patterns; with "
            "--pretokenized, token files (Megatron .bin/.idx, .npy, raw u16/u32) with document offsets; "
            ".parquet files and HF datasets save_to_disk folders (Arrow; pip install 'taskgram[parquet]'). "
            "Rerunning the same command resumes an interrupted build."
        ),
    )
    build.add_argument("inputs", nargs="+", metavar="INPUT")
    build.add_argument("--output", "-o", required=True, metavar="DIR", help="index folder to create")
    build.add_argument(
        "--tokenizer",
        default=None,
        metavar="T",
        help="builtin name (pythia), tokenizer.json, local folder or hub name (default: pythia for text; "
        "none for --pretokenized)",
    )
    build.add_argument(
        "--text-field", default="text", metavar="F", help="JSON field of the text (dotted path)"
    )
    build.add_argument("--normalization", choices=NORMALIZATIONS, default="none")
    build.add_argument(
        "--memory", default="8G", metavar="SIZE", help="memory budget, e.g. 8G (sets shard size)"
    )
    build.add_argument(
        "--skip-bad-lines", action="store_true", help="skip (and count, per reason) unreadable lines"
    )
    build.add_argument("--force", action="store_true", help="replace an existing, different index in DIR")
    build.add_argument(
        "--pretokenized", choices=PRETOKENIZED_KINDS, default=None, help="inputs are token ids"
    )
    build.add_argument("--vocab-size", type=int, default=None, help="vocabulary size bounding token ids")
    build.add_argument(
        "--offsets",
        action="append",
        default=None,
        metavar="FILE",
        help="document offsets file for the matching npy/raw input (repeat per input)",
    )
    build.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes that tokenize and sort (default: all cores, as far as --memory holds them); "
        "the index is the same for any N",
    )
    build.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run the build's tasks on Ray: a new local Ray without ADDRESS (never a cluster found on "
        "this host: name it to use it), else the cluster at ADDRESS (DIR must be storage every node sees)",
    )
    build.add_argument("--quiet", "-q", action="store_true", help="no progress bars or summary")
    build.set_defaults(handler=run_build, failures=(IndexerError,))

    verify = subparsers.add_parser(
        "verify",
        help="check an index (checksums, offsets, suffix order)",
        description="Check every checksum, array size, document offset, and the suffix order of every shard.",
    )
    verify.add_argument("index_dir", metavar="DIR")
    verify.add_argument(
        "--sample",
        type=int,
        default=None,
        metavar="K",
        help="fast partial check: sizes instead of checksums and K random adjacent suffix pairs per shard",
    )
    verify.add_argument("--seed", type=int, default=0)
    verify.add_argument("--quiet", "-q", action="store_true")
    verify.set_defaults(handler=run_verify, failures=(IndexerError,))


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n} B"


def run_build(args: argparse.Namespace) -> int:
    import logging

    if args.vocab_size is not None and args.vocab_size < 1:
        raise UsageError(f"--vocab-size must be positive, got {args.vocab_size}")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be positive, got {args.workers}")
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    from indexer.pipeline import build_index, peak_rss_bytes

    tokenizer = args.tokenizer
    if tokenizer is None and args.pretokenized is None:
        tokenizer = "pythia"
    try:
        manifest = build_index(
            args.inputs,
            args.output,
            tokenizer=tokenizer,
            text_field=args.text_field,
            normalization=args.normalization,
            memory_budget_bytes=args.memory,
            skip_bad_lines=args.skip_bad_lines,
            progress=not args.quiet,
            force=args.force,
            pretokenized=args.pretokenized,
            vocab_size=args.vocab_size,
            offsets=args.offsets,
            workers=args.workers,
            use_ray=args.ray is not None,
            ray_address=args.ray or None,
        )
    except KeyboardInterrupt:
        print("taskgram build: interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not args.quiet:
        summary = manifest.build.get("summary", {})
        read = manifest.build.get("read", {})
        lines = [
            f"index      {args.output}",
            f"tokens     {manifest.n_tokens:,} ({manifest.token_dtype})",
            f"documents  {manifest.n_docs:,} ({read.get('empty_docs', 0):,} empty)",
            f"shards     {len(manifest.shards)} ({manifest.build.get('resumed_shards', 0)} kept from an "
            "earlier run)",
            f"on disk    {_human_bytes(summary.get('disk_bytes', 0))} "
            f"({summary.get('disk_bytes_per_token', 0):.2f} bytes/token)",
            f"wall time  {summary.get('wall_time_s', 0):.1f} s (sort {summary.get('sort_time_s', 0):.1f} s, "
            f"write {summary.get('write_time_s', 0):.1f} s)",
            f"peak RSS   {_human_bytes(peak_rss_bytes())}"
            + ("" if args.workers == 1 else " (this process; its worker processes are not counted)"),
        ]
        if read.get("blank_lines"):
            lines.append(f"blank      {read['blank_lines']:,} blank lines (not documents)")
        for reason, count in (read.get("skipped") or {}).items():
            first = (read.get("first_skipped") or {}).get(reason, "")
            lines.append(f"skipped    {count:,} line(s): {reason} (first: {first})")
        print("\n".join(lines), file=sys.stderr)
    return EXIT_OK


def run_verify(args: argparse.Namespace) -> int:
    if args.sample is not None and args.sample < 1:
        raise UsageError(f"--sample must be positive, got {args.sample}")
    from indexer.pipeline import verify_index

    try:
        report = verify_index(args.index_dir, sample=args.sample, seed=args.seed, progress=not args.quiet)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if report.problems:
        for problem in report.problems:
            print(f"taskgram verify: {problem}", file=sys.stderr)
        print(f"{args.index_dir}: {len(report.problems)} problem(s)", file=sys.stderr)
        return EXIT_PROBLEMS
    how = "sampled check" if report.sampled else "full check"
    print(f"{args.index_dir}: OK ({report.shards_checked} shard(s), {how})")
    return EXIT_OK
