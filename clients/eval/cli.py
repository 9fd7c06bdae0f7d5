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
from taskgram.api import COUNT_UNITS
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
    p.add_argument("--n", dest="n_values", nargs="+", type=int, default=[2, 3, 5], help="n-gram sizes (2..5)")
    p.add_argument("--sample", type=int, default=300, help="random examples per task (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--stopwords",
        choices=["auto", "always", "never"],
        default="auto",
        help="remove English stopwords: auto = when n <= 3 (the paper's code)",
    )
    p.add_argument("--keep-case", action="store_true", help="do not lower-case n-grams")
    p.add_argument("--max-pairs-per-example", type=int, default=2000, help="0 = no cap")
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
    p.add_argument("--bins", type=int, default=5, help="pair-count bins for performance (Fig. 3)")
    p.add_argument("--no-figures", action="store_true", help="tables and report only")
    p.add_argument("--no-progress", action="store_true")
    # a stage that fails on a file (OSError names it) or a bad value is reported like bad input
    p.set_defaults(handler=run_eval, failures=(EvalError, TaskgramError, OSError, ValueError))


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
    for n in args.n_values:
        if not 1 <= n <= 10:
            raise UsageError(f"--n {n}: n-gram sizes must be between 1 and 10")
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
        n_values=args.n_values,
        sample=args.sample or None,
        seed=args.seed,
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
        perf_bins=args.bins,
        mmlu_accuracy=args.mmlu_metric == "accuracy",
        figures=not args.no_figures,
        infgram_context_chars=args.infgram_context_chars,
        generate=args.generate,
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
