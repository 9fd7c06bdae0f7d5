"""Span tracing: which spans of a text occur verbatim in the corpus, how often, and in which documents.

The method is OLMoTrace's (infini-gram ``attribute``), made exact across shards. Tracing is an operation
of the shard groups like the others (:mod:`service.engine.shards`): each group answers on its own, and
the merge layer (:class:`Tracer`, used by :class:`~service.engine.index.Index`, in process or over Ray
Serve replicas) combines the answers. One request costs at most three rounds of group operations.

1. **Longest match per start** (group operation ``trace_matches``; per shard :func:`_longest_matches`):
   for every start position ``p`` of the query, the longest ``L`` such that ``q[p:p+L]`` occurs in the
   shard. The suffix-array range is narrowed one token at a time (a one-token comparison per probe), and
   the match of ``p`` starts from ``L(p-1) - 1`` tokens (a suffix of an occurring string occurs), so a
   query costs about ``(n + Σ extensions) · 3 log2(shard size)`` probes.
2. **Merge** (:func:`merge_longest`, within a group and over groups): the longest match over all shards;
   a shard with a shorter match has no occurrence of the longer string, so the span's count is the sum of
   the shards' counts of the final span.
3. **Boundaries** (``boundary="word"``): spans start at a word start and end at a word end; a match is cut
   back to its last word end, and a cut span is counted again in every shard (group operation
   ``shard_counts``). Word boundaries are the engine's (:mod:`service.engine.words`): between two tokens
   unless the last character of the first and the first character of the second are both word characters
   (letters, digits, underscore); the text's start and end are boundaries. A span starts at a boundary
   before a token whose first non-whitespace character is a word character (spans never begin with
   punctuation). ``boundary="token"``: any token.
4. **Filter**: keep spans of at least ``min_len`` tokens occurring at most ``max_count`` times; drop a span
   contained in another kept span.
5. **Rank**: ``length`` (longest first) or ``unigram_logprob`` (lowest sum of the tokens' unigram
   log-probabilities first: the rarest wording; unigram counts from group operation ``unigram_counts``),
   ties by position; ``max_spans`` keeps the best.
6. **Documents**: up to ``docs_per_span`` occurrences per span, a uniform sample without replacement
   (numpy's generator, seeded with ``seed``) of the span's occurrences in shard order, then suffix-array
   order within a shard; the merge layer draws the ranks, the shards that hold them cut the snippets
   (group operation ``trace_hits``: ``context`` tokens on each side, with the document's metadata), and
   the merge layer decodes them and marks the span. The draw depends on the per-shard counts only, so
   the answer is the same however the shards are grouped.

**Span density** = spans / tokens of the text (OLMoTrace's measure); **coverage** = the fraction of the
text's tokens inside at least one span. Character offsets refer to ``TraceResult.text``: the input text
itself when its normalization maps character by character (always for ``normalization="none"``),
otherwise the normalized text.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zstandard
from numba import njit

from indexer.format import METADATA_BLOCK_DOCS, Normalization, read_metadata
from service.engine.errors import BudgetExceeded, EngineError, QueryError
from service.engine.kernels import _doc_of, _sa_range
from service.engine.merge import add_up, page_picks
from service.engine.query import flatten
from service.engine.words import WordTables, first_char_is_word, token_bytes

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
            a, b = _sa_range(tokens, sa, q, p, p + k, starts[t], starts[t + 1], np.int64(1))
        elif p < n:
            t = q[p]
            a = starts[t]
            b = starts[t + 1]
            if a < b:
                k = np.int64(1)
        while k > 0 and p + k < n:
            a2, b2 = _sa_range(tokens, sa, q, p, p + k + 1, a, b, k)
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


@dataclass(frozen=True)
class TraceHit:
    """One sampled occurrence of a span as its shard sees it (tokens, not text: the merge layer decodes):
    ``token_ids`` is the snippet, from token ``snippet_start`` of the document; the span starts at token
    ``position`` of the document."""

    doc_id: int
    shard: int
    metadata: dict[str, Any]
    position: int
    token_ids: list[int]
    snippet_start: int
    doc_len: int


# --------------------------------------------------------------------------------------------------
# What a shard group answers (the group operations of service.engine.shards.ShardGroup call these)


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise BudgetExceeded("trace: the time budget ran out before the batch finished", kind="time")


def shard_longest(shard: Any, ids: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One shard's answer: the length of the longest match at each start position (increasing) of ``ids``,
    and that match's number of occurrences in the shard (0 where the length is 0)."""
    if shard.n_tokens == 0:
        return np.zeros(len(positions), dtype=np.int64), np.zeros(len(positions), dtype=np.int64)
    length, lo, hi = _longest_matches(shard.tokens, shard.sa, shard.starts(), ids, positions)
    return length, hi - lo


