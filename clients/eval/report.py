"""Tables (CSV), the JSON report and the figures of an evaluation run.

Memorization (Definition 3) is computed over Φ = the task-gram pairs (nonzero count) of the sampled
examples, one item per pair, as the paper defines it: ρ between log P_taskgram(s^y|s^x) and
log P_LLM(s^y | u ⊕ x ⊕ y[:m]). It is reported twice: over H_n(T) (``pairs_filter = gamma``: cosine > γ,
the paper's table) and over all pairs (``none``). Items whose s^y could not be located in y (LLM) or whose
∞-gram probability is 0 are left out and counted in ``dropped``. Per-example performance (Fig. 3): the
paper's measure of a generated output when ``--generate`` produced one (sentence BLEU for translation,
exact match for TriviaQA, BERTScore precision for GSM8K); MMLU accuracy (the gold option has the highest
summed log-probability of the four) when the options were scored; otherwise the mean log-probability per
token of the reference output y under the model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clients.eval.metrics import correlate, performance_bins
from taskgram.files import write_csv_atomic

if TYPE_CHECKING:
    from clients.eval.taskgram_lm import TaskgramPair
    from clients.eval.tasks import Example



@dataclass(frozen=True)
class RunSummary:
    """What the report needs to know of a run (the pipeline's ``Run.summary()`` builds it): where the
    run writes, its configuration, the γ thresholds used, and what it recorded so far."""

    run_dir: Path
    config: dict[str, Any]  # EvalConfig.to_json()
    models: list[str]  # the requested models, as given
    perf_bins: int
    figures: bool
    gammas: Mapping[tuple[str, int], float | None]
    index: dict[str, Any]  # the index identity
    stats: dict[str, Any]
    timings: Mapping[str, float]
    errors: list[dict[str, Any]]


MEM_HEADER = [
    "task",
    "n",
    "pairs_filter",
    "gamma",
    "model",
    "scorer",
    "pairs",
    "dropped",
    "items",
    "spearman_rho",
    "spearman_p",
    "kendall_tau",
    "kendall_p",
    "kendall_distance",
    "note",
]
PERF_HEADER = ["task", "n", "pairs_filter", "model", "metric", "bin_lo", "bin_hi", "examples", "mean_metric"]


def example_metric(task: str, rec: dict[str, Any] | None) -> tuple[str, float | None]:
    """(metric name, value) of one example under one model."""
    if task.startswith("mmlu") and rec is not None and rec["choices"]:
        if rec["y"] is None or any(v is None for v in rec["choices"].values()):
            return "accuracy", None
        gold = rec["y"][0]
        return "accuracy", float(all(gold > v for v in rec["choices"].values()))
    if rec is None or rec["y"] is None or rec["y"][1] == 0:
        return "y_logprob_per_token", None
    return "y_logprob_per_token", rec["y"][0] / rec["y"][1]


def _mem_row(
    task: str,
    n: int,
    filt: str,
    gamma: float | None,
    model: str,
    scorer: str,
    total: int,
    xs: list[float],
    ys: list[float],
) -> list[Any]:
    c = correlate(xs, ys)
    return [
        task,
        n,
        filt,
        gamma,
        model,
        scorer,
        total,
        total - c.n_items,
        c.n_items,
        c.spearman_rho,
        c.spearman_p,
        c.kendall_tau,
        c.kendall_p,
        c.kendall_distance,
        c.note,
    ]


def write_report(
    run: RunSummary,
    examples: dict[str, list[Example]],
    taskgram: dict[tuple[str, int], list[TaskgramPair]],
    llm_results: dict[str, dict],
    inf: dict | None,
    generated: dict[str, dict[str, dict[str, tuple[str, float]]]] | None = None,
) -> dict[str, Any]:
    """``generated``: model -> task -> example id -> (metric, value) of the generated outputs."""
    from clients.eval.plots import plot_memorization, plot_performance, plot_scatter

    tables = run.run_dir / "tables"
    models = list(llm_results)
    mem_rows: list[list[Any]] = []
    perf_rows: list[list[Any]] = []
    scatter: dict[tuple[str, int], tuple[list[float], list[float]]] = {}
    for (task, n), pairs in taskgram.items():
        gamma = run.gammas.get((task, n))
        name = f"{n}\t"
        rows = []
        for p in pairs:
            row: list[Any] = [p.example_id, p.sx, p.sy, p.cosine, p.pair_count, p.sx_count, p.log_prob]
            for m in models:
                rec = llm_results[m]["scores"].get(task, {}).get(p.example_id)
                sc = rec["sy"].get(name + p.sy) if rec else None
                row.append(sc[0] if sc else None)
            row.append(inf.get(task, {}).get(p.example_id, {}).get(name + p.sy) if inf else None)
            rows.append(row)
        write_csv_atomic(
            tables / f"taskgram-{task}-n{n}.csv",
            ["example_id", "sx", "sy", "cosine", "pair_count", "sx_count", "log_p_taskgram"]
            + [f"log_p_llm[{m}]" for m in models]
            + ["log_p_infgram"],
            rows,
        )
        filters = [("gamma", gamma), ("none", None)] if gamma is not None else [("none", None)]
        for filt, g in filters:
            sel = [r for r in rows if g is None or r[3] > g]
            for k, m in enumerate(models):
                col = 7 + k
                have = [r for r in sel if r[col] is not None]
                mem_rows.append(
                    _mem_row(
                        task,
                        n,
                        filt,
                        g,
                        m,
                        "taskgram",
                        len(sel),
                        [r[6] for r in have],
                        [r[col] for r in have],
                    )
                )
                if k == 0 and filt == "none":
                    scatter[(task, n)] = ([r[6] for r in have], [r[col] for r in have])
                if inf is not None:
                    both = [r for r in have if r[-1] is not None]
                    mem_rows.append(
                        _mem_row(
                            task,
                            n,
                            filt,
                            g,
                            m,
                            "infgram",
                            len(sel),
                            [r[-1] for r in both],
                            [r[col] for r in both],
                        )
                    )
            # performance vs pair-count bins (Eq. 4 / Fig. 3)
            sums: dict[str, int] = {e.id: 0 for e in examples[task]}
            for r in sel:
                sums[r[0]] += r[4]
            for m in models:
                scores = llm_results[m]["scores"].get(task, {})
                from_generation = (generated or {}).get(m, {}).get(task)
                vals = [
                    (
                        sums[e.id],
                        from_generation[e.id] if from_generation else example_metric(task, scores.get(e.id)),
                    )
                    for e in examples[task]
                ]
                metric_name = vals[0][1][0] if vals else ""
                ok = [(c, v[1]) for c, v in vals if v[1] is not None and math.isfinite(v[1])]
                for b in performance_bins([c for c, _ in ok], [v for _, v in ok], n_bins=run.perf_bins):
                    perf_rows.append([task, n, filt, m, metric_name, b.lo, b.hi, b.n_examples, b.mean_metric])
    write_csv_atomic(tables / "memorization.csv", MEM_HEADER, mem_rows)
    write_csv_atomic(tables / "performance.csv", PERF_HEADER, perf_rows)
    overall: dict[str, dict[str, Any]] = {}
    for m in models:
        per_task = {}
        for task, exs in examples.items():
            scores = llm_results[m]["scores"].get(task, {})
            metrics = [example_metric(task, scores.get(e.id)) for e in exs]
            got = [v for _, v in metrics if v is not None]
            per_task[task] = {
                "metric": metrics[0][0] if metrics else None,
                "examples": len(got),
                "mean": sum(got) / len(got) if got else None,
            }
        overall[m] = per_task
    figures = []
    fig_dir = run.run_dir / "figures"
    for filt in dict.fromkeys(r[2] for r in mem_rows) if run.figures else ():
        sub = [r for r in mem_rows if r[2] == filt]
        figures.append(str(plot_memorization(sub, MEM_HEADER, fig_dir / f"memorization-{filt}.png")))
        psub = [r for r in perf_rows if r[2] == filt]
        if psub:
            figures.append(str(plot_performance(psub, PERF_HEADER, fig_dir / f"performance-{filt}.png")))
    if scatter and run.figures:
        figures.append(
            str(plot_scatter(scatter, models[0] if models else "", fig_dir / "taskgram-vs-llm.png"))
        )
    not_located = {
        m: sum(len(r["not_located"]) for t in llm_results[m]["scores"].values() for r in t.values())
        for m in models
    }
    return {
        "config": run.config,
        "index": run.index,
        "models": {m: llm_results[m]["name"] for m in models},
        "requested_models": list(run.models),
        "stats": run.stats,
        "sy_not_located": not_located,
        "performance": overall,
        "memorization": [dict(zip(MEM_HEADER, r, strict=True)) for r in mem_rows],
        "figures": figures,
        "timings": dict(run.timings),
        "errors": list(run.errors),
        "ok": not run.errors,
    }
