"""Opened indexes: :class:`Index` (one index directory, all its shards) and :class:`IndexSet`.

An index is opened by read-only memory maps (``indexer.format.open_shard``); nothing of the index is
copied into process memory, so resident memory does not grow with the index (the page cache holds what
queries touch). Every query method takes a batch and returns one result per item, in order; ragged
batches go to the numba kernels (:mod:`service.engine.kernels`) as flat arrays + offsets, in chunks, with
the ``deadline`` checked between chunks (a running kernel call is not interrupted: the chunk size bounds
the overshoot, and ``max_occurrences`` bounds the work of one phrase). A query never returns a partial
number: it raises :class:`BudgetExceeded` instead.

Memory: the arrays stay memory-mapped. Per shard the engine keeps a position -> document bucket table
(about two int64 entries per document) and a first-token range table (vocab_size + 1 int64 entries);
per call, scratch arrays of n_docs entries (document sets) or n_tokens / 64 words (windowed AND of two
frequent clauses). The document-set cache is bounded in bytes (``cache_bytes``).

Counts of several shards add up; global doc ids are the shard's first doc id + the local id (shards in
manifest order). Phrase syntax and the leading-space policy: :mod:`service.engine.query`.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.format import (
    IndexFormatError,
    Manifest,
    ShardArrays,
    open_shard,
    read_manifest,
    read_metadata,
    verify_shard,
)
from service.engine import kernels as K
from service.engine.docsets import DocSetCache
from service.engine.errors import BudgetExceeded, DocumentNotFound, EngineError, IndexUnavailable, QueryError
from service.engine.query import Ids, Phrase, PhraseResolver, PhraseSpec, SpecKey, check_space, flatten
from service.engine.results import (
    Document,
    DocumentHit,
    DocumentsResult,
    InfgramResult,
    InfgramToken,
    NextTokenDistribution,
    ProbResult,
    TokenProb,
)
from service.engine.words import (
    WordTables,
    check_boundary,
    shard_word_counts,
    shard_word_doc_sets,
    word_tables,
)
from taskgram.api import COUNT_UNITS

CHUNK = 16_384  # batch items per kernel call; the deadline is checked between chunks
_COUNTS_KEY = "occurrences per document"  # tags the cached sets that carry occurrence counts
_WORD_KEY = "word boundary"  # tags the cached sets of word-bounded occurrences
MAX_BITSET_BYTES = 256 << 20


def _check_deadline(deadline: float | None, what: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise BudgetExceeded(f"{what}: the time budget ran out before the batch finished", kind="time")


def _chunks(n: int, size: int = CHUNK) -> Iterable[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


def _plain(arr: np.ndarray, dtype: Any | None = None) -> np.ndarray:
    """A plain ndarray view of a memmap (numba takes ndarrays), optionally reinterpreted; no copy."""
    view = arr.view(np.ndarray)
    if dtype is not None and view.dtype != np.dtype(dtype):
        view = view.view(dtype)
    return view


class _Shard:
    """One shard's arrays as the kernels take them."""

    def __init__(self, number: int, arrays: ShardArrays, n_tokens: int, n_docs: int, doc_base: int) -> None:
        self.number = number
        self.arrays = arrays
        self.n_tokens = n_tokens
        self.n_docs = n_docs
        self.doc_base = doc_base
        self.tokens = _plain(arrays.tokens)
        sa = _plain(arrays.suffix_array)
        self.sa = sa.view(np.int64) if sa.dtype == np.uint64 else sa
        self.doc_offsets = _plain(arrays.doc_offsets, np.int64)
        self.bucket_shift, self.bucket_table = _bucket_table(self.doc_offsets)
        self._starts: np.ndarray | None = None
        self._lock = threading.Lock()

    def starts(self, vocab_size: int) -> np.ndarray:
        """First-token range table (``kernels._first_token_starts``), computed on first use: about
        2·log2(n) probes per vocabulary entry, vocab_size + 1 int64 entries."""
        if self._starts is None:
            with self._lock:
                if self._starts is None:
                    self._starts = K._first_token_starts(self.tokens, self.sa, np.int64(vocab_size))
        return self._starts


def _bucket_table(doc_offsets: np.ndarray) -> tuple[np.int64, np.ndarray]:
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


