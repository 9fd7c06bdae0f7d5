"""Span tracing: which spans of a text occur verbatim in the corpus, how often, and in which documents.

The method is OLMoTrace's (infini-gram ``attribute``), made exact across shards:

1. **Longest match per start** (per shard, :func:`_longest_matches`): for every start position ``p`` of
   the query, the longest ``L`` such that ``q[p:p+L]`` occurs in the shard. The suffix-array range is
   narrowed one token at a time (a one-token comparison per probe), and the match of ``p`` starts from
   ``L(p-1) - 1`` tokens (a suffix of an occurring string occurs), so a query costs about
   ``(n + Σ extensions) · 3 log2(shard size)`` probes. A shard answers on its own.
2. **Merge**: the longest match over all shards; a shard with a shorter match has no occurrence of the
   longer string, so the span's count is the sum of the shards' counts of the final span (recounted
   exactly after step 3).
3. **Boundaries** (``boundary="word"``): spans start at a word start and end at a word end; a match is cut
   back to its last word end. Word boundaries are the engine's (:mod:`service.engine.words`): between two
   tokens unless the last character of the first and the first character of the second are both word
   characters (letters, digits, underscore); the text's start and end are boundaries. A span starts at a
   boundary before a token whose first non-whitespace character is a word character (spans never begin
   with punctuation). ``boundary="token"``: any token.
4. **Filter**: keep spans of at least ``min_len`` tokens occurring at most ``max_count`` times; drop a span
   contained in another kept span.
5. **Rank**: ``length`` (longest first) or ``unigram_logprob`` (lowest sum of the tokens' unigram
   log-probabilities first: the rarest wording), ties by position; ``max_spans`` keeps the best.
6. **Documents**: up to ``docs_per_span`` occurrences per span, a uniform sample without replacement
   (numpy's generator, seeded with ``seed``) when there are more, each shown in its document with
   ``context`` tokens on each side and the span marked.

**Span density** = spans / tokens of the text (OLMoTrace's measure); **coverage** = the fraction of the
text's tokens inside at least one span. Character offsets refer to ``TraceResult.text``: the input text
itself when its normalization maps character by character (always for ``normalization="none"``),
otherwise the normalized text.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numba import njit

from indexer.format import METADATA_BLOCK_DOCS, read_metadata
from service.engine import kernels as K
from service.engine.errors import BudgetExceeded, QueryError
from service.engine.words import WordTables, first_char_is_word, token_bytes

if TYPE_CHECKING:
    from service.engine.index import Index

BOUNDARIES: tuple[str, ...] = ("word", "token")
RANKS: tuple[str, ...] = ("length", "unigram_logprob")
TRACE_SPACES: tuple[str, ...] = ("auto", "exact")


# --------------------------------------------------------------------------------------------------
# Kernels


@njit(cache=True, nogil=True)
def _longest_matches(tokens, sa, starts, q, positions):
    """For each start ``positions[j]`` (increasing) of query ``q`` (int64, no separator, every id below
    len(starts) - 1): the longest length ``L`` with ``q[p:p+L]`` in the shard, and its suffix-array range
    ``[lo, hi)`` (L = 0: the empty range at 0). Pure; read-only inputs."""
    n = q.shape[0]
    m = positions.shape[0]
    length = np.zeros(m, dtype=np.int64)
    lo = np.zeros(m, dtype=np.int64)
    hi = np.zeros(m, dtype=np.int64)
    prev_end = np.int64(-1)
    for j in range(m):
        p = np.int64(positions[j])
        k = np.int64(0)
        a = np.int64(0)
        b = np.int64(0)
        if prev_end > p + 1:
            # q[p:prev_end] is a suffix of the previous match: it occurs; find its range directly
            k = prev_end - p
            t = q[p]
            a, b = K._sa_range(tokens, sa, q, p, p + k, starts[t], starts[t + 1], np.int64(1))
        elif p < n:
            t = q[p]
            a = starts[t]
            b = starts[t + 1]
            if a < b:
                k = np.int64(1)
        while k > 0 and p + k < n:
            a2, b2 = K._sa_range(tokens, sa, q, p, p + k + 1, a, b, k)
            if a2 >= b2:
                break
            a = a2
            b = b2
            k += 1
        length[j] = k
        if k > 0:
            lo[j] = a
            hi[j] = b
        prev_end = p + k
    return length, lo, hi


# --------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class TraceDocument:
    """One occurrence of a span, shown in its document: ``text`` is the snippet (None for an index without
    a tokenizer), ``span`` the span's ``[start, end)`` characters in ``text`` (tokens in ``token_ids`` when
    ``text`` is None), ``token_span`` its ``[start, end)`` in ``token_ids``; ``position`` the span's first
    token in the document, ``snippet_start`` the snippet's."""

    doc_id: int
    shard: int
    metadata: dict[str, Any]
    position: int
    text: str | None
    span: tuple[int, int]
    token_ids: list[int]
    token_span: tuple[int, int]
    snippet_start: int
    doc_len: int


