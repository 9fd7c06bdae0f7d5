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


def test_discordant_fraction_with_ties_is_exact_and_differs_from_one_minus_tau() -> None:
    """(1 − τ_b)/2 is not the fraction of pairs ranked differently when there are ties; the reported
    discordant fraction is, against a brute-force count (ties on either side are neither)."""
    rng = np.random.default_rng(5)
    for _ in range(20):
        a = rng.integers(0, 4, size=30).astype(float).tolist()
        b = rng.integers(0, 3, size=30).astype(float).tolist()
        c = correlate(a, b)
        if c.kendall_tau is None:
            continue
        assert c.discordant_fraction == pytest.approx(naive_discordant_fraction(a, b), abs=1e-12)
        pairs = list(itertools.combinations(range(30), 2))
        tied = sum(1 for i, j in pairs if a[i] == a[j] or b[i] == b[j]) / len(pairs)
        assert c.tied_fraction == pytest.approx(tied, abs=1e-12)
    a, b = [1.0, 1.0, 2.0, 3.0, 3.0, 4.0], [1.0, 2.0, 2.0, 3.0, 1.0, 1.0]
    c = correlate(a, b)
    assert c.discordant_fraction == pytest.approx(naive_discordant_fraction(a, b))
    assert c.kendall_distance != pytest.approx(c.discordant_fraction)


def test_per_output_aggregation_is_the_authors_mean_over_sx() -> None:
    from clients.eval.metrics import aggregate_per_output

    groups = ["e1", "e1", "e1", "e2"]
    sy = ["a b", "a b", "c d", "a b"]
    g, tg, llm = aggregate_per_output(groups, sy, [-1.0, -3.0, -2.0, -4.0], [-5.0, -5.0, -6.0, -7.0])
    assert g == ["e1", "e1", "e2"] and tg == [-2.0, -2.0, -4.0] and llm == [-5.0, -6.0, -7.0]


def test_within_example_permutation_and_cluster_bootstrap() -> None:
    """A correlation carried only by between-example differences is "significant" with i.i.d. items but
    not under the within-example permutation; a within-example association is significant under both."""
    from clients.eval.metrics import grouped_inference

    rng = np.random.default_rng(0)
    groups, x, y = [], [], []
    for e in range(20):
        level = rng.normal()
        for _ in range(10):  # ten items per example sharing the example's level, no within association
            groups.append(f"e{e}")
            x.append(level + 0.01 * rng.normal())
            y.append(level + 0.01 * rng.normal() + rng.normal())
    c = correlate(x, y)
    gi = grouped_inference(x, y, groups, permutations=400, resamples=300, seed=1)
    assert c.spearman_p < 1e-6 and gi.perm_p > 0.05 and gi.clusters == 20
    assert gi.ci_lo is not None and gi.ci_lo < c.spearman_rho < gi.ci_hi
    # a within-example association: significant
    x = [xi + rng.normal() for xi in x]
    y2 = [xi + 0.1 * rng.normal() for xi in x]
    gi2 = grouped_inference(x, y2, groups, permutations=200, resamples=200, seed=1)
    assert gi2.perm_p < 0.01 and gi2.ci_lo > 0.5
    # singleton examples: nothing to permute, said so; too few items: nothing
    single = grouped_inference(
        [1.0, 2, 3, 4, 5], [2.0, 1, 4, 3, 5], list("abcde"), permutations=10, resamples=20
    )
    assert single.perm_p is None and "nothing to permute" in single.note and single.ci_lo is not None
    assert grouped_inference([1.0, 2.0], [1.0, 2.0], ["a", "b"]).perm_p is None


def test_performance_bins_log_scale_and_range() -> None:
    bins = performance_bins([0, 1, 9, 99, 999], [1.0, 1.0, 0.0, 0.0, 1.0], n_bins=3, scale="log")
    assert [b.n_examples for b in bins] == [2, 1, 2]  # edges 0, 9, 99, 999
    assert bins[0].lo == 0 and bins[-1].hi == 999 and bins[1].lo == pytest.approx(9.0)
    ranged = performance_bins([0, 5, 2000], [1.0, 0.0, 1.0], n_bins=5, lo=0, hi=1000)
    assert sum(b.n_examples for b in ranged) == 2  # 2000 is outside the paper's 0..1000
    with pytest.raises(ValueError, match="scale"):
        performance_bins([1], [1.0], scale="sqrt")