class Index:
    """One opened index (all its shards); framework-free and thread-safe for reads.

    Options: ``max_occurrences`` (work budget: the most suffix-array occurrences one phrase spec of a
    document-level or windowed query may touch; None = no limit), ``cache_bytes`` / ``cache_min_occurrences``
    (the LRU of frequent phrases' document sets), ``space`` (default leading-space policy, see
    :mod:`service.engine.query`)."""

    def __init__(
        self,
        directory: Path,
        name: str,
        manifest: Manifest,
        shards: list[_Shard],
        tokenizer: Any | None,
        *,
        max_occurrences: int | None = None,
        cache_bytes: int = 256 << 20,
        cache_min_occurrences: int = 20_000,
        space: str = "auto",
    ) -> None:
        check_space(space)
        self.name = name
        self.directory = directory
        self.manifest = manifest
        self.n_tokens = manifest.n_tokens
        self.n_docs = manifest.n_docs
        self.vocab_size = manifest.tokenizer.vocab_size
        self.separator = manifest.separator_id
        self.space = space
        self.max_occurrences = max_occurrences
        self._shards = shards
        self._doc_bases = np.array([s.doc_base for s in shards] + [manifest.n_docs], dtype=np.int64)
        self._tokenizer = tokenizer
        self._vocab: list[str] | None = None  # token strings, loaded on first use
        self._tok_lock = threading.Lock()
        self._cache = DocSetCache(cache_bytes, cache_min_occurrences)
        # word-boundary tables (service.engine.words), computed once here; None with the reason otherwise
        self._words: WordTables | None = None
        self._words_refusal = f"index {name!r} was built without a tokenizer"
        if tokenizer is not None:
            try:
                self._words = word_tables(tokenizer, self.vocab_size)
            except ValueError as err:
                self._words_refusal = f"index {name!r}: {err}"
        self._windowed_method = -1  # -1: cheapest; 0/1/2 force one method of kernels._windowed_counts (tests)

    # ----------------------------------------------------------------------------------------------
    # Opening

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        name: str | None = None,
        verify_checksums: bool = False,
        **options: Any,
    ) -> Index:
        """Open an index directory read-only. Checks the manifest (format version, counts), every shard
        file's size against the manifest, samples of the arrays (suffix-array entries in range and not on a
        separator, documents followed by the separator), the tokenizer's checksum and vocabulary, and with
        ``verify_checksums`` every file's sha256. Raises :class:`IndexUnavailable` saying what is wrong."""
        directory = Path(directory)
        name = name or directory.resolve().name
        try:
            manifest = read_manifest(directory)
            shards: list[_Shard] = []
            base = 0
            for number, info in enumerate(manifest.shards):
                if verify_checksums:
                    problems = verify_shard(directory, info)
                    if problems:
                        raise IndexFormatError("; ".join(problems))
                arrays = open_shard(directory, manifest, info)
                shard = _Shard(number, arrays, info.n_tokens, info.n_docs, base)
                _sanity_check(directory / info.name, shard, manifest.separator_id)
                shards.append(shard)
                base += info.n_docs
        except IndexFormatError as err:
            raise IndexUnavailable(f"index {name!r}: {err}", name=name) from err
        except OSError as err:
            raise IndexUnavailable(f"index {name!r}: {err}", name=name) from err
        tokenizer = None
        if manifest.tokenizer.kind == "transformers":
            from indexer.tokenize import TokenizerError, load_index_tokenizer

            try:
                tokenizer = load_index_tokenizer(directory, manifest.tokenizer.sha256)
            except TokenizerError as err:
                raise IndexUnavailable(f"index {name!r}: {err}", name=name) from err
            if tokenizer.vocab_size != manifest.tokenizer.vocab_size:
                raise IndexUnavailable(
                    f"index {name!r}: the stored tokenizer has {tokenizer.vocab_size} tokens, the manifest "
                    f"says {manifest.tokenizer.vocab_size}",
                    name=name,
                )
        if manifest.tokenizer.vocab_size > manifest.separator_id:
            raise IndexUnavailable(
                f"index {name!r}: vocabulary of {manifest.tokenizer.vocab_size} does not fit "
                f"{manifest.token_dtype} with separator {manifest.separator_id}",
                name=name,
            )
        return cls(directory, name, manifest, shards, tokenizer, **options)

    def close(self) -> None:
        """Drop the memory maps (they are also released when the Index is garbage-collected)."""
        self._shards = []
        self._cache.clear()

    # ----------------------------------------------------------------------------------------------
    # Text

    @property
    def has_tokenizer(self) -> bool:
        return self._tokenizer is not None

    def _tokenize_batch(self, texts: Sequence[str]) -> list[Sequence[int]]:
        if self._tokenizer is None:
            raise QueryError(
                f"index {self.name!r} was built without a tokenizer: query with token ids", field="phrases"
            )
        from indexer.tokenize import normalize_text

        norm = [normalize_text(t, self.manifest.normalization) for t in texts]
        with self._tok_lock:
            return self._tokenizer.encode_batch(norm)

    def tokenize(self, text: str, *, space: str | None = None) -> list[int]:
        """Token ids of ``text`` under the index's normalization and the leading-space policy
        (default ``"auto"``: a space is prepended unless the text starts with whitespace)."""
        resolver = self._resolver(space)
        parsed = resolver.parse_phrase(text, "text", 0)
        resolver.finish()
        return list(resolver.ids(parsed))

    def decode(self, ids: Sequence[int]) -> str:
        if self._tokenizer is None:
            raise QueryError(f"index {self.name!r} has no tokenizer to decode with", field="ids")
        return self._tokenizer.decode([int(i) for i in ids])

    def id_to_token(self, ids: Sequence[int]) -> list[str]:
        if self._tokenizer is None:
            raise QueryError(f"index {self.name!r} has no tokenizer", field="ids")
        return self._tokenizer.id_to_token([int(i) for i in ids])

    def _token_strings(self, ids: Sequence[int]) -> list[str | None]:
        if self._tokenizer is None:
            return [None] * len(ids)
        if self._vocab is None:
            self._vocab = list(self._tokenizer.id_to_token(list(range(self.vocab_size))))
        vocab = self._vocab
        return [vocab[i] for i in ids]

    def _word_tables(self, boundary: object) -> WordTables | None:
        """The word tables when ``boundary`` is "word", None for "token"; QueryError (field "boundary")
        for any other value or an index that has no tokenizer to tell words by."""
        if not check_boundary(boundary):
            return None
        if self._words is None:
            raise QueryError(
                f"boundary='word' needs the index's tokenizer to tell words apart: {self._words_refusal}",
                field="boundary",
            )
        return self._words

    def _resolver(self, space: str | None) -> PhraseResolver:
        return PhraseResolver(self._tokenize_batch, self.vocab_size, self.separator, space or self.space)

    # ----------------------------------------------------------------------------------------------
    # Counting primitives

    def _ranges(self, patterns: Sequence[Ids]) -> list[tuple[np.ndarray, np.ndarray]]:
        """SA range of every pattern in every shard (patterns are validated token-id tuples)."""
        return self._ranges_flat(*flatten(patterns))

    def _ranges_flat(self, flat: np.ndarray, offsets: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        order = _lex_order(flat, offsets)
        return [
            K._sa_ranges(s.tokens, s.sa, flat, offsets, order, s.starts(self.vocab_size))
            for s in self._shards
        ]

    def _counts(self, patterns: Sequence[Ids], deadline: float | None, what: str) -> np.ndarray:
        return self._counts_flat(*flatten(patterns), deadline, what)

    def _counts_flat(
        self,
        flat: np.ndarray,
        offsets: np.ndarray,
        deadline: float | None,
        what: str,
        words: WordTables | None = None,
    ) -> np.ndarray:
        n = len(offsets) - 1
        out = np.zeros(n, dtype=np.int64)
        for a, b in _chunks(n, 65_536):
            _check_deadline(deadline, what)
            sub_off = offsets[a : b + 1] - offsets[a]
            sub_flat = flat[offsets[a] : offsets[b]]
            ranges = self._ranges_flat(sub_flat, sub_off)
            if words is None:
                for lo, hi in ranges:
                    out[a:b] += hi - lo
                continue
            self._check_word_scan_budget(words, sub_flat, sub_off, ranges, what)
            for shard, (lo, hi) in zip(self._shards, ranges, strict=True):
                out[a:b] += shard_word_counts(shard, words, self.separator, sub_flat, sub_off, lo, hi)
        _check_deadline(deadline, what)
        return out

    def _check_word_scan_budget(
        self, words: WordTables, flat: np.ndarray, offsets: np.ndarray, ranges: list, what: str
    ) -> None:
        """The start test of a phrase whose first token does not begin a word reads the token before
        every occurrence: the work budget (``max_occurrences``) bounds it."""
        budget = self.max_occurrences
        if budget is None or not len(flat):
            return
        scan = ~words.starts_word[flat[offsets[:-1]]]
        if not scan.any():
            return
        occ = sum(hi - lo for lo, hi in ranges)
        worst = int(occ[scan].max())
        if worst > budget:
            raise BudgetExceeded(
                f"{what}: a phrase that starts inside a word needs each of its {worst} occurrences "
                f"checked for boundary='word', over the work budget of {budget}",
                kind="work",
            )

    def _flat_ids(self, phrases: Sequence[Any]) -> tuple[np.ndarray, np.ndarray] | None:
        """Fast path for a batch of token-id lists: (flat, offsets) when every item is a non-empty
        list/tuple of in-range Python ints, else None (the caller takes the per-item path, which names the
        bad item)."""
        if type(phrases) not in (list, tuple) or not phrases:
            return None
        if {type(p) for p in phrases} - {list, tuple}:
            return None
        if {type(t) for t in itertools.chain.from_iterable(phrases)} - {int}:
            return None
        lengths = np.fromiter(map(len, phrases), dtype=np.int64, count=len(phrases))
        if lengths.min() == 0:
            return None
        offsets = np.zeros(len(phrases) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        try:
            flat = np.fromiter(itertools.chain.from_iterable(phrases), dtype=np.int64, count=int(offsets[-1]))
        except OverflowError:
            return None
        if flat.min() < 0 or flat.max() >= self.vocab_size:
            return None
        return flat, offsets

    def count(
        self,
        phrases: Sequence[Phrase],
        *,
        deadline: float | None = None,
        space: str | None = None,
        boundary: str = "token",
    ) -> list[int]:
        """Exact number of occurrences of each phrase (summed over shards). A phrase never matches across
        a document boundary. ``boundary="word"``: only occurrences that neither start nor end inside a
        word (:mod:`service.engine.words`)."""
        if space is not None:
            check_space(space)
        words = self._word_tables(boundary)
        fast = self._flat_ids(phrases)
        if fast is not None:
            return self._counts_flat(*fast, deadline, "count", words).tolist()
        resolver = self._resolver(space)
        parse = resolver.parse_phrase
        parsed = [parse(p, f"phrases[{i}]", i) for i, p in enumerate(_batch(phrases, "phrases"))]
        resolver.finish()
        patterns = [resolver.ids(p) for p in parsed]
        return self._counts_flat(*flatten(patterns), deadline, "count", words).tolist()

    def exists(
        self,
        phrases: Sequence[Phrase],
        *,
        deadline: float | None = None,
        space: str | None = None,
        boundary: str = "token",
    ) -> list[bool]:
        """Whether each phrase occurs at least once (word-bounded with ``boundary="word"``)."""
        return [c > 0 for c in self.count(phrases, deadline=deadline, space=space, boundary=boundary)]

    # ----------------------------------------------------------------------------------------------
    # Document sets

    def _parse_specs(self, resolver: PhraseResolver, specs: Sequence[Any], field: str) -> list[list[tuple]]:
        return [resolver.parse_spec(s, f"{field}[{i}]", i) for i, s in enumerate(_batch(specs, field))]

    def _doc_sets(
        self,
        keys: Sequence[SpecKey],
        deadline: float | None,
        max_occurrences: int | None,
        what: str,
        words: WordTables | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sorted global doc-id set of every spec key: (flat int64, offsets int64), aligned with keys."""
        flat, off, _ = self._doc_collect(
            keys, deadline, max_occurrences, what, with_counts=False, words=words
        )
        return flat, off

    def _doc_collect(
        self,
        keys: Sequence[SpecKey],
        deadline: float | None,
        max_occurrences: int | None,
        what: str,
        *,
        with_counts: bool,
        words: WordTables | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The doc-id sets of :meth:`_doc_sets` and, ``with_counts``, the number of occurrences (distinct
        start positions of the spec's variants) in each of those documents, aligned with the flat ids.
        Sets with counts are cached under their own keys (a (2, n) array: ids, counts). With ``words``
        only word-bounded occurrences count (cached under their own keys too)."""
        n = len(keys)
        cached: dict[int, np.ndarray] = {}
        todo: list[int] = []
        tag = (_WORD_KEY,) if words is not None else ()
        for i, key in enumerate(keys):
            hit = self._cache.get((*tag, _COUNTS_KEY, key) if with_counts else (*tag, key) if tag else key)
            if hit is None:
                todo.append(i)
            else:
                cached[i] = hit
        sizes = np.zeros(n, dtype=np.int64)
        for i, arr in cached.items():
            sizes[i] = arr.shape[-1]
        # (spec indices, flat, counts or None, offsets)
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]] = []
        for a, b in _chunks(len(todo), 4096):
            _check_deadline(deadline, what)
            idx = np.asarray(todo[a:b], dtype=np.int64)
            variants = [v for i in idx for v in keys[i]]
            spec_off = np.zeros(len(idx) + 1, dtype=np.int64)
            np.cumsum([len(keys[i]) for i in idx], out=spec_off[1:])
            var_flat, var_off = flatten(variants)
            ranges = self._ranges_flat(var_flat, var_off)
            occ = np.zeros(len(idx), dtype=np.int64)
            for lo, hi in ranges:
                occ += np.add.reduceat(hi - lo, spec_off[:-1]) if len(variants) else 0
            budget = max_occurrences if max_occurrences is not None else self.max_occurrences
            if budget is not None and len(occ) and int(occ.max()) > budget:
                worst = int(np.argmax(occ))
                raise BudgetExceeded(
                    f"{what}: a phrase has {int(occ[worst])} occurrences, over the work budget of {budget}",
                    kind="work",
                )
            per_shard: list[tuple[np.ndarray, np.ndarray | None, np.ndarray]] = []
            for shard, (lo, hi) in zip(self._shards, ranges, strict=True):
                args = (shard.sa, shard.doc_offsets, shard.bucket_table, shard.bucket_shift, lo, hi, spec_off)
                counts: np.ndarray | None = None
                if words is not None:
                    flat, counts, off = shard_word_doc_sets(
                        shard, words, self.separator, var_flat, var_off, lo, hi, spec_off, with_counts
                    )
                elif with_counts:
                    flat, counts, off = K._doc_counts(*args)
                else:
                    flat, off = K._doc_sets(*args)
                if shard.doc_base:
                    flat += shard.doc_base
                per_shard.append((flat, counts, off))
            if len(per_shard) == 1:
                flat, counts, off = per_shard[0]
            else:
                lengths = sum(np.diff(o) for _, _, o in per_shard)
                off = np.zeros(len(idx) + 1, dtype=np.int64)
                np.cumsum(lengths, out=off[1:])
                flat = np.empty(int(off[-1]), dtype=np.int64)
                counts = np.empty(int(off[-1]), dtype=np.int64) if with_counts else None
                before = off[:-1].copy()
                for f, c, o in per_shard:
                    K._scatter_segments(f, o, before, flat)
                    if counts is not None:
                        K._scatter_segments(c, o, before, counts)
                    before += np.diff(o)
            for j in np.flatnonzero(occ >= self._cache.min_occurrences):
                docs = flat[off[j] : off[j + 1]]
                if counts is None:
                    self._cache.put((*tag, keys[idx[j]]) if tag else keys[idx[j]], docs, int(occ[j]))
                else:
                    entry = np.stack((docs, counts[off[j] : off[j + 1]]))
                    self._cache.put((*tag, _COUNTS_KEY, keys[idx[j]]), entry, int(occ[j]))
            sizes[idx] = np.diff(off)
            parts.append((idx, flat, counts, off))
        out_off = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(sizes, out=out_off[1:])
        out = np.empty(int(out_off[-1]), dtype=np.int64)
        out_counts = np.empty(int(out_off[-1]), dtype=np.int64) if with_counts else None
        for idx, flat, counts, off in parts:
            K._scatter_segments(flat, off, out_off[idx], out)
            if out_counts is not None and counts is not None:
                K._scatter_segments(counts, off, out_off[idx], out_counts)
        for i, arr in cached.items():
            if out_counts is None:
                out[out_off[i] : out_off[i + 1]] = arr
            else:
                out[out_off[i] : out_off[i + 1]] = arr[0]
                out_counts[out_off[i] : out_off[i + 1]] = arr[1]
        _check_deadline(deadline, what)
        return out, out_off, out_counts

    def doc_freq(
        self,
        phrases: Sequence[PhraseSpec],
        *,
        deadline: float | None = None,
        space: str | None = None,
        max_occurrences: int | None = None,
        boundary: str = "token",
    ) -> list[int]:
        """Number of distinct documents containing each phrase spec (an OR spec: a union of documents);
        with ``boundary="word"`` a word-bounded occurrence (:mod:`service.engine.words`)."""
        words = self._word_tables(boundary)
        resolver = self._resolver(space)
        parsed = self._parse_specs(resolver, phrases, "phrases")
        resolver.finish()
        keys = [resolver.key(p) for p in parsed]
        unique, inverse = _dedupe(keys)
        _, off = self._doc_sets(unique, deadline, max_occurrences, "doc_freq", words)
        return np.diff(off)[inverse].tolist()

    def _query_keys(
        self, resolver: PhraseResolver, queries: Sequence[Any], min_phrases: int
    ) -> list[list[list[tuple]]]:
        out = []
        parse = resolver.parse_spec
        for q, query in enumerate(_batch(queries, "queries")):
            t = type(query)
            if (t is list or t is tuple) and len(query) == 2:  # fast path: a pair
                out.append([parse(query[0], f"queries[{q}][0]", q), parse(query[1], f"queries[{q}][1]", q)])
                continue
            if isinstance(query, (str, Mapping)) or not isinstance(query, Sequence):
                raise QueryError(
                    f"queries[{q}]: a query is a list of phrase specs", field=f"queries[{q}]", item=q
                )
            if len(query) < min_phrases:
                raise QueryError(
                    f"queries[{q}]: needs at least {min_phrases} phrases, got {len(query)}",
                    field=f"queries[{q}]",
                    item=q,
                )
            out.append([parse(s, f"queries[{q}][{j}]", q) for j, s in enumerate(query)])
        return out

    def cooccurrence(
        self,
        queries: Sequence[Sequence[PhraseSpec]],
        *,
        deadline: float | None = None,
        space: str | None = None,
        max_occurrences: int | None = None,
        unit: str = "documents",
        boundary: str = "token",
    ) -> list[int]:
        """Exact co-occurrence count of each query (2 or more phrase specs), in one of two units:

        * ``"documents"``: the number of documents that contain ALL phrases of the query (an OR spec counts
          a document once however many variants it contains). See :mod:`service.engine.docsets`.
        * ``"occurrences"``: the number of occurrences of the FIRST phrase (distinct start positions of
          its variants) that lie in a document containing all the other phrases. With the first phrase's
          occurrence count as denominator, the ratio is the fraction of its occurrences whose document
          also holds the others (<= 1); it is 0 exactly when the document count is 0. ``[s, s]`` counts
          the occurrences of ``s`` (an OR spec as a union of positions).

        With ``boundary="word"`` only word-bounded occurrences count, in both units
        (:mod:`service.engine.words`)."""
        if unit not in COUNT_UNITS:
            raise QueryError(f"unit must be one of {', '.join(COUNT_UNITS)}, not {unit!r}", field="unit")
        words = self._word_tables(boundary)
        resolver = self._resolver(space)
        parsed = self._query_keys(resolver, queries, 2)
        resolver.finish()
        key = resolver.key
        query_keys = [[key(p) for p in q] for q in parsed]
        unique, inverse = _dedupe([k for q in query_keys for k in q])
        q_off = np.zeros(len(query_keys) + 1, dtype=np.int64)
        np.cumsum([len(q) for q in query_keys], out=q_off[1:])
        q_flat = inverse.astype(np.int64)
        if unit == "documents":
            flat, off = self._doc_sets(unique, deadline, max_occurrences, "cooccurrence", words)
            return self._intersect(flat, off, q_flat, q_off, deadline).tolist()
        # first phrases: document sets with occurrence counts; the others: plain document sets. A spec
        # used in both roles is computed once, with counts.
        is_first = np.zeros(len(unique), dtype=bool)
        is_first[q_flat[q_off[:-1]]] = True
        first = np.flatnonzero(is_first)
        other = np.flatnonzero(~is_first)
        f_flat, f_off, f_counts = self._doc_collect(
            [unique[i] for i in first],
            deadline,
            max_occurrences,
            "cooccurrence",
            with_counts=True,
            words=words,
        )
        o_flat, o_off = self._doc_sets(
            [unique[i] for i in other], deadline, max_occurrences, "cooccurrence", words
        )
        if f_counts is None:  # pragma: no cover - with_counts=True always gives counts
            raise EngineError("cooccurrence: the occurrence counts of the first phrases are missing")
        sizes = np.zeros(len(unique), dtype=np.int64)
        sizes[first] = np.diff(f_off)
        sizes[other] = np.diff(o_off)
        off = np.zeros(len(unique) + 1, dtype=np.int64)
        np.cumsum(sizes, out=off[1:])
        flat = np.empty(int(off[-1]), dtype=np.int64)
        weights = np.zeros(int(off[-1]), dtype=np.int64)
        K._scatter_segments(f_flat, f_off, off[first], flat)
        K._scatter_segments(f_counts, f_off, off[first], weights)
        K._scatter_segments(o_flat, o_off, off[other], flat)
        return self._intersect(flat, off, q_flat, q_off, deadline, weights=weights).tolist()

    def _intersect(
        self,
        flat: np.ndarray,
        off: np.ndarray,
        q_flat: np.ndarray,
        q_off: np.ndarray,
        deadline: float | None,
        weights: np.ndarray | None = None,
    ) -> np.ndarray:
        """Size of each query's intersection; with ``weights`` (aligned with ``flat``), the sum of the
        first set's weights over the intersection instead."""
        sizes = np.diff(off)
        n_words = max(1, (self.n_docs + 63) // 64)
        dense = np.flatnonzero((sizes * 64 > self.n_docs) & (sizes >= 64))
        max_rows = MAX_BITSET_BYTES // (8 * n_words)
        if len(dense) > max_rows:  # keep the largest sets dense, the others use galloping search
            dense = dense[np.argsort(-sizes[dense], kind="stable")[:max_rows]]
        rows_of = np.full(len(sizes), -1, dtype=np.int64)
        rows_of[dense] = np.arange(len(dense))
        bits = K._build_bitsets(flat, off, rows_of, len(dense), n_words if len(dense) else 1)
        out = np.empty(len(q_off) - 1, dtype=np.int64)
        for a, b in _chunks(len(q_off) - 1, 65_536):
            _check_deadline(deadline, "cooccurrence")
            sub_off = q_off[a : b + 1] - q_off[a]
            sub_flat = q_flat[q_off[a] : q_off[b]]
            if weights is None:
                out[a:b] = K._intersect_counts(flat, off, sub_flat, sub_off, bits, rows_of)
            else:
                out[a:b] = K._anchored_sums(flat, weights, off, sub_flat, sub_off, bits, rows_of)
        _check_deadline(deadline, "cooccurrence")
        return out

    # ----------------------------------------------------------------------------------------------
    # Windowed co-occurrence

    def windowed_cooccurrence(
        self,
        queries: Sequence[Sequence[PhraseSpec]],
        window: int,
        *,
        deadline: float | None = None,
        space: str | None = None,
        max_occurrences: int | None = None,
        boundary: str = "token",
    ) -> list[int]:
        """infini-gram's CNF AND, exact: each query is a list of clauses (phrase specs; an OR clause is the
        union of its variants' occurrence positions). The anchor clause is the one with the fewest
        occurrences (sum of its distinct variants' counts; the first on ties). Result = the number of
        distinct anchor occurrences such that every other clause has an occurrence whose start lies within
        ``window`` tokens (start to start, either side) in the SAME document. No subsampling; documents are
        respected on both sides (infini-gram 2.6.0 drops such anchors when the other-side partner is in the
        next document). Token matching only: ``boundary="word"`` is refused (its window scan tests token
        matches in place, without the word-boundary filter)."""
        if check_boundary(boundary):
            raise QueryError(
                "boundary='word' is not supported by windowed co-occurrence; use boundary='token'",
                field="boundary",
            )
        if not isinstance(window, (int, np.integer)) or isinstance(window, bool) or window < 0:
            raise QueryError(f"window must be an integer >= 0, not {window!r}", field="window")
        resolver = self._resolver(space)
        parsed = self._query_keys(resolver, queries, 2)
        resolver.finish()
        query_keys = [[resolver.key(p) for p in q] for q in parsed]
        budget = max_occurrences if max_occurrences is not None else self.max_occurrences
        out = np.zeros(len(query_keys), dtype=np.int64)
        for a, b in _chunks(len(query_keys), 1024):
            _check_deadline(deadline, "windowed_cooccurrence")
            chunk = query_keys[a:b]
            clauses = [c for q in chunk for c in q]
            variants = [v for c in clauses for v in c]
            clause_off = np.zeros(len(clauses) + 1, dtype=np.int64)
            np.cumsum([len(c) for c in clauses], out=clause_off[1:])
            query_off = np.zeros(len(chunk) + 1, dtype=np.int64)
            np.cumsum([len(q) for q in chunk], out=query_off[1:])
            var_flat, var_off = flatten(variants)
            ranges = self._ranges_flat(var_flat, var_off)
            occ = np.zeros(len(clauses), dtype=np.int64)
            for lo, hi in ranges:
                occ += np.add.reduceat(hi - lo, clause_off[:-1])
            if budget is not None and int(occ.max()) > budget:
                raise BudgetExceeded(
                    f"windowed_cooccurrence: a clause has {int(occ.max())} occurrences, over the work budget "
                    f"of {budget}",
                    kind="work",
                )
            anchors = np.array(
                [
                    query_off[q] + int(np.argmin(occ[query_off[q] : query_off[q + 1]]))
                    for q in range(len(chunk))
                ],
                dtype=np.int64,
            )
            for shard, (lo, hi) in zip(self._shards, ranges, strict=True):
                if shard.n_tokens:
                    out[a:b] += K._windowed_counts(
                        shard.tokens,
                        shard.sa,
                        shard.doc_offsets,
                        shard.bucket_table,
                        shard.bucket_shift,
                        var_flat,
                        var_off,
                        lo,
                        hi,
                        clause_off,
                        query_off,
                        anchors,
                        np.int64(window),
                        np.int64(self._windowed_method),
                    )
        _check_deadline(deadline, "windowed_cooccurrence")
        return out.tolist()

    # ----------------------------------------------------------------------------------------------
    # Next tokens and probabilities

    def _prompts(self, resolver: PhraseResolver, prompts: Sequence[Any], field: str) -> list[Ids | int]:
        return [resolver.parse_phrase(p, f"{field}[{i}]", i, allow_empty=True) for i, p in enumerate(prompts)]

    def next_token_distribution(
        self,
        prompts: Sequence[Phrase],
        *,
        top_k: int | None = None,
        deadline: float | None = None,
        space: str | None = None,
    ) -> list[NextTokenDistribution]:
        """Exact distribution of the token following each prompt (an empty prompt gives unigram counts).
        Each distinct next token costs a galloping search over the prompt's SA range, never a scan."""
        if top_k is not None and (
            not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or top_k < 1
        ):
            raise QueryError(f"top_k must be a positive integer or None, not {top_k!r}", field="top_k")
        resolver = self._resolver(space)
        parsed = self._prompts(resolver, _batch(prompts, "prompts"), "prompts")
        resolver.finish()
        patterns = [resolver.ids(p) for p in parsed]
        results: list[NextTokenDistribution] = []
        for a, b in _chunks(len(patterns), 1024):
            _check_deadline(deadline, "next_token_distribution")
            ranges = self._ranges(patterns[a:b])
            for j in range(b - a):
                m = len(patterns[a + j])
                ids_parts, cnt_parts = [], []
                total = 0
                ends = 0
                for shard, (lo, hi) in zip(self._shards, ranges, strict=True):
                    total += int(hi[j] - lo[j])
                    if hi[j] > lo[j]:
                        ids, cnt, e = K._next_tokens(shard.tokens, shard.sa, lo[j], hi[j], m, self.separator)
                        ids_parts.append(ids)
                        cnt_parts.append(cnt)
                        ends += int(e)
                results.append(self._distribution(ids_parts, cnt_parts, total, ends, top_k))
        _check_deadline(deadline, "next_token_distribution")
        return results

    def _distribution(self, ids_parts, cnt_parts, total, ends, top_k) -> NextTokenDistribution:
        if not ids_parts:
            return NextTokenDistribution(prompt_count=total, tokens=[], n_distinct=0, ends_of_document=ends)
        ids = np.concatenate(ids_parts)
        cnt = np.concatenate(cnt_parts)
        if len(ids_parts) > 1:
            ids, inv = np.unique(ids, return_inverse=True)
            cnt = np.bincount(inv, weights=cnt, minlength=len(ids)).astype(np.int64)
        order = np.lexsort((ids, -cnt))
        n_distinct = len(order)
        if top_k is not None:
            order = order[:top_k]
        ids, cnt = ids[order], cnt[order]
        id_list = ids.tolist()
        tokens = TokenProb.many(id_list, self._token_strings(id_list), cnt.tolist(), (cnt / total).tolist())
        return NextTokenDistribution(
            prompt_count=total, tokens=tokens, n_distinct=n_distinct, ends_of_document=ends
        )

    def _token_id(self, tid: Any, field: str, item: int) -> int:
        if not isinstance(tid, (int, np.integer)) or isinstance(tid, bool):
            raise QueryError(f"{field}: the next token must be a token id (int)", field=field, item=item)
        if not 0 <= int(tid) < self.vocab_size or int(tid) == self.separator:
            raise QueryError(f"{field}: token id {tid} is out of range", field=field, item=item)
        return int(tid)

    def prob(
        self, items: Sequence[tuple[Phrase, int]], *, deadline: float | None = None, space: str | None = None
    ) -> list[ProbResult]:
        """``count(prompt + [token]) / count(prompt)`` for each (prompt, next token id); prob None when the
        prompt does not occur. An empty prompt gives the unigram probability (count / n_tokens)."""
        resolver = self._resolver(space)
        parsed, conts = [], []
        for i, item in enumerate(_batch(items, "items")):
            if not isinstance(item, Sequence) or isinstance(item, str) or len(item) != 2:
                raise QueryError(f"items[{i}]: expected (prompt, next token id)", field=f"items[{i}]", item=i)
            parsed.append(resolver.parse_phrase(item[0], f"items[{i}][0]", i, allow_empty=True))
            conts.append(self._token_id(item[1], f"items[{i}][1]", i))
        resolver.finish()
        prompts = [resolver.ids(p) for p in parsed]
        extended = [p + (c,) for p, c in zip(prompts, conts, strict=True)]
        counts = self._counts(prompts + extended, deadline, "prob")
        n = len(prompts)
        return [
            ProbResult(
                prompt_count=int(counts[i]),
                cont_count=int(counts[n + i]),
                prob=(int(counts[n + i]) / int(counts[i])) if counts[i] else None,
            )
            for i in range(n)
        ]

    def infgram_prob(
        self,
        items: Sequence[tuple[Phrase, Phrase]],
        *,
        deadline: float | None = None,
        space: str | None = None,
    ) -> list[InfgramResult]:
        """∞-gram probability of each token of a continuation given the context and the continuation's
        earlier tokens: the longest suffix of that context with a nonzero count (found by binary search on
        its length — counts only shrink as a suffix grows), then ``count(suffix + token) / count(suffix)``.
        Context and continuation text are tokenized separately (the continuation under the space policy)."""
        resolver = self._resolver(space)
        parsed = []
        for i, item in enumerate(_batch(items, "items")):
            if not isinstance(item, Sequence) or isinstance(item, str) or len(item) != 2:
                raise QueryError(f"items[{i}]: expected (context, continuation)", field=f"items[{i}]", item=i)
            parsed.append(
                (
                    resolver.parse_phrase(item[0], f"items[{i}][0]", i, allow_empty=True),
                    resolver.parse_phrase(item[1], f"items[{i}][1]", i),
                )
            )
        resolver.finish()
        jobs: list[tuple[np.ndarray, int]] = []  # (context tokens, target token)
        spans = []
        for ctx, cont in parsed:
            full = np.asarray(resolver.ids(ctx) + resolver.ids(cont), dtype=np.int64)
            n_ctx = len(resolver.ids(ctx))
            spans.append((len(jobs), len(resolver.ids(cont))))
            for k in range(len(resolver.ids(cont))):
                jobs.append((full[: n_ctx + k], int(full[n_ctx + k])))
        lo = np.zeros(len(jobs), dtype=np.int64)  # count(suffix of length lo) > 0 is known
        hi = np.array([len(c) for c, _ in jobs], dtype=np.int64)
        if self.n_tokens == 0:
            hi[:] = 0
        while True:
            active = np.flatnonzero(lo < hi)
            if not len(active):
                break
            mid = (lo[active] + hi[active] + 1) // 2
            pats = [_tail(jobs[j][0], m) for j, m in zip(active, mid, strict=True)]
            found = self._counts(pats, deadline, "infgram_prob") > 0
            lo[active[found]] = mid[found]
            hi[active[~found]] = mid[~found] - 1
        suffixes = [tuple(jobs[j][0][len(jobs[j][0]) - int(lo[j]) :].tolist()) for j in range(len(jobs))]
        counts = self._counts(
            suffixes + [s + (jobs[j][1],) for j, s in enumerate(suffixes)], deadline, "infgram_prob"
        )
        n = len(jobs)
        names = self._token_strings([t for _, t in jobs])
        results = []
        for start, length in spans:
            toks = []
            log_prob: float | None = 0.0
            for j in range(start, start + length):
                sc, cc = int(counts[j]), int(counts[n + j])
                p = cc / sc if sc else 0.0
                toks.append(InfgramToken(jobs[j][1], names[j], p, int(lo[j]), sc, cc))
                log_prob = None if (log_prob is None or p == 0.0) else log_prob + math.log(p)
            results.append(InfgramResult(tokens=toks, log_prob=log_prob))
        return results

    # ----------------------------------------------------------------------------------------------
    # Documents

    def _locate(self, doc_id: int) -> tuple[_Shard, int]:
        shard_no = int(np.searchsorted(self._doc_bases, doc_id, side="right")) - 1
        shard = self._shards[shard_no]
        return shard, doc_id - shard.doc_base

    def _doc_tokens(self, shard: _Shard, local: int) -> np.ndarray:
        start, end = int(shard.doc_offsets[local]), int(shard.doc_offsets[local + 1]) - 1
        return shard.tokens[start:end]

    def documents(
        self,
        phrases: Sequence[PhraseSpec],
        *,
        offset: int = 0,
        limit: int = 10,
        sample: bool = False,
        seed: int | None = None,
        window: int = 100,
        deadline: float | None = None,
        space: str | None = None,
        max_occurrences: int | None = None,
        boundary: str = "token",
    ) -> DocumentsResult:
        """The documents containing ALL phrase specs: the exact ``total``, and a page (``offset``, ``limit``,
        in doc_id order) or a uniform random sample without replacement (``sample=True``, ``seed``), each
        with its metadata, a snippet of ``window`` tokens around the first match of the first phrase and the
        character spans of every match inside it. With ``boundary="word"`` only word-bounded occurrences
        count, for the total and for the snippets' matches."""
        words = self._word_tables(boundary)
        for fname, value, minimum in (("offset", offset, 0), ("limit", limit, 0), ("window", window, 0)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
                raise QueryError(f"{fname} must be an integer >= {minimum}, not {value!r}", field=fname)
        resolver = self._resolver(space)
        parsed = self._parse_specs(resolver, phrases, "phrases")
        if not parsed:
            raise QueryError("phrases: at least one phrase is needed", field="phrases")
        resolver.finish()
        keys = [resolver.key(p) for p in parsed]
        unique, inverse = _dedupe(keys)
        flat, off = self._doc_sets(unique, deadline, max_occurrences, "documents", words)
        docs = K._intersect_members(flat, off, np.unique(inverse).astype(np.int64))
        total = len(docs)
        if sample:
            rng = np.random.default_rng(seed)
            chosen = (
                rng.choice(total, size=min(limit, total), replace=False) if total else np.zeros(0, np.int64)
            )
            picked = docs[np.sort(chosen)]
        else:
            picked = docs[offset : offset + limit]
        hits = [self._hit(int(d), keys, window, words) for d in picked]
        _check_deadline(deadline, "documents")
        return DocumentsResult(total=total, docs=hits, offset=0 if sample else offset, sample=sample)

    def _hit(
        self, doc_id: int, keys: Sequence[SpecKey], window: int, words: WordTables | None = None
    ) -> DocumentHit:
        shard, local = self._locate(doc_id)
        toks = self._doc_tokens(shard, local)
        matches: list[tuple[int, int, int]] = []  # (start token, end token, phrase index)
        for p, key in enumerate(keys):
            for variant in key:
                for s in K._find_in(toks, np.asarray(variant, dtype=np.int64)):
                    if words is None or words.match_ok(toks, int(s), int(s) + len(variant)):
                        matches.append((int(s), int(s) + len(variant), p))
        first = min((m for m in matches if m[2] == 0), default=(0, 0, 0))
        start = max(0, first[0] - window)
        end = min(len(toks), first[1] + window)
        snippet = np.asarray(toks[start:end], dtype=np.int64)
        inside = sorted(m for m in matches if m[0] >= start and m[1] <= end)
        text = None
        spans: list[tuple[int, int, int]] = []
        if self._tokenizer is not None:
            text = self.decode(snippet.tolist())
            for s, e, p in inside:
                a = len(self.decode(snippet[: s - start].tolist()))
                b = len(self.decode(snippet[: e - start].tolist()))
                spans.append((a, b, p))
        else:
            spans = [(s - start, e - start, p) for s, e, p in inside]
        return DocumentHit(
            doc_id=doc_id,
            shard=shard.number,
            metadata=read_metadata(shard.arrays, local),
            text=text,
            spans=spans,
            token_ids=snippet.tolist(),
            snippet_start=start,
            doc_len=len(toks),
        )

    def document(self, doc_id: int, *, max_tokens: int | None = None) -> Document:
        """Document ``doc_id`` (global id): metadata, token ids and text (first ``max_tokens`` tokens)."""
        if not isinstance(doc_id, (int, np.integer)) or isinstance(doc_id, bool) or doc_id < 0:
            raise QueryError(f"doc_id {doc_id!r} is out of range (0..{self.n_docs - 1})", field="doc_id")
        if doc_id >= self.n_docs:
            raise DocumentNotFound(
                f"index {self.name!r} has {self.n_docs} documents; doc_id {doc_id} is out of range"
            )
        if max_tokens is not None and (not isinstance(max_tokens, (int, np.integer)) or max_tokens < 0):
            raise QueryError(f"max_tokens must be an integer >= 0, not {max_tokens!r}", field="max_tokens")
        shard, local = self._locate(int(doc_id))
        toks = self._doc_tokens(shard, local)
        cut = toks if max_tokens is None else toks[:max_tokens]
        ids = [int(t) for t in cut]
        return Document(
            doc_id=int(doc_id),
            metadata=read_metadata(shard.arrays, local),
            token_ids=ids,
            text=self.decode(ids) if self._tokenizer is not None else None,
            shard=shard.number,
            doc_len=len(toks),
            truncated=len(cut) < len(toks),
        )

    # ----------------------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Manifest summary (for GET /v1/indexes)."""
        m = self.manifest
        return {
            "name": self.name,
            "directory": str(self.directory),
            "format_version": m.format_version,
            "taskgram_version": m.taskgram_version,
            "created_at": m.created_at,
            "n_tokens": m.n_tokens,
            "n_docs": m.n_docs,
            "n_shards": len(m.shards),
            "token_dtype": m.token_dtype,
            "vocab_size": self.vocab_size,
            "tokenizer": {"kind": m.tokenizer.kind, "name": m.tokenizer.name, "sha256": m.tokenizer.sha256},
            "normalization": m.normalization,
            "space_policy": self.space,
            "inputs": [i.model_dump() for i in m.inputs],
        }

    def warm_up(self) -> None:
        """Compile (or load from the numba cache) every kernel with this index's array types."""
        probe: list[int] = []
        for shard in self._shards:
            if shard.n_tokens:
                probe = [int(shard.tokens[int(shard.sa[0])])]
                break
        if not probe:
            return
        self.count([probe])
        self.doc_freq([probe])
        self.cooccurrence([[probe, probe]])
        self.cooccurrence([[probe, probe]], unit="occurrences")
        self.windowed_cooccurrence([[probe, probe]], 1)
        self.next_token_distribution([probe], top_k=1)
        self.infgram_prob([(probe, probe)])
        self.documents([probe], limit=1, window=1)
        if self._words is not None:  # both paths of the word-boundary kernels (with and without start scan)
            inside = np.flatnonzero(~self._words.starts_word)
            probes = [probe] + ([[int(inside[0])]] if len(inside) and inside[0] != self.separator else [])
            self.count(probes, boundary="word")
            self.doc_freq(probes, boundary="word")
            self.cooccurrence([probes * 2], unit="occurrences", boundary="word")

    def cache_info(self) -> dict[str, int]:
        return {
            "entries": len(self._cache),
            "bytes": self._cache.nbytes,
            "hits": self._cache.hits,
            "misses": self._cache.misses,
        }

    def __repr__(self) -> str:
        return f"Index({self.name!r}, {self.n_tokens} tokens, {self.n_docs} docs, {len(self._shards)} shards)"


def _lex_order(flat: np.ndarray, offsets: np.ndarray, width: int = 8) -> np.ndarray:
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


def _tail(tokens: np.ndarray, length: int) -> Ids:
    return tuple(tokens[len(tokens) - length :].tolist())


def _batch(items: Any, field: str) -> Sequence[Any]:
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, (Sequence, np.ndarray)):
        raise QueryError(f"{field}: expected a list (a batch), got {type(items).__name__}", field=field)
    return items  # type: ignore[return-value]


def _dedupe(keys: Sequence[SpecKey]) -> tuple[list[SpecKey], np.ndarray]:
    seen: dict[SpecKey, int] = {}
    inverse = np.fromiter((seen.setdefault(k, len(seen)) for k in keys), dtype=np.int64, count=len(keys))
    return list(seen), inverse


def _sanity_check(root: Path, shard: _Shard, separator: int) -> None:
    """Cheap sampled checks of the arrays (a full check is ``verify_checksums``)."""
    n_positions = shard.tokens.shape[0]
    if shard.n_docs and shard.tokens[n_positions - 1] != separator:
        raise IndexFormatError(f"{root}: tokens.bin does not end with the separator")
    if shard.n_docs:
        sample = np.unique(np.linspace(0, shard.n_docs - 1, min(shard.n_docs, 1024)).astype(np.int64))
        ends = shard.doc_offsets[sample + 1]
        if np.any(ends <= shard.doc_offsets[sample]) or np.any(shard.tokens[ends - 1] != separator):
            raise IndexFormatError(f"{root}: doc_offsets.bin does not match the separators in tokens.bin")
    if shard.n_tokens:
        ranks = np.unique(np.linspace(0, shard.n_tokens - 1, min(shard.n_tokens, 256)).astype(np.int64))
        pos = shard.sa[ranks].astype(np.int64)
        if np.any(pos < 0) or np.any(pos >= n_positions) or np.any(shard.tokens[pos] == separator):
            raise IndexFormatError(f"{root}: suffix_array.bin holds positions outside the documents")


class IndexSet(Mapping[str, Index]):
    """Name -> Index. :meth:`open` opens several index directories, keeps the ones that open and records
    why the others were refused (``failures``)."""

    def __init__(
        self, indexes: Mapping[str, Index] | None = None, failures: Mapping[str, str] | None = None
    ) -> None:
        self._indexes: dict[str, Index] = dict(indexes or {})
        self.failures: dict[str, str] = dict(failures or {})

    @classmethod
    def open(
        cls,
        directories: Mapping[str, str | os.PathLike[str]] | Sequence[str | os.PathLike[str]],
        *,
        verify_checksums: bool = False,
        **options: Any,
    ) -> IndexSet:
        """Open ``{name: directory}`` (or directories, named by their folder name)."""
        if isinstance(directories, Mapping):
            named = list(directories.items())
        else:
            named = [(Path(d).resolve().name, d) for d in directories]
        indexes: dict[str, Index] = {}
        failures: dict[str, str] = {}
        for name, directory in named:
            if name in indexes or name in failures:
                failures[name] = f"index name {name!r} is used twice ({directory})"
                indexes.pop(name, None)
                continue
            try:
                indexes[name] = Index.open(directory, name=name, verify_checksums=verify_checksums, **options)
            except EngineError as err:
                failures[name] = str(err)
        return cls(indexes, failures)

    def get_index(self, name: str) -> Index:
        """The index called ``name``; IndexUnavailable (with the reason if it was refused) otherwise."""
        index = self._indexes.get(name)
        if index is None:
            if name in self.failures:
                why = self.failures[name]
                raise IndexUnavailable(f"index {name!r} could not be opened: {why}", name=name)
            known = ", ".join(sorted(self._indexes)) or "none"
            raise IndexUnavailable(f"no index named {name!r} (available: {known})", name=name)
        return index

    def __getitem__(self, name: str) -> Index:
        return self.get_index(name)

    def __contains__(self, name: object) -> bool:
        return name in self._indexes

    def get(self, name: str, default: Any = None) -> Any:
        return self._indexes.get(name, default)

    def __iter__(self):
        return iter(self._indexes)

    def __len__(self) -> int:
        return len(self._indexes)

    def summaries(self) -> list[dict[str, Any]]:
        return [index.summary() for index in self._indexes.values()]

    def warm_up(self) -> None:
        for index in self._indexes.values():
            index.warm_up()

    def close(self) -> None:
        for index in self._indexes.values():
            index.close()
        self._indexes.clear()