def merge_longest(parts: Sequence[tuple[np.ndarray, np.ndarray]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Longest matches of shards, or of groups of shards, merged: each part is (length of its longest match
    at each of ``n`` positions, its shards' occurrences of that match, one row per shard). Returns the
    longest match over all parts and every shard's occurrences of THAT match (rows in part order): 0 in
    a part whose own longest match is shorter, since the longer string does not occur there."""
    longest = np.zeros(n, dtype=np.int64)
    for length, _ in parts:
        np.maximum(longest, length, out=longest)
    rows = [np.where((length == longest) & (longest > 0), counts, 0) for length, counts in parts]
    return longest, np.concatenate(rows, axis=0) if rows else np.zeros((0, n), dtype=np.int64)


def group_matches(
    shards: Sequence[Any],
    flat: np.ndarray,
    offsets: np.ndarray,
    pos_flat: np.ndarray,
    pos_off: np.ndarray,
    deadline: float | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A group's answer to ``trace_matches``: for the queries ``flat[offsets[i]:offsets[i + 1]]`` and
    their start positions ``pos_flat[pos_off[i]:pos_off[i + 1]]``, (the group's shard numbers, the longest
    match at every position over the group's shards, each shard's occurrences of it: one row per shard)."""
    parts = []
    for shard in shards:
        lengths, counts = [], []
        for i in range(len(offsets) - 1):
            _check_deadline(deadline)
            length, count = shard_longest(
                shard, flat[offsets[i] : offsets[i + 1]], pos_flat[pos_off[i] : pos_off[i + 1]]
            )
            lengths.append(length)
            counts.append(count)
        empty = np.zeros(0, dtype=np.int64)
        parts.append((np.concatenate([empty, *lengths]), np.concatenate([empty, *counts])[None, :]))
    longest, per_shard = merge_longest(parts, len(pos_flat))
    return np.array([s.number for s in shards], dtype=np.int64), longest, per_shard


def group_unigram_counts(shards: Sequence[Any], vocab_size: int) -> np.ndarray:
    """Occurrences of every token id in the group's shards, from their first-token range tables."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for shard in shards:
        counts += np.diff(shard.starts())[:vocab_size]
    return counts


def group_hits(
    shards: Sequence[Any],
    flat: np.ndarray,
    offsets: np.ndarray,
    picks: Sequence[Mapping[int, np.ndarray]],
    context: int,
    deadline: float | None,
    chars: WordTables | None = None,
) -> list[list[TraceHit]]:
    """A group's answer to ``trace_hits``: for every span (pattern ``flat[offsets[j]:offsets[j + 1]]``),
    the occurrences at ranks ``picks[j][shard number]`` (in suffix-array order) of the group's shards,
    each cut to ``context`` tokens on either side; ranks of shards of other groups are skipped. With
    ``chars`` (the tables of a byte-level tokenizer) a cut is widened to whole characters."""
    n = len(offsets) - 1
    out: list[list[TraceHit]] = [[] for _ in range(n)]
    for shard in shards:
        spans = [j for j in range(n) if len(picks[j].get(shard.number, ()))]
        if not spans:
            continue
        _check_deadline(deadline)
        sub_flat, sub_off = flatten([tuple(flat[offsets[j] : offsets[j + 1]].tolist()) for j in spans])
        lo, hi = shard.ranges(sub_flat, sub_off)
        cuts = []  # (span, local doc, doc start, doc length, position in the document, snippet [a, b))
        for k, j in enumerate(spans):
            ranks = np.asarray(picks[j][shard.number], dtype=np.int64)
            if int(ranks.min()) < 0 or int(ranks.max()) >= int(hi[k] - lo[k]):
                raise EngineError(
                    f"trace: shard {shard.number} holds {int(hi[k] - lo[k])} occurrences of a span, "
                    f"asked for rank {int(ranks.max())}"
                )
            m = int(sub_off[k + 1] - sub_off[k])
            for r in ranks:
                pos = int(shard.sa[int(lo[k]) + int(r)])
                local = int(_doc_of(shard.doc_offsets, np.int64(pos)))
                d0 = int(shard.doc_offsets[local])
                doc_len = int(shard.doc_offsets[local + 1]) - 1 - d0
                at = pos - d0
                a, b = max(0, at - context), min(doc_len, at + m + context)
                if chars is not None:
                    a, b = chars.char_span(shard.tokens[d0 : d0 + doc_len], a, b)
                cuts.append((j, local, d0, doc_len, at, a, b))
        metadata = _metadata_many(shard, [c[1] for c in cuts])
        for j, local, d0, doc_len, at, a, b in cuts:
            out[j].append(
                TraceHit(
                    doc_id=shard.doc_base + local,
                    shard=shard.number,
                    metadata=metadata[local],
                    position=at,
                    token_ids=shard.tokens[d0 + a : d0 + b].astype(np.int64).tolist(),
                    snippet_start=a,
                    doc_len=doc_len,
                )
            )
    return out


def _metadata_many(shard: Any, docs: Sequence[int]) -> dict[int, Any]:
    """Metadata of a shard's (local) documents, each compressed block read and parsed once."""
    out: dict[int, Any] = {}
    blocks: dict[int, list[str]] = {}
    arrays = shard.arrays
    for local in docs:
        if local in out:
            continue
        block, line = divmod(local, METADATA_BLOCK_DOCS)
        if block not in blocks:
            if not 0 <= block < len(arrays.metadata_offsets) - 1:
                out[local] = read_metadata(arrays, local)  # raises the format's error
                continue
            start, end = int(arrays.metadata_offsets[block]), int(arrays.metadata_offsets[block + 1])
            with open(arrays.metadata_path, "rb") as f:
                f.seek(start)
                frame = f.read(end - start)
            blocks[block] = zstandard.ZstdDecompressor().decompress(frame).decode("utf-8").split("\n")
        out[local] = json.loads(blocks[block][line])
    return out


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


# --------------------------------------------------------------------------------------------------
# The merge layer


FanOut = Callable[..., list[Any]]


@dataclass
class _Candidates:
    """One query's spans before filtering: token ``[starts, ends)`` and each shard's occurrences (rows in
    shard-number order)."""

    starts: np.ndarray
    ends: np.ndarray
    counts: np.ndarray


class Tracer:
    """Span tracing over one index's shard groups: parses the texts, asks the groups through ``fan_out``
    (``Index._fan_out``: local groups, or Ray Serve replicas) for the group operations ``trace_matches``,
    ``shard_counts``, ``trace_hits`` and ``unigram_counts``, and merges their answers. Holds the lazily
    computed per-vocabulary tables (span openers, unigram log-probabilities).

    ``word_check(boundary)`` refuses ``boundary="word"`` on an index without word tables (the index's own
    check); ``tok_lock`` serializes the tokenizer with the index's other users."""

    def __init__(
        self,
        *,
        name: str,
        vocab_size: int,
        separator: int,
        normalization: Normalization,
        tokenizer: Any | None,
        tok_lock: threading.Lock,
        words: WordTables | None,
        word_check: Callable[[str], bool],
        fan_out: FanOut,
    ) -> None:
        self.name = name
        self.vocab_size = vocab_size
        self.separator = separator
        self.normalization = normalization
        self.tokenizer = tokenizer
        self.words = words
        self._tok_lock = tok_lock
        self._word_check = word_check
        self._fan_out = fan_out
        self._opens: np.ndarray | None = None
        self._unigram_logp: np.ndarray | None = None

    # tables --------------------------------------------------------------------------------------

    def edges(self) -> tuple[WordTables, np.ndarray]:
        """The engine's word tables, and which tokens may open a span (:func:`opens_word_table`)."""
        self._word_check("word")  # QueryError (field "boundary") when the index has no word tables
        if self.words is None:  # pragma: no cover - word_check raised already
            raise QueryError("no word tables", field="boundary")
        if self._opens is None:
            self._opens = opens_word_table(self.tokenizer, self.vocab_size)
        return self.words, self._opens

    def unigram_logp(self, deadline: float | None = None) -> np.ndarray:
        """log(count(t) / corpus tokens) per token id (-inf for absent tokens), from the shards'
        first-token range tables (group operation ``unigram_counts``)."""
        if self._unigram_logp is None:
            answers = self._fan_out("unigram_counts", self.vocab_size, deadline=deadline)
            counts = add_up(answers, self.vocab_size)
            total = max(int(counts.sum()), 1)
            with np.errstate(divide="ignore"):
                self._unigram_logp = np.log(counts / total)
        return self._unigram_logp

    # input --------------------------------------------------------------------------------------

    def _queries(self, queries: Sequence[Any], space: str) -> list[_Query]:
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
                bad = (ids < 0) | (ids >= self.vocab_size) | (ids == self.separator)
                if bad.any():
                    raise QueryError(
                        f"queries[{i}]: token id {int(ids[bad][0])} is out of range (vocabulary of "
                        f"{self.vocab_size})",
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
        tok = self.tokenizer
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
        starts, ends = bounds.copy(), bounds.copy()
        if self.words is not None:
            # A boundary inside a character split over byte-level tokens has no character offset (its
            # prefix decodes to U+FFFD): a token starts where its first character starts and ends where
            # its last one ends, so a span's text holds the characters it touches, whole.
            for j in range(1, len(ids)):
                if self.words.cuts_char(ids, j):
                    starts[j] = starts[j - 1]
            for j in range(len(ids) - 1, 0, -1):
                if self.words.cuts_char(ids, j):
                    ends[j] = ends[j + 1]
        offsets = np.stack([starts[:-1], ends[1:]], axis=1)
        return _Query(ids, pieces[-1], offsets)

    def _from_texts(self, texts: list[str], space: str) -> list[_Query]:
        tok = self.tokenizer
        if tok is None:
            raise QueryError(
                f"index {self.name!r} was built without a tokenizer: trace token ids", field="queries"
            )
        from indexer.tokenize import normalize_text

        mode = self.normalization
        forms, maps, shifts = [], [], []
        for text in texts:
            form = text if (space == "exact" or text[:1].isspace()) else " " + text
            normalized, cmap = _char_map(form, lambda s: normalize_text(s, mode))
            forms.append(normalized)
            maps.append(cmap)
            shifts.append(len(form) - len(text))
        with self._tok_lock:
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
        """The trace of each query (text or token ids): see the module's description for the method and
        :meth:`service.engine.index.Index.trace` for the options."""
        _check_options(min_len, max_count, boundary, rank, docs_per_span, context, seed, max_spans, space)
        parsed = self._queries(queries, space)
        if boundary == "word":
            self.edges()  # fail early on an index without a tokenizer
        _check_deadline(deadline)
        numbers, candidates = self.candidates([q.ids for q in parsed], boundary, min_len, deadline)
        shard_numbers = numbers.tolist()
        logp = self.unigram_logp(deadline)
        kept = [
            self._select(q.ids, c, max_count, rank, max_spans, logp)
            for q, c in zip(parsed, candidates, strict=True)
        ]
        # the sampled occurrences: ranks drawn here (query by query, span by span), cut by their shards
        rng = np.random.default_rng(seed)
        patterns: list[tuple[int, ...]] = []
        picks: list[dict[int, np.ndarray]] = []
        where: dict[tuple[int, int], int] = {}
        for i, (query, spans) in enumerate(zip(parsed, kept, strict=True)):
            for s, span in enumerate(spans):
                k = min(docs_per_span, span.count)
                if k < span.count:
                    chosen = np.sort(rng.choice(span.count, size=k, replace=False)).astype(np.int64)
                else:
                    chosen = np.arange(span.count, dtype=np.int64)
                if len(chosen):
                    where[(i, s)] = len(patterns)
                    patterns.append(tuple(query.ids[span.start : span.end].tolist()))
                    picks.append(page_picks(shard_numbers, span.per_shard, chosen))
        hits: list[list[TraceHit]] = [[] for _ in patterns]
        if patterns:
            flat, offsets = flatten(patterns)
            for answer in self._fan_out("trace_hits", flat, offsets, picks, context, deadline=deadline):
                for j, found in enumerate(answer):
                    hits[j].extend(found)
        results = []
        for i, (query, spans) in enumerate(zip(parsed, kept, strict=True)):
            docs = [
                self._documents(span.end - span.start, hits[where[(i, s)]]) if (i, s) in where else []
                for s, span in enumerate(spans)
            ]
            results.append(_result(query, spans, docs))
        _check_deadline(deadline)
        return results

    def candidates(
        self,
        queries: Sequence[np.ndarray],
        boundary: str,
        min_len: int = 1,
        deadline: float | None = None,
    ) -> tuple[np.ndarray, list[_Candidates]]:
        """The longest match at every allowed start of each query, merged over all shards, cut back to an
        allowed end, at least ``min_len`` tokens long: (the shard numbers, in order, and per query the
        spans with each shard's occurrences). Group operation ``trace_matches``, then ``shard_counts`` for
        the spans that the cut shortened (their counts are those of the shorter string)."""
        positions, bounds = [], []
        for ids in queries:
            if boundary == "word":
                words, opens_word = self.edges()
                bounds.append(word_boundaries(ids, words))
                positions.append(word_starts(ids, bounds[-1], opens_word))
            else:
                bounds.append(np.ones(len(ids) + 1, dtype=np.bool_))
                positions.append(np.arange(len(ids), dtype=np.int64))
        flat, offsets = _concat(queries)
        pos_flat, pos_off = _concat(positions)
        answers = self._fan_out("trace_matches", flat, offsets, pos_flat, pos_off, deadline=deadline)
        numbers = np.concatenate([a[0] for a in answers])
        longest, counts = merge_longest([(a[1], a[2]) for a in answers], len(pos_flat))
        order = np.argsort(numbers, kind="stable")
        numbers, counts = numbers[order], counts[order]
        out: list[_Candidates] = []
        cut: list[tuple[int, ...]] = []
        cut_at: list[tuple[int, int]] = []
        for i, ids in enumerate(queries):
            a, b = int(pos_off[i]), int(pos_off[i + 1])
            starts = positions[i]
            uncut_ends = starts + longest[a:b]
            ends = uncut_ends
            if boundary == "word":
                # cut back to the last word end at or before the match end
                last_bound = np.maximum.accumulate(np.where(bounds[i], np.arange(len(ids) + 1), -1))
                ends = np.maximum(last_bound[uncut_ends], starts)
            keep = ends - starts >= min_len
            candidate = _Candidates(starts[keep], ends[keep], counts[:, a:b][:, keep])
            for j in np.flatnonzero(ends[keep] != uncut_ends[keep]):
                cut.append(tuple(ids[candidate.starts[j] : candidate.ends[j]].tolist()))
                cut_at.append((i, int(j)))
            out.append(candidate)
        if cut:
            answers = self._fan_out("shard_counts", *flatten(cut), deadline=deadline)
            cut_numbers = np.concatenate([a[0] for a in answers])
            recount = np.concatenate([a[1] for a in answers], axis=0)
            recount = recount[np.argsort(cut_numbers, kind="stable")]
            for k, (query, span) in enumerate(cut_at):
                out[query].counts[:, span] = recount[:, k]
        return numbers, out

    def _select(
        self,
        ids: np.ndarray,
        candidate: _Candidates,
        max_count: int | None,
        rank: str,
        max_spans: int | None,
        logp: np.ndarray,
    ) -> list[_Span]:
        """The kept spans of one query, in text order: occurring at least once and at most ``max_count``
        times, not inside another kept span, the best ``max_spans`` under ``rank``."""
        starts, ends = candidate.starts, candidate.ends
        counts = candidate.counts.sum(axis=0)
        keep = counts >= 1
        if max_count is not None:
            keep &= counts <= max_count
        # drop spans contained in another kept span (starts are increasing)
        maximal = []
        reach = -1
        for c in np.flatnonzero(keep):
            if ends[c] > reach:
                maximal.append(int(c))
                reach = int(ends[c])
            # else: ends[c] <= the end of an earlier kept span that starts before it
        scores = [float(logp[ids[starts[j] : ends[j]]].sum()) for j in maximal]
        if rank == "length":
            order = sorted(range(len(maximal)), key=lambda k: (-(ends[maximal[k]] - starts[maximal[k]]), k))
        else:
            order = sorted(range(len(maximal)), key=lambda k: (scores[k], k))
        if max_spans is not None:
            order = order[:max_spans]
        rank_of = {k: r + 1 for r, k in enumerate(order)}
        return [
            _Span(
                start=int(starts[maximal[k]]),
                end=int(ends[maximal[k]]),
                count=int(counts[maximal[k]]),
                rank=rank_of[k],
                unigram_logprob=scores[k],
                per_shard=candidate.counts[:, maximal[k]],
            )
            for k in sorted(rank_of)
        ]

    def _documents(self, length: int, hits: list[TraceHit]) -> list[TraceDocument]:
        """The sampled occurrences of a span of ``length`` tokens as documents: the snippet decoded (when
        the index has a tokenizer) in three pieces, so the span's characters are known; in doc-id order."""
        decode = None
        if self.tokenizer is not None:
            decode = self.tokenizer.hf.backend_tokenizer.decode  # a loop: faster than decode_batch here
        out = []
        for hit in hits:
            at = hit.position - hit.snippet_start
            token_span = (at, at + length)
            text: str | None = None
            span = token_span
            if decode is not None:
                # a span edge inside a character split over byte-level tokens: the characters it cuts
                # are shown whole (each piece then decodes without U+FFFD)
                a, b = self.words.char_span(hit.token_ids, *token_span) if self.words else token_span
                before, inside, after = (
                    decode(piece, skip_special_tokens=False)
                    for piece in (hit.token_ids[:a], hit.token_ids[a:b], hit.token_ids[b:])
                )
                text = before + inside + after
                span = (len(before), len(before) + len(inside))
            out.append(
                TraceDocument(
                    doc_id=hit.doc_id,
                    shard=hit.shard,
                    metadata=hit.metadata,
                    position=hit.position,
                    text=text,
                    span=span,
                    token_ids=hit.token_ids,
                    token_span=token_span,
                    snippet_start=hit.snippet_start,
                    doc_len=hit.doc_len,
                )
            )
        out.sort(key=lambda d: (d.doc_id, d.position))
        return out


@dataclass(frozen=True)
class _Span:
    """A kept span of one query, before its documents are known."""

    start: int
    end: int
    count: int
    rank: int
    unigram_logprob: float
    per_shard: np.ndarray  # occurrences in each shard, shard-number order


def _result(query: _Query, spans: list[_Span], docs: list[list[TraceDocument]]) -> TraceResult:
    n = len(query.ids)
    out = []
    covered = np.zeros(n, dtype=np.bool_)
    for span, span_docs in zip(spans, docs, strict=True):
        a, b = span.start, span.end
        covered[a:b] = True
        cs = ce = None
        text = None
        if query.offsets is not None and query.text is not None:
            cs, ce = int(query.offsets[a, 0]), int(query.offsets[b - 1, 1])
            text = query.text[cs:ce]
        out.append(
            TraceSpan(
                start=a,
                end=b,
                length=b - a,
                count=span.count,
                char_start=cs,
                char_end=ce,
                text=text,
                rank=span.rank,
                unigram_logprob=span.unigram_logprob,
                documents=span_docs,
            )
        )
    return TraceResult(
        token_ids=query.ids.tolist(),
        text=query.text,
        spans=out,
        n_tokens=n,
        span_density=len(out) / n,
        coverage=float(covered.mean()),
        longest=max((s.length for s in out), default=0),
    )


def _concat(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """int64 arrays -> (flat, offsets)."""
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum([len(a) for a in arrays], out=offsets[1:])
    return np.concatenate([np.zeros(0, dtype=np.int64), *arrays]).astype(np.int64), offsets
