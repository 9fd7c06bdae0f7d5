"""``taskgram eval``: the paper's analyses end to end, as resumable stages in a run directory.

Stages (each writes its output under ``RUN_DIR/stages/`` with a key of its inputs; a rerun with the
same inputs skips it):

1. ``examples``  seeded random subset of each task file;
2. ``pairs``     word n-gram pairs per task and n, cosine-filtered (H_n(T) candidates);
3. ``counts``    C(s^x) and C((s^x, s^y)) through the backend, both in ``count_unit`` (documents, or
                 occurrences of s^x), in big batches, cached per index identity in
                 ``RUN_DIR/counts-<index>.jsonl`` (append-only, resumable; the unit is in every key);
4. ``llm-<model>``  log P_LLM of every s^y of the task-gram pairs (Eq. 2) and per-example performance;
5. ``infgram``   log P_∞ of the same s^y (Eq. 5), when the backend has ``infgram_prob``;
6. ``gen-<model>`` (``--generate`` only) greedy outputs of the translation, TriviaQA and GSM8K prompts:
   novel pairs and BLEU of translations, exact match, BERTScore precision (:mod:`clients.eval.generation`);
7. report: ``tables/*.csv``, ``report.json`` (config, index identity, models, stage statistics, errors,
   timings) and ``figures/*.png``.

A failed query or model call is recorded in ``report.json`` under ``errors`` and makes the run fail;
nothing is ever recorded as a zero count.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clients.eval.embed import Embedder, EmbeddingError, pair_cosines, resolve_embedder, threshold_for
from clients.eval.errors import StageError
from clients.eval.infgram import InfgramError, infgram_scores, split_for_infgram
from clients.eval.llm import ModelError, ScoreJob, locate
from clients.eval.pairs import (
    CountBackend,
    CountCache,
    CountingError,
    CountOptions,
    CountUnit,
    StopwordPolicy,
    count_pairs,
    count_phrases,
    extract_pairs,
    pair_key,
    side_options,
)
from clients.eval.report import RunSummary, write_report
from clients.eval.taskgram_lm import TaskgramPair, build_taskgram
from clients.eval.tasks import Example, load_task, sample_examples
from taskgram.files import write_csv_atomic, write_json_atomic
from taskgram.progress import progress_bar

if TYPE_CHECKING:
    from clients.eval.generation import BertScoreModel

DEFAULT_TASKS = (
    "translation-es",
    "translation-fr",
    "translation-de",
    "triviaqa",
    "mmlu-knowledge",
    "mmlu-reasoning",
    "gsm8k",
)



@dataclass
class EvalConfig:
    tasks_dir: str
    run_dir: str
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    n_values: list[int] = field(default_factory=lambda: [2, 3, 5])
    sample: int | None = 300
    seed: int = 0
    stopwords: StopwordPolicy = "auto"
    lowercase: bool = True
    max_pairs_per_example: int | None = 2000
    semantic_filter: bool = True
    embedder: str | None = None  # None: per task family (embed.default_embedder); a builtin name or a dir
    thresholds: dict[str, dict[int, float]] = field(default_factory=dict)
    case_variants: bool = True
    space: str = "both"
    count_batch: int = 20_000
    count_unit: CountUnit = "documents"  # unit of C(s^x) and C((s^x, s^y)): documents or occurrences
    models: list[str] = field(default_factory=lambda: ["smollm2"])
    device: str | None = None
    dtype: str = "auto"
    llm_batch: int = 8
    max_length: int = 1024
    infgram: bool = True
    infgram_batch: int = 1000
    infgram_context_chars: int = (
        4000  # a service refuses phrases over its max_query_tokens (1,000 by default)
    )
    perf_bins: int = 5
    figures: bool = True
    mmlu_accuracy: bool = True  # score all four options (4x the MMLU forward passes)
    generate: bool = False  # greedy outputs: novelty and BLEU, exact match, BERTScore (generation.py)
    max_new_tokens: int = 64  # one-line outputs (translation, TriviaQA)
    cot_max_new_tokens: int = 256  # GSM8K worked solutions
    bertscore_model: str | None = None  # None: all-MiniLM-L6-v2 (offline), its 6 layers
    bertscore_layers: int = 6
    trace_outputs: int | None = None  # --generate: trace each output; novel = no span of >= N words

    def to_json(self) -> dict:
        d = asdict(self)
        d["thresholds"] = {t: {str(n): v for n, v in m.items()} for t, m in self.thresholds.items()}
        return d


def _key(obj: Any) -> str:
    return hashlib.sha256(
        json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode()
    ).hexdigest()


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


class Run:
    """One evaluation run over a backend, its stages cached in ``config.run_dir``."""

    def __init__(
        self,
        config: EvalConfig,
        backend: CountBackend | None,
        *,
        index_identity: dict[str, Any],
        embedder_factory: Callable[[], Embedder] | None = None,
        scorer_factory: Callable[[str], Any] | None = None,
        progress: bool = True,
    ) -> None:
        self.cfg = config
        self.backend = backend
        self.index_identity = index_identity
        self.run_dir = Path(config.run_dir)
        self.embedder_factory = embedder_factory
        self.scorer_factory = scorer_factory
        self.show_progress = progress
        self.errors: list[dict[str, str]] = []
        self.timings: dict[str, float] = {}
        self.stats: dict[str, Any] = {}
        self._embedders: dict[str, Embedder] = {}
        self._counts: CountCache | None = None
        self.gammas: dict[tuple[str, int], float | None] = {}

    # -- stage cache ---------------------------------------------------------------------------
    def _stage(self, name: str, key_obj: Any, compute: Callable[[], Any]) -> Any:
        path = self.run_dir / "stages" / f"{name}.json"
        key = _key(key_obj)
        if path.exists():
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                saved = None
            if isinstance(saved, dict) and saved.get("key") == key:
                return saved["data"]
        started = time.monotonic()
        data = compute()
        self.timings[name] = round(time.monotonic() - started, 3)
        write_json_atomic(path, {"key": key, "data": data}, indent=1)
        return data

    # -- 1. examples ---------------------------------------------------------------------------
    def examples(self) -> dict[str, list[Example]]:
        out = {}
        for task in self.cfg.tasks:
            key = {
                "task": task,
                "sample": self.cfg.sample,
                "seed": self.cfg.seed,
                "file": _file_identity(Path(self.cfg.tasks_dir), task),
            }

            def compute(task: str = task) -> list[dict]:
                rows = sample_examples(load_task(task, self.cfg.tasks_dir), self.cfg.sample, self.cfg.seed)
                return [e.to_json() for e in rows]

            out[task] = [Example.from_json(d) for d in self._stage(f"examples-{task}", key, compute)]
        return out

    # -- 2. pairs ------------------------------------------------------------------------------
    def _get_embedder(self, spec: str) -> Embedder:
        """The embedder named ``spec`` (see ``embed.resolve_embedder``), loaded once; an injected
        factory serves every task."""
        key = "factory" if self.embedder_factory is not None else spec
        if key not in self._embedders:
            if self.embedder_factory is None:
                from clients.eval.embed import load_embedder

                self._embedders[key] = load_embedder(spec)
            else:
                self._embedders[key] = self.embedder_factory()
        return self._embedders[key]

    def pairs(self, examples: dict[str, list[Example]]) -> dict[tuple[str, int], list[list]]:
        """(task, n) -> [[example_id, sx, sy, cosine | None], ...]: all pairs of A_n(T) with s^x != s^y.

        Every pair keeps its cosine; the semantic filter (cosine > γ) is applied when the task-gram table
        is built, so one run reports both H_n(T) and the unfiltered pairs without counting twice."""
        out = {}
        for task, exs in examples.items():
            for n in self.cfg.n_values:
                gamma = threshold_for(task, n, self.cfg.thresholds) if self.cfg.semantic_filter else None
                embedder = resolve_embedder(self.cfg.embedder, task) if self.cfg.semantic_filter else None
                key = {
                    "ids": [e.id for e in exs],
                    "task": task,
                    "n": n,
                    "stopwords": self.cfg.stopwords,
                    "lowercase": self.cfg.lowercase,
                    "cap": self.cfg.max_pairs_per_example,
                    "filter": self.cfg.semantic_filter,
                    "embedder": embedder,
                }

                def compute(
                    task: str = task, n: int = n, exs: list[Example] = exs, embedder: str | None = embedder
                ) -> dict:
                    raw = extract_pairs(
                        exs,
                        task,
                        n,
                        stopwords=self.cfg.stopwords,
                        lowercase=self.cfg.lowercase,
                        max_pairs_per_example=self.cfg.max_pairs_per_example,
                    )
                    if embedder is None:  # the semantic filter is off
                        return {
                            "extracted": len(raw),
                            "pairs": [[p.example_id, p.sx, p.sy, None] for p in raw],
                        }
                    try:
                        cos = pair_cosines([(p.sx, p.sy) for p in raw], self._get_embedder(embedder))
                    except EmbeddingError as err:
                        raise StageError(f"semantic filter of {task} n={n}: {err}") from err
                    return {
                        "extracted": len(raw),
                        "pairs": [
                            [p.example_id, p.sx, p.sy, float(c)] for p, c in zip(raw, cos, strict=True)
                        ],
                    }

                data = self._stage(f"pairs-{task}-n{n}", key, compute)
                self.gammas[(task, n)] = gamma
                passed = sum(1 for r in data["pairs"] if _passes(r[3], gamma))
                self.stats.setdefault("pairs", {})[f"{task}/n{n}"] = {
                    "extracted": data["extracted"],
                    "gamma": gamma,
                    "embedder": embedder,
                    "pass_filter": passed,
                }
                out[(task, n)] = data["pairs"]
        return out

    # -- 3. counts -----------------------------------------------------------------------------
    def _count_cache(self) -> CountCache:
        """The run's count cache, read once: one file per index identity and phrase variants (the unit
        is part of every key in it), shared by the counts and generation stages."""
        if self._counts is None:
            ident = _key(
                {"index": self.index_identity, "case": self.cfg.case_variants, "space": self.cfg.space}
            )
            self._counts = CountCache(self.run_dir / f"counts-{ident[:16]}.jsonl")
        return self._counts

    def counts(self, pairs: dict[tuple[str, int], list[list]]) -> dict[tuple[str, int], list[TaskgramPair]]:
        if self.backend is None:
            raise StageError("counts: no counting backend (give --index DIR or --server URL)")
        unit = self.cfg.count_unit
        try:
            opts = CountOptions(
                case_variants=self.cfg.case_variants,
                space=self.cfg.space,
                batch_size=self.cfg.count_batch,
                unit=unit,
            )
        except ValueError as err:
            raise StageError(f"counts: {err}") from err
        cache = self._count_cache()
        all_pairs = list(dict.fromkeys((sx, sy) for rows in pairs.values() for _, sx, sy, _ in rows))
        all_x = list(dict.fromkeys(sx for sx, _ in all_pairs))
        started = time.monotonic()
        try:
            with self._bar(len(all_x), f"C(s^x) {unit}") as bar:
                x_counts = count_phrases(self.backend, all_x, cache, opts, progress=bar.update)
            pair_started = time.monotonic()
            missing_pairs = sum(1 for a, b in all_pairs if cache.get(pair_key(a, b, unit)) is None)
            with self._bar(len(all_pairs), f"C(pair) {unit}") as bar:
                pair_counts = count_pairs(self.backend, all_pairs, cache, opts, progress=bar.update)
        except CountingError as err:
            raise StageError(f"counts: {err}") from err
        done = time.monotonic()
        self.timings["counts"] = round(done - started, 3)
        self.stats["counts"] = {
            "unit": unit,
            "distinct_pairs": len(all_pairs),
            "distinct_sx": len(all_x),
            "pairs_queried_this_run": missing_pairs,
            "pair_query_seconds": round(done - pair_started, 3),
            "pairs_per_second": round(missing_pairs / max(done - pair_started, 1e-9), 1),
        }
        out = {}
        for (task, n), rows in pairs.items():
            kept, st = build_taskgram(
                ((task, n, ex, sx, sy, cos) for ex, sx, sy, cos in rows), pair_counts, x_counts
            )
            out[(task, n)] = kept
            gamma = self.gammas.get((task, n))
            self.stats.setdefault("taskgram", {})[f"{task}/n{n}"] = {
                "all_pairs": asdict(st),
                "gamma": gamma,
                "filtered_kept": sum(1 for p in kept if _passes(p.cosine, gamma)),
                "filtered_candidates": sum(1 for r in rows if _passes(r[3], gamma)),
            }
        return out

    # -- 4. LLM --------------------------------------------------------------------------------
    def _sy_targets(
        self,
        examples: dict[str, list[Example]],
        taskgram: dict[tuple[str, int], list[TaskgramPair]],
    ) -> dict[str, dict[str, list[tuple[int, str]]]]:
        """task -> example id -> distinct (n, s^y) of its task-gram pairs."""
        out: dict[str, dict[str, list[tuple[int, str]]]] = {t: {} for t in examples}
        for (task, n), rows in taskgram.items():
            for p in rows:
                lst = out[task].setdefault(p.example_id, [])
                if (n, p.sy) not in lst:
                    lst.append((n, p.sy))
        return out

    def llm(
        self,
        model: str,
        examples: dict[str, list[Example]],
        targets: dict[str, dict[str, list[tuple[int, str]]]],
    ) -> dict[str, dict[str, Any]]:
        """task -> example id -> {"y": [lp, n], "choices": {...}, "sy": {"n\\tsy": [lp, n] | None}}."""
        key = {
            "model": model,
            "examples": {t: [e.id for e in exs] for t, exs in examples.items()},
            "targets": targets,
            "dtype": self.cfg.dtype,
            "max_length": self.cfg.max_length,
            "stopwords": self.cfg.stopwords,
            "lowercase": self.cfg.lowercase,
            "mmlu_accuracy": self.cfg.mmlu_accuracy,
        }

        def compute() -> dict:
            scorer = self.scorer_factory(model) if self.scorer_factory else _default_scorer(model, self.cfg)
            jobs: list[ScoreJob] = []
            where: list[tuple[str, str, str, list[str]]] = []  # (task, example id, kind, group names)
            for task, exs in examples.items():
                for ex in exs:
                    base = len(ex.prompt)
                    groups = [[(base, base + len(ex.y))]]
                    names = ["y"]
                    for n, sy in targets[task].get(ex.id, []):
                        _, y_opts = side_options(task, n, self.cfg.stopwords, self.cfg.lowercase)
                        spans = locate(ex.y, sy, y_opts)
                        if spans is None:
                            names.append(f"!{n}\t{sy}")  # not located: reported, never scored
                            groups.append([])
                        else:
                            names.append(f"{n}\t{sy}")
                            groups.append([(base + s, base + e) for s, e in spans])
                    jobs.append(ScoreJob(ex.prompt + ex.y, groups))
                    where.append((task, ex.id, "main", names))
                    for c, choice in enumerate(ex.choices if self.cfg.mmlu_accuracy else ()):
                        if c != ex.answer_index:
                            jobs.append(ScoreJob(ex.prompt + choice, [[(base, base + len(choice))]]))
                            where.append((task, ex.id, f"choice{c}", ["choice"]))
            with self._bar(len(jobs), f"LLM {model}") as bar:
                scores = scorer.score(jobs, progress=bar.update)
            result: dict[str, dict[str, Any]] = defaultdict(dict)
            for (task, ex_id, kind, names), row in zip(where, scores, strict=True):
                rec = result[task].setdefault(ex_id, {"y": None, "choices": {}, "sy": {}, "not_located": []})
                if kind == "main":
                    rec["y"] = [row[0].logprob, row[0].n_tokens] if row[0] else None
                    for name, sc in zip(names[1:], row[1:], strict=True):
                        if name.startswith("!"):
                            rec["not_located"].append(name[1:])
                        else:
                            rec["sy"][name] = [sc.logprob, sc.n_tokens] if sc else None
                else:
                    rec["choices"][kind] = row[0].logprob if row[0] else None
            return {"name": getattr(scorer, "name", model), "scores": dict(result)}

        return self._stage(f"llm-{slug(model)}", key, compute)

    # -- 5. ∞-gram -----------------------------------------------------------------------------
    def infgram(
        self,
        examples: dict[str, list[Example]],
        targets: dict[str, dict[str, list[tuple[int, str]]]],
    ) -> dict[str, dict[str, dict[str, float | None]]]:
        key = {
            "index": self.index_identity,
            "targets": targets,
            "examples": {t: [e.id for e in exs] for t, exs in examples.items()},
            "context_chars": self.cfg.infgram_context_chars,
        }

        def compute() -> dict:
            items: list[tuple[str, str]] = []
            where: list[tuple[str, str, str]] = []
            for task, exs in examples.items():
                for ex in exs:
                    for n, sy in targets[task].get(ex.id, []):
                        _, y_opts = side_options(task, n, self.cfg.stopwords, self.cfg.lowercase)
                        spans = locate(ex.y, sy, y_opts)
                        if spans is None:
                            continue
                        items.append(
                            split_for_infgram(ex.prompt, ex.y, spans, self.cfg.infgram_context_chars)
                        )
                        where.append((task, ex.id, f"{n}\t{sy}"))
            with self._bar(len(items), "∞-gram") as bar:
                scores = infgram_scores(
                    self.backend,  # type: ignore[arg-type]  # checked in run(): it has infgram_prob
                    items,
                    batch_size=self.cfg.infgram_batch,
                    progress=bar.update,
                )
            out: dict[str, dict[str, dict[str, float | None]]] = defaultdict(lambda: defaultdict(dict))
            for (task, ex_id, name), s in zip(where, scores, strict=True):
                out[task][ex_id][name] = s
            return {t: dict(v) for t, v in out.items()}

        return self._stage("infgram", key, compute)

    # -- 6. generation (optional) --------------------------------------------------------------
    def generation(self, examples: dict[str, list[Example]]) -> dict[str, Any]:
        """Greedy outputs per model; novel pairs of translations (per task, n, model) and the paper's
        performance measures: BLEU (translation), exact match (TriviaQA), BERTScore precision and final
        answers (GSM8K). Per-example outputs and metrics in ``tables/generations-<model>.json``;
        ``per_example`` (model -> task -> example id -> (metric, value)) feeds the performance bins."""
        from clients.eval.generation import (
            MetricError,
            generated_task,
            novel_pairs,
            stop_strings,
            task_measures,
            write_tables,
        )

        chosen = {t: exs for t, exs in examples.items() if generated_task(t)}
        result: dict[str, Any] = {
            "max_new_tokens": self.cfg.max_new_tokens,
            "cot_max_new_tokens": self.cfg.cot_max_new_tokens,
            "models": {},
            "novelty": [],
            "performance": [],
            "per_example": {},
        }
        if not chosen:
            return result
        tables = self.run_dir / "tables"
        opts = CountOptions(
            case_variants=self.cfg.case_variants, space=self.cfg.space, batch_size=self.cfg.count_batch
        )
        cache = self._count_cache()
        for model in self.cfg.models:
            key = {
                "model": model,
                "examples": {t: [e.id for e in exs] for t, exs in chosen.items()},
                "max_new_tokens": self.cfg.max_new_tokens,
                "cot_max_new_tokens": self.cfg.cot_max_new_tokens,
                "stop": {t: stop_strings(t) for t in chosen},
                "dtype": self.cfg.dtype,
                "max_length": self.cfg.max_length,
            }

            def compute(model: str = model) -> dict:
                gen = self.scorer_factory(model) if self.scorer_factory else _default_scorer(model, self.cfg)
                if not hasattr(gen, "generate"):
                    raise ModelError(f"model {model!r}: no greedy generation")
                outputs: dict[str, dict[str, str]] = {}
                for t, exs in chosen.items():
                    budget = self.cfg.cot_max_new_tokens if t == "gsm8k" else self.cfg.max_new_tokens
                    with self._bar(len(exs), f"generate {model} {t}") as bar:
                        texts = gen.generate(
                            [ex.prompt for ex in exs], budget, progress=bar.update, stop=stop_strings(t)
                        )
                    outputs[t] = {ex.id: text for ex, text in zip(exs, texts, strict=True)}
                return {"name": getattr(gen, "name", model), "outputs": outputs}

            try:
                data = self._stage(f"gen-{slug(model)}", key, compute)
            except ModelError as err:
                self.errors.append({"stage": f"generate {model}", "error": str(err)})
                continue
            result["models"][model] = data["name"]
            per_example: dict[str, Any] = {}
            metric_of: dict[str, dict[str, tuple[str, float]]] = {}
            for task, exs in chosen.items():
                outs = data["outputs"][task]
                per_example[task] = {i: {"output": outs[i]} for i in outs}
                if self.cfg.trace_outputs is not None:
                    self._trace_outputs(result, per_example[task], task, model, outs)

                try:
                    measures = task_measures(
                        task, exs, outs, bertscore_model=self._bertscore_model, device=self.cfg.device
                    )
                except MetricError as err:
                    self.errors.append({"stage": f"generation metrics {model} {task}", "error": str(err)})
                else:
                    for metric, value in measures.summary.items():
                        result["performance"].append(
                            {
                                "task": task,
                                "model": model,
                                "metric": metric,
                                "examples": len(exs),
                                "value": value,
                            }
                        )
                    for name, how in measures.extra.items():
                        result.setdefault(name, how)
                    for i, rec in measures.per_example.items():
                        per_example[task][i].update(rec)
                    metric_of[task] = {
                        i: (measures.binned, float(rec[measures.binned]))
                        for i, rec in measures.per_example.items()
                    }
                if not task.startswith("translation-"):
                    continue
                spec = resolve_embedder(self.cfg.embedder, task) if self.cfg.semantic_filter else None
                cosines = partial(self._cosines, spec) if spec is not None else None
                for n in self.cfg.n_values:
                    try:
                        nov = novel_pairs(
                            self.backend,  # type: ignore[arg-type]  # counts() has checked it
                            exs,
                            outs,
                            task,
                            n,
                            cache,
                            opts,
                            stopwords=self.cfg.stopwords,
                            lowercase=self.cfg.lowercase,
                            max_pairs_per_example=self.cfg.max_pairs_per_example,
                            cosines=cosines,
                            gamma=threshold_for(task, n, self.cfg.thresholds) if cosines else None,
                        )
                    except CountingError as err:
                        raise StageError(f"generation counts of {task} n={n}: {err}") from err
                    except EmbeddingError as err:
                        raise StageError(f"semantic filter of generated {task} n={n}: {err}") from err
                    rows = nov.pop("rows")
                    result["novelty"].append({"task": task, "n": n, "model": model, **nov})
                    write_csv_atomic(
                        tables / f"generation-pairs-{slug(model)}-{task}-n{n}.csv",
                        ["example_id", "sx", "sy_generated", "cosine", "pair_count"],
                        rows,
                    )
            result["per_example"][model] = metric_of
            write_json_atomic(tables / f"generations-{slug(model)}.json", per_example, indent=1)
        result["tables"] = write_tables(tables, result)
        return result

    def _trace_outputs(
        self, result: dict[str, Any], per_example: dict[str, Any], task: str, model: str, outs: dict[str, str]
    ) -> None:
        """Traced spans and span density of each output (``--trace-outputs N``), into per_example and
        ``tables/generation-trace.csv``."""
        from clients.eval.tracing import TRACE_HEADER, trace_outputs, trace_summary

        min_words = int(self.cfg.trace_outputs or 0)
        try:
            traced = trace_outputs(self.backend, outs, min_words)
        except Exception as err:  # a failed trace stops the run: never a novel output
            raise StageError(f"tracing generated {task} outputs of {model}: {err}") from err
        for i, rec in traced.items():
            per_example[i]["trace"] = rec
        result.setdefault("trace", []).append(trace_summary(task, model, min_words, traced))
        write_csv_atomic(
            self.run_dir / "tables" / "generation-trace.csv",
            TRACE_HEADER,
            [[row[h] for h in TRACE_HEADER] for row in result["trace"]],
        )

    def _cosines(self, spec: str, pairs: list[tuple[str, str]]) -> Any:
        """Cosines of pairs with the embedder named ``spec`` (the semantic filter's)."""
        return pair_cosines(pairs, self._get_embedder(spec))

    def _bertscore_model(self) -> BertScoreModel:
        from clients.eval.generation import BertScoreModel, default_bertscore_model

        if self.cfg.bertscore_model is None:
            return default_bertscore_model()
        return BertScoreModel(self.cfg.bertscore_model, self.cfg.bertscore_layers)

    # -- driver --------------------------------------------------------------------------------
    def _bar(self, total: int, desc: str) -> Any:
        return progress_bar(enabled=self.show_progress, total=total, desc=desc, unit="q", leave=False)

    def summary(self) -> RunSummary:
        """What the report needs to know of this run."""
        return RunSummary(
            run_dir=self.run_dir,
            config=self.cfg.to_json(),
            models=list(self.cfg.models),
            perf_bins=self.cfg.perf_bins,
            figures=self.cfg.figures,
            gammas=self.gammas,
            index=self.index_identity,
            stats=self.stats,
            timings=self.timings,
            errors=self.errors,
        )

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.run_dir / "config.json", self.cfg.to_json(), indent=1)
        examples = self.examples()
        self.stats["examples"] = {t: len(v) for t, v in examples.items()}
        pairs = self.pairs(examples)
        taskgram = self.counts(pairs)
        targets = self._sy_targets(examples, taskgram)
        llm_results: dict[str, dict] = {}
        for model in self.cfg.models:
            try:
                llm_results[model] = self.llm(model, examples, targets)
            except ModelError as err:
                self.errors.append({"stage": f"llm {model}", "error": str(err)})
        inf = None
        if self.cfg.infgram:
            if self.backend is None or not hasattr(self.backend, "infgram_prob"):
                self.errors.append({"stage": "infgram", "error": "the backend has no infgram_prob"})
            else:
                try:
                    inf = self.infgram(examples, targets)
                except InfgramError as err:
                    self.errors.append({"stage": "infgram", "error": str(err)})
        generation = self.generation(examples) if self.cfg.generate else None
        per_example = generation["per_example"] if generation else None
        report = write_report(self.summary(), examples, taskgram, llm_results, inf, per_example)
        if generation is not None:
            report["generation"] = {k: v for k, v in generation.items() if k != "per_example"}
        report["timings"]["total"] = round(time.monotonic() - started, 3)
        write_json_atomic(self.run_dir / "report.json", report, indent=1)
        return report


def _passes(cosine: float | None, gamma: float | None) -> bool:
    """Whether a pair is in H_n(T): no filter, or cosine > γ."""
    return gamma is None or (cosine is not None and cosine > gamma)


def _default_scorer(model: str, cfg: EvalConfig) -> Any:
    from clients.eval.llm import CausalLMScorer

    return CausalLMScorer(
        model, device=cfg.device, dtype=cfg.dtype, max_length=cfg.max_length, batch_size=cfg.llm_batch
    )


def _file_identity(tasks_dir: Path, task: str) -> dict[str, Any]:
    from clients.eval.tasks import task_file

    p = tasks_dir / task_file(task)
    try:
        st = p.stat()
    except OSError:
        return {"path": str(p)}
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)
