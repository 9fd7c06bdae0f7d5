"""Scores: distributional memorization (Spearman ρ), generalization (normalized Kendall τ distance), and
task performance against pair-count bins (the paper's Eq. 3, §5 and Fig. 3)."""

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
    kendall_distance: float | None  # (1 - τ_b) / 2: the fraction of item pairs ranked differently
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
    return Correlation(n, float(rho), float(p_rho), float(tau), float(p_tau), (1.0 - float(tau)) / 2.0)


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
) -> list[Bin]:
    """Equal-width bins of the per-example pair count over [lo, hi] (default: the data's range), with the
    mean metric of the examples in each bin (Fig. 3). The last bin includes its upper edge."""
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
    edges = np.linspace(lo, hi, n_bins + 1)
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
