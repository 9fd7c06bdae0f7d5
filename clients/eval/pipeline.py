"""``taskgram eval``: the paper's analyses end to end, as resumable stages in a run directory.

Stages (each writes its output under ``RUN_DIR/stages/`` with a key of its inputs; a rerun with the
same inputs skips it):

1. ``examples``  seeded random subset of each task file;
2. ``pairs``     word n-gram pairs per task and n, cosine-filtered (H_n(T) candidates);
3. ``counts``    C(s^x) and C((s^x, s^y)) through the backend, both in ``count_unit`` (documents, or
                 occurrences of s^x), in big batches, cached per index identity in the run folder's
                 result cache ``RUN_DIR/taskgram-cache.sqlite3`` (resumable; the unit and the boundary
                 are in every row's kind; see :class:`clients.eval.pairs.CountCache`);
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

from clients.eval.embed import (
    Embedder,
    EmbeddingError,
    calibrated_gamma,
    embedder_fingerprint,
    pair_cosines,
    resolve_embedder,
    task_family,
    threshold_for,
)
from clients.eval.errors import EvalError, StageError
from clients.eval.infgram import InfgramError, combine_runs, infgram_scores, split_for_infgram
from clients.eval.llm import Dropped, ModelError, ScoreJob, locate
from clients.eval.ngrams import ngrams, words
from clients.eval.pairs import (
    Boundary,
    CountBackend,
    CountCache,
    CountingError,
    CountOptions,
    CountUnit,
    StopwordPolicy,
    cap_pairs,
    count_pairs,
    count_phrases,
    extract_pairs,
    migrate_jsonl,
    pair_key,
    phrases_exist,
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
    n_by_task: dict[str, list[int]] = field(default_factory=dict)  # task or family -> n (over n_values)
    sample: int | None = 300
    seed: int = 0
    # pair table (H_n(T)) from one split's examples, Φ and the correlations on another's; task or family
    # (or "*") -> split; a task without one uses its default file (see tasks.task_file)
    table_split: dict[str, str] = field(default_factory=dict)
    eval_split: dict[str, str] = field(default_factory=dict)
    stopwords: StopwordPolicy = "auto"
    lowercase: bool = True
    max_pairs_per_example: int | None = None  # None: every pair; else a seeded sample after the filter
    semantic_filter: bool = True
    embedder: str | None = None  # None: per task family (embed.default_embedder); a builtin name or a dir
    thresholds: dict[str, dict[int, float]] = field(default_factory=dict)
    case_variants: bool = True
    space: str = "both"
    count_batch: int = 20_000
    count_unit: CountUnit = "documents"  # unit of C(s^x) and C((s^x, s^y)): documents or occurrences
    boundary: Boundary = "word"  # matches start and end at word boundaries ("token": anywhere)
    allow_normalization_mismatch: bool = False
    contamination: bool = True  # which examples share an 8- or 13-gram with the corpus (reported)
    contamination_n: list[int] = field(default_factory=lambda: [8, 13])
    decontaminate: bool = False  # drop those examples
    reference_embedder: str | None = None  # calibrate γ against this embedder (the paper's, e.g. E5)
    permutations: int = 1000  # within-example permutation test of ρ
    bootstrap: int = 1000  # cluster-bootstrap resamples of ρ (over examples)
    preset: str | None = None
    preset_unmet: list[str] = field(default_factory=list)  # the preset's choices this run does not meet
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
    perf_scale: str = "log"  # pair-count bins of Fig. 3: log-spaced, or linear (the paper's code)
    perf_range: list[float] | None = None  # [lo, hi] of those bins (the paper's code: 0 and 1000)
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

    def ns(self, task: str) -> list[int]:
        """The n-gram sizes of a task: ``n_by_task`` by task, then by family, else ``n_values``."""
        for key in (task, task_family(task)):
            if key in self.n_by_task:
                return list(self.n_by_task[key])
        return list(self.n_values)

    def split_of(self, which: dict[str, str], task: str) -> str | None:
        """The split of ``task`` in ``which`` (``table_split`` or ``eval_split``): by task, family, "*"."""
        for key in (task, task_family(task), "*"):
            if key in which:
                return which[key]
        return None

    def required_normalization(self) -> str:
        """The index normalization the n-grams need: NFKC, lower-cased unless ``lowercase`` is off."""
        return "nfkc-lower" if self.lowercase else "nfkc"


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
        self._fingerprints: dict[str, dict[str, Any]] = {}
        self.model_identities: dict[str, dict[str, Any]] = {}
        self.contaminated: dict[str, dict[str, Any]] = {}
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
    def examples(self, role: str = "eval", tasks: list[str] | None = None) -> dict[str, list[Example]]:
        """The seeded sample of each task's file of its ``role`` split (``eval`` or ``table``)."""
        out = {}
        for task in self.cfg.tasks if tasks is None else tasks:
            split = self.cfg.split_of(self.cfg.table_split if role == "table" else self.cfg.eval_split, task)
            key = {
                "task": task,
                "sample": self.cfg.sample,
                "seed": self.cfg.seed,
                "split": split,
                "file": _file_identity(Path(self.cfg.tasks_dir), task, split),
            }

            def compute(task: str = task, split: str | None = split) -> list[dict]:
                rows = sample_examples(
                    load_task(task, self.cfg.tasks_dir, split), self.cfg.sample, self.cfg.seed
                )
                return [e.to_json() for e in rows]

            name = f"examples-{task}" + ("-table" if role == "table" else "")
            out[task] = [Example.from_json(d) for d in self._stage(name, key, compute)]
        return out

    # -- 1b. contamination (defect 28) ---------------------------------------------------------
    def contamination(self, examples: dict[str, list[Example]]) -> dict[str, dict[str, Any]]:
        """Per task and example: whether any word n-gram (n in ``contamination_n``) of its input or
        reference output occurs in the corpus (exact, at ``boundary``). Stopwords are kept; a text
        shorter than n words has no n-gram. With ``decontaminate`` the caller drops the examples that
        have one at any of those n."""
        if self.backend is None:
            raise EvalError("contamination: no counting backend (give --index DIR or --server URL)")
        opts = self._count_options()
        cache = self._count_cache()
        grams: dict[str, dict[str, dict[int, list[str]]]] = {}
        for task, exs in examples.items():
            grams[task] = {}
            for ex in exs:
                per_n: dict[int, list[str]] = {}
                for n in self.cfg.contamination_n:
                    got: list[str] = []
                    for text in (ex.x, ex.y):
                        ws = words(text, lowercase=self.cfg.lowercase)
                        if len(ws) >= n:
                            got.extend(ngrams(ws, n))
                    per_n[n] = list(dict.fromkeys(got))
                grams[task][ex.id] = per_n
        phrases = list(
            dict.fromkeys(g for t in grams.values() for e in t.values() for lst in e.values() for g in lst)
        )
        try:
            with self._bar(len(phrases), "contamination") as bar:
                found = phrases_exist(self.backend, phrases, cache, opts, progress=bar.update)
        except CountingError as err:
            raise EvalError(f"contamination: {err}") from err
        out: dict[str, dict[str, Any]] = {}
        for task, per_ex in grams.items():
            flags = {
                ex_id: {str(n): any(found[g] for g in lst) for n, lst in per_n.items()}
                for ex_id, per_n in per_ex.items()
            }
            out[task] = {
                "examples": len(flags),
                "ngrams_checked": {
                    str(n): sum(len(p[n]) for p in per_ex.values()) for n in self.cfg.contamination_n
                },
                "contaminated": {
                    str(n): sum(1 for f in flags.values() if f[str(n)]) for n in self.cfg.contamination_n
                },
                "contaminated_fraction": {
                    str(n): (sum(1 for f in flags.values() if f[str(n)]) / len(flags) if flags else None)
                    for n in self.cfg.contamination_n
                },
                "per_example": flags,
            }
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

    def _embedder_identity(self, spec: str) -> dict[str, Any]:
        """What the pairs stage key records of an embedder: its files' hash (an injected one: its name)."""
        if self.embedder_factory is not None:
            return {"name": spec, "injected": getattr(self._get_embedder(spec), "name", "factory")}
        if spec not in self._fingerprints:
            try:
                self._fingerprints[spec] = embedder_fingerprint(spec)
            except (EmbeddingError, OSError) as err:
                raise EvalError(f"semantic filter: {err}") from err
        return self._fingerprints[spec]

    def _pair_stage(
        self, task: str, n: int, exs: list[Example], embedder: str | None, name: str
    ) -> dict[str, Any]:
        """Every pair of A_n(T) (s^x != s^y) with its cosine, and the cosines of mismatched control
        pairs (each example's input n-grams with the next example's output n-grams, at most as many as
        the real pairs, a seeded sample) for the γ calibration report."""
        key = {
            "ids": [e.id for e in exs],
            "task": task,
            "n": n,
            "stopwords": self.cfg.stopwords,
            "lowercase": self.cfg.lowercase,
            "filter": self.cfg.semantic_filter,
            "embedder": self._embedder_identity(embedder) if embedder else None,
            "reference": self._embedder_identity(self.cfg.reference_embedder)
            if embedder and self.cfg.reference_embedder
            else None,
            "seed": self.cfg.seed,
        }

        def compute() -> dict:
            raw = extract_pairs(exs, task, n, stopwords=self.cfg.stopwords, lowercase=self.cfg.lowercase)
            if embedder is None:  # the semantic filter is off
                return {"extracted": len(raw), "pairs": [[p.example_id, p.sx, p.sy, None] for p in raw]}
            control = _control_pairs(exs, task, n, self.cfg, len(raw))
            keys = [(p.sx, p.sy) for p in raw]
            try:
                cos = pair_cosines(keys + control, self._get_embedder(embedder))
                ref = (
                    pair_cosines(keys, self._get_embedder(self.cfg.reference_embedder)).tolist()
                    if self.cfg.reference_embedder
                    else None
                )
            except EmbeddingError as err:
                raise EvalError(f"semantic filter of {task} n={n}: {err}") from err
            return {
                "extracted": len(raw),
                "pairs": [[p.example_id, p.sx, p.sy, float(c)] for p, c in zip(raw, cos, strict=False)],
                "control_cosines": [float(c) for c in cos[len(raw) :]],
                "reference_cosines": ref,
            }

        return self._stage(name, key, compute)

    def pairs(
        self,
        examples: dict[str, list[Example]],
        table_examples: dict[str, list[Example]] | None = None,
    ) -> dict[tuple[str, int], list[list]]:
        """(task, n) -> [[example_id, sx, sy, cosine | None, in_h, in_all], ...]: the pairs of A_n(T)
        (s^x != s^y) that enter the filtered analysis (``in_h``: cosine > γ) or the unfiltered one
        (``in_all``), after the per-example cap (a seeded uniform sample after the filter; no cap by
        default). With a table split, only pairs that are also pairs of the table split's examples
        (and pass γ there, for ``in_h``) enter: Φ = the test pairs found in H_n(T) of the table split."""
        out = {}
        for task, exs in examples.items():
            for n in self.cfg.ns(task):
                gamma = threshold_for(task, n, self.cfg.thresholds) if self.cfg.semantic_filter else None
                embedder = resolve_embedder(self.cfg.embedder, task) if self.cfg.semantic_filter else None
                data = self._pair_stage(task, n, exs, embedder, f"pairs-{task}-n{n}")
                rows = data["pairs"]
                in_h = [_passes(r[3], gamma) for r in rows]
                in_all = [True] * len(rows)
                entry: dict[str, Any] = {
                    "extracted": data["extracted"],
                    "gamma": gamma,
                    "embedder": embedder,
                    "pass_filter": sum(in_h),
                }
                if table_examples is not None and task in table_examples:
                    table = self._pair_stage(
                        task, n, table_examples[task], embedder, f"pairs-{task}-n{n}-table"
                    )
                    t_all = {(r[1], r[2]) for r in table["pairs"]}
                    t_h = {(r[1], r[2]) for r in table["pairs"] if _passes(r[3], gamma)}
                    in_all = [(r[1], r[2]) in t_all for r in rows]
                    in_h = [h and (r[1], r[2]) in t_h for h, r in zip(in_h, rows, strict=True)]
                    entry["table"] = {
                        "split": self.cfg.split_of(self.cfg.table_split, task),
                        "examples": len(table_examples[task]),
                        "pairs": len(t_all),
                        "pass_filter": len(t_h),
                        "eval_pairs_in_table": sum(in_all),
                        "eval_pairs_in_filtered_table": sum(in_h),
                    }
                keep_h, keep_all = cap_pairs(
                    rows, self.cfg.max_pairs_per_example, self.cfg.seed, f"{task}\tn{n}", in_h, in_all
                )
                entry["cap"] = {
                    "max_pairs_per_example": self.cfg.max_pairs_per_example,
                    "filtered_before": sum(in_h),
                    "filtered_after": sum(keep_h),
                    "all_before": sum(in_all),
                    "all_after": sum(keep_all),
                    "examples_capped": len(
                        {r[0] for r, h, k in zip(rows, in_h, keep_h, strict=True) if h and not k}
                        | {r[0] for r, a, k in zip(rows, in_all, keep_all, strict=True) if a and not k}
                    ),
                }
                if gamma is not None and "control_cosines" in data:
                    entry["calibration"] = _calibration(data, gamma)
                self.gammas[(task, n)] = gamma
                self.stats.setdefault("pairs", {})[f"{task}/n{n}"] = entry
                out[(task, n)] = [
                    [*r[:4], h, a] for r, h, a in zip(rows, keep_h, keep_all, strict=True) if h or a
                ]
        return out

    # -- 3. counts -----------------------------------------------------------------------------
    def _count_cache(self) -> CountCache:
        """The run's count cache, shared by all counting stages: the rows of this index identity and
        phrase-variant options in the run folder's result cache (``taskgram-cache.sqlite3``; the unit and
        the boundary are in every row's kind). A count cache of the earlier format for the same identity
        and boundary (``counts-<hash>.jsonl``) is read into it once and renamed ``*.migrated``."""
        if self._counts is None:
            variants = {"index": self.index_identity, "case": self.cfg.case_variants, "space": self.cfg.space}
            self._counts = CountCache(self.run_dir, _key(variants))
            legacy = self.run_dir / f"counts-{_key({**variants, 'boundary': self.cfg.boundary})[:16]}.jsonl"
            if legacy.exists():
                try:
                    migrate_jsonl(legacy, self._counts)
                except CountingError as err:
                    raise StageError(f"counts: {err}") from err
        return self._counts

    def _count_options(self, unit: CountUnit | None = None) -> CountOptions:
        try:
            return CountOptions(
                case_variants=self.cfg.case_variants,
                space=self.cfg.space,
                batch_size=self.cfg.count_batch,
                unit=unit or self.cfg.count_unit,
                boundary=self.cfg.boundary,
            )
        except ValueError as err:
            raise EvalError(f"counts: {err}") from err

    def counts(self, pairs: dict[tuple[str, int], list[list]]) -> dict[tuple[str, int], list[TaskgramPair]]:
        if self.backend is None:
            raise StageError("counts: no counting backend (give --index DIR or --server URL)")
        unit = self.cfg.count_unit
        opts = self._count_options()
        cache = self._count_cache()
        all_pairs = list(dict.fromkeys((r[1], r[2]) for rows in pairs.values() for r in rows))
        all_x = list(dict.fromkeys(sx for sx, _ in all_pairs))
        started = time.monotonic()
        try:
            with self._bar(len(all_x), f"C(s^x) {unit}") as bar:
                x_counts = count_phrases(self.backend, all_x, cache, opts, progress=bar.update)
            pair_started = time.monotonic()
            missing_pairs = len(all_pairs) - len(
                cache.get_many(pair_key(a, b, unit, opts.boundary) for a, b in all_pairs)
            )
            with self._bar(len(all_pairs), f"C(pair) {unit}") as bar:
                pair_counts = count_pairs(self.backend, all_pairs, cache, opts, progress=bar.update)
        except CountingError as err:
            raise StageError(f"counts: {err}") from err
        done = time.monotonic()
        self.timings["counts"] = round(done - started, 3)
        self.stats["counts"] = {
            "unit": unit,
            "boundary": opts.boundary,
            "distinct_pairs": len(all_pairs),
            "distinct_sx": len(all_x),
            "pairs_queried_this_run": missing_pairs,
            "pair_query_seconds": round(done - pair_started, 3),
            "pairs_per_second": round(missing_pairs / max(done - pair_started, 1e-9), 1),
        }
        out = {}
        for (task, n), rows in pairs.items():
            kept, st = build_taskgram(
                ((task, n, ex, sx, sy, cos, h, a) for ex, sx, sy, cos, h, a in rows), pair_counts, x_counts
            )
            out[(task, n)] = kept
            gamma = self.gammas.get((task, n))
            self.stats.setdefault("taskgram", {})[f"{task}/n{n}"] = {
                "all_pairs": {
                    "candidates": sum(1 for r in rows if r[5]),
                    "zero_count": sum(1 for r in rows if r[5] and pair_counts[(r[1], r[2])] == 0),
                    "kept": sum(1 for p in kept if p.in_all),
                },
                "counted": asdict(st),
                "gamma": gamma,
                "filtered_kept": sum(1 for p in kept if p.in_h),
                "filtered_candidates": sum(1 for r in rows if r[4]),
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
        """task -> example id -> {"y": [lp, n], "choices": {...}, "sy": {"n\\tsy": [lp, n] | None},
        "not_located": [...], "dropped": {"n\\tsy": why}}; the key holds the model files' hash."""
        key = {
            "model": self._model_identity(model),
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
                rec = result[task].setdefault(
                    ex_id, {"y": None, "choices": {}, "sy": {}, "not_located": [], "dropped": {}}
                )
                if kind == "main":
                    rec["y"] = _score(row[0])
                    if isinstance(row[0], Dropped):
                        rec["dropped"]["y"] = row[0].reason
                    for name, sc in zip(names[1:], row[1:], strict=True):
                        if name.startswith("!"):
                            rec["not_located"].append(name[1:])
                        elif isinstance(sc, Dropped):  # too long for the window: reported, not scored
                            rec["dropped"][name] = sc.reason
                        else:
                            rec["sy"][name] = _score(sc)
                else:
                    got = _score(row[0])
                    rec["choices"][kind] = got[0] if got else None
            return {
                "name": getattr(scorer, "name", model),
                "parameters": getattr(scorer, "n_parameters", None),
                "scores": dict(result),
            }

        return self._stage(f"llm-{slug(model)}", key, compute)

    def _model_identity(self, model: str) -> dict[str, Any]:
        """Name, path and sha256 of a model's files (stage keys), computed once per run."""
        if model not in self.model_identities:
            if self.scorer_factory is not None:
                self.model_identities[model] = {"name": model, "injected": True}
            else:
                from clients.eval.llm import model_fingerprint

                try:
                    self.model_identities[model] = model_fingerprint(model)
                except (ModelError, OSError) as err:
                    raise ModelError(f"model {model!r}: {err}") from err
        return self.model_identities[model]

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
            "scored": "word runs",  # the same words as the LLM (stopwords between runs are context)
        }

        def compute() -> dict:
            items: list[tuple[str, str]] = []
            where: list[tuple[str, str, str]] = []  # one per item: an s^y has one item per word run
            for task, exs in examples.items():
                for ex in exs:
                    for n, sy in targets[task].get(ex.id, []):
                        _, y_opts = side_options(task, n, self.cfg.stopwords, self.cfg.lowercase)
                        spans = locate(ex.y, sy, y_opts)
                        if spans is None:
                            continue
                        runs = split_for_infgram(ex.prompt, ex.y, spans, self.cfg.infgram_context_chars)
                        items.extend(runs)
                        where.extend([(task, ex.id, f"{n}\t{sy}")] * len(runs))
            with self._bar(len(items), "∞-gram") as bar:
                scores = infgram_scores(
                    self.backend,  # type: ignore[arg-type]  # checked in run(): it has infgram_prob
                    items,
                    batch_size=self.cfg.infgram_batch,
                    progress=bar.update,
                )
            per_sy: dict[tuple[str, str, str], list[float | None]] = defaultdict(list)
            for w, s in zip(where, scores, strict=True):
                per_sy[w].append(s)
            out: dict[str, dict[str, dict[str, float | None]]] = defaultdict(lambda: defaultdict(dict))
            for (task, ex_id, name), parts in per_sy.items():
                out[task][ex_id][name] = combine_runs(parts)
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
        opts = self._count_options("documents")  # novelty is a document count, whatever the unit
        cache = self._count_cache()
        for model in self.cfg.models:
            try:
                identity = self._model_identity(model)
            except ModelError as err:
                self.errors.append({"stage": f"generate {model}", "error": str(err)})
                continue
            key = {
                "model": identity,
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
                for n in self.cfg.ns(task):
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
            perf_scale=self.cfg.perf_scale,
            perf_range=(self.cfg.perf_range[0], self.cfg.perf_range[1]) if self.cfg.perf_range else None,
            figures=self.cfg.figures,
            seed=self.cfg.seed,
            permutations=self.cfg.permutations,
            bootstrap=self.cfg.bootstrap,
            model_identities=self.model_identities,
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
        self.stats["normalization"] = {
            "index": check_normalization(self.cfg, self.index_identity),
            "required": self.cfg.required_normalization(),
            "mismatch_allowed": self.cfg.allow_normalization_mismatch,
        }
        examples = self.examples("eval")
        self.stats["examples"] = {t: len(v) for t, v in examples.items()}
        if self.cfg.contamination or self.cfg.decontaminate:
            found = self.contamination(examples)
            self.contaminated = found
            if self.cfg.decontaminate:
                for task, exs in examples.items():
                    bad = {i for i, f in found[task]["per_example"].items() if any(f.values())}
                    examples[task] = [e for e in exs if e.id not in bad]
                    found[task]["dropped"] = len(bad)
            self.stats["contamination"] = {
                t: {k: v for k, v in f.items() if k != "per_example"} for t, f in found.items()
            }
            self.stats["examples_after_decontamination"] = {t: len(v) for t, v in examples.items()}
        table_examples = None
        split_tasks = [
            t
            for t in self.cfg.tasks
            if self.cfg.split_of(self.cfg.table_split, t) is not None
            and self.cfg.split_of(self.cfg.table_split, t) != self.cfg.split_of(self.cfg.eval_split, t)
        ]
        if split_tasks:
            table_examples = self.examples("table", split_tasks)
            self.stats["table_examples"] = {t: len(v) for t, v in table_examples.items()}
        pairs = self.pairs(examples, table_examples)
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
        novelty = generation["novelty"] if generation else None
        report = write_report(self.summary(), examples, taskgram, llm_results, inf, per_example, novelty)
        if generation is not None:
            report["generation"] = {k: v for k, v in generation.items() if k != "per_example"}
        report["timings"]["total"] = round(time.monotonic() - started, 3)
        write_json_atomic(self.run_dir / "report.json", report, indent=1)
        return report


def _score(sc: Any) -> list[float] | None:
    """[log-probability, tokens] of a group score; None for no score or a dropped group."""
    if sc is None or isinstance(sc, Dropped):
        return None
    return [sc.logprob, sc.n_tokens]


def _passes(cosine: float | None, gamma: float | None) -> bool:
    """Whether a pair is in H_n(T): no filter, or cosine > γ."""
    return gamma is None or (cosine is not None and cosine > gamma)


def _default_scorer(model: str, cfg: EvalConfig) -> Any:
    from clients.eval.llm import CausalLMScorer

    return CausalLMScorer(
        model, device=cfg.device, dtype=cfg.dtype, max_length=cfg.max_length, batch_size=cfg.llm_batch
    )


def _control_pairs(
    exs: list[Example], task: str, n: int, cfg: EvalConfig, limit: int
) -> list[tuple[str, str]]:
    """Mismatched control pairs: each example's input n-grams with the *next* example's output n-grams
    (the last with the first), s^x != s^y, distinct; a seeded sample of at most ``limit``."""
    import random

    if len(exs) < 2 or limit < 1:
        return []
    x_opts, y_opts = side_options(task, n, cfg.stopwords, cfg.lowercase)
    ys = [y_opts.extract(e.y) for e in exs]
    out: dict[tuple[str, str], None] = {}
    for i, ex in enumerate(exs):
        for sx in x_opts.extract(ex.x):
            for sy in ys[(i + 1) % len(exs)]:
                if sx != sy:
                    out[(sx, sy)] = None
    pairs = list(out)
    if len(pairs) > limit:
        pairs = random.Random(f"{cfg.seed}\tcontrol\t{task}\t{n}").sample(pairs, limit)
    return pairs


def _calibration(data: dict[str, Any], gamma: float) -> dict[str, Any]:
    """How the filter behaves at γ: the fraction of real and of mismatched control pairs passing and,
    with a reference embedder, the γ of ours that keeps the fraction γ keeps under the reference."""
    real = [r[3] for r in data["pairs"]]
    control = data["control_cosines"]
    out: dict[str, Any] = {
        "pairs": len(real),
        "pass_fraction": sum(1 for c in real if c > gamma) / len(real) if real else None,
        "control_pairs": len(control),
        "control_pass": sum(1 for c in control if c > gamma),
        "control_pass_fraction": sum(1 for c in control if c > gamma) / len(control) if control else None,
    }
    if data.get("reference_cosines") is not None:
        out["reference"] = calibrated_gamma(data["reference_cosines"], gamma, real)
    return out


def check_normalization(cfg: EvalConfig, index_identity: dict[str, Any]) -> str | None:
    """Refuse an index whose normalization is not the one the n-grams need (unless allowed): its
    normalization, or None when the identity does not say (a test backend)."""
    found = index_identity.get("normalization")
    if found is None:
        return None
    need = cfg.required_normalization()
    if found != need and not cfg.allow_normalization_mismatch:
        where = index_identity.get("index") or index_identity.get("server") or "the index"
        raise EvalError(
            f"{where} was built with --normalization {found}, but the n-grams of this run are "
            f"{'NFKC and lower-cased' if cfg.lowercase else 'NFKC'}: case and compatibility variants "
            f"would be missed and pairs lost. Rebuild it with `taskgram build ... --normalization {need}`, "
            "or pass --allow-normalization-mismatch to count on it anyway (recorded in the report)"
        )
    return str(found)


def _file_identity(tasks_dir: Path, task: str, split: str | None = None) -> dict[str, Any]:
    from clients.eval.tasks import task_file

    p = tasks_dir / task_file(task, split)
    try:
        st = p.stat()
    except OSError:
        return {"path": str(p)}
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)
