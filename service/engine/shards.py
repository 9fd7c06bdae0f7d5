"""The shard as the unit of the engine: a :class:`Shard` answers every query type on its own, over its
own arrays and its own (local) document ids; a :class:`ShardGroup` answers the same operations for
several shards, merged with :mod:`service.engine.merge` (the same functions that merge groups).

An operation's inputs are validated token ids, flat + offsets (``service.engine.query.flatten``), and its
answers are plain numpy arrays and tuples, so a group answers the same whether it lives in this process
(:class:`service.engine.index.Index`) or in a Ray Serve replica (:mod:`service.ray_serve`). Global doc ids
are the shard's ``doc_base`` + its local id (shards in manifest order), so every sum over shards is exact:
a document never spans two shards.

Work budget: an operation that touches documents or windows first computes the occurrences of each phrase
spec in its shards (``occ``). When some spec has more than ``budget`` occurrences in the group, the group
does no further work and answers ``occ`` alone; the merge layer sums ``occ`` over groups and raises
:class:`BudgetExceeded` when the index total is over the budget, so the outcome does not depend on how
shards are grouped. The ``deadline`` (``time.monotonic()`` seconds) is checked between chunks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexer.format import ShardArrays, read_metadata
from service.engine.docsets import DocSetCache
from service.engine.errors import BudgetExceeded, QueryError
from service.engine.kernels import (
    _anchored_sums,
    _build_bitsets,
    _doc_counts,
    _doc_sets,
    _find_in,
    _first_token_starts,
    _intersect_counts,
    _intersect_members,
    _next_tokens,
    _sa_ranges,
    _scatter_segments,
    _windowed_counts,
)
from service.engine.merge import NextTokens, merge_next_tokens
from service.engine.query import SpecKey, flatten
from service.engine.trace import TraceHit, group_hits, group_matches, group_unigram_counts
from service.engine.words import WordTables, shard_word_counts, shard_word_doc_sets

CHUNK = 16_384  # batch items per kernel call; the deadline is checked between chunks
MAX_BITSET_BYTES = 256 << 20
_COUNTS_KEY = "occurrences per document"  # tags the cached sets that carry occurrence counts
_WORD_KEY = "word boundary"  # tags the cached sets of word-bounded occurrences


def check_deadline(deadline: float | None, what: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise BudgetExceeded(f"{what}: the time budget ran out before the batch finished", kind="time")


def chunks(n: int, size: int = CHUNK) -> Iterable[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


def _plain(arr: np.ndarray, dtype: Any | None = None) -> np.ndarray:
    """A plain ndarray view of a memmap (numba takes ndarrays), optionally reinterpreted; no copy."""
    view = arr.view(np.ndarray)
    if dtype is not None and view.dtype != np.dtype(dtype):
        view = view.view(dtype)
    return view


def bucket_table(doc_offsets: np.ndarray) -> tuple[np.int64, np.ndarray]:
    """Position -> document lookup table (see ``kernels._doc_of_bucketed``): about two buckets per
    document on average, at most 2^22 entries; its size follows the number of documents, not tokens."""
    n_docs = len(doc_offsets) - 1
    n_positions = int(doc_offsets[-1]) if n_docs else 0
    if n_docs == 0 or n_positions == 0:
        return np.int64(0), np.zeros(2, dtype=np.int64)
    shift = max(0, int(np.floor(np.log2(max(1.0, n_positions / (2 * n_docs))))))
    while (n_positions >> shift) + 2 > 1 << 22:
        shift += 1
    starts = np.minimum(np.arange((n_positions >> shift) + 2, dtype=np.int64) << shift, n_positions - 1)
    table = np.searchsorted(doc_offsets, starts, side="right").astype(np.int64) - 1
    return np.int64(shift), table


def lex_order(flat: np.ndarray, offsets: np.ndarray, width: int = 8) -> np.ndarray:
    """Order of the patterns by their first ``width`` tokens (shorter first). Only locality depends on it."""
    n = len(offsets) - 1
    if n <= 16:  # too few patterns for ordering to pay
        return np.arange(n, dtype=np.int64)
    lengths = np.diff(offsets)
    w = int(min(width, lengths.max()))
    if w == 0:
        return np.arange(n, dtype=np.int64)
    keys = np.full((w, n), -1, dtype=np.int64)
    for k in range(w):
        has = lengths > k
        keys[k, has] = flat[offsets[:-1][has] + k]
    return np.lexsort(keys[::-1]).astype(np.int64)


def spec_variants(keys: Sequence[SpecKey]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The variants of spec keys flattened: (variant flat, variant offsets, spec offsets into variants)."""
    variants = [v for key in keys for v in key]
    spec_off = np.zeros(len(keys) + 1, dtype=np.int64)
    np.cumsum([len(key) for key in keys], out=spec_off[1:])
    flat, off = flatten(variants)
    return flat, off, spec_off


