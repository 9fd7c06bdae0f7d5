"""Property tests: every engine query equals a brute-force oracle on random small corpora, with random
shard splits and token dtypes (hypothesis)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.naive import naive_cooccurrence, naive_positions
from tests.windowed_kernel import windowed_by_method

VOCAB = 5

docs_st = st.lists(st.lists(st.integers(0, VOCAB - 1), max_size=25), min_size=1, max_size=8)
phrase_st = st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=3).map(tuple)
spec_st = st.one_of(phrase_st, st.lists(phrase_st, min_size=1, max_size=3))


def occurrences(docs, pat):
    """(doc, start) of every occurrence of ``pat``, in order."""
    return sorted(naive_positions(docs, [pat]))


def variants(spec):
    return [spec] if spec and isinstance(spec[0], int) else list(spec)


def spec_docs(docs, spec):
    return {d for v in variants(spec) for d, _ in occurrences(docs, v)}


def spec_positions(docs, spec):
    return sorted({o for v in variants(spec) for o in occurrences(docs, v)})


def oracle_windowed(docs, clauses, window):
    # anchor: fewest occurrences, summed over the clause's DISTINCT variants; the first on ties
    counts = [sum(len(occurrences(docs, v)) for v in set(map(tuple, variants(c)))) for c in clauses]
    anchor = int(np.argmin(counts))
    others = [spec_positions(docs, c) for k, c in enumerate(clauses) if k != anchor]
    return sum(
        all(any(e == d and abs(q - p) <= window for e, q in o) for o in others)
        for d, p in spec_positions(docs, clauses[anchor])
    )


@pytest.fixture(scope="module")
def open_index(open_index):
    """The suite's ``open_index`` over this module's vocabulary."""
    return open_index.using(vocab_size=VOCAB)


common = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
split_st = st.lists(st.integers(0, 8), max_size=3)
dtype_st = st.sampled_from(["uint16", "uint32"])


@common
@given(docs=docs_st, cut=split_st, dtype=dtype_st, pats=st.lists(phrase_st, min_size=1, max_size=12))
def test_count_and_doc_freq(open_index, docs, cut, dtype, pats) -> None:
    ix = open_index(docs, cut, dtype)
    assert ix.count(pats) == [len(occurrences(docs, p)) for p in pats]
    assert ix.doc_freq(pats) == [len(spec_docs(docs, p)) for p in pats]


@common
@given(
    docs=docs_st,
    cut=split_st,
    dtype=dtype_st,
    queries=st.lists(st.lists(spec_st, min_size=2, max_size=4), min_size=1, max_size=8),
)
def test_cooccurrence_with_or_variants(open_index, docs, cut, dtype, queries) -> None:
    ix = open_index(docs, cut, dtype)
    expected = [len(set.intersection(*[spec_docs(docs, s) for s in q])) for q in queries]
    assert ix.cooccurrence([[list(map(list, variants(s))) for s in q] for q in queries]) == expected
    first = queries[0][0]
    assert ix.doc_freq([list(map(list, variants(first)))]) == [len(spec_docs(docs, first))]


# a first clause whose variants overlap: a phrase OR its own prefix (nested SA ranges, shared starts)
first_st = st.one_of(spec_st, phrase_st.map(lambda p: [p, p[:1]]), phrase_st.map(lambda p: [p + p, p]))
occ_query_st = st.tuples(first_st, st.lists(spec_st, min_size=1, max_size=3)).map(lambda t: [t[0], *t[1]])


@common
@given(
    docs=st.lists(st.lists(st.integers(0, VOCAB - 1), max_size=25), min_size=1, max_size=8).map(
        lambda ds: ds + [ds[0] * 2]  # a repeated document: repeats and overlapping occurrences
    ),
    cut=split_st,
    dtype=dtype_st,
    queries=st.lists(occ_query_st, min_size=1, max_size=8),
    cached=st.booleans(),
)
def test_cooccurrence_in_occurrences(open_index, docs, cut, dtype, queries, cached) -> None:
    # cached: every set goes through the cache, so the second call answers from it
    ix = open_index(docs, cut, dtype, **({"cache_min_occurrences": 0} if cached else {}))
    engine_queries = [[list(map(list, variants(s))) for s in q] for q in queries]
    clauses = [[variants(s) for s in q] for q in queries]
    expected = [naive_cooccurrence(docs, c, "occurrences") for c in clauses]
    for _ in range(2 if cached else 1):
        assert ix.cooccurrence(engine_queries, unit="occurrences") == expected
    by_docs = ix.cooccurrence(engine_queries)
    assert by_docs == [naive_cooccurrence(docs, c) for c in clauses]
    # zero exactly when no document holds them all; never more than the first clause's occurrences
    assert [e == 0 for e in expected] == [d == 0 for d in by_docs]
    selves = ix.cooccurrence([[q[0], q[0]] for q in engine_queries], unit="occurrences")
    assert selves == [len(naive_positions(docs, c[0])) for c in clauses]
    assert all(e <= s for e, s in zip(expected, selves, strict=True))


@common
@given(
    docs=docs_st,
    cut=split_st,
    queries=st.lists(st.lists(spec_st, min_size=2, max_size=3), min_size=1, max_size=6),
    window=st.integers(0, 6),
)
def test_windowed_cooccurrence(open_index, docs, cut, queries, window) -> None:
    ix = open_index(docs, cut, "uint16")
    expected = [oracle_windowed(docs, q, window) for q in queries]
    as_ids = [[list(map(list, variants(s))) for s in q] for q in queries]
    assert ix.windowed_cooccurrence(as_ids, window) == expected, (docs, cut, queries, window)
    for method in (0, 1, 2):  # every exact method of the kernel (called directly) gives the same answer
        got = windowed_by_method(ix, as_ids, window, method)
        assert got == expected, (method, docs, cut, queries, window)


@common
@given(
    docs=docs_st,
    cut=split_st,
    prompts=st.lists(st.lists(st.integers(0, VOCAB - 1), max_size=3), min_size=1, max_size=6),
)
def test_next_token_distribution_and_prob(open_index, docs, cut, prompts) -> None:
    ix = open_index(docs, cut, "uint32")
    n_tokens = sum(len(d) for d in docs)
    for prompt, dist in zip(prompts, ix.ntd(prompts), strict=True):
        occ = (
            occurrences(docs, prompt)
            if prompt
            else [(d, i) for d, doc in enumerate(docs) for i in range(len(doc))]
        )
        m = len(prompt)
        nxt = [docs[d][i + m] for d, i in occ if i + m < len(docs[d])]
        assert dist.prompt_count == len(occ) and dist.ends_of_document == len(occ) - len(nxt)
        expected = sorted(((t, nxt.count(t)) for t in set(nxt)), key=lambda x: (-x[1], x[0]))
        assert [(t.token_id, t.count) for t in dist.tokens] == expected
        assert all(t.prob == t.count / len(occ) for t in dist.tokens)
    items = [(p, t) for p in prompts for t in range(VOCAB)]
    for (p, t), r in zip(items, ix.prob(items), strict=True):
        pc = len(occurrences(docs, p)) if p else n_tokens
        cc = len(occurrences(docs, tuple(p) + (t,)))
        assert (r.prompt_count, r.cont_count) == (pc, cc)
        assert r.prob == (cc / pc if pc else None)


@common
@given(
    docs=docs_st,
    cut=split_st,
    items=st.lists(
        st.tuples(
            st.lists(st.integers(0, VOCAB - 1), max_size=6),
            st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=4),
        ),
        min_size=1,
        max_size=5,
    ),
)
def test_infgram_prob(open_index, docs, cut, items) -> None:
    ix = open_index(docs, cut, "uint16")
    n_tokens = sum(len(d) for d in docs)
    for (ctx, cont), res in zip(items, ix.infgram_prob(items), strict=True):
        full = list(ctx) + list(cont)
        log_prob = 0.0
        for k, tok in enumerate(res.tokens):
            context = full[: len(ctx) + k]
            target = full[len(ctx) + k]
            best = 0
            for length in range(1, len(context) + 1):
                if occurrences(docs, context[len(context) - length :]):
                    best = length
            suffix = context[len(context) - best :]
            sc = len(occurrences(docs, suffix)) if best else n_tokens
            cc = len(occurrences(docs, tuple(suffix) + (target,)))
            assert (tok.token_id, tok.suffix_len, tok.suffix_count, tok.cont_count) == (target, best, sc, cc)
            p = cc / sc if sc else 0.0
            assert tok.prob == p
            log_prob = None if (log_prob is None or p == 0) else log_prob + math.log(p)
        assert (res.log_prob is None) == (log_prob is None)
        if log_prob is not None:
            assert res.log_prob == pytest.approx(log_prob)


@common
@given(
    docs=docs_st,
    cut=split_st,
    specs=st.lists(spec_st, min_size=1, max_size=3),
    offset=st.integers(0, 4),
    limit=st.integers(0, 5),
)
def test_documents(open_index, docs, cut, specs, offset, limit) -> None:
    ix = open_index(docs, cut, "uint16")
    query = [list(map(list, variants(s))) for s in specs]
    expected = sorted(set.intersection(*[spec_docs(docs, s) for s in specs]))
    res = ix.documents(query, offset=offset, limit=limit, window=3)
    assert res.total == len(expected)
    assert [h.doc_id for h in res.docs] == expected[offset : offset + limit]
    for h in res.docs:
        doc = docs[h.doc_id]
        assert h.token_ids == doc[h.snippet_start : h.snippet_start + len(h.token_ids)]
        for s, e, p in h.spans:  # id-only index: spans are token offsets in the snippet
            assert tuple(h.token_ids[s:e]) in {tuple(v) for v in variants(specs[p])}
    sampled = ix.documents(query, limit=limit, sample=True, seed=1)
    ids = [h.doc_id for h in sampled.docs]
    assert len(ids) == min(limit, len(expected)) and len(set(ids)) == len(ids) and set(ids) <= set(expected)


def test_oracle_helpers_agree_on_a_known_case() -> None:
    docs = [[1, 2, 1, 2], [2, 1]]
    assert occurrences(docs, (1, 2)) == [(0, 0), (0, 2)]
    assert spec_docs(docs, [(1, 2), (2, 1)]) == {0, 1}
    assert oracle_windowed(docs, [(1,), (2,)], 1) == 3
    assert list(itertools.islice(spec_positions(docs, [(1,), (1, 2)]), 3)) == [(0, 0), (0, 2), (1, 1)]
