"""Figures of an evaluation run (matplotlib, Agg backend): memorization per task, n and model (like the
paper's Fig. 4), performance against pair-count bins (Fig. 3), and log task-gram vs log LLM scatter."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_memorization(rows: list[list[Any]], header: list[str], path: Path) -> Path:
    """Spearman ρ per task; bars per (n or ∞-gram); one panel per model. Hatched bars: p >= 0.05."""
    plt = _plt()
    recs = [dict(zip(header, r, strict=True)) for r in rows]
    models = list(dict.fromkeys(r["model"] for r in recs))
    tasks = list(dict.fromkeys(r["task"] for r in recs))
    series = list(dict.fromkeys((r["scorer"], r["n"]) for r in recs))
    fig, axes = plt.subplots(
        len(models), 1, figsize=(max(8, 1.6 * len(tasks)), 4 * len(models)), squeeze=False
    )
    width = 0.8 / max(len(series), 1)
    for ax, model in zip(axes[:, 0], models, strict=True):
        for k, (scorer, n) in enumerate(series):
            xs, ys, sig = [], [], []
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
                sig.append(r["spearman_p"] is not None and r["spearman_p"] < 0.05)
            if not xs:  # nothing to draw: no legend entry either
                continue
            label = f"task-gram n={n}" if scorer == "taskgram" else f"∞-gram (Φ of n={n})"
            bars = ax.bar(xs, ys, width=width, label=label, color=f"C{k}")
            for b, s in zip(bars, sig, strict=True):
                if not s:
                    b.set_hatch("//")
                    b.set_alpha(0.45)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks(range(len(tasks)), tasks, rotation=20)
        ax.set_ylabel("Spearman ρ (memorization)")
        filt = recs[0]["pairs_filter"] if recs else ""
        pairs = "H_n(T): cosine > γ" if filt == "gamma" else "all pairs, no semantic filter"
        ax.set_title(f"Distributional memorization — {model} — {pairs} (hatched: p ≥ 0.05)", fontsize=10)
        ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_performance(rows: list[list[Any]], header: list[str], path: Path) -> Path:
    """Mean per-example metric in equal-width bins of the example's total pair count; a panel per task."""
    plt = _plt()
    recs = [dict(zip(header, r, strict=True)) for r in rows]
    keys = list(dict.fromkeys((r["task"], r["n"]) for r in recs))
    cols = min(4, len(keys))
    nrows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    for ax, (task, n) in zip(axes.flat, keys, strict=False):
        sel = [r for r in recs if r["task"] == task and r["n"] == n]
        for k, model in enumerate(dict.fromkeys(r["model"] for r in sel)):
            pts = [
                ((r["bin_lo"] + r["bin_hi"]) / 2, r["mean_metric"], r["examples"])
                for r in sel
                if r["model"] == model and r["mean_metric"] is not None
            ]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=f"C{k}", label=model)
                for x, y, c in pts:
                    ax.annotate(str(c), (x, y), fontsize=7, textcoords="offset points", xytext=(0, 4))
        ax.set_title(f"{task} (n={n}, pairs: {sel[0]['pairs_filter'] if sel else ''})", fontsize=9)
        ax.set_xlabel("pair count per example (bin centre)", fontsize=8)
        ax.set_ylabel(sel[0]["metric"] if sel else "", fontsize=8)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    if keys:
        axes.flat[0].legend(fontsize=7)
    fig.suptitle("Performance vs. task-gram pair count (numbers: examples per bin)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))  # room for the suptitle
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
