"""Tables (CSV), the JSON report and the figures of an evaluation run.

Memorization (Definition 3) is computed over Φ = the task-gram pairs (nonzero count) of the sampled
examples: ρ between log P_taskgram(s^y|s^x) and log P_LLM(s^y | u ⊕ x ⊕ y[:m]), with two aggregations
(column ``aggregation``): ``pair``, one item per pair as Definition 3 states it, and ``sy_mean``, the
authors' code, one item per (example, s^y) with the task-gram value averaged over its s^x. Each is
reported over H_n(T) (``pairs_filter = gamma``: cosine > γ, the paper's table) and over all pairs
(``none``). Items whose s^y could not be located in y, was too long for the model's window (LLM) or whose
∞-gram probability is 0 are left out and counted in ``dropped``. p-values: ``spearman_p_iid`` (scipy,
items independent) and, respecting examples, ``spearman_p_perm_within_examples`` and the cluster
bootstrap interval ``rho_ci_*_cluster_bootstrap`` (see :mod:`clients.eval.metrics`).

Per-example performance (Fig. 3): the paper's measure of a generated output when ``--generate`` produced
one (sentence BLEU for translation, exact match for TriviaQA, BERTScore precision for GSM8K); MMLU
accuracy (the gold option has the highest summed log-probability of the four) when the options were
scored; otherwise the mean log-probability per token of the reference output y under the model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clients.eval.metrics import aggregate_per_output, correlate, grouped_inference, performance_bins
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
    perf_scale: str  # Fig. 3 bins: "log" or "linear"
    perf_range: tuple[float, float] | None  # Fig. 3 pair-count range (None: the data's)
    figures: bool
    seed: int
    permutations: int  # within-example permutations of the ρ test
    bootstrap: int  # cluster-bootstrap resamples of ρ
    model_identities: Mapping[str, Any]  # model -> its files' hash
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
    "aggregation",
    "model",
    "parameters",
    "scorer",
    "pairs",
    "dropped",
    "items",
    "examples",
    "spearman_rho",
    "spearman_p_iid",
    "spearman_p_perm_within_examples",
    "permutations",
    "rho_ci_lo_cluster_bootstrap",
    "rho_ci_hi_cluster_bootstrap",
    "bootstrap_resamples",
    "kendall_tau_b",
    "kendall_p_iid",
    "kendall_distance_tau_b",
    "discordant_fraction",
    "tied_fraction",
    "note",
]
PERF_HEADER = [
    "task",
    "n",
    "pairs_filter",
    "model",
    "parameters",
    "metric",
    "bin_scale",
    "bin_lo",
    "bin_hi",
    "examples",
    "mean_metric",
]


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


def _mem_rows(
    run: RunSummary,
    head: list[Any],
    scorer: str,
    total: int,
    items: list[tuple[str, str, float, float]],
) -> list[list[Any]]:
    """Two rows (aggregation ``pair`` and ``sy_mean``) for ``head`` = [task, n, filter, γ]; ``items``:
    (example id, s^y, log P_taskgram or log P_∞, log P_LLM) per pair with both scores."""
    task, n, filt, gamma, model, params = head
    out = []
    groups = [i[0] for i in items]
    for aggregation in ("pair", "sy_mean"):
        if aggregation == "pair":
            g, xs, ys = groups, [i[2] for i in items], [i[3] for i in items]
            dropped = total - len(items)
        else:
            g, xs, ys = aggregate_per_output(
                groups, [i[1] for i in items], [i[2] for i in items], [i[3] for i in items]
            )
            dropped = total - len(items)  # pairs, as for ``pair``: the items are (example, s^y)
        c = correlate(xs, ys)
        gi = grouped_inference(
            xs, ys, g, permutations=run.permutations, resamples=run.bootstrap, seed=run.seed
        )
        out.append(
            [
                task,
                n,
                filt,
                gamma,
                aggregation,
                model,
                params,
                scorer,
                total,
                dropped,
                c.n_items,
                gi.clusters,
                c.spearman_rho,
                c.spearman_p,
                gi.perm_p if c.spearman_rho is not None else None,
                gi.permutations if c.spearman_rho is not None else 0,
                gi.ci_lo if c.spearman_rho is not None else None,
                gi.ci_hi if c.spearman_rho is not None else None,
                gi.resamples if c.spearman_rho is not None else 0,
                c.kendall_tau,
                c.kendall_p,
                c.kendall_distance,
                c.discordant_fraction,
                c.tied_fraction,
                "; ".join(x for x in (c.note, gi.note if c.spearman_rho is not None else "") if x),
            ]
        )
    return out


def write_report(
    run: RunSummary,
    examples: dict[str, list[Example]],
    taskgram: dict[tuple[str, int], list[TaskgramPair]],
    llm_results: dict[str, dict],
    inf: dict | None,
    generated: dict[str, dict[str, dict[str, tuple[str, float]]]] | None = None,
    novelty: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """``generated``: model -> task -> example id -> (metric, value) of the generated outputs;
    ``novelty``: the novel-pair rows of ``--generate`` (the WMT novel-pair figure)."""
    from clients.eval.plots import (
        plot_fig3,
        plot_fig4,
        plot_gsm8k_kendall,
        plot_memorization,
        plot_novel_pairs,
        plot_scatter,
    )

    tables = run.run_dir / "tables"
    models = list(llm_results)
    params = {m: llm_results[m].get("parameters") for m in models}
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
            row += [p.in_h, p.in_all]
            rows.append(row)
        write_csv_atomic(
            tables / f"taskgram-{task}-n{n}.csv",
            ["example_id", "sx", "sy", "cosine", "pair_count", "sx_count", "log_p_taskgram"]
            + [f"log_p_llm[{m}]" for m in models]
            + ["log_p_infgram", "in_filtered_analysis", "in_unfiltered_analysis"],
            rows,
        )
        inf_col = 7 + len(models)
        filters = [("gamma", gamma), ("none", None)] if gamma is not None else [("none", None)]
        for filt, g in filters:
            sel = [r for r in rows if (r[-2] if filt == "gamma" else r[-1])]
            for k, m in enumerate(models):
                col = 7 + k
                have = [r for r in sel if r[col] is not None]
                head = [task, n, filt, g, m, params[m]]
                mem_rows += _mem_rows(
                    run, head, "taskgram", len(sel), [(r[0], r[2], r[6], r[col]) for r in have]
                )
                if k == 0 and filt == "none":
                    scatter[(task, n)] = ([r[6] for r in have], [r[col] for r in have])
                if inf is not None:
                    both = [r for r in have if r[inf_col] is not None]
                    mem_rows += _mem_rows(
                        run, head, "infgram", len(sel), [(r[0], r[2], r[inf_col], r[col]) for r in both]
                    )
            # performance vs pair-count bins (Eq. 4 / Fig. 3)
            sums: dict[str, int] = {e.id: 0 for e in examples[task]}
            for r in sel:
                sums[r[0]] += r[4]
            lo, hi = (run.perf_range[0], run.perf_range[1]) if run.perf_range else (None, None)
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
                bins = performance_bins(
                    [c for c, _ in ok],
                    [v for _, v in ok],
                    n_bins=run.perf_bins,
                    lo=lo,
                    hi=hi,
                    scale=run.perf_scale,
                )
                for b in bins:
                    perf_rows.append(
                        [
                            task,
                            n,
                            filt,
                            m,
                            params[m],
                            metric_name,
                            run.perf_scale,
                            b.lo,
                            b.hi,
                            b.n_examples,
                            b.mean_metric,
                        ]
                    )
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
    figures: list[dict[str, str]] = []
    fig_dir = run.run_dir / "figures"

    def add(path: Any, what: str) -> None:
        if path is not None:
            figures.append({"path": str(path), "shows": what})

    for filt in dict.fromkeys(r[2] for r in mem_rows) if run.figures else ():
        sub = [r for r in mem_rows if r[2] == filt]
        pairs_desc = "H_n(T) (cosine > γ)" if filt == "gamma" else "all pairs"
        add(
            plot_memorization(sub, MEM_HEADER, fig_dir / f"memorization-{filt}.png"),
            f"Spearman ρ per task, n and scorer over {pairs_desc}, one item per pair, with 95% "
            "cluster-bootstrap intervals; hatched bars: within-example permutation p >= 0.05",
        )
        add(
            plot_fig4(sub, MEM_HEADER, fig_dir / f"fig4-{filt}.png"),
            f"Fig. 4: Mem_n and Mem_∞ against model size, one panel per task, over {pairs_desc}; band: "
            "95% cluster-bootstrap interval; filled markers: within-example permutation p < 0.05",
        )
        psub = [r for r in perf_rows if r[2] == filt]
        if psub:
            add(
                plot_fig3(psub, PERF_HEADER, fig_dir / f"performance-{filt}.png"),
                f"Fig. 3: mean performance per {run.perf_scale}-spaced bin of the example's total pair "
                f"count over {pairs_desc}, per task and n (numbers: examples per bin)",
            )
        if any(r[0] == "gsm8k" for r in sub):
            add(
                plot_gsm8k_kendall(sub, MEM_HEADER, fig_dir / f"gsm8k-kendall-{filt}.png"),
                f"GSM8K generalization over {pairs_desc}: the fraction of discordant item pairs and "
                "(1 − τ_b)/2 against model size, per n and scorer",
            )
    if scatter and run.figures:
        add(
            plot_scatter(scatter, models[0] if models else "", fig_dir / "taskgram-vs-llm.png"),
            "log P_task-gram against log P_LLM over all nonzero pairs, a panel per task and n",
        )
    if novelty and run.figures:
        add(
            plot_novel_pairs(novelty, fig_dir / "wmt-novel-pairs.png"),
            "novel (never co-occurring) source/generated pairs per translation task and n, per model",
        )
    not_located = {
        m: sum(len(r["not_located"]) for t in llm_results[m]["scores"].values() for r in t.values())
        for m in models
    }
    dropped_long = {
        m: sum(len(r.get("dropped", {})) for t in llm_results[m]["scores"].values() for r in t.values())
        for m in models
    }
    return {
        "config": run.config,
        "index": run.index,
        "models": {m: llm_results[m]["name"] for m in models},
        "model_files": dict(run.model_identities),
        "model_parameters": params,
        "requested_models": list(run.models),
        "stats": run.stats,
        "sy_not_located": not_located,
        "sy_dropped_too_long": dropped_long,
        "performance": overall,
        "memorization": [dict(zip(MEM_HEADER, r, strict=True)) for r in mem_rows],
        "figures": figures,
        "timings": dict(run.timings),
        "errors": list(run.errors),
        "ok": not run.errors,
    }
