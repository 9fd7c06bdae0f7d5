"""Figures of an evaluation run (matplotlib, Agg backend): memorization bars per task, n and model; the
paper's Fig. 4 (Mem_n and Mem_∞ against model size, a panel per task, with the cluster-bootstrap band);
Fig. 3 (performance against pair-count bins); the WMT novel-pair plot; a GSM8K Kendall-distance panel;
and a log task-gram vs log LLM scatter. Every figure says which p-value or interval it draws."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _recs(rows: list[list[Any]], header: list[str]) -> list[dict[str, Any]]:
    return [dict(zip(header, r, strict=True)) for r in rows]


def _save(fig: Any, path: Path) -> Path:
    plt = _plt()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_memorization(rows: list[list[Any]], header: list[str], path: Path) -> Path:
    """Spearman ρ (one item per pair) per task; bars per (n or ∞-gram) with the 95% cluster-bootstrap
    interval; one panel per model. Hatched bars: within-example permutation p >= 0.05."""
    plt = _plt()
    recs = [r for r in _recs(rows, header) if r["aggregation"] == "pair"]
    models = list(dict.fromkeys(r["model"] for r in recs))
    tasks = list(dict.fromkeys(r["task"] for r in recs))
    series = list(dict.fromkeys((r["scorer"], r["n"]) for r in recs))
    fig, axes = plt.subplots(
        max(len(models), 1), 1, figsize=(max(8, 1.6 * len(tasks)), 4 * max(len(models), 1)), squeeze=False
    )
    width = 0.8 / max(len(series), 1)
    for ax, model in zip(axes[:, 0], models, strict=False):
        for k, (scorer, n) in enumerate(series):
            xs, ys, sig, lo, hi = [], [], [], [], []
            for i, task in enumerate(tasks):
                r = next(
                    (
                        r
                        for r in recs
                        if r["model"] == model and r["task"] == task and r["scorer"] == scorer and r["n"] == n
                    ),
                    None,
                )
                if r is None or r["spearman_rho"] is None:
                    continue
                xs.append(i + (k - (len(series) - 1) / 2) * width)
                ys.append(r["spearman_rho"])
                p = r["spearman_p_perm_within_examples"]
                sig.append(p is not None and p < 0.05)
                a, b = r["rho_ci_lo_cluster_bootstrap"], r["rho_ci_hi_cluster_bootstrap"]
                # a percentile interval need not contain the estimate: whiskers stop at the bar
                lo.append(max(0.0, r["spearman_rho"] - a) if a is not None else 0.0)
                hi.append(max(0.0, b - r["spearman_rho"]) if b is not None else 0.0)
            if not xs:  # nothing to draw: no legend entry either
                continue
            label = f"task-gram n={n}" if scorer == "taskgram" else f"∞-gram (Φ of n={n})"
            bars = ax.bar(
                xs,
                ys,
                width=width,
                label=label,
                color=f"C{k}",
                yerr=[lo, hi],
                capsize=2,
                error_kw={"lw": 0.7},
            )
            for b, s_ in zip(bars, sig, strict=True):
                if not s_:
                    b.set_hatch("//")
                    b.set_alpha(0.45)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks(range(len(tasks)), tasks, rotation=20)
        ax.set_ylabel("Spearman ρ (memorization)")
        filt = recs[0]["pairs_filter"] if recs else ""
        pairs = "H_n(T): cosine > γ" if filt == "gamma" else "all pairs, no semantic filter"
        ax.set_title(
            f"Distributional memorization — {model} — {pairs}\nwhiskers: 95% cluster-bootstrap CI over "
            "examples; hatched: within-example permutation p ≥ 0.05",
            fontsize=9,
        )
        ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return _save(fig, path)


def _size(r: dict[str, Any]) -> float | None:
    p = r.get("parameters")
    return float(p) if p else None


def plot_fig4(rows: list[list[Any]], header: list[str], path: Path) -> Path:
    """The paper's Fig. 4: a panel per task; x = model size (parameters, log scale); a line per Mem_n
    (task-gram, each n) and Mem_∞ (∞-gram over the pairs of that n); the band is the 95% cluster-bootstrap
    interval of ρ; a filled marker has within-example permutation p < 0.05, a hollow one not."""
    plt = _plt()
    recs = [r for r in _recs(rows, header) if r["aggregation"] == "pair" and r["spearman_rho"] is not None]
    tasks = list(dict.fromkeys(r["task"] for r in _recs(rows, header)))
    cols = min(4, max(len(tasks), 1))
    nrows = math.ceil(max(len(tasks), 1) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        sel = [r for r in recs if r["task"] == task]
        series = list(dict.fromkeys((r["scorer"], r["n"]) for r in sel))
        for k, (scorer, n) in enumerate(series):
            pts = sorted(
                (
                    (_size(r) or float(i + 1), r)
                    for i, r in enumerate(x for x in sel if x["scorer"] == scorer and x["n"] == n)
                ),
                key=lambda t: t[0],
            )
            # series side by side around each model size (a factor on the log axis), so they never hide
            # each other where several share a value or there is one model
            shift = 1.08 ** (k - (len(series) - 1) / 2)
            xs = [x * shift for x, _ in pts]
            ys = [r["spearman_rho"] for _, r in pts]
            lo = [r["rho_ci_lo_cluster_bootstrap"] for _, r in pts]
            hi = [r["rho_ci_hi_cluster_bootstrap"] for _, r in pts]
            style = "-" if scorer == "taskgram" else "--"
            label = f"Mem_{n}" if scorer == "taskgram" else f"Mem_∞ (Φ of n={n})"
            color = f"C{k}"
            ax.plot(xs, ys, style, color=color, label=label, lw=1.2)
            if all(v is not None for v in lo + hi):
                if len(xs) > 1:
                    ax.fill_between(xs, lo, hi, color=color, alpha=0.15, lw=0)
                else:
                    # one model: the interval as a bar (it need not contain the estimate)
                    ax.plot([xs[0], xs[0]], [lo[0], hi[0]], color=color, lw=6, alpha=0.25)
            for x, (_, r) in zip(xs, pts, strict=True):
                p = r["spearman_p_perm_within_examples"]
                filled = p is not None and p < 0.05
                ax.plot([x], [r["spearman_rho"]], "o", color=color, mfc=color if filled else "white", ms=5)
        if any(_size(r) for r in sel):
            from matplotlib.ticker import NullFormatter

            ax.set_xscale("log")
            sizes = sorted({s_ for s_ in (_size(r) for r in sel) if s_})
            ax.set_xticks(sizes, [f"{v / 1e6:.0f}M" if v < 1e9 else f"{v / 1e9:.1f}B" for v in sizes])
            ax.xaxis.set_minor_formatter(NullFormatter())  # only the models' sizes are labelled
            ax.set_xlabel("model parameters", fontsize=8)
        else:
            ax.set_xlabel("model", fontsize=8)
        ax.axhline(0, color="black", lw=0.5)
        ax.set_title(task, fontsize=9)
        ax.set_ylabel("Spearman ρ", fontsize=8)
        if sel:
            ax.legend(fontsize=6)
        else:
            ax.text(0.5, 0.5, "no correlation\n(< 5 items)", ha="center", va="center", transform=ax.transAxes)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    filt = recs[0]["pairs_filter"] if recs else ""
    fig.suptitle(
        f"Mem_n and Mem_∞ vs model size ({'H_n(T)' if filt == 'gamma' else 'all pairs'}); band/bars: 95% "
        "cluster-bootstrap CI; filled: within-example permutation p < 0.05",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return _save(fig, path)


def plot_gsm8k_kendall(rows: list[list[Any]], header: list[str], path: Path) -> Path:
    """GSM8K generalization (§5): the fraction of discordant item pairs (solid) and the paper code's
    (1 − τ_b)/2 (dotted) against model size, per n and scorer."""
    plt = _plt()
    recs = [
        r
        for r in _recs(rows, header)
        if r["task"] == "gsm8k" and r["aggregation"] == "pair" and r["discordant_fraction"] is not None
    ]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for k, (scorer, n) in enumerate(dict.fromkeys((r["scorer"], r["n"]) for r in recs)):
        sel = [r for r in recs if r["scorer"] == scorer and r["n"] == n]
        xs = [_size(r) or float(i + 1) for i, r in enumerate(sel)]
        label = f"task-gram n={n}" if scorer == "taskgram" else f"∞-gram (Φ of n={n})"
        ax.plot(
            xs, [r["discordant_fraction"] for r in sel], "o-", color=f"C{k}", label=f"{label}: discordant"
        )
        ax.plot(
            xs, [r["kendall_distance_tau_b"] for r in sel], "s:", color=f"C{k}", label=f"{label}: (1−τ_b)/2"
        )
    if any(_size(r) for r in recs):
        ax.set_xscale("log")
    ax.set_xlabel("model parameters", fontsize=8)
    ax.set_ylabel("fraction of item pairs", fontsize=8)
    ax.set_title("GSM8K: Kendall distance (generalization)", fontsize=9)
    if recs:
        ax.legend(fontsize=6)
    else:
        ax.text(
            0.5, 0.5, "no GSM8K correlation (< 5 items)", ha="center", va="center", transform=ax.transAxes
        )
    fig.tight_layout()
    return _save(fig, path)


def plot_novel_pairs(novelty: list[dict[str, Any]], path: Path) -> Path:
    """WMT novel pairs: the fraction of source/generated n-gram pairs never co-occurring in the corpus,
    per translation task and n, a bar per model; numbers: novel / all pairs."""
    plt = _plt()
    tasks = list(dict.fromkeys(r["task"] for r in novelty))
    keys = list(dict.fromkeys((r["model"], r["n"]) for r in novelty))
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(tasks)), 3.8))
    width = 0.8 / max(len(keys), 1)
    for k, (model, n) in enumerate(keys):
        xs, ys, labels = [], [], []
        for i, task in enumerate(tasks):
            r = next((r for r in novelty if r["task"] == task and r["model"] == model and r["n"] == n), None)
            if r is None or r["novel_fraction"] is None:
                continue
            xs.append(i + (k - (len(keys) - 1) / 2) * width)
            ys.append(r["novel_fraction"])
            labels.append(f"{r['novel']}/{r['pairs']}")
        bars = ax.bar(xs, ys, width=width, color=f"C{k}", label=f"{model} n={n}")
        for b, text in zip(bars, labels, strict=True):
            ax.annotate(
                text,
                (b.get_x() + b.get_width() / 2, b.get_height()),
                fontsize=6,
                ha="center",
                textcoords="offset points",
                xytext=(0, 2),
            )
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylim(0, 1.25)  # room above the bars for their labels and the legend
    ax.set_ylabel("novel pairs / generated pairs", fontsize=8)
    ax.set_title("Novel n-gram pairs in generated translations (count 0 in the corpus)", fontsize=9)
    ax.legend(fontsize=7, loc="upper center", ncol=max(1, len(keys)))
    fig.tight_layout()
    return _save(fig, path)


def plot_fig3(rows: list[list[Any]], header: list[str], path: Path) -> Path:
    """Fig. 3: mean per-example metric in bins of the example's total pair count (log-spaced by default,
    or the paper code's equal width); a panel per task and n, a line per model."""
    plt = _plt()
    recs = _recs(rows, header)
    keys = list(dict.fromkeys((r["task"], r["n"]) for r in recs))
    cols = min(4, max(len(keys), 1))
    nrows = math.ceil(max(len(keys), 1) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    scale = recs[0]["bin_scale"] if recs else "linear"
    for ax, (task, n) in zip(axes.flat, keys, strict=False):
        sel = [r for r in recs if r["task"] == task and r["n"] == n]
        for k, model in enumerate(dict.fromkeys(r["model"] for r in sel)):
            pts = [
                (
                    math.sqrt((r["bin_lo"] + 1) * (r["bin_hi"] + 1)) - 1
                    if scale == "log"
                    else (r["bin_lo"] + r["bin_hi"]) / 2,
                    r["mean_metric"],
                    r["examples"],
                )
                for r in sel
                if r["model"] == model and r["mean_metric"] is not None
            ]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=f"C{k}", label=model)
                for x, y, c in pts:
                    ax.annotate(str(c), (x, y), fontsize=7, textcoords="offset points", xytext=(0, 4))
        if scale == "log":  # symlog: linear below 1, so the bin of zero counts has a place
            ax.set_xscale("symlog", linthresh=1)
            ax.set_xlim(0, 1.3 * max([r["bin_hi"] for r in sel] + [1.0]))
        ax.set_title(f"{task} (n={n}, pairs: {sel[0]['pairs_filter'] if sel else ''})", fontsize=9)
        ax.set_xlabel(f"pair count per example ({scale} bins, centre)", fontsize=8)
        ax.set_ylabel(sel[0]["metric"] if sel else "", fontsize=8)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    if keys:
        axes.flat[0].legend(fontsize=7)
    fig.suptitle("Performance vs. task-gram pair count (numbers: examples per bin)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))  # room for the suptitle
    return _save(fig, path)


def plot_scatter(
    data: dict[tuple[str, int], tuple[list[float], list[float]]], model: str, path: Path
) -> Path:
    """log P_taskgram vs log P_LLM over Φ, a panel per (task, n)."""
    plt = _plt()
    keys = list(data)
    cols = min(4, len(keys))
    nrows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.8 * cols, 3.4 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        xs, ys = data[key]
        ax.scatter(xs, ys, s=5, alpha=0.4)
        ax.set_title(f"{key[0]} n={key[1]} ({len(xs)} pairs)", fontsize=9)
        ax.set_xlabel("log P task-gram", fontsize=8)
        ax.set_ylabel(f"log P LLM ({model})", fontsize=8)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
