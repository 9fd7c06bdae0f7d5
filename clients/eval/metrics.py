"""Scores: distributional memorization (Spearman ρ), generalization (Kendall: τ_b, the paper code's
(1 − τ_b)/2 and the exact fraction of discordant item pairs), inference that respects the grouping of
items into examples, and task performance against pair-count bins (the paper's Eq. 3, §5 and Fig. 3).

p-values. ``spearman_p`` (scipy's) treats the items as independent. They are not: one example gives many
pairs, and an output n-gram's LLM score repeats for every input n-gram paired with it. Two grouped
alternatives, computed by :func:`grouped_inference`:

* a permutation test of ρ that shuffles the LLM scores *within* each example (the null: no association
  inside examples; an example with one item carries no information and stays fixed). scipy's
  ``permutation_test`` permutes across all items only, so the stratified shuffle is done here, in numpy;
* a cluster bootstrap over examples (``scipy.stats.bootstrap`` over example indices, percentile
  interval): a confidence interval for ρ that resamples whole examples.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

# Below this many items a rank correlation is not reported: with 3 or 4 items a perfect ranking gets a
# p-value of 0 from the t approximation, which would read as significant.
MIN_ITEMS = 5


@dataclass(frozen=True)
class Correlation:
    """Rank agreement of two score lists over the same items. ``None`` when undefined (fewer than
    ``MIN_ITEMS`` items, or one side constant); the reason is in ``note``."""

    n_items: int
    spearman_rho: float | None
    spearman_p: float | None
    kendall_tau: float | None
    kendall_p: float | None
    kendall_distance: float | None  # (1 - τ_b) / 2, the paper's code; = discordant_fraction without ties
    discordant_fraction: float | None = None  # discordant item pairs / all n(n-1)/2 item pairs
    tied_fraction: float | None = None  # item pairs tied on either side (neither concordant nor discordant)
    note: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def correlate(a: Sequence[float], b: Sequence[float]) -> Correlation:
    """Spearman ρ and Kendall τ_b (with p-values) of a vs b; items with a non-finite value are an error."""
    from scipy import stats

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"score lists differ in shape: {x.shape} vs {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("scores must be finite (drop zero-probability items first and report them)")
    n = int(x.size)
    if n < MIN_ITEMS:
        return Correlation(n, None, None, None, None, None, note=f"only {n} items (< {MIN_ITEMS})")
    if np.all(x == x[0]) or np.all(y == y[0]):
        return Correlation(n, None, None, None, None, None, note="one side is constant")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        rho, p_rho = stats.spearmanr(x, y)
        tau, p_tau = stats.kendalltau(x, y)
    disc, tied = discordant_pairs(x, y)
    total = n * (n - 1) // 2
    return Correlation(
        n,
        float(rho),
        float(p_rho),
        float(tau),
        float(p_tau),
        (1.0 - float(tau)) / 2.0,
        disc / total,
        tied / total,
    )


def _tie_pairs(v: np.ndarray) -> int:
    _, counts = np.unique(v, return_counts=True, axis=0)
    return int((counts * (counts - 1) // 2).sum())


def discordant_pairs(x: np.ndarray, y: np.ndarray) -> tuple[int, int]:
    """(discordant, tied) item pairs of x vs y, exactly: a pair is discordant when x and y order it in
    opposite directions, tied when it is tied in x or in y. From scipy's τ_b: C − D = τ_b·√((n0−n1)(n0−n2))
    and C + D = n0 − n1 − n2 + n3 (n0 all pairs, n1/n2 pairs tied in x/y, n3 tied in both), rounded to
    the integer it is."""
    from scipy import stats

    n = int(x.size)
    n0 = n * (n - 1) // 2
    n1, n2 = _tie_pairs(x), _tie_pairs(y)
    n3 = _tie_pairs(np.stack([x, y], axis=1))
    untied = n0 - n1 - n2 + n3
    if n0 in (n1, n2):
        return 0, n0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        tau = float(stats.kendalltau(x, y).statistic)
    c_minus_d = int(round(tau * math.sqrt(float(n0 - n1) * float(n0 - n2))))
    return (untied - c_minus_d) // 2, n1 + n2 - n3


@dataclass(frozen=True)
class GroupedInference:
    """Inference on Spearman ρ that respects examples (see the module docstring)."""

    clusters: int  # examples with at least one item
    perm_p: float | None  # within-example permutation test, two-sided
    permutations: int
    ci_lo: float | None  # cluster-bootstrap percentile interval of ρ
    ci_hi: float | None
    resamples: int
    level: float
    note: str = ""


def _rho_of_ranks(rx: np.ndarray, ry: np.ndarray) -> float:
    sx, sy = rx.std(), ry.std()
    if sx == 0 or sy == 0:
        return float("nan")
    return float(((rx - rx.mean()) * (ry - ry.mean())).mean() / (sx * sy))


def grouped_inference(
    a: Sequence[float],
    b: Sequence[float],
    groups: Sequence[str],
    *,
    permutations: int = 1000,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> GroupedInference:
    """Within-example permutation p-value and cluster-bootstrap CI of Spearman ρ(a, b)."""
    from scipy import stats

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    _, g = np.unique(np.asarray(list(groups), dtype=object).astype(str), return_inverse=True)
    if not (x.shape == y.shape == g.shape):
        raise ValueError("grouped_inference: a, b and groups differ in length")
    n_clusters = int(np.unique(g).size) if g.size else 0
    if x.size < MIN_ITEMS or np.all(x == x[0]) or np.all(y == y[0]):
        return GroupedInference(n_clusters, None, 0, None, None, 0, level, "too few items or a constant side")
    rng = np.random.default_rng(seed)
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    observed = _rho_of_ranks(rx, ry)
    notes = []
    # permutation within examples: items sorted by example, each example's y ranks shuffled
    perm_p: float | None = None
    base = np.argsort(g, kind="stable")
    gs = g[base]
    movable = np.any(
        [np.unique(ry[g == k]).size > 1 for k in np.unique(g)]
    )  # some example has two different LLM scores
    if permutations > 0 and movable:
        zx = (rx - rx.mean()) / rx.std()
        ys = ry[base]
        mean_y, std_y = ry.mean(), ry.std()
        hits = 0
        chunk = max(1, min(permutations, 4_000_000 // max(x.size, 1)))
        done = 0
        while done < permutations:
            c = min(chunk, permutations - done)
            order = np.lexsort((rng.random((c, x.size)), np.broadcast_to(gs, (c, x.size))))
            shuffled = np.empty((c, x.size))
            shuffled[:, base] = ys[order]
            rho = ((shuffled - mean_y) / std_y) @ zx / x.size
            hits += int(np.sum(np.abs(rho) >= abs(observed) - 1e-12))
            done += c
        perm_p = (hits + 1) / (permutations + 1)
    elif permutations > 0:
        notes.append("no example has two different items: nothing to permute within examples")
    # cluster bootstrap over examples
    ci_lo = ci_hi = None
    if resamples > 0 and n_clusters >= 2:
        members = [np.flatnonzero(g == k) for k in range(n_clusters)]

        def statistic(ids: np.ndarray) -> float:
            idx = np.concatenate([members[int(i)] for i in ids])
            return _rho_of_ranks(stats.rankdata(x[idx]), stats.rankdata(y[idx]))

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # resamples with a constant side give NaN, dropped below
            boot = stats.bootstrap(
                (np.arange(n_clusters),),
                statistic,
                vectorized=False,
                n_resamples=resamples,
                method="percentile",
                confidence_level=level,
                rng=rng,
            )
        dist = np.asarray(boot.bootstrap_distribution, dtype=np.float64)
        finite = dist[np.isfinite(dist)]
        if finite.size < 0.9 * dist.size:
            notes.append(f"{dist.size - finite.size} of {dist.size} bootstrap resamples had a constant side")
        if finite.size:
            ci_lo = float(np.quantile(finite, (1 - level) / 2))
            ci_hi = float(np.quantile(finite, 1 - (1 - level) / 2))
    elif resamples > 0:
        notes.append("one example: no cluster bootstrap")
    return GroupedInference(
        n_clusters,
        perm_p,
        permutations if perm_p is not None else 0,
        ci_lo,
        ci_hi,
        resamples,
        level,
        "; ".join(notes),
    )


def aggregate_per_output(
    groups: Sequence[str], sy: Sequence[str], taskgram: Sequence[float], llm: Sequence[float]
) -> tuple[list[str], list[float], list[float]]:
    """The authors' aggregation (``compute_llm_prob.py`` → ``plot_mem.py``): one item per (example, s^y),
    its task-gram value the mean over s^x of log P(s^y|s^x), its LLM value the s^y's log P_LLM (the same
    for every s^x). Returns (example of each item, task-gram values, LLM values)."""
    acc: dict[tuple[str, str], list[float]] = {}
    llm_of: dict[tuple[str, str], float] = {}
    for ex, s_y, t, v in zip(groups, sy, taskgram, llm, strict=True):
        acc.setdefault((ex, s_y), []).append(t)
        llm_of[(ex, s_y)] = v
    keys = list(acc)
    return [k[0] for k in keys], [float(np.mean(acc[k])) for k in keys], [llm_of[k] for k in keys]


@dataclass(frozen=True)
class Bin:
    lo: float
    hi: float
    n_examples: int
    mean_metric: float | None


def performance_bins(
    pair_counts: Sequence[float],
    metric: Sequence[float],
    n_bins: int = 5,
    lo: float | None = None,
    hi: float | None = None,
    scale: str = "linear",
) -> list[Bin]:
    """Bins of the per-example pair count over [lo, hi] (default: the data's range), with the mean metric
    of the examples in each bin (Fig. 3). ``linear``: equal width (the paper's code: 5 bins over
    0 < c < 1000); ``log``: equal width in log(1 + c), so the few examples with large counts do not
    leave every other example in the first bin. The last bin includes its upper edge; examples outside
    [lo, hi] are left out."""
    if scale not in ("linear", "log"):
        raise ValueError(f"bin scale must be linear or log, not {scale!r}")
    c, m = np.asarray(pair_counts, dtype=np.float64), np.asarray(metric, dtype=np.float64)
    if c.shape != m.shape:
        raise ValueError("pair_counts and metric differ in length")
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    if c.size == 0:
        return []
    lo = float(c.min()) if lo is None else lo
    hi = float(c.max()) if hi is None else hi
    if hi <= lo:
        hi = lo + 1.0
    edges = (
        np.linspace(lo, hi, n_bins + 1)
        if scale == "linear"
        else np.expm1(np.linspace(np.log1p(max(lo, 0.0)), np.log1p(max(hi, 0.0)), n_bins + 1))
    )
    if scale == "log":
        edges[0], edges[-1] = lo, hi
    inside = (c >= lo) & (c <= hi)
    idx = np.clip(np.searchsorted(edges, c, side="right") - 1, 0, n_bins - 1)
    out = []
    for i in range(n_bins):
        sel = inside & (idx == i)
        k = int(sel.sum())
        mean = float(m[sel].mean()) if k else None
        out.append(
            Bin(
                float(edges[i]), float(edges[i + 1]), k, mean if mean is None or math.isfinite(mean) else None
            )
        )
    return out
