"""Word-boundary matching (``boundary="word"``) against a brute-force oracle that decodes the documents
(``tests.naive.naive_word_positions``): random and adversarial corpora over a tiny byte-level BPE
vocabulary (words, spaces, punctuation, an underscore, a digit, whole and split two-byte characters),
uint16 and uint32 tokens, several shards, OR variants, read-only arrays for the kernels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.kernels import build_suffix_array
from service.engine import Index, QueryError
from service.engine import kernels as K
from service.engine.words import WordTables, first_char_is_word, last_char_is_word
from tests.index_writer import byte_level_tokenizer, write_index
from tests.naive import naive_positions, naive_word_positions

# the vocabulary, as bytes: word pieces with and without a leading space, punctuation, "_" and a digit
# (word characters), a space, é whole and split into its two bytes, × (not a word character) whole
VOCAB_BYTES: list[bytes] = [
    b"a",
    b" a",
    b"b",
    b".",
    b" ",
    b"_",
    b"\xc3",
    b"\xa9",
    "×".encode(),
    "é".encode(),
    b"1",
    b"ab",
    b" b.",
    b"-a",
]
V = len(VOCAB_BYTES)


_TOKENIZER = byte_level_tokenizer(VOCAB_BYTES)


@pytest.fixture(scope="module")
def open_index(open_index):
    """The suite's ``open_index`` with this module's byte-level tokenizer."""
    return open_index.using(tokenizer=_TOKENIZER)


def word_positions(docs, variants):
    return naive_word_positions(docs, VOCAB_BYTES, variants)


def word_docs(docs, variants):
    return {d for d, _ in word_positions(docs, variants)}


token_st = st.integers(0, V - 1)
docs_st = st.lists(st.lists(token_st, max_size=20), min_size=1, max_size=7).map(
    lambda ds: ds + [ds[0] * 2]  # a repeated document: repeats and overlapping occurrences
)
phrase_st = st.lists(token_st, min_size=1, max_size=3).map(tuple)
split_st = st.lists(st.integers(0, 8), max_size=3)
dtype_st = st.sampled_from(["uint16", "uint32"])
common = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def with_pieces(docs, phrases):
    """The phrases plus adversarial ones taken from the documents: a document's first and last tokens,
    and a slice from its middle (so that most phrases occur)."""
    out = list(phrases)
    for doc in docs:
        if doc:
            out += [tuple(doc[:2]), tuple(doc[-2:]), tuple(doc[len(doc) // 2 : len(doc) // 2 + 2])]
    return out


@common
@given(docs=docs_st, cut=split_st, dtype=dtype_st, pats=st.lists(phrase_st, max_size=8))
def test_count_exists_and_doc_freq(open_index, docs, cut, dtype, pats) -> None:
    ix = open_index(docs, cut, dtype)
    pats = with_pieces(docs, pats)
    queries = [list(p) for p in pats]
    expected = [len(word_positions(docs, [p])) for p in pats]
    assert ix.count(queries, boundary="word") == expected
    assert ix.exists(queries, boundary="word") == [e > 0 for e in expected]
    assert ix.doc_freq(queries, boundary="word") == [len(word_docs(docs, [p])) for p in pats]
    # the token boundary is today's count, never below the word count
    assert ix.count(queries) == [len(naive_positions(docs, [p])) for p in pats]
    assert all(w <= t for w, t in zip(expected, ix.count(queries), strict=True))


spec_st = st.one_of(
    phrase_st.map(lambda p: [p]),
    st.lists(phrase_st, min_size=1, max_size=3),
    phrase_st.map(lambda p: [p, p[:1]]),  # a phrase OR its own prefix: nested ranges, shared starts
)


@common
@given(
    docs=docs_st,
    cut=split_st,
    dtype=dtype_st,
    queries=st.lists(st.lists(spec_st, min_size=2, max_size=3), min_size=1, max_size=6),
    cached=st.booleans(),
)
def test_cooccurrence_both_units_and_or_variants(open_index, docs, cut, dtype, queries, cached) -> None:
    # cached: every set goes through the cache; the token sets must not answer word queries
    ix = open_index(docs, cut, dtype, **({"cache_min_occurrences": 0} if cached else {}))
    if cached:
        ix.cooccurrence([[list(map(list, s)) for s in q] for q in queries])
        ix.cooccurrence([[list(map(list, s)) for s in q] for q in queries], unit="occurrences")
    engine = [[list(map(list, s)) for s in q] for q in queries]
    docs_expected = [len(set.intersection(*[word_docs(docs, s) for s in q])) for q in queries]
    occ_expected = []
    for q in queries:
        both = set.intersection(*[word_docs(docs, s) for s in q])
        occ_expected.append(sum(1 for d, _ in word_positions(docs, q[0]) if d in both))
    for _ in range(2 if cached else 1):
        assert ix.cooccurrence(engine, boundary="word") == docs_expected
        assert ix.cooccurrence(engine, unit="occurrences", boundary="word") == occ_expected
    specs = [q[0] for q in engine]
    assert ix.doc_freq(specs, boundary="word") == [len(word_docs(docs, q[0])) for q in queries]


@common
@given(
    docs=docs_st,
    cut=split_st,
    specs=st.lists(spec_st, min_size=1, max_size=3),
    offset=st.integers(0, 3),
    limit=st.integers(0, 4),
)
def test_documents(open_index, docs, cut, specs, offset, limit) -> None:
    ix = open_index(docs, cut, "uint16")
    query = [list(map(list, s)) for s in specs]
    expected = sorted(set.intersection(*[word_docs(docs, s) for s in specs]))
    res = ix.documents(query, offset=offset, limit=limit, window=2, boundary="word")
    assert res.total == len(expected)
    assert [h.doc_id for h in res.docs] == expected[offset : offset + limit]
    for h in res.docs:  # the marked spans are word-bounded matches
        text = b"".join(VOCAB_BYTES[t] for t in docs[h.doc_id]).decode("utf-8", errors="replace")
        assert h.text is not None and h.text in text
        for s, e, p in h.spans:
            assert s < e and p < len(specs)


def test_snippet_keeps_a_split_character_whole(open_index) -> None:
    # found by test_documents: "é" is two tokens (c3, a9); a 2-token window before " a" began at a9 and
    # the snippet decoded to U+FFFD, which is not in the document. The window now widens to the whole é.
    c3, a9, space, sp_a = 6, 7, 4, 1
    ix = open_index([[c3, a9, space, sp_a]], [], "uint16")
    for boundary in ("token", "word"):
        (hit,) = ix.documents([[sp_a]], window=2, boundary=boundary).docs
        assert (hit.text, hit.snippet_start, hit.token_ids) == ("é  a", 0, [c3, a9, space, sp_a])
        assert hit.spans == [(2, 4, 0)] and hit.text[2:4] == " a"


@st.composite
def kernel_case(draw):
    docs = draw(st.lists(st.lists(token_st, max_size=15), min_size=1, max_size=5))
    dtype = draw(st.sampled_from([np.uint16, np.uint32]))
    pats = draw(st.lists(phrase_st, min_size=1, max_size=5))
    return docs, dtype, with_pieces(docs, pats)


@common
@given(case=kernel_case())
def test_kernels_on_read_only_arrays(case) -> None:
    docs, dtype, pats = case
    sep = np.iinfo(dtype).max
    tokens = np.concatenate([np.asarray(list(d) + [sep], dtype=dtype) for d in docs])
    sa = build_suffix_array(tokens, int(sep)).astype(np.int64)
    tables = WordTables.from_token_bytes(VOCAB_BYTES)
    flat = np.asarray([t for p in pats for t in p], dtype=np.int64)
    offsets = np.zeros(len(pats) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in pats], out=offsets[1:])
    for arr in (tokens, sa, flat, offsets):
        arr.setflags(write=False)
    starts = K._first_token_starts(tokens, sa, np.int64(V))
    lo, hi = K._sa_ranges(tokens, sa, flat, offsets, np.arange(len(pats), dtype=np.int64), starts)
    sub_lo, sub_hi, sub_off = K._word_ranges(
        tokens, sa, flat, offsets, lo, hi, tables.starts_word, tables.ends_nonword, np.int64(sep)
    )
    scan = ~tables.starts_word[flat[offsets[:-1]]]
    counts = K._word_counts(
        tokens, sa, sub_lo, sub_hi, sub_off, scan, tables.starts_word, tables.ends_nonword, np.int64(sep)
    )
    everything = np.ones(len(pats), dtype=np.bool_)
    pos, pos_off = K._word_positions(
        tokens,
        sa,
        sub_lo,
        sub_hi,
        sub_off,
        everything,
        tables.starts_word,
        tables.ends_nonword,
        np.int64(sep),
    )
    doc_starts = np.concatenate([[0], np.cumsum([len(d) + 1 for d in docs])])
    for i, p in enumerate(pats):
        expected = word_positions(docs, [p])
        assert counts[i] == len(expected)
        got = {
            (int(np.searchsorted(doc_starts, x, side="right")) - 1, int(x))
            for x in pos[pos_off[i] : pos_off[i + 1]]
        }
        assert {(d, int(doc_starts[d]) + k) for d, k in expected} == got
        # sub-ranges lie inside the pattern's range, disjoint and in order
        s = list(zip(sub_lo[sub_off[i] : sub_off[i + 1]], sub_hi[sub_off[i] : sub_off[i + 1]], strict=True))
        assert all(lo[i] <= a < b <= hi[i] for a, b in s)
        assert all(b1 < a2 for (_, b1), (a2, _) in zip(s, s[1:], strict=False))


def test_token_edge_classes() -> None:
    assert first_char_is_word(b"a") and not first_char_is_word(b" a") and not first_char_is_word(b".")
    assert first_char_is_word(b"_") and first_char_is_word(b"1") and first_char_is_word("é".encode())
    assert not first_char_is_word("×".encode()) and not last_char_is_word("a×".encode())
    # a character cut by the token edge counts as a word character
    assert first_char_is_word(b"\xa9") and last_char_is_word(b"a\xc3") and last_char_is_word(b"\xa9")
    assert last_char_is_word("aé".encode()) and not last_char_is_word(b"a.")
    assert first_char_is_word(b"") and last_char_is_word(b"")


def test_known_case(open_index) -> None:
    a, sp_a, b, dot, _, und = 0, 1, 2, 3, 4, 5
    docs = [[sp_a, b, dot, a], [und, a, sp_a]]
    ix = open_index(docs, [], "uint16")
    # " a" then "b" continues the word; "a" after "." starts one and ends the document; "a" after "_" does not
    assert ix.count([[sp_a], [a], [sp_a, b], [b]], boundary="word") == [1, 1, 1, 0]
    assert ix.count([[sp_a], [a], [sp_a, b], [b]]) == [2, 2, 1, 1]


def test_word_needs_a_byte_level_tokenizer(open_index, tmp_path: Path) -> None:
    ix = Index.open(write_index(tmp_path / "ids", [[1, 2, 3]]))
    for call in (
        lambda: ix.count([[1]], boundary="word"),
        lambda: ix.doc_freq([[1]], boundary="word"),
        lambda: ix.cooccurrence([[[1], [2]]], boundary="word"),
        lambda: ix.documents([[1]], boundary="word"),
    ):
        with pytest.raises(QueryError, match="without a tokenizer") as err:
            call()
        assert err.value.field == "boundary"
    with pytest.raises(QueryError, match="boundary must be one of") as err:
        ix.count([[1]], boundary="words")
    assert err.value.field == "boundary"
    word_ix = open_index([[0, 1]], [], "uint16")
    with pytest.raises(QueryError, match="windowed") as err:
        word_ix.windowed_cooccurrence([[[0], [1]]], 2, boundary="word")
    assert err.value.field == "boundary"


def test_start_scan_respects_the_work_budget(open_index) -> None:
    from service.engine import BudgetExceeded

    ix = open_index([[2, 0] * 10], [], "uint16", max_occurrences=5)
    with pytest.raises(BudgetExceeded):
        ix.count([[0]], boundary="word")  # "a" does not begin a word: 10 occurrences to check
    assert ix.count([[1]], boundary="word") == [0]  # " a" begins a word: no scan, no budget needed