def _per_spec(values: np.ndarray, spec_off: np.ndarray) -> np.ndarray:
    """Sums of ``values`` (one per variant) per spec."""
    if len(spec_off) == 1:
        return np.zeros(0, dtype=np.int64)
    if not len(values):
        return np.zeros(len(spec_off) - 1, dtype=np.int64)
    return np.add.reduceat(values, spec_off[:-1]).astype(np.int64)


@dataclass(frozen=True)
class RawHit:
    """One document of a documents page as its shard sees it: tokens, not text (the merge layer decodes).
    ``matches`` are (start, end, phrase index) token spans inside the snippet, relative to the document."""

    doc_id: int
    shard: int
    metadata: dict[str, Any]
    token_ids: list[int]
    snippet_start: int
    doc_len: int
    matches: list[tuple[int, int, int]]


@dataclass(frozen=True)
class DocTokens:
    """Tokens (maybe cut) and metadata of one document, from its shard."""

    shard: int
    metadata: dict[str, Any]
    token_ids: list[int]
    doc_len: int


class Shard:
    """One shard's arrays as the kernels take them, and every per-shard query operation."""

    def __init__(
        self,
        number: int,
        arrays: ShardArrays,
        n_tokens: int,
        n_docs: int,
        doc_base: int,
        vocab_size: int,
        separator: int,
    ) -> None:
        self.number = number
        self.arrays = arrays
        self.n_tokens = n_tokens
        self.n_docs = n_docs
        self.doc_base = doc_base
        self.vocab_size = vocab_size
        self.separator = separator
        self.tokens = _plain(arrays.tokens)
        sa = _plain(arrays.suffix_array)
        self.sa = sa.view(np.int64) if sa.dtype == np.uint64 else sa
        self.doc_offsets = _plain(arrays.doc_offsets, np.int64)
        self.bucket_shift, self.bucket_table = bucket_table(self.doc_offsets)
        self._starts: np.ndarray | None = None
        self._lock = threading.Lock()

    def starts(self, vocab_size: int | None = None) -> np.ndarray:
        """First-token range table (``kernels._first_token_starts``), computed on first use: about
        2·log2(n) probes per vocabulary entry, vocab_size + 1 int64 entries."""
        if self._starts is None:
            with self._lock:
                if self._starts is None:
                    self._starts = _first_token_starts(self.tokens, self.sa, np.int64(self.vocab_size))
        return self._starts

    # Counting -------------------------------------------------------------------------------------

    def ranges(
        self, flat: np.ndarray, offsets: np.ndarray, order: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Suffix-array range (lo, hi) of every pattern in this shard."""
        if order is None:
            order = lex_order(flat, offsets)
        return _sa_ranges(self.tokens, self.sa, flat, offsets, order, self.starts())

    # Document sets ----------------------------------------------------------------------------------

    def doc_sets(
        self,
        keys: Sequence[SpecKey],
        ranges: tuple[np.ndarray, np.ndarray],
        spec_off: np.ndarray,
        occ: np.ndarray,
        cache: DocSetCache,
        *,
        with_counts: bool,
        words: WordTables | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Sorted LOCAL doc-id set of every spec (flat int64, offsets int64) and, ``with_counts``, the
        number of occurrences (distinct start positions of the spec's variants) in each of those documents.
        ``ranges`` are the SA ranges of the specs' variants (``spec_off``); ``occ`` the specs' occurrence
        counts that decide what the cache keeps. Sets with counts are cached under their own keys
        (a (2, n) array: ids, counts). With ``words`` only word-bounded occurrences count (cached under
        their own keys too)."""
        n = len(keys)
        tag: tuple[Any, ...] = (self.number,)
        if words is not None:
            tag += (_WORD_KEY,)
        if with_counts:
            tag += (_COUNTS_KEY,)
        cached: dict[int, np.ndarray] = {}
        todo: list[int] = []
        for i, key in enumerate(keys):
            hit = cache.get((*tag, key))
            if hit is None:
                todo.append(i)
            else:
                cached[i] = hit
        lo_all, hi_all = ranges
        sizes = np.zeros(n, dtype=np.int64)
        for i, arr in cached.items():
            sizes[i] = arr.shape[-1]
        idx = np.asarray(todo, dtype=np.int64)
        flat = np.zeros(0, dtype=np.int64)
        off = np.zeros(1, dtype=np.int64)
        counts: np.ndarray | None = np.zeros(0, dtype=np.int64) if with_counts else None
        if len(idx):
            # the variants of the specs to compute, in spec order
            lens = np.diff(spec_off)[idx]
            sub_off = np.zeros(len(idx) + 1, dtype=np.int64)
            np.cumsum(lens, out=sub_off[1:])
            pick = np.concatenate([np.arange(spec_off[i], spec_off[i + 1]) for i in idx]).astype(np.int64)
            lo, hi = lo_all[pick], hi_all[pick]
            args = (self.sa, self.doc_offsets, self.bucket_table, self.bucket_shift, lo, hi, sub_off)
            if words is not None:
                var_flat, var_off, _ = spec_variants([keys[int(i)] for i in idx])
                flat, counts, off = shard_word_doc_sets(
                    self, words, self.separator, var_flat, var_off, lo, hi, sub_off, with_counts
                )
            elif with_counts:
                flat, counts, off = _doc_counts(*args)
            else:
                flat, off = _doc_sets(*args)
            for j in np.flatnonzero(occ[idx] >= cache.min_occurrences):
                docs = flat[off[j] : off[j + 1]]
                if counts is None:
                    cache.put((*tag, keys[idx[j]]), docs, int(occ[idx[j]]))
                else:
                    entry = np.stack((docs, counts[off[j] : off[j + 1]]))
                    cache.put((*tag, keys[idx[j]]), entry, int(occ[idx[j]]))
            sizes[idx] = np.diff(off)
        if not cached:
            return flat, off, counts
        out_off = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(sizes, out=out_off[1:])
        out = np.empty(int(out_off[-1]), dtype=np.int64)
        out_counts = np.empty(int(out_off[-1]), dtype=np.int64) if with_counts else None
        if len(idx):
            _scatter_segments(flat, off, out_off[idx], out)
            if out_counts is not None and counts is not None:
                _scatter_segments(counts, off, out_off[idx], out_counts)
        for i, arr in cached.items():
            if out_counts is None:
                out[out_off[i] : out_off[i + 1]] = arr
            else:
                out[out_off[i] : out_off[i + 1]] = arr[0]
                out_counts[out_off[i] : out_off[i + 1]] = arr[1]
        return out, out_off, out_counts

    def intersect(
        self,
        flat: np.ndarray,
        off: np.ndarray,
        q_flat: np.ndarray,
        q_off: np.ndarray,
        deadline: float | None,
        weights: np.ndarray | None = None,
    ) -> np.ndarray:
        """Size of each query's intersection of local doc sets; with ``weights`` (aligned with ``flat``),
        the sum of the first set's weights over the intersection instead."""
        sizes = np.diff(off)
        n_words = max(1, (self.n_docs + 63) // 64)
        dense = np.flatnonzero((sizes * 64 > self.n_docs) & (sizes >= 64))
        max_rows = MAX_BITSET_BYTES // (8 * n_words)
        if len(dense) > max_rows:  # keep the largest sets dense, the others use galloping search
            dense = dense[np.argsort(-sizes[dense], kind="stable")[:max_rows]]
        rows_of = np.full(len(sizes), -1, dtype=np.int64)
        rows_of[dense] = np.arange(len(dense))
        bits = _build_bitsets(flat, off, rows_of, len(dense), n_words if len(dense) else 1)
        out = np.empty(len(q_off) - 1, dtype=np.int64)
        for a, b in chunks(len(q_off) - 1, 65_536):
            check_deadline(deadline, "cooccurrence")
            sub_off = q_off[a : b + 1] - q_off[a]
            sub_flat = q_flat[q_off[a] : q_off[b]]
            if weights is None:
                out[a:b] = _intersect_counts(flat, off, sub_flat, sub_off, bits, rows_of)
            else:
                out[a:b] = _anchored_sums(flat, weights, off, sub_flat, sub_off, bits, rows_of)
        return out

    # Windows, next tokens, documents ----------------------------------------------------------------

    def windowed(
        self,
        var_flat: np.ndarray,
        var_off: np.ndarray,
        ranges: tuple[np.ndarray, np.ndarray],
        clause_off: np.ndarray,
        query_off: np.ndarray,
        anchors: np.ndarray,
        window: int,
    ) -> np.ndarray:
        """Windowed co-occurrence counts in this shard (``kernels._windowed_counts``, cheapest method)."""
        if not self.n_tokens:
            return np.zeros(len(query_off) - 1, dtype=np.int64)
        lo, hi = ranges
        return _windowed_counts(
            self.tokens,
            self.sa,
            self.doc_offsets,
            self.bucket_table,
            self.bucket_shift,
            var_flat,
            var_off,
            lo,
            hi,
            clause_off,
            query_off,
            anchors,
            np.int64(window),
            np.int64(-1),
        )

    def next_tokens(self, offsets: np.ndarray, ranges: tuple[np.ndarray, np.ndarray]) -> NextTokens:
        """The next tokens of every prompt (pattern lengths from ``offsets``) in this shard."""
        lo, hi = ranges
        per_prompt: list[tuple[np.ndarray, np.ndarray] | None] = []
        ends = np.zeros(len(lo), dtype=np.int64)
        for j in range(len(lo)):
            if hi[j] > lo[j]:
                m = int(offsets[j + 1] - offsets[j])
                ids, cnt, e = _next_tokens(self.tokens, self.sa, lo[j], hi[j], m, self.separator)
                per_prompt.append((ids, cnt))
                ends[j] = int(e)
            else:
                per_prompt.append(None)
        return NextTokens.pack(per_prompt, (hi - lo).astype(np.int64), ends)

    def doc_tokens(self, local: int) -> np.ndarray:
        start, end = int(self.doc_offsets[local]), int(self.doc_offsets[local + 1]) - 1
        return self.tokens[start:end]

    def hit(
        self,
        local: int,
        keys: Sequence[SpecKey],
        window: int,
        words: WordTables | None = None,
        chars: WordTables | None = None,
    ) -> RawHit:
        """Document ``local`` as a documents-page entry: a snippet of ``window`` tokens around the first
        match of the first spec, and every match inside it (word-bounded ones only, with ``words``).
        With ``chars`` (the tables of a byte-level tokenizer) the snippet is widened to whole characters."""
        toks = self.doc_tokens(local)
        matches: list[tuple[int, int, int]] = []  # (start token, end token, phrase index)
        for p, key in enumerate(keys):
            for variant in key:
                for s in _find_in(toks, np.asarray(variant, dtype=np.int64)):
                    if words is None or words.match_ok(toks, int(s), int(s) + len(variant)):
                        matches.append((int(s), int(s) + len(variant), p))
        first = min((m for m in matches if m[2] == 0), default=(0, 0, 0))
        start = max(0, first[0] - window)
        end = min(len(toks), first[1] + window)
        if chars is not None:
            start, end = chars.char_span(toks, start, end)
        inside = sorted(m for m in matches if m[0] >= start and m[1] <= end)
        return RawHit(
            doc_id=self.doc_base + local,
            shard=self.number,
            metadata=read_metadata(self.arrays, local),
            token_ids=np.asarray(toks[start:end], dtype=np.int64).tolist(),
            snippet_start=start,
            doc_len=len(toks),
            matches=inside,
        )

    def document(self, local: int, max_tokens: int | None) -> DocTokens:
        toks = self.doc_tokens(local)
        cut = toks if max_tokens is None else toks[:max_tokens]
        return DocTokens(
            shard=self.number,
            metadata=read_metadata(self.arrays, local),
            token_ids=[int(t) for t in cut],
            doc_len=len(toks),
        )


class ShardGroup:
    """Several shards of one index answering together: the unit that one process (the in-process
    :class:`~service.engine.index.Index`, or one Ray Serve replica) maps. Every operation answers for all
    of the group's shards, merged with :mod:`service.engine.merge`; shard-specific answers (document
    totals) come per shard, in the group's shard order."""

    def __init__(
        self,
        shards: Sequence[Shard],
        *,
        words: WordTables | None = None,
        cache_bytes: int = 256 << 20,
        cache_min_occurrences: int = 20_000,
    ) -> None:
        self.shards = list(shards)
        self.words = words  # word-boundary tables of the index's tokenizer (service.engine.words)
        self.cache = DocSetCache(cache_bytes, cache_min_occurrences)
        self._by_number = {s.number: s for s in self.shards}

    @property
    def shard_numbers(self) -> list[int]:
        return [s.number for s in self.shards]

    def close(self) -> None:
        self.shards = []
        self._by_number = {}
        self.cache.clear()

    def cache_info(self, *, deadline: float | None = None) -> dict[str, int]:
        c = self.cache
        return {"entries": len(c), "bytes": c.nbytes, "hits": c.hits, "misses": c.misses}

    def probe(self, *, deadline: float | None = None) -> list[int]:
        """A one-token pattern that occurs (for warming up), or [] when the group's shards are empty."""
        for shard in self.shards:
            if shard.n_tokens:
                return [int(shard.tokens[int(shard.sa[0])])]
        return []

    def _ranges(self, flat: np.ndarray, offsets: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        order = lex_order(flat, offsets)
        return [s.ranges(flat, offsets, order) for s in self.shards]

    # Operations -------------------------------------------------------------------------------------

    def counts(
        self, flat: np.ndarray, offsets: np.ndarray, what: str, *, deadline: float | None = None
    ) -> np.ndarray:
        """Occurrences of every pattern in the group's shards."""
        n = len(offsets) - 1
        out = np.zeros(n, dtype=np.int64)
        for a, b in chunks(n, 65_536):
            check_deadline(deadline, what)
            sub_off = offsets[a : b + 1] - offsets[a]
            for lo, hi in self._ranges(flat[offsets[a] : offsets[b]], sub_off):
                out[a:b] += hi - lo
        check_deadline(deadline, what)
        return out

    def _tables(self, word: bool) -> WordTables | None:
        if not word:
            return None
        if self.words is None:  # the merge layer refuses boundary="word" first
            raise QueryError("boundary='word' needs the index's tokenizer", field="boundary")
        return self.words

    def word_counts(
        self,
        flat: np.ndarray,
        offsets: np.ndarray,
        budget: int | None,
        what: str,
        *,
        deadline: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(occurrences of each pattern whose first token does not begin a word, else 0; word-bounded
        occurrences of every pattern). The start test reads the token before every occurrence of the
        first kind: when one has more than ``budget`` occurrences here the group stops (second None)."""
        words = self._tables(True)
        if words is None:  # pragma: no cover - _tables(True) returns tables or raises
            raise QueryError("boundary='word' needs the index's tokenizer", field="boundary")
        n = len(offsets) - 1
        scan = ~words.starts_word[flat[offsets[:-1]]] if len(flat) else np.zeros(n, dtype=bool)
        occ = np.zeros(n, dtype=np.int64)
        parts = []
        for a, b in chunks(n, 65_536):
            check_deadline(deadline, what)
            sub_off = offsets[a : b + 1] - offsets[a]
            sub_flat = flat[offsets[a] : offsets[b]]
            ranges = self._ranges(sub_flat, sub_off)
            for lo, hi in ranges:
                occ[a:b] += np.where(scan[a:b], hi - lo, 0)
            parts.append((a, b, sub_flat, sub_off, ranges))
        if budget is not None and n and int(occ.max()) > budget:
            return occ, None
        out = np.zeros(n, dtype=np.int64)
        for a, b, sub_flat, sub_off, ranges in parts:
            check_deadline(deadline, what)
            for shard, (lo, hi) in zip(self.shards, ranges, strict=True):
                out[a:b] += shard_word_counts(shard, words, shard.separator, sub_flat, sub_off, lo, hi)
        check_deadline(deadline, what)
        return occ, out

    def _spec_ranges(
        self, keys: Sequence[SpecKey]
    ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
        """(spec offsets into the variants, SA ranges of the variants per shard, occurrences per spec)."""
        var_flat, var_off, spec_off = spec_variants(keys)
        ranges = self._ranges(var_flat, var_off)
        occ = np.zeros(len(keys), dtype=np.int64)
        for lo, hi in ranges:
            occ += _per_spec(hi - lo, spec_off)
        return spec_off, ranges, occ

    def _doc_sets(
        self,
        keys: Sequence[SpecKey],
        budget: int | None,
        deadline: float | None,
        what: str,
        with_counts: bool,
        word: bool = False,
    ) -> tuple[np.ndarray, list[list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]] | None]:
        """(occurrences per spec in the group, per shard a list of chunks (flat, offsets, counts) of
        local doc sets), or (occ, None) when a spec is over ``budget`` in this group alone."""
        words = self._tables(word)
        occ = np.zeros(len(keys), dtype=np.int64)
        parts: list[tuple[int, int, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]] = []
        for a, b in chunks(len(keys), 4096):
            check_deadline(deadline, what)
            spec_off, ranges, sub_occ = self._spec_ranges(keys[a:b])
            occ[a:b] = sub_occ
            parts.append((a, b, spec_off, ranges))
        if budget is not None and len(occ) and int(occ.max()) > budget:
            return occ, None
        per_shard: list[list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]] = [[] for _ in self.shards]
        for a, b, spec_off, ranges in parts:
            check_deadline(deadline, what)
            for s, shard in enumerate(self.shards):
                per_shard[s].append(
                    shard.doc_sets(
                        keys[a:b],
                        ranges[s],
                        spec_off,
                        occ[a:b],
                        self.cache,
                        with_counts=with_counts,
                        words=words,
                    )
                )
        check_deadline(deadline, what)
        return occ, per_shard

    def doc_freq(
        self,
        keys: Sequence[SpecKey],
        budget: int | None,
        word: bool = False,
        *,
        deadline: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(occurrences per spec, number of documents containing each spec) in the group's shards; the
        second is None when a spec is over ``budget`` here."""
        occ, per_shard = self._doc_sets(keys, budget, deadline, "doc_freq", False, word)
        if per_shard is None:
            return occ, None
        sizes = np.zeros(len(keys), dtype=np.int64)
        for parts in per_shard:
            sizes += np.concatenate([np.diff(off) for _, off, _ in parts]) if parts else 0
        return occ, sizes

    def cooccurrence(
        self,
        keys: Sequence[SpecKey],
        q_flat: np.ndarray,
        q_off: np.ndarray,
        unit: str,
        budget: int | None,
        word: bool = False,
        *,
        deadline: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(occurrences per spec, co-occurrence count of each query) in the group's shards; queries are
        lists of indexes into ``keys`` (``q_flat``, ``q_off``). See :meth:`Index.cooccurrence` for the
        units; both are sums over shards because a document never spans two shards."""
        if unit == "documents":
            occ, per_shard = self._doc_sets(keys, budget, deadline, "cooccurrence", False, word)
            if per_shard is None:
                return occ, None
            out = np.zeros(len(q_off) - 1, dtype=np.int64)
            for shard, parts in zip(self.shards, per_shard, strict=True):
                flat, off, _ = _joined(parts, len(keys), False)
                out += shard.intersect(flat, off, q_flat, q_off, deadline)
            check_deadline(deadline, "cooccurrence")
            return occ, out
        # first phrases: document sets with occurrence counts; the others: plain document sets. A spec
        # used in both roles is computed once, with counts.
        is_first = np.zeros(len(keys), dtype=bool)
        is_first[q_flat[q_off[:-1]]] = True
        first = np.flatnonzero(is_first)
        other = np.flatnonzero(~is_first)
        occ = np.zeros(len(keys), dtype=np.int64)
        f_occ, f_sets = self._doc_sets(
            [keys[int(i)] for i in first], budget, deadline, "cooccurrence", True, word
        )
        o_occ, o_sets = self._doc_sets(
            [keys[int(i)] for i in other], budget, deadline, "cooccurrence", False, word
        )
        occ[first], occ[other] = f_occ, o_occ
        if f_sets is None or o_sets is None:
            return occ, None
        out = np.zeros(len(q_off) - 1, dtype=np.int64)
        for s, shard in enumerate(self.shards):
            f_flat, f_off, f_counts = _joined(f_sets[s], len(first), True)
            o_flat, o_off, _ = _joined(o_sets[s], len(other), False)
            sizes = np.zeros(len(keys), dtype=np.int64)
            sizes[first] = np.diff(f_off)
            sizes[other] = np.diff(o_off)
            off = np.zeros(len(keys) + 1, dtype=np.int64)
            np.cumsum(sizes, out=off[1:])
            flat = np.empty(int(off[-1]), dtype=np.int64)
            weights = np.zeros(int(off[-1]), dtype=np.int64)
            _scatter_segments(f_flat, f_off, off[first], flat)
            _scatter_segments(f_counts, f_off, off[first], weights)
            _scatter_segments(o_flat, o_off, off[other], flat)
            out += shard.intersect(flat, off, q_flat, q_off, deadline, weights=weights)
        check_deadline(deadline, "cooccurrence")
        return occ, out

    def windowed(
        self,
        var_flat: np.ndarray,
        var_off: np.ndarray,
        clause_off: np.ndarray,
        query_off: np.ndarray,
        anchors: np.ndarray,
        window: int,
        *,
        deadline: float | None = None,
    ) -> np.ndarray:
        """Windowed co-occurrence counts (anchors chosen by the merge layer from the index's counts), in
        chunks of 1024 queries."""
        nq = len(query_off) - 1
        out = np.zeros(nq, dtype=np.int64)
        for a, b in chunks(nq, 1024):
            check_deadline(deadline, "windowed_cooccurrence")
            c0, c1 = int(query_off[a]), int(query_off[b])
            v0, v1 = int(clause_off[c0]), int(clause_off[c1])
            sub_var_off = var_off[v0 : v1 + 1] - var_off[v0]
            sub_var_flat = var_flat[var_off[v0] : var_off[v1]]
            sub_clause_off = clause_off[c0 : c1 + 1] - v0
            sub_query_off = query_off[a : b + 1] - c0
            sub_anchors = anchors[a:b] - c0
            ranges = self._ranges(sub_var_flat, sub_var_off)
            for shard, r in zip(self.shards, ranges, strict=True):
                out[a:b] += shard.windowed(
                    sub_var_flat, sub_var_off, r, sub_clause_off, sub_query_off, sub_anchors, window
                )
        check_deadline(deadline, "windowed_cooccurrence")
        return out

    def next_tokens(
        self, flat: np.ndarray, offsets: np.ndarray, *, deadline: float | None = None
    ) -> NextTokens:
        """Next-token counts of every prompt, merged over the group's shards."""
        n = len(offsets) - 1
        chunk_parts = []
        for a, b in chunks(n, 1024):
            check_deadline(deadline, "next_token_distribution")
            sub_off = offsets[a : b + 1] - offsets[a]
            sub_flat = flat[offsets[a] : offsets[b]]
            per_shard = [
                s.next_tokens(sub_off, r)
                for s, r in zip(self.shards, self._ranges(sub_flat, sub_off), strict=True)
            ]
            chunk_parts.append(merge_next_tokens(per_shard, n=b - a))
        check_deadline(deadline, "next_token_distribution")
        return NextTokens.concat(chunk_parts)

    def doc_totals(
        self,
        keys: Sequence[SpecKey],
        budget: int | None,
        word: bool = False,
        *,
        deadline: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(occurrences per spec, per shard the number of documents containing ALL specs)."""
        occ, per_shard = self._doc_sets(keys, budget, deadline, "documents", False, word)
        if per_shard is None:
            return occ, None
        members = np.arange(len(keys), dtype=np.int64)
        totals = np.array(
            [len(_intersect_members(*_joined(p, len(keys), False)[:2], members)) for p in per_shard],
            dtype=np.int64,
        )
        return occ, totals

    def doc_hits(
        self,
        keys: Sequence[SpecKey],
        picks: dict[int, np.ndarray],
        all_keys: Sequence[SpecKey],
        window: int,
        word: bool = False,
        *,
        deadline: float | None = None,
    ) -> list[RawHit]:
        """The documents at local ranks ``picks[shard number]`` of the documents containing ALL ``keys``
        in each shard, as :class:`RawHit` (matches of ``all_keys``), in shard and rank order."""
        words = self._tables(word)
        members = np.arange(len(keys), dtype=np.int64)
        out: list[RawHit] = []
        for shard in self.shards:
            ranks = picks.get(shard.number)
            if ranks is None or not len(ranks):
                continue
            spec_off, ranges, occ = self._single_shard_ranges(shard, keys)
            flat, off, _ = shard.doc_sets(
                keys, ranges, spec_off, occ, self.cache, with_counts=False, words=words
            )
            docs = _intersect_members(flat, off, members)
            out.extend(shard.hit(int(docs[r]), all_keys, window, words, self.words) for r in ranks)
            check_deadline(deadline, "documents")
        return out

    def _single_shard_ranges(
        self, shard: Shard, keys: Sequence[SpecKey]
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], np.ndarray]:
        var_flat, var_off, spec_off = spec_variants(keys)
        lo, hi = shard.ranges(var_flat, var_off)
        return spec_off, (lo, hi), _per_spec(hi - lo, spec_off)

    def document(
        self, shard_number: int, local: int, max_tokens: int | None, *, deadline: float | None = None
    ) -> DocTokens:
        return self._by_number[shard_number].document(local, max_tokens)

    # Span tracing (service.engine.trace) ----------------------------------------------------------

    def trace_matches(
        self,
        flat: np.ndarray,
        offsets: np.ndarray,
        pos_flat: np.ndarray,
        pos_off: np.ndarray,
        *,
        deadline: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(shard numbers, longest match at each start position of each query over the group's shards,
        each shard's occurrences of it): :func:`service.engine.trace.group_matches`."""
        return group_matches(self.shards, flat, offsets, pos_flat, pos_off, deadline)

    def shard_counts(
        self, flat: np.ndarray, offsets: np.ndarray, *, deadline: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(shard numbers, occurrences of every pattern in each shard: one row per shard)."""
        check_deadline(deadline, "trace")
        rows = [hi - lo for lo, hi in self._ranges(flat, offsets)]
        counts = np.stack(rows) if rows else np.zeros((0, len(offsets) - 1), dtype=np.int64)
        return np.array(self.shard_numbers, dtype=np.int64), counts

    def trace_hits(
        self,
        flat: np.ndarray,
        offsets: np.ndarray,
        picks: Sequence[dict[int, np.ndarray]],
        context: int,
        *,
        deadline: float | None = None,
    ) -> list[list[TraceHit]]:
        """The occurrences of every span at the ranks ``picks[j]`` names for the group's shards, with
        ``context`` tokens on either side, widened to whole characters
        (:func:`service.engine.trace.group_hits`)."""
        return group_hits(self.shards, flat, offsets, picks, context, deadline, self.words)

    def unigram_counts(self, vocab_size: int, *, deadline: float | None = None) -> np.ndarray:
        """Occurrences of every token id below ``vocab_size`` in the group's shards."""
        return group_unigram_counts(self.shards, vocab_size)


def _joined(
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]], n: int, with_counts: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chunks of (flat, offsets, counts) joined into one (flat, offsets, counts) for ``n`` specs."""
    if len(parts) == 1:
        flat, off, counts = parts[0]
        return flat, off, counts if counts is not None else np.zeros(0, dtype=np.int64)
    if not parts:
        return np.zeros(0, np.int64), np.zeros(n + 1, np.int64), np.zeros(0, np.int64)
    flat = np.concatenate([p[0] for p in parts])
    sizes = np.concatenate([np.diff(p[1]) for p in parts])
    off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=off[1:])
    counts = (
        np.concatenate([p[2] for p in parts if p[2] is not None]) if with_counts else np.zeros(0, np.int64)
    )
    return flat, off, counts
