"""Engine tests on hand-written token indexes: exact answers checked by hand and by brute force."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from indexer.format import MANIFEST_FILE, SUFFIX_ARRAY_FILE, TOKENS_FILE
from service.engine import (
    BudgetExceeded,
    EngineError,
    Index,
    IndexSet,
    IndexUnavailable,
    QueryError,
)
from tests.windowed_kernel import windowed_by_method

DOCS = [[1, 2, 3, 1, 2], [3, 3, 1, 2], [2, 1], [], [1, 2, 3]]


@pytest.fixture
def index(index_writer) -> Index:
    return Index.open(index_writer(DOCS, vocab_size=10))


def naive_count(docs, pat):
    return sum(d[i : i + len(pat)] == list(pat) for d in docs for i in range(len(d) - len(pat) + 1))


def test_counts_by_hand(index: Index) -> None:
    assert index.count([[1, 2], [3], [3, 3], [2, 3, 1], [1], [9], [1, 2, 3, 1, 2, 3]]) == [
        4,
        4,
        1,
        1,
        5,
        0,
        0,
    ]
    assert index.n_tokens == 14 and index.n_docs == 5


def test_no_match_across_document_boundary(index: Index) -> None:
    # doc 0 ends with "1 2", doc 1 starts with "3 3": "2 3 3" would only exist across the boundary
    assert index.count([[2, 3, 3], [2, 1, 2], [1, 1]]) == [0, 0, 0]
    assert index.doc_freq([[2, 3, 3]]) == [0]


def test_doc_freq_and_or_variants(index: Index) -> None:
    assert index.doc_freq([[1, 2], [[3, 3], [2, 1]], {"any": [[1], [2]]}]) == [3, 2, 4]
    # overlapping variants ("1 2" OR "1 2 3") are a union, never double counted
    assert index.doc_freq([[[1, 2], [1, 2, 3]]]) == [3]
    assert index.doc_freq([[[1, 2], [1, 2]]]) == [3]


def test_cooccurrence_by_hand(index: Index) -> None:
    assert index.cooccurrence([[[1, 2], [3]], [[2, 1], [3, 3]], [[1], [2], [3]], [[3, 3], [3]]]) == [
        3,
        0,
        3,
        1,
    ]
    assert index.cooccurrence([[{"any": [[2, 1], [3, 3]]}, [1, 2]]]) == [1]
    assert index.cooccurrence([[[9], [1]]]) == [0]


def test_cooccurrence_in_occurrences_by_hand(index: Index) -> None:
    # DOCS = [[1, 2, 3, 1, 2], [3, 3, 1, 2], [2, 1], [], [1, 2, 3]]
    queries = [
        [[1, 2], [3]],  # "1 2": twice in doc 0, once in docs 1 and 4; all hold 3
        [[3], [1, 2]],  # 3: once in doc 0, twice in doc 1, once in doc 4
        [[2], [1], [3]],  # 2 in documents holding 1 and 3: 2 + 1 + 1 (doc 2 has no 3)
        [[1], [3, 3]],
        [[3, 3], [3]],
        [[9], [1]],  # first phrase absent
        [[1], [9]],  # other phrase absent
        [[1, 2], [1, 2]],  # a phrase with itself: all its occurrences
        [[[1, 2], [1, 2, 3]], [3]],  # an OR of a phrase and its extension: distinct starts, 4 not 6
        [{"any": [[3, 3], [3]]}, [2, 1]],
    ]
    assert index.cooccurrence(queries, unit="occurrences") == [4, 4, 4, 1, 1, 0, 0, 4, 4, 0]
    assert index.cooccurrence(queries, unit="documents") == [3, 3, 3, 1, 1, 0, 0, 3, 3, 0]
    assert index.cooccurrence(queries) == index.cooccurrence(queries, unit="documents")


def test_cooccurrence_in_occurrences_multi_shard_u32_and_cached(index_writer) -> None:
    one = Index.open(index_writer(DOCS, vocab_size=10))
    many = Index.open(index_writer(DOCS, vocab_size=10, shard_docs=[2, 0, 1, 2], token_dtype="uint32"))
    cached = Index.open(index_writer(DOCS, vocab_size=10), cache_min_occurrences=0)
    pats = [[1, 2], [3], [3, 3], [2, 3, 1], [1], [2, 1], [[1], [1, 2]]]
    qs = [[a, b] for a in pats for b in pats] + [[a, b, c] for a in pats[:3] for b in pats for c in pats[4:]]
    want = one.cooccurrence(qs, unit="occurrences")
    assert many.cooccurrence(qs, unit="occurrences") == want
    assert cached.cooccurrence(qs, unit="occurrences") == want
    hits = cached.cache_info()["hits"]
    assert cached.cooccurrence(qs, unit="occurrences") == want and cached.cache_info()["hits"] > hits
    # the cached sets with counts and the plain document sets do not mix
    assert cached.cooccurrence(qs) == one.cooccurrence(qs)
    assert cached.cooccurrence(qs, unit="occurrences") == want


def test_windowed_cooccurrence_at_document_boundaries(index_writer) -> None:
    # the infini-gram 2.6.0 case: anchor B at the end of doc 0 has its same-document partner A on the
    # left and another A on the right, across the separator, in doc 1; the anchor must be kept.
    docs = [[5, 5, 1, 5, 2], [1, 5, 5], [2, 5, 5, 5, 5, 1]]
    ix = Index.open(index_writer(docs, vocab_size=10))

    def windowed(queries, window, method):
        if method < 0:
            return ix.windowed_cooccurrence(queries, window)
        return windowed_by_method(ix, queries, window, method)

    for method in (-1, 0, 1, 2):  # the engine, then every exact method of the kernel, called directly
        # A = [1] (3 occurrences), B = [2] (2): B is the anchor.
        assert windowed([[[1], [2]]], 2, method) == [1]  # doc 0: 2@4, 1@2 within 2
        assert windowed([[[1], [2]]], 5, method) == [2]  # doc 2: 2@0, 1@5 within 5
        assert windowed([[[1], [2]]], 1, method) == [0]  # 1@0 of doc 1 is 1 token away but in doc 1
        assert windowed([[[2], [1]]], 1, method) == [0]
        assert windowed([[[1], [2]]], 0, method) == [0]
        # a phrase with itself: every occurrence is its own partner at distance 0
        assert windowed([[[5], [5]]], 0, method) == [naive_count(docs, [5])]
        assert windowed([[[5, 5], [1, 5]]], 70, method) == [2]  # "1 5" in docs 0 and 1, each near "5 5"


def test_ntd_prob_infgram_by_hand(index: Index) -> None:
    (d,) = index.ntd([[1]])
    assert d.prompt_count == 5 and d.ends_of_document == 1
    assert [(t.token_id, t.count) for t in d.tokens] == [(2, 4)] and d.tokens[0].prob == 0.8
    (u,) = index.ntd([[]])
    assert [(t.token_id, t.count) for t in u.tokens] == [(1, 5), (2, 5), (3, 4)]
    assert u.prompt_count == 14 and not u.approx
    p = index.prob([([1], 2), ([], 3), ([7], 1), ([3], 3)])
    assert [(r.prompt_count, r.cont_count, r.prob) for r in p] == [
        (5, 4, 0.8),
        (14, 4, 4 / 14),
        (0, 0, None),
        (4, 1, 0.25),
    ]
    (r,) = index.infgram_prob([([9, 1], [2, 3])])
    assert [(t.suffix_len, t.suffix_count, t.cont_count) for t in r.tokens] == [(1, 5, 4), (2, 4, 2)]
    assert r.log_prob == pytest.approx(math.log(0.8 * 0.5))
    (z,) = index.infgram_prob([([3, 3], [2])])  # "3 3" occurs, never followed by 2
    assert z.tokens[0].prob == 0.0 and z.tokens[0].suffix_len == 2 and z.log_prob is None


def test_top_k(index: Index) -> None:
    (u,) = index.ntd([[]], top_k=2)
    assert [t.token_id for t in u.tokens] == [1, 2] and u.n_distinct == 3
    with pytest.raises(QueryError):
        index.ntd([[]], top_k=0)


def test_documents_paging_and_sampling(index: Index) -> None:
    res = index.documents([[1, 2]], limit=2)
    assert res.total == 3 and [h.doc_id for h in res.docs] == [0, 1]
    assert res.docs[0].spans == [(0, 2, 0), (3, 5, 0)] and res.docs[0].metadata == {"doc": 0}
    assert [h.doc_id for h in index.documents([[1, 2]], offset=2, limit=5).docs] == [4]
    assert index.documents([[1, 2]], offset=9).docs == []
    assert [h.doc_id for h in index.documents([[1, 2], [3, 3]]).docs] == [1]
    seen = set()
    for seed in range(30):
        s = index.documents([[1, 2]], limit=2, sample=True, seed=seed)
        ids = [h.doc_id for h in s.docs]
        assert s.total == 3 and len(ids) == 2 and len(set(ids)) == 2 and set(ids) <= {0, 1, 4}
        seen.update(ids)
    assert seen == {0, 1, 4}
    a = index.documents([[1, 2]], limit=2, sample=True, seed=7)
    b = index.documents([[1, 2]], limit=2, sample=True, seed=7)
    assert [h.doc_id for h in a.docs] == [h.doc_id for h in b.docs]
    snip = index.documents([[3, 3]], window=0).docs[0]
    assert snip.token_ids == [3, 3] and snip.snippet_start == 0 and snip.doc_len == 4


def test_document(index: Index) -> None:
    doc = index.document(1)
    assert doc.token_ids == [3, 3, 1, 2] and doc.metadata == {"doc": 1} and doc.text is None
    assert index.document(1, max_tokens=2).token_ids == [3, 3] and index.document(1, max_tokens=2).truncated
    assert index.document(3).token_ids == []
    for bad in (-1, 5, "1"):
        with pytest.raises(QueryError):
            index.document(bad)  # type: ignore[arg-type]


def test_multi_shard_and_u32_give_the_same_answers(index_writer) -> None:
    one = Index.open(index_writer(DOCS, vocab_size=10))
    many = Index.open(index_writer(DOCS, vocab_size=10, shard_docs=[2, 0, 1, 2], token_dtype="uint32"))
    pats = [[1, 2], [3], [3, 3], [2, 3, 1], [1], [2, 1]]
    assert one.count(pats) == many.count(pats)
    assert one.doc_freq(pats) == many.doc_freq(pats)
    qs = [[a, b] for a in pats for b in pats]
    assert one.cooccurrence(qs) == many.cooccurrence(qs)
    for w in (0, 1, 3):
        assert one.windowed_cooccurrence(qs, w) == many.windowed_cooccurrence(qs, w)
    assert one.ntd(pats + [[]]) == many.ntd(pats + [[]])
    assert one.infgram_prob([(p, q) for p in pats for q in pats]) == many.infgram_prob(
        [(p, q) for p in pats for q in pats]
    )
    a, b = one.documents([[1, 2]], limit=10), many.documents([[1, 2]], limit=10)
    assert [(h.doc_id, h.spans, h.metadata) for h in a.docs] == [
        (h.doc_id, h.spans, h.metadata) for h in b.docs
    ]
    assert [h.shard for h in b.docs] == [0, 0, 3] and many.document(4).token_ids == [1, 2, 3]


def test_u32_large_token_ids(index_writer) -> None:
    docs = [[70_000, 1, 70_000], [1, 70_001]]
    ix = Index.open(index_writer(docs, token_dtype="uint32", vocab_size=80_000))
    assert ix.count([[70_000], [1, 70_001], [70_000, 1, 70_000]]) == [2, 1, 1]
    assert ix.cooccurrence([[[1], [70_000]]]) == [1]
    with pytest.raises(QueryError):
        ix.count([[80_000]])


def test_input_validation(index: Index) -> None:
    with pytest.raises(QueryError) as err:
        index.count([[1], []])
    assert err.value.item == 1 and "phrases[1]" in str(err.value)
    for bad in ([[10]], [[-1]], [[65535]], [["x", 1]], [[1.5]], [None]):
        with pytest.raises(QueryError):
            index.count(bad)  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="without a tokenizer"):
        index.count(["text"])
    with pytest.raises(QueryError):
        index.count("12")  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="at least 2"):
        index.cooccurrence([[[1]]])
    with pytest.raises(QueryError):
        index.cooccurrence([[[1], {"or": [[1]]}]])
    with pytest.raises(QueryError, match="unit") as err:
        index.cooccurrence([[[1], [2]]], unit="tokens")
    assert err.value.field == "unit"
    with pytest.raises(QueryError, match="at least 2"):
        index.cooccurrence([[[1]]], unit="occurrences")
    with pytest.raises(QueryError):
        index.doc_freq([[[1], [[2]]]])  # nested variants
    with pytest.raises(QueryError):
        index.windowed_cooccurrence([[[1], [2]]], -1)
    with pytest.raises(QueryError):
        index.prob([([1], 99)])
    with pytest.raises(QueryError):
        index.infgram_prob([([1], [])])
    with pytest.raises(QueryError):
        index.documents([[1]], limit=-1)
    with pytest.raises(QueryError):
        index.count([[1]], space="sideways")
    assert isinstance(QueryError("x"), EngineError)


def test_budgets(index: Index) -> None:
    past = time.monotonic() - 1
    for call in (
        lambda: index.count([[1]], deadline=past),
        lambda: index.doc_freq([[1]], deadline=past),
        lambda: index.cooccurrence([[[1], [2]]], deadline=past),
        lambda: index.cooccurrence([[[1], [2]]], deadline=past, unit="occurrences"),
        lambda: index.windowed_cooccurrence([[[1], [2]]], 3, deadline=past),
        lambda: index.ntd([[1]], deadline=past),
        lambda: index.prob([([1], 2)], deadline=past),
        lambda: index.infgram_prob([([1], [2])], deadline=past),
        lambda: index.documents([[1]], deadline=past),
    ):
        with pytest.raises(BudgetExceeded) as err:
            call()
        assert err.value.kind == "time"
    with pytest.raises(BudgetExceeded) as err:
        index.cooccurrence([[[1], [2]]], max_occurrences=4)
    assert err.value.kind == "work"
    assert index.cooccurrence([[[1], [2]]], max_occurrences=5) == [4]
    for query in ([[1], [2]], [[2], [1]]):  # the budget binds the first phrase and the others alike
        with pytest.raises(BudgetExceeded) as err:
            index.cooccurrence([query], max_occurrences=4, unit="occurrences")
        assert err.value.kind == "work"
    assert index.cooccurrence([[[2], [1]]], max_occurrences=5, unit="occurrences") == [5]
    with pytest.raises(BudgetExceeded):
        index.windowed_cooccurrence([[[1], [2]]], 2, max_occurrences=3)


def test_large_batches(index_writer) -> None:
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 50, size=int(rng.integers(0, 60))).tolist() for _ in range(300)]
    ix = Index.open(index_writer(docs, vocab_size=50))
    pats = [tuple(rng.integers(0, 50, size=int(rng.integers(1, 3))).tolist()) for _ in range(100_000)]
    counts = ix.count(pats)
    assert len(counts) == 100_000
    for i in range(0, 100_000, 997):
        assert counts[i] == naive_count(docs, pats[i])
    pairs = [[pats[i], pats[i + 1]] for i in range(0, 200_000 - 2, 2) if i + 1 < len(pats)][:100_000]
    pairs += pairs[: 100_000 - len(pairs)]
    co = ix.cooccurrence(pairs)
    sets = [{d for d, doc in enumerate(docs) if naive_count([doc], p)} for p in pats[:2000]]
    for i in range(0, 1000):
        assert co[i] == len(sets[2 * i] & sets[2 * i + 1])


def _corrupt(path: Path, how: str) -> None:
    shard = path / "shard-00000"
    if how == "truncate":
        data = (shard / SUFFIX_ARRAY_FILE).read_bytes()
        (shard / SUFFIX_ARRAY_FILE).write_bytes(data[:-4])
    elif how == "version":
        m = json.loads((path / MANIFEST_FILE).read_text())
        m["format_version"] = 99
        (path / MANIFEST_FILE).write_text(json.dumps(m))
    elif how == "manifest":
        (path / MANIFEST_FILE).unlink()
    elif how == "flip":
        data = bytearray((shard / TOKENS_FILE).read_bytes())
        data[-1] ^= 0xFF  # the last separator is no longer a separator
        (shard / TOKENS_FILE).write_bytes(bytes(data))
    elif how == "sa":
        sa = np.fromfile(shard / SUFFIX_ARRAY_FILE, dtype="<u4")
        sa[0] = 10_000
        sa.tofile(shard / SUFFIX_ARRAY_FILE)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("truncate", "suffix_array.bin"),
        ("version", "format_version 99"),
        ("manifest", "no manifest.json"),
        ("flip", "separator"),
        ("sa", "suffix_array.bin"),
    ],
)
def test_refuses_corrupt_index(index_writer, how: str, message: str) -> None:
    path = index_writer(DOCS, vocab_size=10)
    _corrupt(path, how)
    with pytest.raises(IndexUnavailable, match=message):
        Index.open(path)


def test_verify_checksums(index_writer) -> None:
    path = index_writer(DOCS, vocab_size=10)
    meta = path / "shard-00000" / "metadata.zst"
    data = bytearray(meta.read_bytes())
    data[-1] ^= 1
    meta.write_bytes(bytes(data))
    Index.open(path)  # sizes still match: only checksums catch it
    with pytest.raises(IndexUnavailable, match="sha256"):
        Index.open(path, verify_checksums=True)


def test_index_set(index_writer, tmp_path: Path) -> None:
    good = index_writer(DOCS, vocab_size=10)
    bad = index_writer(DOCS, vocab_size=10)
    _corrupt(bad, "manifest")
    s = IndexSet.open({"good": good, "bad": bad, "missing": tmp_path / "nope"})
    assert list(s) == ["good"] and s["good"].count([[1]]) == [5] and len(s) == 1
    assert "good" in s and "bad" not in s and s.get("bad") is None
    assert set(s.failures) == {"bad", "missing"} and "manifest" in s.failures["bad"]
    with pytest.raises(IndexUnavailable, match="manifest"):
        s["bad"]
    with pytest.raises(IndexUnavailable, match="available: good"):
        s.get_index("other")
    assert s.summaries()[0]["n_docs"] == 5


def test_read_only_memory_maps(index: Index) -> None:
    for shard in index.shards:
        for arr in (shard.tokens, shard.sa, shard.doc_offsets):
            assert not arr.flags.writeable
            assert not arr.flags.owndata  # a view of the map, not a copy


def test_summary_and_warm_up(index: Index) -> None:
    index.warm_up()
    s = index.summary()
    assert s["n_tokens"] == 14 and s["format_version"] == 1 and s["space_policy"] == "auto"


def test_empty_index_and_empty_documents(index_writer) -> None:
    empty = Index.open(index_writer([], vocab_size=10))
    assert empty.n_docs == 0 and empty.count([[1]]) == [0] and empty.doc_freq([[1]]) == [0]
    assert empty.cooccurrence([[[1], [2]]]) == [0] and empty.windowed_cooccurrence([[[1], [2]]], 5) == [0]
    assert empty.ntd([[]])[0].prompt_count == 0
    assert empty.prob([([], 1)])[0].prob is None
    assert empty.infgram_prob([([1], [2])])[0].tokens[0].prob == 0.0
    assert empty.documents([[1]]).total == 0
    blank = Index.open(index_writer([[], [], []], vocab_size=10, shard_docs=[1, 2]))
    assert blank.n_docs == 3 and blank.n_tokens == 0 and blank.count([[1], [2, 3]]) == [0, 0]
    assert blank.document(2).token_ids == [] and blank.cooccurrence([[[1], [1]]]) == [0]
    for ix in (empty, blank):
        assert ix.cooccurrence([[[1], [1]], [[1], [2]]], unit="occurrences") == [0, 0]
        assert ix.cooccurrence([], unit="occurrences") == []