@dataclass(frozen=True)
class TraceSpan:
    """A maximal span: tokens ``[start, end)`` of the query, characters ``[char_start, char_end)`` of
    ``TraceResult.text`` (None without text), its exact ``count`` in the corpus, ``rank`` (1 = best),
    ``unigram_logprob`` (sum over its tokens of log(count(token) / corpus tokens)), and sampled
    ``documents``."""

    start: int
    end: int
    length: int
    count: int
    char_start: int | None
    char_end: int | None
    text: str | None
    rank: int
    unigram_logprob: float
    documents: list[TraceDocument] = field(default_factory=list)


@dataclass(frozen=True)
class TraceResult:
    """The trace of one text: its ``token_ids``, ``text`` (what the character offsets index; None for
    token-id input without a tokenizer), the kept ``spans`` in text order, ``span_density`` (spans per
    token), ``coverage`` (fraction of tokens inside a span) and ``longest`` (the longest span's length in
    tokens, 0 when there is none)."""

    token_ids: list[int]
    text: str | None
    spans: list[TraceSpan]
    n_tokens: int
    span_density: float
    coverage: float
    longest: int


# --------------------------------------------------------------------------------------------------
# Word boundaries and text offsets


def opens_word_table(tokenizer: Any, vocab_size: int) -> np.ndarray:
    """Per token id: whether its first character after leading whitespace is a word character (letter,
    digit or underscore, :func:`service.engine.words.is_word_char`), from the token's bytes."""
    out = np.zeros(vocab_size, dtype=np.bool_)
    for i, data in enumerate(token_bytes(tokenizer, vocab_size)):
        rest = data.lstrip(b" \t\n\r\x0b\x0c")
        out[i] = bool(rest) and first_char_is_word(rest) and _utf8_complete(rest)
    return out


def _utf8_complete(data: bytes) -> bool:
    """Whether the first character of ``data`` is whole (not cut by the token's edge)."""
    try:
        data[:4].decode("utf-8")
        return True
    except UnicodeDecodeError as err:
        return err.start > 0


def word_boundaries(ids: np.ndarray, words: WordTables) -> np.ndarray:
    """``out[j]`` (j = 0..n) is True where a word boundary lies before token j: at the ends, and between
    two tokens unless both the last character of the first and the first of the second are word
    characters (the engine's definition, :mod:`service.engine.words`)."""
    n = len(ids)
    out = np.ones(n + 1, dtype=np.bool_)
    if n > 1:
        out[1:n] = words.ends_nonword[ids[:-1]] | words.starts_word[ids[1:]]
    return out


def word_starts(ids: np.ndarray, bounds: np.ndarray, opens_word: np.ndarray) -> np.ndarray:
    """Positions where a span may start under ``boundary="word"``: a word boundary before a token whose
    first non-whitespace character is a word character (so spans begin with a word, not punctuation)."""
    return np.flatnonzero(bounds[: len(ids)] & opens_word[ids]).astype(np.int64)


