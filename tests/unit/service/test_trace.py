"""Span tracing (service.engine.trace) against a brute-force oracle: random corpora (hypothesis) with
random shard splits, u16 and u32 tokens; spans at document boundaries, overlapping spans, word
boundaries on a real tokenizer, documents and sampling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.engine import Index, QueryError
from service.engine.trace import _longest_matches, word_boundaries
from tests.index_writer import write_index

# --------------------------------------------------------------------------------------------------
# Oracle


def occurrences(docs, pat):
    m = len(pat)
    return [
        (d, i)
        for d, doc in enumerate(docs)
        for i in range(len(doc) - m + 1)
        if list(doc[i : i + m]) == list(pat)
    ]


def naive_trace(docs, q, *, min_len=1, max_count=None, bounds=None, starts=None):
    """(start, end, count) of the maximal spans, by brute force."""
    n = len(q)
    if bounds is None:
        bounds = [True] * (n + 1)
    if starts is None:
        starts = bounds[:n]
    cands = []
    for p in range(n):
        if not starts[p]:
            continue
        longest = 0
        for length in range(1, n - p + 1):
            if occurrences(docs, q[p : p + length]):
                longest = length
            else:
                break
        end = max([e for e in range(p, p + longest + 1) if bounds[e]], default=p)
        if end - p < min_len:
            continue
        count = len(occurrences(docs, q[p:end]))
        if count >= 1 and (max_count is None or count <= max_count):
            cands.append((p, end, count))
    return sorted(c for c in cands if not any(o != c and o[0] <= c[0] and c[1] <= o[1] for o in cands))


def spans_of(result):
    return sorted((s.start, s.end, s.count) for s in result.spans)


# --------------------------------------------------------------------------------------------------
# Kernel


@pytest.mark.parametrize("dtype", ["uint16", "uint32"])
def test_kernel_longest_matches_oracle_read_only(open_index, dtype):
    rng = np.random.default_rng(3)
    docs = [rng.integers(0, 4, size=int(rng.integers(0, 30))).tolist() for _ in range(12)]
    index = open_index(docs, dtype=dtype, vocab_size=4)
    shard = index.shards[0]
    assert not shard.tokens.flags.writeable
    for _ in range(30):
        q = rng.integers(0, 4, size=int(rng.integers(1, 15))).astype(np.int64)
        q.setflags(write=False)
        positions = np.arange(len(q), dtype=np.int64)
        positions.setflags(write=False)
        length, lo, hi = _longest_matches(shard.tokens, shard.sa, shard.starts(4), q, positions)
        for p in range(len(q)):
            best = max(
                [m for m in range(0, len(q) - p + 1) if m == 0 or occurrences(docs, q[p : p + m].tolist())]
            )
            assert length[p] == best
            if best:
                assert hi[p] - lo[p] == len(occurrences(docs, q[p : p + best].tolist()))


# --------------------------------------------------------------------------------------------------
# Engine vs oracle


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    docs=st.lists(st.lists(st.integers(0, 3), max_size=20), min_size=1, max_size=7),
    q=st.lists(st.integers(0, 3), min_size=1, max_size=14),
    cut=st.lists(st.integers(0, 7), max_size=3),
    dtype=st.sampled_from(["uint16", "uint32"]),
    min_len=st.integers(1, 3),
    max_count=st.one_of(st.none(), st.integers(1, 4)),
)
def test_trace_equals_oracle(open_index, docs, q, cut, dtype, min_len, max_count):
    index = open_index(docs, cut, dtype, vocab_size=4)
    (result,) = index.trace([q], boundary="token", min_len=min_len, max_count=max_count, docs_per_span=3)
    assert spans_of(result) == naive_trace(docs, q, min_len=min_len, max_count=max_count)
    for span in result.spans:
        occ = set(occurrences(docs, q[span.start : span.end]))
        got = [(d.doc_id, d.position) for d in span.documents]
        assert len(got) == len(set(got)) == min(3, span.count)
        assert set(got) <= occ
        for d in span.documents:
            assert d.token_ids[d.token_span[0] : d.token_span[1]] == q[span.start : span.end]
            assert d.metadata == {"doc": d.doc_id}
    assert result.span_density == pytest.approx(len(result.spans) / len(q))


def test_spans_stop_at_document_boundaries_and_overlap(open_index):
    docs = [[1, 2, 3], [2, 3, 4], [5, 6], [7]]
    for cut in [(), (1,), (1, 2, 3)]:
        index = open_index(docs, cut, vocab_size=8)
        # [1 2 3 4]: "1 2 3" and "2 3 4" overlap; no match crosses the end of document 0
        (r,) = index.trace([[1, 2, 3, 4]], boundary="token")
        assert spans_of(r) == [(0, 3, 1), (1, 4, 1)]
        # "6 7" spans the boundary between documents 2 and 3: two spans, not one
        (r,) = index.trace([[5, 6, 7]], boundary="token")
        assert spans_of(r) == [(0, 2, 1), (2, 3, 1)]
        assert r.coverage == 1.0


def test_counts_sum_over_shards_and_longest_over_shards(open_index):
    docs = [[1, 2, 3, 4], [1, 2], [1, 2], [9, 1, 2]]
    for cut in [(), (1,), (2,), (1, 2, 3)]:
        index = open_index(docs, cut, vocab_size=10)
        (r,) = index.trace([[1, 2, 3, 4]], boundary="token", max_count=None)
        assert spans_of(r) == [(0, 4, 1)]
        (r,) = index.trace([[9, 1, 2, 5]], boundary="token", max_count=None, min_len=2)
        assert spans_of(r) == [(0, 3, 1)]
        (r,) = index.trace([[7, 1, 2, 5]], boundary="token", max_count=None)
        assert spans_of(r) == [(1, 3, 4)]
        (r,) = index.trace([[7, 1, 2, 5]], boundary="token", max_count=3)
        assert spans_of(r) == []


def test_sampling_is_seeded_and_uniform_without_replacement(open_index):
    docs = [[1, 2]] * 40
    index = open_index(docs, (13, 27), vocab_size=3)
    a = index.trace([[1, 2]], boundary="token", max_count=None, docs_per_span=5, seed=7)[0].spans[0]
    b = index.trace([[1, 2]], boundary="token", max_count=None, docs_per_span=5, seed=7)[0].spans[0]
    c = index.trace([[1, 2]], boundary="token", max_count=None, docs_per_span=5, seed=8)[0].spans[0]
    assert a.count == 40 and len(a.documents) == 5
    assert [d.doc_id for d in a.documents] == [d.doc_id for d in b.documents]
    assert [d.doc_id for d in a.documents] != [d.doc_id for d in c.documents]
    assert len({d.doc_id for d in a.documents}) == 5
    # every document gets picked across seeds (uniform over all shards)
    seen = set()
    for seed in range(60):
        span = index.trace([[1, 2]], boundary="token", max_count=None, docs_per_span=5, seed=seed)[0].spans[0]
        seen |= {d.doc_id for d in span.documents}
    assert seen == set(range(40))


def test_rank_and_max_spans(open_index):
    docs = [[1, 2, 3, 4, 5], [6, 7], [6, 7], [6, 7], [8, 9]]
    index = open_index(docs, vocab_size=10)
    (r,) = index.trace([[1, 2, 3, 6, 7, 8, 9]], boundary="token", max_count=None)
    assert spans_of(r) == [(0, 3, 1), (3, 5, 3), (5, 7, 1)]
    assert [s.rank for s in r.spans] == [1, 2, 3]
    (r,) = index.trace([[1, 2, 3, 6, 7, 8, 9]], boundary="token", max_count=None, rank="unigram_logprob")
    logp = [s.unigram_logprob for s in r.spans]
    by_rank = sorted(range(3), key=lambda k: r.spans[k].rank)
    assert sorted(range(3), key=lambda k: logp[k]) == by_rank
    total = sum(len(d) for d in docs)
    assert r.spans[0].unigram_logprob == pytest.approx(3 * np.log(1 / total))
    (r,) = index.trace([[1, 2, 3, 6, 7, 8, 9]], boundary="token", max_count=None, max_spans=1)
    assert spans_of(r) == [(0, 3, 1)]


@pytest.mark.parametrize(
    "options, field",
    [
        ({"min_len": 0}, "min_len"),
        ({"max_count": 0}, "max_count"),
        ({"boundary": "char"}, "boundary"),
        ({"rank": "count"}, "rank"),
        ({"docs_per_span": -1}, "docs_per_span"),
        ({"context": True}, "context"),
        ({"space": "both"}, "space"),
        ({"boundary": "word"}, "boundary"),  # no tokenizer
    ],
)
def test_bad_options_name_the_field(open_index, options, field):
    index = open_index([[1, 2]], vocab_size=3)
    with pytest.raises(QueryError) as err:
        index.trace([[1, 2]], **({"boundary": "token"} | options))
    assert err.value.field == field


def test_bad_queries_name_the_item(open_index):
    index = open_index([[1, 2]], vocab_size=3)
    for queries, field in [([[1, 3]], "queries[0]"), ([[1], []], "queries[1]"), ([["x"]], "queries[0]")]:
        with pytest.raises(QueryError) as err:
            index.trace(queries, boundary="token")
        assert err.value.field == field
    with pytest.raises(QueryError, match="without a tokenizer"):
        index.trace(["some text"], boundary="token")


# --------------------------------------------------------------------------------------------------
# Real tokenizer: text input, word boundaries, character offsets


def naive_bounds(tokenizer, ids):
    """A word boundary before token j unless both characters around it are word characters (by bytes)."""
    from service.engine.words import first_char_is_word, last_char_is_word, token_bytes

    data = token_bytes(tokenizer, len(tokenizer.hf))
    out = [True]
    for a, b in zip(ids, ids[1:], strict=False):
        out.append(not (last_char_is_word(data[a]) and first_char_is_word(data[b])))
    return out + [True]


def naive_starts(tokenizer, ids):
    from service.engine.words import is_word_char, token_bytes

    data = token_bytes(tokenizer, len(tokenizer.hf))
    bounds = naive_bounds(tokenizer, ids)
    starts = []
    for j, t in enumerate(ids):
        text = data[t].decode("utf-8", errors="replace").lstrip()
        starts.append(bounds[j] and bool(text) and is_word_char(text[0]))
    return starts


def test_word_boundaries_match_naive(text_index, pythia_tokenizer):
    from service.engine.trace import word_starts

    words, opens = text_index._tracer.edges()
    sentence = " The indexes (of 3 naïve cafés) weren't 東京 built_in.\nYes"
    ids = pythia_tokenizer.encode(sentence).astype(np.int64)
    bounds = word_boundaries(ids, words)
    assert bounds.tolist() == naive_bounds(pythia_tokenizer, ids.tolist())
    starts = naive_starts(pythia_tokenizer, ids.tolist())
    assert word_starts(ids, bounds, opens).tolist() == [j for j, ok in enumerate(starts) if ok]


CORPUS = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "A quick brown foxes den lies over the hill; the lazy dogs sleep.",
    "Indexes of suffix arrays answer counting queries exactly.",
    "Nothing in here matches the others at all, truly nothing.",
]


@pytest.fixture(scope="module")
def text_index(tmp_path_factory, pythia_tokenizer):
    root = tmp_path_factory.mktemp("trace-text") / "index"
    docs = [pythia_tokenizer.encode(" " + t).tolist() for t in CORPUS]
    return Index.open(
        write_index(root, docs, tokenizer=pythia_tokenizer, metadata=[{"n": i} for i in range(len(docs))])
    )


@pytest.mark.parametrize("boundary", ["word", "token"])
def test_text_trace_equals_oracle(text_index, pythia_tokenizer, boundary):
    text = "I saw the quick brown foxes jump over the lazy dog; suffix arrays answer counting queries."
    (r,) = text_index.trace([text], boundary=boundary, max_count=None, min_len=2)
    ids = pythia_tokenizer.encode(" " + text).tolist()
    assert r.token_ids == ids
    docs = [pythia_tokenizer.encode(" " + t).tolist() for t in CORPUS]
    bounds = naive_bounds(pythia_tokenizer, ids) if boundary == "word" else None
    starts = naive_starts(pythia_tokenizer, ids) if boundary == "word" else None
    assert spans_of(r) == naive_trace(docs, ids, min_len=2, bounds=bounds, starts=starts)
    assert r.spans, "the text shares phrases with the corpus"
    for span in r.spans:
        assert r.text is not None and span.text == text[span.char_start : span.char_end]
        assert span.text.strip() == pythia_tokenizer.decode(ids[span.start : span.end]).strip()
        for d in span.documents:
            assert d.text is not None
            assert d.text[d.span[0] : d.span[1]].strip() == span.text.strip()
            assert d.metadata == {"n": d.doc_id}
    if boundary == "word":
        for span in r.spans:  # never inside a word
            before, after = (
                text[span.char_start - 1 : span.char_start],
                text[span.char_end : span.char_end + 1],
            )
            assert not (before.isalnum() and text[span.char_start].isalnum())
            assert not (after.isalnum() and text[span.char_end - 1].isalnum())
        assert "suffix arrays answer counting queries" in [s.text for s in r.spans]


def test_ids_input_gets_character_offsets(text_index, pythia_tokenizer):
    ids = pythia_tokenizer.encode(" over the lazy dog").tolist()
    (r,) = text_index.trace([ids], max_count=None)
    assert r.text == " over the lazy dog"
    assert [(s.text, s.count) for s in r.spans] == [("over the lazy dog", 1)]
    # ids that do not come back from re-encoding their text: offsets from decoded prefixes
    odd = pythia_tokenizer.encode(" t").tolist() + pythia_tokenizer.encode("he").tolist() + ids[1:]
    (r,) = text_index.trace([odd], max_count=None, boundary="token", min_len=2)
    assert r.text == " the the lazy dog" and r.token_ids == odd
    for span in r.spans:
        assert span.text == r.text[span.char_start : span.char_end]
        assert span.text.strip() == pythia_tokenizer.decode(odd[span.start : span.end]).strip()


def test_normalized_index_maps_offsets_to_the_input(tmp_path, pythia_tokenizer):
    from indexer.pipeline import build_index

    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "so the quick brown fox"}\n')
    build_index([corpus], tmp_path / "ix", tokenizer=pythia_tokenizer, progress=False, normalization="lower")
    index = Index.open(tmp_path / "ix")
    (r,) = index.trace(["THE QUICK Brown Fox!"], max_count=None)
    assert r.text == "THE QUICK Brown Fox!"
    assert [s.text for s in r.spans] == ["THE QUICK Brown Fox"]


# --------------------------------------------------------------------------------------------------
# HTTP


def test_http_trace_equals_engine_and_errors_name_the_field(text_index):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    app = create_app(Settings(indexes={"t": text_index.directory}, access_log=False, warmup=False))
    with TestClient(app, raise_server_exceptions=False) as http:
        text = "I saw the quick brown foxes jump over the lazy dog"
        answer = http.post("/v1/trace", json={"index": "t", "queries": [text], "docs_per_span": 2, "seed": 1})
        assert answer.status_code == 200, answer.text
        (expected,) = text_index.trace([text], docs_per_span=2, seed=1)
        got = answer.json()["results"][0]
        assert [(s["start"], s["end"], s["count"], s["text"]) for s in got["spans"]] == [
            (s.start, s.end, s.count, s.text) for s in expected.spans
        ]
        assert got["span_density"] == expected.span_density
        ids = text_index.tokenize(text)
        by_ids = http.post("/v1/trace", json={"index": "t", "queries": [{"ids": ids}]}).json()["results"][0]
        assert [(s["start"], s["end"], s["count"]) for s in by_ids["spans"]] == [
            (s["start"], s["end"], s["count"]) for s in got["spans"]
        ]
        for body, where in [
            ({"queries": [text], "rank": "count"}, "rank"),
            ({"queries": [text], "min_len": 0}, "min_len"),
            ({"queries": [""]}, "queries[0]"),
            ({"queries": [{"ids": [10**9]}]}, "queries[0]"),
            ({"queries": [text], "docs_per_span": 10**6}, "docs_per_span"),
        ]:
            bad = http.post("/v1/trace", json={"index": "t", **body})
            assert bad.status_code == 422, bad.text
            assert bad.headers["content-type"].startswith("application/problem+json")
            assert where in bad.text


def test_trace_over_shard_groups_answers_as_one_group(open_index):
    """Tracing is a shard-group operation like the others: an index whose shards answer in groups (each
    shard its own group, as Ray Serve replicas would) gives the single group's answer, sampled documents
    included."""
    from dataclasses import asdict

    from service.engine.opening import open_header, open_shards
    from service.engine.shards import ShardGroup

    rng = np.random.default_rng(11)
    docs = [rng.integers(0, 5, size=int(rng.integers(1, 25))).tolist() for _ in range(30)]
    one = open_index(docs, (4, 9, 17, 23), vocab_size=5)
    manifest, tokenizer = open_header(one.directory, "g")
    shards = open_shards(one.directory, "g", manifest)
    for k in (1, 2, 5):
        groups = [ShardGroup(shards[a : a + k]) for a in range(0, len(shards), k)]
        grouped = Index(one.directory, "g", manifest, groups[::-1], tokenizer)  # any group order
        for options in (
            {"boundary": "token"},
            {"boundary": "token", "max_count": None, "docs_per_span": 4, "seed": 5, "context": 2},
            {"boundary": "token", "min_len": 2, "max_count": 6, "rank": "unigram_logprob", "max_spans": 2},
        ):
            queries = [rng.integers(0, 5, size=12).tolist() for _ in range(4)]
            want = [asdict(r) for r in one.trace(queries, **options)]
            assert [asdict(r) for r in grouped.trace(queries, **options)] == want, (k, options)
