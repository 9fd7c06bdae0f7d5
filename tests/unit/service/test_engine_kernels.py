"""The engine's numba kernels against naive oracles, on read-only input, including adversarial shapes
(documents of zero tokens, one huge document among tiny ones, dense and sparse sets)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from service.engine import kernels as K
from service.engine.shards import bucket_table as _bucket_table


def ro(a) -> np.ndarray:
    arr = np.array(a)
    arr.setflags(write=False)
    return arr


def doc_offsets_of(lengths) -> np.ndarray:
    """Offsets of documents with ``lengths`` tokens each (plus one separator each)."""
    return ro(np.concatenate([[0], np.cumsum(np.asarray(lengths, dtype=np.int64) + 1)]).astype(np.int64))


@pytest.mark.parametrize(
    "lengths",
    [
        [5],
        [0, 0, 0, 0],
        [3000] + [0] * 200 + [1] * 50 + [700],
        list(np.random.default_rng(1).integers(0, 40, size=300)),
        list(np.random.default_rng(2).geometric(0.001, size=50)),
    ],
)
def test_doc_of_bucketed_matches_searchsorted(lengths) -> None:
    off = doc_offsets_of(lengths)
    shift, table = _bucket_table(off)
    table.setflags(write=False)
    for pos in range(int(off[-1])):
        want = int(np.searchsorted(off, pos, side="right")) - 1
        assert K._doc_of_bucketed(off, table, shift, np.int64(pos)) == want
        assert K._doc_of(off, np.int64(pos)) == want


def naive_sa(tokens, sep):
    vals = tokens.tolist()
    return np.array(
        [i for i in sorted(range(len(vals)), key=lambda i: vals[i:]) if vals[i] != sep], dtype=np.uint32
    )


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_sa_ranges_and_next_tokens(dtype) -> None:
    rng = np.random.default_rng(0)
    sep = np.iinfo(dtype).max
    docs = [rng.integers(0, 4, size=int(rng.integers(0, 30))).tolist() for _ in range(20)]
    tokens = ro(np.array([t for d in docs for t in d + [sep]], dtype=dtype))
    sa = ro(naive_sa(tokens, sep))
    vals = tokens.tolist()
    pats = [()] + [tuple(rng.integers(0, 5, size=int(rng.integers(1, 4))).tolist()) for _ in range(200)]
    flat = ro(np.array([t for p in pats for t in p], dtype=np.int64))
    offsets = ro(np.concatenate([[0], np.cumsum([len(p) for p in pats])]).astype(np.int64))
    starts = K._first_token_starts(tokens, sa, np.int64(5))
    order = ro(np.arange(len(pats), dtype=np.int64)[::-1].copy())
    lo, hi = K._sa_ranges(tokens, sa, flat, offsets, order, starts)
    for p, a, b in zip(pats, lo, hi, strict=True):
        starts = [i for i in range(len(vals)) if vals[i] != sep and tuple(vals[i : i + len(p)]) == p]
        assert sorted(int(x) for x in sa[a:b]) == starts
        ids, cnt, ends = K._next_tokens(tokens, sa, a, b, np.int64(len(p)), np.int64(sep))
        nxt = Counter(vals[i + len(p)] for i in starts)
        assert ends == nxt.pop(sep, 0)
        assert dict(zip(ids.tolist(), cnt.tolist(), strict=True)) == dict(nxt)
        assert list(ids) == sorted(ids)


def test_gallop_matches_searchsorted() -> None:
    arr = ro(np.unique(np.random.default_rng(3).integers(0, 1000, size=300)).astype(np.int64))
    for start in (0, 1, 50, len(arr) - 1, len(arr)):
        for x in range(-1, 1002, 7):
            want = max(start, int(np.searchsorted(arr, x, side="left")))
            assert K._gallop(arr, start, len(arr), x) == want


@pytest.mark.parametrize("n_docs", [70, 1000])
def test_intersections_sparse_dense_and_bitset_paths(n_docs) -> None:
    rng = np.random.default_rng(n_docs)
    sets = [
        np.unique(rng.integers(0, n_docs, size=int(s)))
        for s in (0, 1, 3, 40, n_docs // 2, n_docs, n_docs * 2)
    ]
    flat = ro(np.concatenate(sets).astype(np.int64))
    set_off = ro(np.concatenate([[0], np.cumsum([len(s) for s in sets])]).astype(np.int64))
    queries = [list(q) for q in rng.integers(0, len(sets), size=(300, 2))]
    queries += [list(q) for q in rng.integers(0, len(sets), size=(100, 3))] + [[4, 5, 6, 6], [6, 5]]
    q_flat = ro(np.array([s for q in queries for s in q], dtype=np.int64))
    q_off = ro(np.concatenate([[0], np.cumsum([len(q) for q in queries])]).astype(np.int64))
    expected = [len(set.intersection(*[set(sets[s].tolist()) for s in q])) for q in queries]
    n_words = (n_docs + 63) // 64
    for dense_sets in ([], [4, 5, 6], [3, 4, 5, 6], list(range(len(sets)))):
        rows_of = np.full(len(sets), -1, dtype=np.int64)
        rows_of[dense_sets] = np.arange(len(dense_sets))
        rows_of.setflags(write=False)
        bits = K._build_bitsets(flat, set_off, rows_of, len(dense_sets), n_words)
        bits.setflags(write=False)
        got = K._intersect_counts(flat, set_off, q_flat, q_off, bits, rows_of)
        assert got.tolist() == expected
    for q in queries[:50]:
        members = ro(np.array(q, dtype=np.int64))
        assert K._intersect_members(flat, set_off, members).tolist() == sorted(
            set.intersection(*[set(sets[s].tolist()) for s in q])
        )


def test_popcount() -> None:
    for x in (0, 1, 2**63, 2**64 - 1, 0x5555, 123456789123456789):
        assert K._popcount64(np.uint64(x)) == bin(x).count("1")


def _shuffled_corpus(n_empty: int, seed: int) -> tuple:
    """Documents of 3000, 0 (n_empty of them), 2 (40) and 5 tokens, and a random permutation of their
    non-separator positions as the suffix array: (doc offsets, bucket shift, bucket table, sa)."""
    off = doc_offsets_of([3000] + [0] * n_empty + [2] * 40 + [5])
    shift, table = _bucket_table(off)
    rng = np.random.default_rng(seed)
    seps = set((off[1:] - 1).tolist())
    positions = [p for p in range(int(off[-1])) if p not in seps]
    return off, shift, table, ro(rng.permutation(positions).astype(np.uint32))


@pytest.mark.parametrize("n_empty", [100, 5000])  # few docs: bitset path; many docs: stamp + sort path
def test_doc_sets_union_and_order(n_empty) -> None:
    off, shift, table, sa = _shuffled_corpus(n_empty, seed=5)
    lo = ro(np.array([0, 10, 5, 0, 100], dtype=np.int64))
    hi = ro(np.array([20, 400, 30, len(sa), 100], dtype=np.int64))
    spec_off = ro(np.array([0, 2, 3, 4, 5], dtype=np.int64))  # spec 0 = ranges 0 and 1 (overlapping)
    flat, out_off = K._doc_sets(sa, off, table, shift, lo, hi, spec_off)
    doc = lambda p: int(np.searchsorted(off, p, side="right")) - 1  # noqa: E731
    for j in range(4):
        want = sorted(
            {doc(int(sa[r])) for v in range(spec_off[j], spec_off[j + 1]) for r in range(lo[v], hi[v])}
        )
        assert flat[out_off[j] : out_off[j + 1]].tolist() == want


@pytest.mark.parametrize("n_empty", [100, 5000])  # few docs: dense tally path; many docs: stamp + sort path
def test_doc_counts_are_distinct_positions_per_document(n_empty) -> None:
    off, shift, table, sa = _shuffled_corpus(n_empty, seed=6)
    # spec 0: nested ranges (a pattern and its extension); spec 1: overlapping and empty ranges;
    # spec 2: the whole array (dense) followed by spec 3, which shares its documents; spec 4: empty
    lo = ro(np.array([0, 5, 10, 3, 50, 0, 2000, 7], dtype=np.int64))
    hi = ro(np.array([400, 30, 60, 3, 500, len(sa), len(sa) - 2, 7], dtype=np.int64))
    spec_off = ro(np.array([0, 2, 5, 6, 7, 8], dtype=np.int64))
    flat, counts, out_off = K._doc_counts(sa, off, table, shift, lo, hi, spec_off)
    sets, sets_off = K._doc_sets(sa, off, table, shift, lo, hi, spec_off)
    assert np.array_equal(flat, sets) and np.array_equal(out_off, sets_off)
    doc = lambda p: int(np.searchsorted(off, p, side="right")) - 1  # noqa: E731
    for j in range(len(spec_off) - 1):
        ranks = {r for v in range(spec_off[j], spec_off[j + 1]) for r in range(lo[v], hi[v])}
        want = Counter(doc(int(sa[r])) for r in ranks)
        got = dict(
            zip(
                flat[out_off[j] : out_off[j + 1]].tolist(),
                counts[out_off[j] : out_off[j + 1]].tolist(),
                strict=True,
            )
        )
        assert got == dict(want), j


def test_merged_ranges() -> None:
    lo = ro(np.array([5, 0, 7, 20, 9, 30], dtype=np.int64))
    hi = ro(np.array([10, 3, 8, 25, 12, 30], dtype=np.int64))
    starts, ends = K._merged_ranges(lo, hi, 0, 6)
    assert list(zip(starts.tolist(), ends.tolist(), strict=True)) == [(0, 3), (5, 12), (20, 25)]
    starts, ends = K._merged_ranges(lo, hi, 5, 6)  # an empty range only
    assert starts.tolist() == [] and ends.tolist() == []


@pytest.mark.parametrize("n_docs", [70, 1000])
def test_anchored_sums_weight_the_first_set(n_docs) -> None:
    rng = np.random.default_rng(n_docs + 1)
    sets = [
        np.unique(rng.integers(0, n_docs, size=int(s)))
        for s in (0, 1, 3, 40, n_docs // 2, n_docs, n_docs * 2)
    ]
    flat = ro(np.concatenate(sets).astype(np.int64))
    weights = ro(rng.integers(1, 9, size=len(flat)).astype(np.int64))
    set_off = ro(np.concatenate([[0], np.cumsum([len(s) for s in sets])]).astype(np.int64))
    queries = [list(q) for q in rng.integers(0, len(sets), size=(300, 2))]
    queries += [list(q) for q in rng.integers(0, len(sets), size=(100, 3))]
    queries += [[4, 5, 6, 6], [6, 5], [6, 6], [0, 6], [6, 0], [1, 1, 1]]
    q_flat = ro(np.array([s for q in queries for s in q], dtype=np.int64))
    q_off = ro(np.concatenate([[0], np.cumsum([len(q) for q in queries])]).astype(np.int64))
    weight_of = [
        dict(zip(sets[s].tolist(), weights[set_off[s] : set_off[s + 1]].tolist(), strict=True))
        for s in range(len(sets))
    ]
    expected = [
        sum(weight_of[q[0]][x] for x in set.intersection(*[set(sets[s].tolist()) for s in q]))
        for q in queries
    ]
    n_words = (n_docs + 63) // 64
    for dense_sets in ([], [4, 5, 6], [3, 4, 5, 6], list(range(len(sets)))):
        rows_of = np.full(len(sets), -1, dtype=np.int64)
        rows_of[dense_sets] = np.arange(len(dense_sets))
        rows_of.setflags(write=False)
        bits = K._build_bitsets(flat, set_off, rows_of, len(dense_sets), n_words)
        bits.setflags(write=False)
        got = K._anchored_sums(flat, weights, set_off, q_flat, q_off, bits, rows_of)
        assert got.tolist() == expected, dense_sets