def _char_map(original: str, normalize: Any) -> tuple[str, np.ndarray | None]:
    """(normalized text, map of each normalized character position to an original one, with one extra
    entry for the end) or (normalized, None) when normalization does not map character by character."""
    normalized = normalize(original)
    if normalized == original:
        return normalized, np.arange(len(original) + 1, dtype=np.int64)
    pieces = [normalize(c) for c in original]
    if "".join(pieces) != normalized:
        return normalized, None
    out = np.empty(len(normalized) + 1, dtype=np.int64)
    k = 0
    for i, piece in enumerate(pieces):
        out[k : k + len(piece)] = i
        k += len(piece)
    out[k] = len(original)
    return normalized, out


# --------------------------------------------------------------------------------------------------
# The traced query


@dataclass
class _Query:
    ids: np.ndarray  # int64 token ids
    text: str | None  # what char offsets index
    offsets: np.ndarray | None  # (n, 2) char offsets into text, or None


def _check_options(
    min_len: Any,
    max_count: Any,
    boundary: Any,
    rank: Any,
    docs_per_span: Any,
    context: Any,
    seed: Any,
    max_spans: Any,
    space: Any,
) -> None:
    def integer(name: str, value: Any, minimum: int, optional: bool = False) -> None:
        if optional and value is None:
            return
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
            raise QueryError(f"{name} must be an integer >= {minimum}, not {value!r}", field=name)

    integer("min_len", min_len, 1)
    integer("max_count", max_count, 1, optional=True)
    integer("docs_per_span", docs_per_span, 0)
    integer("context", context, 0)
    integer("seed", seed, 0, optional=True)
    integer("max_spans", max_spans, 1, optional=True)
    for name, value, allowed in (
        ("boundary", boundary, BOUNDARIES),
        ("rank", rank, RANKS),
        ("space", space, TRACE_SPACES),
    ):
        if value not in allowed:
            raise QueryError(f"{name} must be one of {', '.join(allowed)}, not {value!r}", field=name)


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise BudgetExceeded("trace: the time budget ran out before the batch finished", kind="time")


def shard_matches(
    shard: Any, vocab_size: int, ids: np.ndarray, positions: np.ndarray
) -> tuple[np.ndarray, ...]:
    """One shard's answer: (length, lo, hi) of the longest match at each start position."""
    if shard.n_tokens == 0:
        zeros = np.zeros(len(positions), dtype=np.int64)
        return zeros, zeros.copy(), zeros.copy()
    out: tuple[np.ndarray, ...] = _longest_matches(
        shard.tokens, shard.sa, shard.starts(vocab_size), ids, positions
    )
    return out


