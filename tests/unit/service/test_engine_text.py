"""Engine tests on the embedded sample corpus (``sample_index``): text queries, the leading-space policy,
and every query type against numpy brute force over the index's own token arrays."""

from __future__ import annotations

import numpy as np
import pytest

from service.engine import Index, QueryError


@pytest.fixture(scope="module")
def ix(sample_index) -> Index:
    return Index.open(sample_index, name="sample")


@pytest.fixture(scope="module")
def corpus(ix: Index):
    """All documents' tokens concatenated (with separators) and each position's global doc id."""
    toks, docs = [], []
    for shard in ix.shards:
        t = np.asarray(shard.tokens, dtype=np.int64)
        off = np.asarray(shard.doc_offsets)
        toks.append(t)
        docs.append(shard.doc_base + np.searchsorted(off, np.arange(len(t)), side="right") - 1)
    return np.concatenate(toks), np.concatenate(docs)


def brute_positions(corpus, pat) -> np.ndarray:
    toks, _ = corpus
    m = len(pat)
    mask = np.ones(len(toks) - m + 1, dtype=bool)
    for k, t in enumerate(pat):
        mask &= toks[k : len(toks) - m + 1 + k] == t
    return np.flatnonzero(mask)


def brute_docs(corpus, pats) -> set[int]:
    return {int(d) for p in pats for d in corpus[1][brute_positions(corpus, p)]}


PHRASES = ["the", "Python", "import os", "of the", "return value", "kernel", "zzqqxx unlikely phrase", "\n"]


def test_leading_space_policy(ix: Index, pythia_tokenizer) -> None:
    enc = lambda s: pythia_tokenizer.encode(s).tolist()  # noqa: E731
    assert ix.tokenize("Paris") == enc(" Paris") != enc("Paris")
    assert ix.tokenize(" Paris") == enc(" Paris")
    assert ix.tokenize("Paris", space="exact") == enc("Paris")
    assert ix.tokenize("\nParis") == enc("\nParis")  # already starts with whitespace: unchanged
    with pytest.raises(QueryError, match="one token sequence"):
        ix.count(["Paris"], space="both")


def test_text_counts_match_brute_force(ix: Index, corpus) -> None:
    counts = ix.count(PHRASES)
    for text, c in zip(PHRASES, counts, strict=True):
        assert c == len(brute_positions(corpus, ix.tokenize(text))), text
    assert counts[0] > 1000 and counts[6] == 0
    exact = ix.count(["Python"], space="exact")[0]
    assert exact == len(brute_positions(corpus, ix.tokenize("Python", space="exact")))


def test_doc_freq_and_cooccurrence_with_both_forms(ix: Index, corpus) -> None:
    both = ix.doc_freq(PHRASES, space="both")
    for text, df in zip(PHRASES, both, strict=True):
        forms = {tuple(ix.tokenize(text)), tuple(ix.tokenize(text, space="exact"))}
        assert df == len(brute_docs(corpus, forms)), text
    pairs = [[a, b] for a in PHRASES[:6] for b in PHRASES[:6] if a < b]
    got = ix.cooccurrence(pairs, space="both")
    for (a, b), c in zip(pairs, got, strict=True):
        fa = {tuple(ix.tokenize(a)), tuple(ix.tokenize(a, space="exact"))}
        fb = {tuple(ix.tokenize(b)), tuple(ix.tokenize(b, space="exact"))}
        assert c == len(brute_docs(corpus, fa) & brute_docs(corpus, fb)), (a, b)
    # the same query with explicit variants gives the same number
    assert ix.cooccurrence(
        [[{"any": ["the", " the"]}, ["kernel", " kernel"]]], space="exact"
    ) == ix.cooccurrence([["the", "kernel"]], space="both")


def test_windowed_matches_brute_force(ix: Index, corpus) -> None:
    a, b = ix.tokenize("import"), ix.tokenize("os")
    pa, pb = brute_positions(corpus, a), brute_positions(corpus, b)
    docs = corpus[1]
    anchor, other = (pa, pb) if len(pa) <= len(pb) else (pb, pa)
    for window in (0, 1, 5, 50):
        expected = sum(bool(np.any((np.abs(other - p) <= window) & (docs[other] == docs[p]))) for p in anchor)
        assert ix.windowed_cooccurrence([["import", "os"]], window) == [expected]


def test_ntd_and_infgram_match_brute_force(ix: Index, corpus) -> None:
    toks = corpus[0]
    prompt = ix.tokenize("import")
    (dist,) = ix.ntd(["import"])
    pos = brute_positions(corpus, prompt) + len(prompt)
    nxt = toks[pos]
    nxt = nxt[nxt != ix.separator]
    ids, cnt = np.unique(nxt, return_counts=True)
    assert {t.token_id: t.count for t in dist.tokens} == dict(zip(ids.tolist(), cnt.tolist(), strict=True))
    assert dist.tokens[0].token == ix.id_to_token([dist.tokens[0].token_id])[0]
    (r,) = ix.infgram_prob([("The return value of this function is", " the number of bytes")])
    ctx = ix.tokenize("The return value of this function is")
    full = ctx + ix.tokenize(" the number of bytes")
    for k, tok in enumerate(r.tokens):
        context = full[: len(ctx) + k]
        suffix = context[len(context) - tok.suffix_len :]
        assert tok.suffix_count == len(brute_positions(corpus, suffix)) > 0
        if tok.suffix_len < len(context):
            assert len(brute_positions(corpus, context[len(context) - tok.suffix_len - 1 :])) == 0
        assert tok.cont_count == len(brute_positions(corpus, suffix + [tok.token_id]))


def test_documents_snippets_mark_the_phrases(ix: Index, corpus) -> None:
    res = ix.documents(["import", "os"], limit=3, window=20)
    assert res.total == len(
        brute_docs(corpus, [ix.tokenize("import")]) & brute_docs(corpus, [ix.tokenize("os")])
    )
    assert res.docs
    for hit in res.docs:
        assert hit.text is not None and isinstance(hit.metadata, dict)
        marked = {(hit.text[s:e], p) for s, e, p in hit.spans}
        assert (" import", 0) in marked
        assert all(text.strip() == ("import", "os")[p] for text, p in marked)
    whole = ix.document(res.docs[0].doc_id)
    assert " import" in whole.text and whole.metadata == res.docs[0].metadata


def test_concurrent_queries_agree_with_serial(ix: Index) -> None:
    from concurrent.futures import ThreadPoolExecutor

    pairs = [[a, b] for a in PHRASES[:6] for b in PHRASES[:6]]
    serial = (ix.count(PHRASES), ix.cooccurrence(pairs, space="both"), ix.windowed_cooccurrence(pairs, 10))

    def run(_: int):
        return ix.count(PHRASES), ix.cooccurrence(pairs, space="both"), ix.windowed_cooccurrence(pairs, 10)

    with ThreadPoolExecutor(4) as pool:
        for result in pool.map(run, range(12)):
            assert result == serial
