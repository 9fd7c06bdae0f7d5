"""Snippets of the documents query keep characters whole: over a byte-level vocabulary in which 2-, 3- and
4-byte UTF-8 characters are split over tokens in every way (single bytes, pairs, a byte glued to ASCII),
the snippet's text never holds U+FFFD, is a substring of the document, and each span covers its match's
bytes plus at most the rest of the characters the match cuts (hypothesis; random window edges on both
sides, matches that start or end inside a character). The same holds for the documents of span tracing
and for the spans of a token-id trace query."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.engine.words import WordTables
from tests.index_writer import byte_level_tokenizer

CHARS = ["a", " ", ".", "é", "€", "😀"]  # 1, 1, 1, 2, 3 and 4 bytes
VOCAB_BYTES: list[bytes] = sorted(
    {
        b"a",
        b" a",
        b" ",
        b".",
        *("é€😀".encode()[i : i + 1] for i in range(9)),  # every byte of the three characters alone
        "é".encode(),
        "€".encode(),
        "😀".encode(),
        b"\xe2\x82",  # € as 2 + 1 and 1 + 2
        b"\x82\xac",
        b"\xf0\x9f",  # 😀 as 2 + 2, 3 + 1, 1 + 3
        b"\x98\x80",
        b"\xf0\x9f\x98",
        b"\x9f\x98\x80",
        b"a\xc3",  # a cut character glued to ASCII on either side
        b"\xa9a",
        b"\xac ",
        b" \xf0",
    }
)
_TOKENIZER = byte_level_tokenizer(VOCAB_BYTES, "split-utf8")


@pytest.fixture(scope="module")
def open_index(open_index):
    return open_index.using(tokenizer=_TOKENIZER)


@st.composite
def tokenized_text(draw) -> tuple[str, list[int]]:
    """A text of CHARS and one of its segmentations into VOCAB_BYTES tokens, drawn token by token."""
    text = "".join(draw(st.lists(st.sampled_from(CHARS), min_size=1, max_size=14)))
    data = text.encode()
    ids: list[int] = []
    i = 0
    while i < len(data):
        fits = [t for t, b in enumerate(VOCAB_BYTES) if data.startswith(b, i)]
        t = draw(st.sampled_from(fits))
        ids.append(t)
        i += len(VOCAB_BYTES[t])
    return text, ids


@st.composite
def case(draw):
    docs = draw(st.lists(tokenized_text(), min_size=1, max_size=3))
    d = draw(st.integers(0, len(docs) - 1))
    toks = docs[d][1]
    a = draw(st.integers(0, len(toks) - 1))
    b = draw(st.integers(a + 1, min(len(toks), a + 3)))
    return docs, tuple(toks[a:b]), draw(st.integers(0, 3)), draw(st.lists(st.integers(0, 3), max_size=2))


def occurrences(toks, phrase):
    m = len(phrase)
    return [i for i in range(len(toks) - m + 1) if tuple(toks[i : i + m]) == phrase]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(c=case())
def test_snippets_hold_whole_characters(open_index, c) -> None:
    docs, phrase, window, cut = c
    ix = open_index([toks for _, toks in docs], cut)
    res = ix.documents([[list(phrase)]], window=window, limit=10)
    expected = [d for d, (_, toks) in enumerate(docs) if occurrences(toks, phrase)]
    assert [h.doc_id for h in res.docs] == expected
    phrase_bytes = b"".join(VOCAB_BYTES[t] for t in phrase)
    for h in res.docs:
        text, toks = docs[h.doc_id]
        n = len(h.token_ids)
        assert h.token_ids == toks[h.snippet_start : h.snippet_start + n]
        assert h.text is not None and "\ufffd" not in h.text and h.text in text
        # widening never narrows the window around the first match
        first = occurrences(toks, phrase)[0]
        assert h.snippet_start <= max(0, first - window)
        assert h.snippet_start + n >= min(len(toks), first + len(phrase) + window)
        inside = [
            i
            for i in occurrences(toks, phrase)
            if i >= h.snippet_start and i + len(phrase) <= h.snippet_start + n
        ]
        assert len(h.spans) == len(inside)
        for s, e, p in h.spans:
            covered = h.text[s:e].encode()
            assert p == 0 and 0 <= s < e <= len(h.text)
            assert phrase_bytes in covered and len(covered) - len(phrase_bytes) <= 6


def test_cuts_char_edges() -> None:
    data = [
        "é".encode()[:1],
        "é".encode()[1:],
        b"a",
        "😀".encode()[:1],
        "😀".encode()[1:3],
        "😀".encode()[3:],
    ]
    tables = WordTables.from_token_bytes(data)
    toks = [0, 1, 2, 3, 4, 5, 2]
    assert [tables.cuts_char(toks, i) for i in range(len(toks) + 1)] == [
        False,  # document start
        True,  # inside é
        False,
        False,
        True,  # inside 😀, after its lead byte
        True,  # inside 😀, three bytes in
        False,
        False,  # document end
    ]
    assert tables.char_span(toks, 1, 1) == (0, 2) and tables.char_span(toks, 4, 5) == (3, 6)
    assert tables.cuts_char([1, 1], 1) is False  # a stray continuation byte is no character to keep whole


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(c=case())
def test_trace_snippets_hold_whole_characters(open_index, c) -> None:
    # The same cuts in span tracing: each sampled occurrence's context, and the span marked in it.
    docs, phrase, context, cut = c
    ix = open_index([toks for _, toks in docs], cut)
    (result,) = ix.trace(
        [list(phrase)], min_len=1, max_count=None, boundary="token", docs_per_span=5, context=context
    )
    texts = [text for text, _ in docs]
    for span in result.spans:
        span_bytes = b"".join(VOCAB_BYTES[t] for t in phrase[span.start : span.end])
        for d in span.documents:
            text, toks = docs[d.doc_id]
            assert d.token_ids == toks[d.snippet_start : d.snippet_start + len(d.token_ids)]
            assert d.text is not None and "\ufffd" not in d.text and d.text in texts[d.doc_id]
            s, e = d.span
            covered = d.text[s:e].encode()
            assert span_bytes in covered and len(covered) - len(span_bytes) <= 6
            # widening never narrows the context asked for
            assert d.snippet_start <= max(0, d.position - context)
            end = d.snippet_start + len(d.token_ids)
            assert end >= min(d.doc_len, d.position + span.length + context)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(c=case(), other=tokenized_text())
def test_trace_spans_of_token_id_queries_hold_whole_characters(open_index, c, other) -> None:
    # A token-id query of whole characters whose maximal spans start or end inside a character: each
    # span's characters are the ones its tokens touch, whole (the query's text has no U+FFFD to show).
    docs, _, _, cut = c
    text, ids = other
    ix = open_index([toks for _, toks in docs], cut)
    (result,) = ix.trace([ids], min_len=1, max_count=None, boundary="token", docs_per_span=0)
    assert result.text == text
    for span in result.spans:
        span_bytes = b"".join(VOCAB_BYTES[t] for t in ids[span.start : span.end])
        assert span.text == text[span.char_start : span.char_end]
        covered = span.text.encode()
        assert "\ufffd" not in span.text
        assert span_bytes in covered and len(covered) - len(span_bytes) <= 6