def merge_matches(
    per_shard: Sequence[tuple[np.ndarray, ...]], n: int
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """The longest match over all shards, and each shard's suffix-array range of THAT match (empty in a
    shard whose own longest match is shorter: the longer string does not occur there)."""
    longest = np.zeros(n, dtype=np.int64)
    for length, _, _ in per_shard:
        np.maximum(longest, length, out=longest)
    ranges = []
    for length, lo, hi in per_shard:
        at = (length == longest) & (longest > 0)
        ranges.append((np.where(at, lo, 0), np.where(at, hi, 0)))
    return longest, ranges


class Tracer:
    """Traces texts over one opened :class:`~service.engine.index.Index` (use ``Index.trace``). Holds the
    lazily computed per-vocabulary tables (word edges, unigram counts)."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self._opens: np.ndarray | None = None
        self._unigram_logp: np.ndarray | None = None

    # tables --------------------------------------------------------------------------------------

    def edges(self) -> tuple[WordTables, np.ndarray]:
        """The engine's word tables, and which tokens may open a span (:func:`opens_word_table`)."""
        self.index._word("word")  # QueryError (field "boundary") when the index has no word tables
        words: WordTables | None = self.index._words
        if words is None:  # pragma: no cover - _word("word") raised already
            raise QueryError("no word tables", field="boundary")
        if self._opens is None:
            self._opens = opens_word_table(self.index._tokenizer, self.index.vocab_size)
        return words, self._opens

    def unigram_logp(self) -> np.ndarray:
        """log(count(t) / corpus tokens) per token id (-inf for absent tokens), from the shards'
        first-token range tables."""
        if self._unigram_logp is None:
            index = self.index
            counts = np.zeros(index.vocab_size, dtype=np.int64)
            for shard in index._shards:
                starts = shard.starts(index.vocab_size)
                counts += np.diff(starts)[: index.vocab_size]
            total = max(int(counts.sum()), 1)
            with np.errstate(divide="ignore"):
                self._unigram_logp = np.log(counts / total)
        return self._unigram_logp

    # input --------------------------------------------------------------------------------------

    def _queries(self, queries: Sequence[Any], space: str) -> list[_Query]:
        index = self.index
        if isinstance(queries, (str, bytes)) or not isinstance(queries, Sequence) or not queries:
            raise QueryError("queries: a non-empty list of texts or token-id lists", field="queries")
        out: list[_Query | None] = [None] * len(queries)
        texts: list[tuple[int, str]] = []
        for i, q in enumerate(queries):
            if isinstance(q, str):
                if not q.strip():
                    raise QueryError(f"queries[{i}]: empty text", field=f"queries[{i}]", item=i)
                texts.append((i, q))
            elif isinstance(q, (list, tuple, np.ndarray)):
                if len(q) == 0:
                    raise QueryError(f"queries[{i}]: empty token-id list", field=f"queries[{i}]", item=i)
                if not all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in q):
                    raise QueryError(
                        f"queries[{i}]: token ids must be integers", field=f"queries[{i}]", item=i
                    )
                ids = np.asarray(q, dtype=np.int64)
                bad = (ids < 0) | (ids >= index.vocab_size) | (ids == index.separator)
                if bad.any():
                    raise QueryError(
                        f"queries[{i}]: token id {int(ids[bad][0])} is out of range (vocabulary of "
                        f"{index.vocab_size})",
                        field=f"queries[{i}]",
                        item=i,
                    )
                out[i] = self._from_ids(ids)
            else:
                raise QueryError(
                    f"queries[{i}]: a text or a list of token ids, not {type(q).__name__}",
                    field=f"queries[{i}]",
                    item=i,
                )
        if texts:
            for (i, _), query in zip(texts, self._from_texts([t for _, t in texts], space), strict=True):
                out[i] = query
        return [q for q in out if q is not None]

    def _from_ids(self, ids: np.ndarray) -> _Query:
        tok = self.index._tokenizer
        if tok is None:
            return _Query(ids, None, None)
        # character offsets: the decoded text re-encoded, when that gives back the same ids (usual)
        backend = tok.hf.backend_tokenizer
        text = backend.decode(ids.tolist(), skip_special_tokens=False)
        enc = backend.encode(text, add_special_tokens=False)
        if list(enc.ids) == ids.tolist():
            offsets = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)
            return _Query(ids, text, offsets)
        # else the offsets of every token boundary: decode each prefix (exact under byte-level BPE)
        pieces = tok.hf.backend_tokenizer.decode_batch(
            [ids[:j].tolist() for j in range(len(ids) + 1)], skip_special_tokens=False
        )
        bounds = np.array([len(p) for p in pieces], dtype=np.int64)
        offsets = np.stack([bounds[:-1], bounds[1:]], axis=1)
        return _Query(ids, pieces[-1], offsets)

    def _from_texts(self, texts: list[str], space: str) -> list[_Query]:
        index = self.index
        tok = index._tokenizer
        if tok is None:
            raise QueryError(
                f"index {index.name!r} was built without a tokenizer: trace token ids", field="queries"
            )
        from indexer.tokenize import normalize_text

        mode = index.manifest.normalization
        forms, maps, shifts = [], [], []
        for text in texts:
            form = text if (space == "exact" or text[:1].isspace()) else " " + text
            normalized, cmap = _char_map(form, lambda s: normalize_text(s, mode))
            forms.append(normalized)
            maps.append(cmap)
            shifts.append(len(form) - len(text))
        with index._tok_lock:
            encodings = tok.hf.backend_tokenizer.encode_batch(forms, add_special_tokens=False)
        out = []
        for text, normalized, cmap, shift, enc in zip(texts, forms, maps, shifts, encodings, strict=True):
            ids = np.asarray(enc.ids, dtype=np.int64)
            if len(ids) == 0:
                raise QueryError("queries: a text with no tokens", field="queries")
            offsets = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)
            if cmap is not None:
                offsets = np.clip(cmap[offsets] - shift, 0, len(text))
                out.append(_Query(ids, text, offsets))
            else:
                out.append(_Query(ids, normalized, offsets))
        return out

    # tracing ------------------------------------------------------------------------------------

    def trace(
        self,
        queries: Sequence[Any],
        *,
        min_len: int = 1,
        max_count: int | None = 10,
        boundary: str = "word",
        rank: str = "length",
        docs_per_span: int = 10,
        context: int = 100,
        seed: int | None = 0,
        max_spans: int | None = None,
        space: str = "auto",
        deadline: float | None = None,
    ) -> list[TraceResult]:
        _check_options(min_len, max_count, boundary, rank, docs_per_span, context, seed, max_spans, space)
        if len(self.index._shards) != len(self.index.manifest.shards):
            # a refusal of this query on this deployment (422 naming the index), not a server failure
            raise QueryError(
                f"index {self.index.name!r}: span tracing runs over shards mapped in this process; "
                "this index's shards are served elsewhere (taskgram serve --ray)",
                field="index",
            )
        parsed = self._queries(queries, space)
        if boundary == "word":
            self.edges()  # fail early on an index without a tokenizer
        rng = np.random.default_rng(seed)
        results = []
        for query in parsed:
            _check_deadline(deadline)
            results.append(
                self._trace_one(
                    query, min_len, max_count, boundary, rank, docs_per_span, context, max_spans, rng
                )
            )
        _check_deadline(deadline)
        return results

    def candidates(
        self, ids: np.ndarray, boundary: str
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
        """The longest match at every allowed start, merged over shards, cut back to an allowed end:
        (starts, ends, per-shard suffix-array ranges of the uncut matches, uncut mask). A shard answers
        on its own (:func:`shard_matches`); :func:`merge_matches` takes the longest over shards."""
        index = self.index
        n = len(ids)
        if boundary == "word":
            words, opens_word = self.edges()
            bounds = word_boundaries(ids, words)
            positions = word_starts(ids, bounds, opens_word)
        else:
            bounds = np.ones(n + 1, dtype=np.bool_)
            positions = np.arange(n, dtype=np.int64)
        per_shard = [shard_matches(shard, index.vocab_size, ids, positions) for shard in index._shards]
        longest, ranges = merge_matches(per_shard, len(positions))
        ends = positions + longest
        if boundary == "word":
            # cut back to the last word end at or before the match end
            last_bound = np.maximum.accumulate(np.where(bounds, np.arange(n + 1), -1))
            ends = np.maximum(last_bound[ends], positions)
        return positions, ends, ranges, ends == positions + longest

    def _trace_one(
        self,
        query: _Query,
        min_len: int,
        max_count: int | None,
        boundary: str,
        rank: str,
        docs_per_span: int,
        context: int,
        max_spans: int | None,
        rng: np.random.Generator,
    ) -> TraceResult:
        index = self.index
        ids = query.ids
        n = len(ids)
        starts, ends, matched, uncut = self.candidates(ids, boundary)
        keep = ends - starts >= min_len
        starts, ends, uncut = starts[keep], ends[keep], uncut[keep]
        ranges = [(lo[keep], hi[keep]) for lo, hi in matched]
        # a cut span has its own (larger) ranges: search them; an uncut one has the merged match ranges
        cut = np.flatnonzero(~uncut)
        if len(cut):
            patterns = [tuple(ids[starts[j] : ends[j]].tolist()) for j in cut]
            for (lo, hi), (clo, chi) in zip(ranges, index._ranges(patterns), strict=True):
                lo[cut], hi[cut] = clo, chi
        counts = np.zeros(len(starts), dtype=np.int64)
        for lo, hi in ranges:
            counts += hi - lo
        keep = counts >= 1
        if max_count is not None:
            keep &= counts <= max_count
        chosen = np.flatnonzero(keep)
        # drop spans contained in another kept span (starts are increasing)
        maximal = []
        reach = -1
        for c in chosen:
            if ends[c] > reach:
                maximal.append(int(c))
                reach = int(ends[c])
            # else: ends[j] <= the end of an earlier kept span that starts before it
        logp = self.unigram_logp()
        scores = [float(logp[ids[starts[j] : ends[j]]].sum()) for j in maximal]
        if rank == "length":
            order = sorted(range(len(maximal)), key=lambda k: (-(ends[maximal[k]] - starts[maximal[k]]), k))
        else:
            order = sorted(range(len(maximal)), key=lambda k: (scores[k], k))
        if max_spans is not None:
            order = order[:max_spans]
        rank_of = {k: r + 1 for r, k in enumerate(order)}
        kept = sorted(rank_of)
        docs = self._documents(
            [
                (
                    int(starts[maximal[k]]),
                    int(ends[maximal[k]]),
                    [(lo[maximal[k]], hi[maximal[k]]) for lo, hi in ranges],
                )
                for k in kept
            ],
            ids,
            docs_per_span,
            context,
            rng,
        )
        spans = []
        covered = np.zeros(n, dtype=np.bool_)
        for k, span_docs in zip(kept, docs, strict=True):
            j = maximal[k]
            a, b = int(starts[j]), int(ends[j])
            covered[a:b] = True
            cs = ce = None
            text = None
            if query.offsets is not None and query.text is not None:
                cs, ce = int(query.offsets[a, 0]), int(query.offsets[b - 1, 1])
                text = query.text[cs:ce]
            spans.append(
                TraceSpan(
                    start=a,
                    end=b,
                    length=b - a,
                    count=int(counts[j]),
                    char_start=cs,
                    char_end=ce,
                    text=text,
                    rank=rank_of[k],
                    unigram_logprob=scores[k],
                    documents=span_docs,
                )
            )
        return TraceResult(
            token_ids=ids.tolist(),
            text=query.text,
            spans=spans,
            n_tokens=n,
            span_density=len(spans) / n,
            coverage=float(covered.mean()),
            longest=max((s.length for s in spans), default=0),
        )

    def _documents(
        self,
        spans: list[tuple[int, int, list[tuple[Any, Any]]]],
        ids: np.ndarray,
        docs_per_span: int,
        context: int,
        rng: np.random.Generator,
    ) -> list[list[TraceDocument]]:
        """Sampled occurrences of each span in its documents; snippets decoded in one batch."""
        index = self.index
        shards = index._shards
        picks: list[list[tuple[int, int]]] = []  # per span: (shard number, position)
        for _, _, per_shard in spans:
            sizes = np.array([int(hi) - int(lo) for lo, hi in per_shard], dtype=np.int64)
            total = int(sizes.sum())
            k = min(docs_per_span, total)
            chosen = np.sort(rng.choice(total, size=k, replace=False)) if k < total else np.arange(total)
            bases = np.concatenate([[0], np.cumsum(sizes)])
            span_picks = []
            for r in chosen:
                s = int(np.searchsorted(bases, r, side="right")) - 1
                shard = shards[s]
                span_picks.append((s, int(shard.sa[int(per_shard[s][0]) + int(r - bases[s])])))
            picks.append(span_picks)
        # locate, cut snippets
        cuts = []  # (span index, shard no, local doc, doc_start, doc_len, pos in doc, lo, a, b)
        for i, ((a, b, _), span_picks) in enumerate(zip(spans, picks, strict=True)):
            for s, pos in span_picks:
                shard = shards[s]
                local = int(K._doc_of(shard.doc_offsets, np.int64(pos)))
                d0 = int(shard.doc_offsets[local])
                doc_len = int(shard.doc_offsets[local + 1]) - 1 - d0
                at = pos - d0
                lo = max(0, at - context)
                hi = min(doc_len, at + (b - a) + context)
                cuts.append((i, s, local, d0, doc_len, at, lo, hi, b - a))
        cuts.sort(key=lambda c: (c[1], c[2], c[5]))
        tok = index._tokenizer
        snippets = [shards[c[1]].tokens[c[3] + c[6] : c[3] + c[7]].astype(np.int64) for c in cuts]
        texts: list[str] | None = None
        if tok is not None and cuts:
            pieces: list[list[int]] = []
            for c, snip in zip(cuts, snippets, strict=True):
                at, lo, m = c[5], c[6], c[8]
                pieces += [
                    snip[: at - lo].tolist(),
                    snip[at - lo : at - lo + m].tolist(),
                    snip[at - lo + m :].tolist(),
                ]
            decode = tok.hf.backend_tokenizer.decode  # a loop: faster than decode_batch on short pieces
            texts = [decode(piece, skip_special_tokens=False) for piece in pieces]
        metadata = _metadata_many(shards, [(c[1], c[2]) for c in cuts])
        out: list[list[TraceDocument]] = [[] for _ in spans]
        for k, (c, snip) in enumerate(zip(cuts, snippets, strict=True)):
            i, s, local, _, doc_len, at, lo, _, m = c
            if texts is not None:
                before, inside, after = texts[3 * k], texts[3 * k + 1], texts[3 * k + 2]
                text: str | None = before + inside + after
                span = (len(before), len(before) + len(inside))
            else:
                text = None
                span = (at - lo, at - lo + m)
            out[i].append(
                TraceDocument(
                    doc_id=shards[s].doc_base + local,
                    shard=s,
                    metadata=metadata[(s, local)],
                    position=at,
                    text=text,
                    span=span,
                    token_ids=snip.tolist(),
                    token_span=(at - lo, at - lo + m),
                    snippet_start=lo,
                    doc_len=doc_len,
                )
            )
        for docs in out:
            docs.sort(key=lambda d: (d.doc_id, d.position))
        return out


def _metadata_many(shards: Sequence[Any], docs: Sequence[tuple[int, int]]) -> dict[tuple[int, int], Any]:
    """Metadata of (shard number, local doc) pairs, each compressed block read and parsed once."""
    import json

    import zstandard

    out: dict[tuple[int, int], Any] = {}
    blocks: dict[tuple[int, int], list[str]] = {}
    for s, local in docs:
        if (s, local) in out:
            continue
        arrays = shards[s].arrays
        block, line = divmod(local, METADATA_BLOCK_DOCS)
        if (s, block) not in blocks:
            if not 0 <= block < len(arrays.metadata_offsets) - 1:
                out[(s, local)] = read_metadata(arrays, local)  # raises the format's error
                continue
            start, end = int(arrays.metadata_offsets[block]), int(arrays.metadata_offsets[block + 1])
            with open(arrays.metadata_path, "rb") as f:
                f.seek(start)
                frame = f.read(end - start)
            blocks[(s, block)] = zstandard.ZstdDecompressor().decompress(frame).decode("utf-8").split("\n")
        out[(s, local)] = json.loads(blocks[(s, block)][line])
    return out
