"""``taskgram eval``: run the paper's evaluation (task-gram LM, memorization, generalization, ∞-gram
baseline, performance vs pair counts) against an index, in-process or over HTTP. Heavy imports happen
inside the handler."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

from clients.errors import TaskgramError
from clients.eval.errors import EvalError
from taskgram.choices import COUNT_UNITS
from taskgram.errors import UsageError


def _threshold(text: str) -> tuple[str, int, float]:
    """``TASK:N=VALUE`` (TASK may be a family: translation, mmlu)."""
    try:
        left, value = text.split("=", 1)
        task, n = left.split(":", 1)
        return task, int(n), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--threshold {text!r}: expected TASK:N=VALUE, e.g. triviaqa:3=0.7"
        ) from None


def parse_n(tokens: list[str]) -> tuple[list[int], dict[str, list[int]]]:
    """``--n`` values: plain sizes (``2 3 5``, for every task) and/or per task or family
    (``translation=2,3,4,5 triviaqa=3,5``). Raises ValueError with the offending token."""
    plain: list[int] = []
    per_task: dict[str, list[int]] = {}
    for tok in tokens:
        try:
            if "=" in tok:
                task, values = tok.split("=", 1)
                if not task:
                    raise ValueError
                per_task[task] = [int(v) for v in values.split(",") if v != ""]
                if not per_task[task]:
                    raise ValueError
            else:
                plain.append(int(tok))
        except ValueError:
            raise ValueError(f"--n {tok!r}: expected a size (3) or TASK=N[,N...] (triviaqa=3,5)") from None
    for n in plain + [v for vs in per_task.values() for v in vs]:
        if not 1 <= n <= 10:
            raise ValueError(f"--n {n}: n-gram sizes must be between 1 and 10")
    return plain, per_task


def parse_splits(tokens: list[str] | None, flag: str) -> dict[str, str]:
    """``--table-split``/``--eval-split``: ``SPLIT`` (every task) and/or ``TASK=SPLIT``."""
    out: dict[str, str] = {}
    for tok in tokens or []:
        task, _, split = tok.rpartition("=")
        if not split:
            raise ValueError(f"{flag} {tok!r}: expected SPLIT or TASK=SPLIT")
        out[task or "*"] = split
    return out


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "eval",
        help="reproduce the task-gram memorization/generalization analysis",
        description="Run the evaluation of Wang et al. (ICLR 2025) on local task files against an index. "
        "Stages are cached in --run-dir; rerunning continues where it stopped. See docs/evaluation.md.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--index", metavar="DIR", help="index directory, queried in-process (LocalClient)")
    src.add_argument(
        "--server", metavar="URL", help="taskgram service URL (Client; bearer key from $TASKGRAM_API_KEY)"
    )
    p.add_argument("--index-name", help="index name on the server (default: the server's only index)")
    p.add_argument("--tasks-dir", required=True, help="folder with the task JSON Lines files")
    p.add_argument("--run-dir", required=True, help="output folder (stages, tables, figures, report.json)")
    p.add_argument(
        "--tasks",
        nargs="+",
        default=None,
        help="tasks (default: translation-es/fr/de, triviaqa, mmlu-knowledge, mmlu-reasoning, gsm8k)",
    )
    p.add_argument(
        "--n",
        dest="n_values",
        nargs="+",
        default=None,
        metavar="N|TASK=N,N",
        help="n-gram sizes: for every task (2 3 5, the default) and/or per task or family "
        "(translation=2,3,4,5 triviaqa=3,5 mmlu=3,5 gsm8k=3,5)",
    )
    p.add_argument("--sample", type=int, default=None, help="random examples per task (0 = all; default 300)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--table-split",
        nargs="+",
        default=None,
        metavar="SPLIT|TASK=SPLIT",
        help="build the pair table H_n(T) from this split's file (e.g. triviaqa=train "
        "translation=train) and correlate on the --eval-split examples' pairs found in it",
    )
    p.add_argument(
        "--eval-split",
        nargs="+",
        default=None,
        metavar="SPLIT|TASK=SPLIT",
        help="split whose examples are scored (default: each task's default file)",
    )
    p.add_argument(
        "--preset",
        choices=["paper"],
        help="set every option the paper used (options given explicitly win); the report and stderr name "
        "the choices that cannot be met offline",
    )
    p.add_argument(
        "--stopwords",
        choices=["auto", "always", "never"],
        default="auto",
        help="remove English stopwords: auto = when n <= 3 (the paper's code)",
    )
    p.add_argument("--keep-case", action="store_true", help="do not lower-case n-grams")
    p.add_argument(
        "--max-pairs-per-example",
        type=int,
        default=0,
        help="cap per example, a seeded uniform sample after the semantic filter, reported per task and n "
        "(default 0 = no cap)",
    )
    p.add_argument("--no-semantic-filter", action="store_true", help="keep all pairs (no embedding filter)")
    p.add_argument(
        "--threshold",
        type=_threshold,
        action="append",
        default=[],
        metavar="TASK:N=VALUE",
        help="override a cosine threshold γ (repeatable)",
    )
    p.add_argument(
        "--embedder",
        help="semantic-filter embedder for every task: 'minilm' (all-MiniLM-L6-v2, English), "
        "'multilingual' (Universal Sentence Encoder multilingual v3) or a sentence-transformers model "
        "directory (default: multilingual for translation tasks, minilm for the others; both offline)",
    )
    p.add_argument(
        "--no-case-variants",
        action="store_true",
        help="query each n-gram only as written (not also capitalised / title case)",
    )
    p.add_argument("--count-batch", type=int, default=20_000, help="queries per backend call")
    p.add_argument(
        "--boundary",
        choices=["word", "token"],
        default="word",
        help="word: a match starts and ends at word boundaries (as the paper's word-level counts); "
        "token: also inside longer words",
    )
    p.add_argument(
        "--allow-normalization-mismatch",
        action="store_true",
        help="count on an index whose normalization is not the one the n-grams need (nfkc-lower)",
    )
    p.add_argument(
        "--no-contamination-check",
        action="store_true",
        help="skip the check of which examples share a long n-gram with the corpus",
    )
    p.add_argument(
        "--contamination-n",
        nargs="+",
        type=int,
        default=None,
        help="word n-gram sizes of the contamination check (default 8 13; the paper states 8 and 14)",
    )
    p.add_argument(
        "--decontaminate",
        action="store_true",
        help="drop the examples with an input or output n-gram of --contamination-n in the corpus",
    )
    p.add_argument(
        "--reference-embedder",
        metavar="DIR",
        help="a model directory of the paper's embedder (E5): report per task and n the γ of ours that "
        "keeps the fraction of pairs the paper's γ keeps under it",
    )
    p.add_argument("--permutations", type=int, default=1000, help="within-example permutations of the ρ test")
    p.add_argument("--bootstrap", type=int, default=1000, help="cluster-bootstrap resamples of ρ")
    p.add_argument(
        "--count-unit",
        choices=list(COUNT_UNITS),
        default="documents",
        help="unit of C(s^x) and C((s^x, s^y)) in the task-gram LM: documents containing s^x / both, or "
        "occurrences of s^x / those of them in documents that also contain s^y",
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=["smollm2"],
        help="causal LMs: smollm2 (offline), a model directory, a .gguf file, or a hub name",
    )
    p.add_argument("--device", help="torch device (default: cuda when available)")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto")
    p.add_argument("--llm-batch", type=int, default=8)
    p.add_argument("--max-length", type=int, default=1024, help="LLM context window in tokens")
    p.add_argument(
        "--infgram-context-chars",
        type=int,
        default=4000,
        help="characters of context before s^y for the ∞-gram baseline "
        "(a service refuses phrases over its max query tokens, 1,000 by default)",
    )
    p.add_argument("--no-infgram", action="store_true", help="skip the ∞-gram baseline")
    p.add_argument(
        "--mmlu-metric",
        choices=["accuracy", "logprob"],
        default="accuracy",
        help="MMLU performance: accuracy over the four options (4x the forward passes) or the gold "
        "answer's mean token log-probability",
    )
    p.add_argument(
        "--generate",
        action="store_true",
        default=None,
        help="also generate greedy outputs: novel pairs and BLEU of translations, TriviaQA exact match, "
        "GSM8K BERTScore precision and final-answer accuracy",
    )
    p.add_argument(
        "--trace-outputs",
        type=int,
        default=None,
        metavar="N",
        help="with --generate: trace each output over the index (spans found verbatim, span density); "
        "an output is novel when no span has N words or more",
    )
    p.add_argument(
        "--max-new-tokens", type=int, default=64, help="tokens per one-line greedy output (--generate)"
    )
    p.add_argument(
        "--cot-max-new-tokens", type=int, default=256, help="tokens per GSM8K solution (--generate)"
    )
    p.add_argument(
        "--bertscore-model",
        help="BERTScore encoder for GSM8K: a model directory or hub name "
        "(default: all-MiniLM-L6-v2, offline)",
    )
    p.add_argument(
        "--bertscore-layers",
        type=int,
        default=None,
        help="encoder layer used by BERTScore (with --bertscore-model)",
    )
    p.add_argument("--bins", type=int, default=None, help="pair-count bins for performance (Fig. 3; 5)")
    p.add_argument(
        "--bin-scale",
        choices=["log", "linear"],
        default=None,
        help="Fig. 3 bins: log-spaced (default) or equal width (the paper's code)",
    )
    p.add_argument(
        "--bin-range",
        nargs=2,
        type=float,
        default=None,
        metavar=("LO", "HI"),
        help="pair-count range of the Fig. 3 bins (default: the data's; the paper's code: 0 1000)",
    )
    p.add_argument("--no-figures", action="store_true", help="tables and report only")
    p.add_argument("--no-progress", action="store_true")
    # a stage that fails on a file (OSError names it) or a bad value is reported like bad input
    p.set_defaults(handler=run_eval, failures=(EvalError, TaskgramError, OSError, ValueError))

    tasks = subparsers.add_parser("tasks", help="task files for taskgram eval")
    tasks_sub = tasks.add_subparsers(dest="tasks_command", metavar="COMMAND", required=True)
    conv = tasks_sub.add_parser(
        "convert",
        help="convert a dataset's published files (HF datasets Parquet/Arrow, or JSON) into task files",
        description="Convert trivia_qa (rc.nocontext), mmlu (cais/mmlu), gsm8k (main) or wmt09 (all six "
        "languages with English; Europarl rows too) into the task files of taskgram eval. See "
        "docs/evaluation.md.",
    )
    conv.add_argument("dataset", choices=["trivia_qa", "mmlu", "gsm8k", "wmt09"])
    conv.add_argument("inputs", nargs="+", type=Path, help="data files or folders")
    conv.add_argument("--out", required=True, type=Path, help="tasks folder to write into")
    conv.add_argument("--split", help="split of every input (default: from state.json or the file name)")
    conv.set_defaults(handler=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    from clients.eval.convert import convert
    from clients.eval.tasks import TaskDataError

    try:
        written = convert(args.dataset, args.inputs, args.out, split=args.split)
    except TaskDataError as err:
        print(f"taskgram tasks convert: {err}", file=sys.stderr)
        return 2
    for path, rows in written.items():
        print(f"{path}: {rows} rows")
    return 0


def _open_backend(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from clients.client import Client, LocalClient

    if args.index:
        index_dir = Path(args.index)
        manifest = index_dir / "manifest.json"
        if not manifest.is_file():
            raise UsageError(f"--index {manifest}: missing; is {index_dir} a taskgram index?")
        client: Any = LocalClient(index_dir)
        # the same identity the service reports (GET /v1/indexes): sha256 of the canonical manifest
        identity: dict[str, Any] = {"index": str(index_dir.resolve()), "identity": client.identity}
        try:
            identity["normalization"] = json.loads(manifest.read_bytes()).get("normalization", "none")
        except (ValueError, AttributeError) as err:
            raise UsageError(f"--index {manifest}: not a JSON manifest: {err}") from err
    else:
        # A bearer key from the environment, never from the command line (visible in the process list).
        api_key = os.environ.get("TASKGRAM_API_KEY") or None
        client = Client(args.server, index=args.index_name, api_key=api_key)
        identity = {"server": args.server, "index": args.index_name}
    # the served index's identity (manifest hash) and summary, recorded with the results
    try:
        identity["served"] = [i.model_dump() if hasattr(i, "model_dump") else i for i in client.indexes()]
    except BaseException:
        client.close()  # e.g. a refused API key: no connection is left open
        raise
    if "normalization" not in identity:  # a service: the summary of the index it serves us
        served = [s for s in identity["served"] if isinstance(s, dict)]
        chosen = [s for s in served if s.get("name") == args.index_name] if args.index_name else served
        if len(chosen) == 1 and "normalization" in chosen[0]:
            identity["normalization"] = chosen[0]["normalization"]
    return client, identity


def _require_eval_extra(figures: bool) -> None:
    """scipy (correlations) and matplotlib (figures) come with the ``eval`` extra, not with taskgram."""
    needed = ["scipy"] + (["matplotlib"] if figures else [])
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(
            f"{', '.join(missing)} not installed: taskgram eval needs the eval extra, "
            "pip install 'taskgram[eval]'" + (" (or --no-figures)" if missing == ["matplotlib"] else "")
        )


def run_eval(args: argparse.Namespace) -> int:
    """``taskgram eval``: see ``taskgram eval --help`` and docs/evaluation.md. Returns 0 when every
    stage succeeded, 1 when the report records errors (e.g. a model that does not load); a bad option or a
    failed stage raises (exit 2 with one line naming the option, file or stage)."""
    from clients.eval.pipeline import DEFAULT_TASKS, EvalConfig, Run

    thresholds: dict[str, dict[int, float]] = {}
    for task, n, value in args.threshold:
        thresholds.setdefault(task, {})[n] = value
    unmet: list[str] = []
    if args.preset:
        from clients.eval.preset import apply_preset

        unmet = apply_preset(args, args.preset)
        for line in unmet:
            print(f"taskgram eval: --preset {args.preset}: not as the paper: {line}", file=sys.stderr)
    try:
        n_plain, n_by_task = parse_n(args.n_values if args.n_values is not None else ["2", "3", "5"])
        table_split = parse_splits(args.table_split, "--table-split")
        eval_split = parse_splits(args.eval_split, "--eval-split")
    except ValueError as err:
        raise UsageError(str(err)) from err
    if args.max_pairs_per_example < 0:
        raise UsageError(f"--max-pairs-per-example {args.max_pairs_per_example}: must be >= 0 (0 = no cap)")
    for flag, value in (
        ("--max-new-tokens", args.max_new_tokens),
        ("--cot-max-new-tokens", args.cot_max_new_tokens),
    ):
        if value < 1:
            raise UsageError(f"{flag} {value}: must be >= 1")
    if args.trace_outputs is not None and (not args.generate or args.trace_outputs < 1):
        raise UsageError("--trace-outputs N needs --generate and N >= 1")
    if (args.bertscore_model is None) != (args.bertscore_layers is None):
        raise UsageError("--bertscore-model and --bertscore-layers go together")
    if args.bertscore_layers is not None and args.bertscore_layers < 1:
        raise UsageError(f"--bertscore-layers {args.bertscore_layers}: must be >= 1")
    _require_eval_extra(figures=not args.no_figures)
    cfg = EvalConfig(
        tasks_dir=args.tasks_dir,
        run_dir=args.run_dir,
        tasks=args.tasks or list(DEFAULT_TASKS),
        n_values=n_plain or [2, 3, 5],
        n_by_task=n_by_task,
        sample=(300 if args.sample is None else args.sample) or None,
        seed=args.seed,
        table_split=table_split,
        eval_split=eval_split,
        boundary=args.boundary,
        allow_normalization_mismatch=args.allow_normalization_mismatch,
        contamination=not args.no_contamination_check,
        contamination_n=args.contamination_n or [8, 13],
        decontaminate=args.decontaminate,
        reference_embedder=args.reference_embedder,
        permutations=args.permutations,
        bootstrap=args.bootstrap,
        preset=args.preset,
        preset_unmet=unmet,
        perf_scale=args.bin_scale or "log",
        perf_range=list(args.bin_range) if args.bin_range else None,
        stopwords=args.stopwords,
        lowercase=not args.keep_case,
        max_pairs_per_example=args.max_pairs_per_example or None,
        semantic_filter=not args.no_semantic_filter,
        embedder=args.embedder,
        thresholds=thresholds,
        case_variants=not args.no_case_variants,
        count_batch=args.count_batch,
        count_unit=args.count_unit,
        models=args.models,
        device=args.device,
        dtype=args.dtype,
        llm_batch=args.llm_batch,
        max_length=args.max_length,
        infgram=not args.no_infgram,
        perf_bins=args.bins or 5,
        mmlu_accuracy=args.mmlu_metric == "accuracy",
        figures=not args.no_figures,
        infgram_context_chars=args.infgram_context_chars,
        generate=bool(args.generate),
        trace_outputs=args.trace_outputs,
        max_new_tokens=args.max_new_tokens,
        cot_max_new_tokens=args.cot_max_new_tokens,
        bertscore_model=args.bertscore_model,
        bertscore_layers=args.bertscore_layers or 6,
    )
    backend, identity = _open_backend(args)
    run = Run(cfg, backend, index_identity=identity, progress=not args.no_progress)
    try:
        report = run.run()
    except Exception as err:  # a stage failed: record it in report.json, then fail (exit 2)
        failure = {
            "ok": False,
            "errors": run.errors + [{"stage": type(err).__name__, "error": str(err)}],
            "timings": run.timings,
            "stats": run.stats,
            "config": cfg.to_json(),
            "index": identity,
        }
        Path(args.run_dir).mkdir(parents=True, exist_ok=True)
        (Path(args.run_dir) / "report.json").write_text(
            json.dumps(failure, indent=1, ensure_ascii=False), encoding="utf-8"
        )
        raise
    for e in report["errors"]:
        print(f"taskgram eval: error in {e['stage']}: {e['error']}", file=sys.stderr)
    print(
        json.dumps(
            {
                "run_dir": args.run_dir,
                "ok": report["ok"],
                "timings": report["timings"],
                "counts": report["stats"].get("counts"),
            },
            indent=1,
        )
    )
    return 0 if report["ok"] else 1
