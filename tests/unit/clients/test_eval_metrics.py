"""Memorization / generalization scores and performance bins against brute-force oracles."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from clients.eval.metrics import correlate, performance_bins


def naive_discordant_fraction(a: list[float], b: list[float]) -> float:
    pairs = list(itertools.combinations(range(len(a)), 2))
    disc = sum(1 for i, j in pairs if (a[i] - a[j]) * (b[i] - b[j]) < 0)
    return disc / len(pairs)


def test_kendall_distance_is_the_fraction_of_discordant_pairs() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=40).tolist()
    b = (np.asarray(a) + rng.normal(size=40)).tolist()  # no ties
    c = correlate(a, b)
    assert c.kendall_distance == pytest.approx(naive_discordant_fraction(a, b))
    assert c.n_items == 40 and 0 < c.spearman_rho < 1 and c.spearman_p < 0.05


def test_spearman_matches_rank_pearson_and_signs() -> None:
    a = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert correlate(a, [2.0, 4.0, 6.0, 8.0, 100.0]).spearman_rho == pytest.approx(1.0)
    neg = correlate(a, [5.0, 4.0, 3.0, 2.0, 1.0])
    assert neg.spearman_rho == pytest.approx(-1.0) and neg.kendall_distance == pytest.approx(1.0)


def test_undefined_cases_are_none_with_a_reason_and_bad_input_raises() -> None:
    assert correlate([1.0, 2.0], [1.0, 2.0]).spearman_rho is None
    few = correlate([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0])  # scipy would say p = 0
    assert few.spearman_rho is None and few.spearman_p is None and "only 4 items" in few.note
    c = correlate([1.0] * 5, [1.0, 2.0, 3.0, 4.0, 5.0])
    assert c.spearman_rho is None and "constant" in c.note
    with pytest.raises(ValueError, match="finite"):
        correlate([1.0, -math.inf, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="shape"):
        correlate([1.0], [1.0, 2.0])


def test_performance_bins_equal_width_and_means() -> None:
    bins = performance_bins([0, 1, 2, 9, 10], [1.0, 0.0, 1.0, 0.0, 0.0], n_bins=2)
    assert [(b.lo, b.hi, b.n_examples) for b in bins] == [(0.0, 5.0, 3), (5.0, 10.0, 2)]
    assert bins[0].mean_metric == pytest.approx(2 / 3) and bins[1].mean_metric == 0.0
    bins = performance_bins([5, 5], [1.0, 0.0], n_bins=3)  # degenerate range
    assert sum(b.n_examples for b in bins) == 2
    assert performance_bins([], [], n_bins=3) == []
    empty = performance_bins([0, 10], [1.0, 1.0], n_bins=5)
    assert empty[2].n_examples == 0 and empty[2].mean_metric is None
