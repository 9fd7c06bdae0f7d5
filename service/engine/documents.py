"""Documents as the user sees them: a shard's tokens and token spans (:class:`RawHit`,
:class:`DocTokens`) -> :class:`DocumentHit` / :class:`Document` with text and character spans (the merge
layer decodes; shards know no tokenizer)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from service.engine.results import Document, DocumentHit
from service.engine.shards import DocTokens, RawHit
from service.engine.words import WordTables

Decode = Callable[[Sequence[int]], str]


def document_hit(raw: RawHit, decode: Decode | None, chars: WordTables | None = None) -> DocumentHit:
    """The page entry of ``raw``; with a tokenizer (``decode``) the snippet's text and each match as a
    character span of it, else the matches as token spans of the snippet.

    With ``chars`` (the tables of a byte-level tokenizer; the shard then cut the snippet at whole
    characters) a match whose edge falls inside a character spans that whole character: each edge is
    moved to the nearest character edge outside the match before the prefix is decoded, so every offset
    is an offset into ``text``."""
    start = raw.snippet_start
    snippet = raw.token_ids
    text = None
    spans: list[tuple[int, int, int]] = []
    if decode is not None:
        text = decode(snippet)
        for s, e, p in raw.matches:
            a, b = s - start, e - start
            if chars is not None:
                a, b = chars.char_span(snippet, a, b)
            spans.append((len(decode(snippet[:a])), len(decode(snippet[:b])), p))
    else:
        spans = [(s - start, e - start, p) for s, e, p in raw.matches]
    return DocumentHit(
        doc_id=raw.doc_id,
        shard=raw.shard,
        metadata=raw.metadata,
        text=text,
        spans=spans,
        token_ids=snippet,
        snippet_start=start,
        doc_len=raw.doc_len,
    )


def document(doc_id: int, doc: DocTokens, decode: Decode | None) -> Document:
    return Document(
        doc_id=doc_id,
        metadata=doc.metadata,
        token_ids=doc.token_ids,
        text=decode(doc.token_ids) if decode is not None else None,
        shard=doc.shard,
        doc_len=doc.doc_len,
        truncated=len(doc.token_ids) < doc.doc_len,
    )
