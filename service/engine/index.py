"""Opened indexes: :class:`Index` (one index directory, all its shards) and :class:`IndexSet`.

:class:`Index` is the merge layer of the engine: it parses and validates queries (phrase syntax and the
leading-space policy: :mod:`service.engine.query`), asks its shard groups (:mod:`service.engine.shards`)
and merges their answers (:mod:`service.engine.merge`). In this process the groups are local (one group
of all shards, opened by :mod:`service.engine.opening`); under Ray Serve (:mod:`service.ray_serve`) the
same class fans out to remote groups, one per replica. No query logic exists twice.

Every query method takes a batch and returns one result per item, in order. The ``deadline`` is checked
between chunks (a running kernel call is not interrupted: the chunk size bounds the overshoot, and
``max_occurrences`` bounds the work of one phrase). A query never returns a partial number: it raises
:class:`BudgetExceeded` instead.

Memory: the arrays stay memory-mapped (see :mod:`service.engine.opening`); per call, scratch arrays of
n_docs entries of a shard (document sets) or n_tokens / 64 words (windowed AND of two frequent clauses).
The document-set cache of a group is bounded in bytes (``cache_bytes``).

Counts of several shards add up; global doc ids are the shard's first doc id + the local id (shards in
manifest order).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.manifest import Manifest
from service.engine.documents import document, document_hit
from service.engine.errors import DocumentNotFound, EngineError, IndexUnavailable, QueryError
from service.engine.merge import NextTokens, add_up, check_budget, merge_next_tokens, page_picks, summed
from service.engine.opening import doc_bases, open_header, open_shards
from service.engine.query import (
    Ids,
    Phrase,
    PhraseResolver,
    PhraseSpec,
    SpecKey,
    check_int,
    check_space,
    flatten,
    is_int,
)
from service.engine.results import (
    Document,
    DocumentsResult,
    InfgramResult,
    InfgramToken,
    NextTokenDistribution,
    ProbResult,
    TokenProb,
)
from service.engine.shards import CHUNK, Shard, ShardGroup, check_deadline
from service.engine.trace import Tracer, TraceResult
from service.engine.words import WordTables, check_boundary, word_tables
from taskgram.api import COUNT_UNITS

__all__ = ["CHUNK", "COUNT_UNITS", "Index", "IndexSet"]


class Index:
    """One opened index (all its shards); framework-free and thread-safe for reads.

    Options: ``max_occurrences`` (work budget: the most suffix-array occurrences one phrase spec of a
    document-level or windowed query may touch; None = no limit), ``cache_bytes`` / ``cache_min_occurrences``
    (the LRU of frequent phrases' document sets, per shard group), ``space`` (default leading-space policy,
    see :mod:`service.engine.query`).

    ``groups`` are the shard groups that answer (:class:`~service.engine.shards.ShardGroup` or anything
    with its operations, such as the remote groups of :mod:`service.ray_serve`); together they hold every
    shard of the manifest exactly once.

    Every query method takes a batch and returns one result per query, in order; counts are exact and
    summed over the shards. Open an index directory with :meth:`open`.

    Parameters
    ----------
    max_occurrences : int, optional
        Work budget: the most suffix-array occurrences one phrase spec of a document-level or windowed
        query may touch (None: no limit).
    cache_bytes, cache_min_occurrences : int, optional
        Size of the LRU of frequent phrases' document sets, and how often a phrase must occur to enter it.
    space : {"auto", "exact", "both"}, optional
        The default leading-space policy of text phrases.

    Raises
    ------
    QueryError
        A query is malformed (empty phrase, token id outside the vocabulary, bad option); ``field`` names
        what is wrong. ``DocumentNotFound`` (a QueryError) for a document id outside the index.
    BudgetExceeded
        A query needs more time (``deadline=``, an absolute ``time.monotonic()``) or work
        (``max_occurrences``) than allowed; no partial result is returned.
    IndexUnavailable
        From :meth:`open`: the directory is not a readable taskgram index (the message names the file).

    Examples
    --------
    >>> from service.engine import Index
    >>> index = Index.open(index_dir)
    >>> index.n_docs, index.count(["garbage collection", [22630, 4849]])
    (350, [5, 5])
    >>> index.cooccurrence([["garbage collection", {"any": ["reference count", "reference counts"]}]])
    [2]
    >>> [(t.token, t.count) for t in index.ntd(["garbage"], top_k=2)[0].tokens]
    [('Ġcollector', 10), ('Ġcollection', 5)]
    >>> index.close()
    """

    def __init__(
        self,
        directory: Path,
        name: str,
        manifest: Manifest,
        groups: Sequence[Any],
        tokenizer: Any | None,
        *,
        max_occurrences: int | None = None,
        space: str = "auto",
        words: tuple[WordTables | None, str] | None = None,
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
        self._groups = list(groups)
        self._group_of: dict[int, Any] = {n: g for g in self._groups for n in g.shard_numbers}
        if (
            not self._groups
            or sorted(self._group_of) != list(range(len(manifest.shards)))
            or sum(len(g.shard_numbers) for g in self._groups) != len(manifest.shards)
        ):
            raise IndexUnavailable(
                f"index {name!r}: the shard groups do not hold each of its "
                f"{len(manifest.shards)} shards once",
                name=name,
            )
        self._doc_bases = doc_bases(manifest)
        self._tokenizer = tokenizer
        self._vocab: list[str] | None = None  # token strings, loaded on first use
        self._tok_lock = threading.Lock()
        # word-boundary tables (service.engine.words); None with the reason when there are none
        self._words, self._words_refusal = words or index_word_tables(tokenizer, self.vocab_size, name)
        self._tracer = Tracer(
            name=name,
            vocab_size=self.vocab_size,
            separator=self.separator,
            normalization=manifest.normalization,
            tokenizer=tokenizer,
            tok_lock=self._tok_lock,
            words=self._words,
            word_check=self._word,
            fan_out=self._fan_out,
        )

    # ----------------------------------------------------------------------------------------------
    # Opening

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        name: str | None = None,
        verify_checksums: bool = False,
        *,
        cache_bytes: int = 256 << 20,
        cache_min_occurrences: int = 20_000,
        **options: Any,
    ) -> Index:
        """Open an index directory read-only, all its shards in one local group. Checks the manifest
        (format version, counts), every shard file's size against the manifest, samples of the arrays
        (suffix-array entries in range and not on a separator, documents followed by the separator), the
        tokenizer's checksum and vocabulary, and with ``verify_checksums`` every file's sha256.

        Parameters
        ----------
        directory : path
            A taskgram index (``taskgram build``).
        name : str, optional
            The index's name (default: the folder's name).
        verify_checksums : bool
            Hash every file against the manifest (slow for large indexes).
        cache_bytes, cache_min_occurrences, **options
            See the class parameters.

        Returns
        -------
        Index

        Raises
        ------
        IndexUnavailable
            Saying which file is missing, truncated, corrupt or of another format version.
        """
        directory = Path(directory)
        name = name or directory.resolve().name
        manifest, tokenizer = open_header(directory, name)
        shards = open_shards(directory, name, manifest, verify_checksums=verify_checksums)
        words = index_word_tables(tokenizer, manifest.tokenizer.vocab_size, name)
        group = ShardGroup(
            shards, words=words[0], cache_bytes=cache_bytes, cache_min_occurrences=cache_min_occurrences
        )
        return cls(directory, name, manifest, [group], tokenizer, words=words, **options)

    def close(self) -> None:
        """Drop the memory maps (they are also released when the Index is garbage-collected)."""
        for group in self._groups:
            group.close()
        self._groups = []
        self._group_of = {}

    @property
    def shards(self) -> list[Shard]:
        """The shards mapped in this process (all of them for an opened index; none when the groups are
        remote)."""
        return [s for g in self._groups for s in getattr(g, "shards", [])]

    @property
    def groups(self) -> list[Any]:
        return list(self._groups)

    def _fan_out(self, op: str, *args: Any, deadline: float | None = None) -> list[Any]:
        """Every group's answer to operation ``op`` (a :class:`ShardGroup` method), in group order. A
        subclass with remote groups runs them concurrently under the request's deadline."""
        return [getattr(group, op)(*args, deadline=deadline) for group in self._open_groups()]

    def _open_groups(self) -> list[Any]:
        """The shard groups; IndexUnavailable once the index is closed (an answer from no shards would
        be zeros)."""
        if not self._groups:
            raise IndexUnavailable(f"index {self.name!r} is closed", name=self.name)
        return self._groups

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

    def _word(self, boundary: object) -> bool:
        """True when ``boundary`` is "word", False for "token"; QueryError (field "boundary") for any
        other value or an index that has no tokenizer to tell words by."""
        if not check_boundary(boundary):
            return False
        if self._words is None:
            raise QueryError(
                f"boundary='word' needs the index's tokenizer to tell words apart: {self._words_refusal}",
                field="boundary",
            )
        return True

    def _resolver(self, space: str | None) -> PhraseResolver:
        return PhraseResolver(self._tokenize_batch, self.vocab_size, self.separator, space or self.space)

    # ----------------------------------------------------------------------------------------------
    # Counting

    def _counts(self, patterns: Sequence[Ids], deadline: float | None, what: str) -> np.ndarray:
        return self._counts_flat(*flatten(patterns), deadline, what)

    def _counts_flat(
        self, flat: np.ndarray, offsets: np.ndarray, deadline: float | None, what: str, word: bool = False
    ) -> np.ndarray:
        if not word:
            return add_up(self._fan_out("counts", flat, offsets, what, deadline=deadline), len(offsets) - 1)
        # the start test of a phrase whose first token does not begin a word reads the token before
        # every occurrence: the work budget (max_occurrences) bounds it
        answers = self._fan_out("word_counts", flat, offsets, self.max_occurrences, what, deadline=deadline)
        return summed(
            answers,
            self.max_occurrences,
            what,
            "{what}: a phrase that starts inside a word needs each of its {n} occurrences checked for "
            "boundary='word', over the work budget of {budget}",
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
        word = self._word(boundary)
        fast = self._flat_ids(phrases)
        if fast is not None:
            return self._counts_flat(*fast, deadline, "count", word).tolist()
        resolver = self._resolver(space)
        parse = resolver.parse_phrase
        parsed = [parse(p, f"phrases[{i}]", i) for i, p in enumerate(_batch(phrases, "phrases"))]
        resolver.finish()
        patterns = [resolver.ids(p) for p in parsed]
        return self._counts_flat(*flatten(patterns), deadline, "count", word).tolist()

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

    def _budget(self, max_occurrences: int | None) -> int | None:
        return max_occurrences if max_occurrences is not None else self.max_occurrences

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
        word = self._word(boundary)
        resolver = self._resolver(space)
        parsed = self._parse_specs(resolver, phrases, "phrases")
        resolver.finish()
        keys = [resolver.key(p) for p in parsed]
        unique, inverse = _dedupe(keys)
        budget = self._budget(max_occurrences)
        sizes = summed(self._fan_out("doc_freq", unique, budget, word, deadline=deadline), budget, "doc_freq")
        return sizes[inverse].tolist()

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
        word = self._word(boundary)
        resolver = self._resolver(space)
        parsed = self._query_keys(resolver, queries, 2)
        resolver.finish()
        key = resolver.key
        query_keys = [[key(p) for p in q] for q in parsed]
        unique, inverse = _dedupe([k for q in query_keys for k in q])
        q_off = np.zeros(len(query_keys) + 1, dtype=np.int64)
        np.cumsum([len(q) for q in query_keys], out=q_off[1:])
        q_flat = inverse.astype(np.int64)
        budget = self._budget(max_occurrences)
        answers = self._fan_out("cooccurrence", unique, q_flat, q_off, unit, budget, word, deadline=deadline)
        return summed(answers, budget, "cooccurrence").tolist()

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
        check_int(window, "window")
        resolver = self._resolver(space)
        parsed = self._query_keys(resolver, queries, 2)
        resolver.finish()
        query_keys = [[resolver.key(p) for p in q] for q in parsed]
        if not query_keys:
            return []
        budget = self._budget(max_occurrences)
        clauses = [c for q in query_keys for c in q]
        clause_off = np.zeros(len(clauses) + 1, dtype=np.int64)
        np.cumsum([len(c) for c in clauses], out=clause_off[1:])
        query_off = np.zeros(len(query_keys) + 1, dtype=np.int64)
        np.cumsum([len(q) for q in query_keys], out=query_off[1:])
        var_flat, var_off = flatten([v for c in clauses for v in c])
        # the anchor of each query: its clause with the fewest occurrences in the whole index
        occ = np.add.reduceat(
            self._counts_flat(var_flat, var_off, deadline, "windowed_cooccurrence"), clause_off[:-1]
        )
        check_budget(
            occ,
            budget,
            "windowed_cooccurrence",
            "{what}: a clause has {n} occurrences, over the work budget of {budget}",
        )
        first = query_off[:-1]
        anchors = first + np.array(
            [int(np.argmin(occ[first[q] : query_off[q + 1]])) for q in range(len(query_keys))], dtype=np.int64
        )
        answers = self._fan_out(
            "windowed", var_flat, var_off, clause_off, query_off, anchors, int(window), deadline=deadline
        )
        out = add_up(answers, len(query_keys))
        check_deadline(deadline, "windowed_cooccurrence")
        return out.tolist()

    # ----------------------------------------------------------------------------------------------
    # Next tokens and probabilities

    def _prompts(self, resolver: PhraseResolver, prompts: Sequence[Any], field: str) -> list[Ids | int]:
        return [resolver.parse_phrase(p, f"{field}[{i}]", i, allow_empty=True) for i, p in enumerate(prompts)]

    def ntd(
        self,
        prompts: Sequence[Phrase],
        *,
        top_k: int | None = None,
        deadline: float | None = None,
        space: str | None = None,
    ) -> list[NextTokenDistribution]:
        """Exact next-token distribution (``ntd``, the name of ``POST /v1/ntd`` and of the clients'
        method) of each prompt; an empty prompt gives unigram counts. Each distinct next token costs a
        galloping search over the prompt's SA range, never a scan."""
        check_int(top_k, "top_k", minimum=1, none_ok=True)
        resolver = self._resolver(space)
        parsed = self._prompts(resolver, _batch(prompts, "prompts"), "prompts")
        resolver.finish()
        patterns = [resolver.ids(p) for p in parsed]
        flat, offsets = flatten(patterns)
        merged = merge_next_tokens(
            self._fan_out("next_tokens", flat, offsets, deadline=deadline), n=len(patterns)
        )
        return [self._distribution(merged, j, top_k) for j in range(len(patterns))]

    def next_token_distribution(self, *args: Any, **kwargs: Any) -> list[NextTokenDistribution]:
        """Deprecated name of :meth:`ntd`."""
        warnings.warn(
            "Index.next_token_distribution is deprecated: use Index.ntd (the name of POST /v1/ntd)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.ntd(*args, **kwargs)

    def _distribution(self, nt: NextTokens, j: int, top_k: int | None) -> NextTokenDistribution:
        total, ends = int(nt.totals[j]), int(nt.ends[j])
        ids = nt.ids[nt.offsets[j] : nt.offsets[j + 1]]
        cnt = nt.counts[nt.offsets[j] : nt.offsets[j + 1]]
        if not len(ids):
            return NextTokenDistribution(prompt_count=total, tokens=[], n_distinct=0, ends_of_document=ends)
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
        if not is_int(tid):
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

    def _decoder(self) -> Any:
        return self.decode if self._tokenizer is not None else None

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
        word = self._word(boundary)
        for fname, value in (("offset", offset), ("limit", limit), ("window", window)):
            check_int(value, fname)
        resolver = self._resolver(space)
        parsed = self._parse_specs(resolver, phrases, "phrases")
        if not parsed:
            raise QueryError("phrases: at least one phrase is needed", field="phrases")
        resolver.finish()
        keys = [resolver.key(p) for p in parsed]
        unique, _ = _dedupe(keys)
        budget = self._budget(max_occurrences)
        answers = self._fan_out("doc_totals", unique, budget, word, deadline=deadline)
        check_budget(add_up([occ for occ, _ in answers], len(unique)), budget, "documents")
        numbers = [n for g in self._groups for n in g.shard_numbers]
        totals = np.concatenate([t for _, t in answers])
        order = np.argsort(numbers, kind="stable")
        numbers = [numbers[i] for i in order]
        totals = totals[order]
        total = int(totals.sum())
        if sample:
            rng = np.random.default_rng(seed)
            chosen = (
                rng.choice(total, size=min(limit, total), replace=False) if total else np.zeros(0, np.int64)
            )
            ranks = np.sort(chosen).astype(np.int64)
        else:
            ranks = np.arange(min(offset, total), min(offset + limit, total), dtype=np.int64)
        picks = page_picks(numbers, totals, ranks)
        raw = [
            hit
            for group in self._groups
            if any(n in picks for n in group.shard_numbers)
            for hit in self._ask(
                group,
                "doc_hits",
                unique,
                {n: picks[n] for n in group.shard_numbers if n in picks},
                keys,
                window,
                word,
                deadline=deadline,
            )
        ]
        raw.sort(key=lambda h: h.doc_id)
        decode = self._decoder()
        hits = [document_hit(h, decode, self._words) for h in raw]
        check_deadline(deadline, "documents")
        return DocumentsResult(total=total, docs=hits, offset=0 if sample else offset, sample=sample)

    def _ask(self, group: Any, op: str, *args: Any, deadline: float | None = None) -> Any:
        """One group's answer to ``op`` (a subclass with remote groups bounds it by the deadline)."""
        return getattr(group, op)(*args, deadline=deadline)

    def document(self, doc_id: int, *, max_tokens: int | None = None) -> Document:
        """Document ``doc_id`` (global id): metadata, token ids and text (first ``max_tokens`` tokens)."""
        if not is_int(doc_id) or doc_id < 0:
            raise QueryError(f"doc_id {doc_id!r} is out of range (0..{self.n_docs - 1})", field="doc_id")
        if doc_id >= self.n_docs:
            raise DocumentNotFound(
                f"index {self.name!r} has {self.n_docs} documents; doc_id {doc_id} is out of range"
            )
        check_int(max_tokens, "max_tokens", none_ok=True)
        number = int(np.searchsorted(self._doc_bases, doc_id, side="right")) - 1
        local = int(doc_id) - int(self._doc_bases[number])
        self._open_groups()
        doc = self._ask(self._group_of[number], "document", number, local, max_tokens)
        return document(int(doc_id), doc, self._decoder())

    # ----------------------------------------------------------------------------------------------
    # Tracing

    def trace(self, queries: Sequence[Any], **options: Any) -> list[TraceResult]:
        """Maximal spans of each text (or token-id list) that occur in the corpus, with exact counts and
        sampled documents: see :mod:`service.engine.trace` for the method. Options: ``min_len``,
        ``max_count``, ``boundary`` ("word" or "token"), ``rank`` ("length" or "unigram_logprob"),
        ``max_spans``, ``docs_per_span``, ``context``, ``seed``, ``space`` ("auto" or "exact"),
        ``deadline``. Asked of the shard groups like every other query (in this process or over Ray)."""
        return self._tracer.trace(queries, **options)

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
        probe: list[int] = next((p for p in self._fan_out("probe") if p), [])
        if not probe:
            return
        self.count([probe])
        self.doc_freq([probe])
        self.cooccurrence([[probe, probe]])
        self.cooccurrence([[probe, probe]], unit="occurrences")
        self.windowed_cooccurrence([[probe, probe]], 1)
        self.ntd([probe], top_k=1)
        self.infgram_prob([(probe, probe)])
        self.documents([probe], limit=1, window=1)
        if self._words is not None:  # both paths of the word-boundary kernels (with and without start scan)
            inside = np.flatnonzero(~self._words.starts_word)
            probes = [probe] + ([[int(inside[0])]] if len(inside) and inside[0] != self.separator else [])
            self.count(probes, boundary="word")
            self.doc_freq(probes, boundary="word")
            self.cooccurrence([probes * 2], unit="occurrences", boundary="word")
        self.trace([probe], boundary="token", docs_per_span=1, context=1)

    def cache_info(self) -> dict[str, int]:
        """The document-set caches of the shard groups, added up."""
        out = {"entries": 0, "bytes": 0, "hits": 0, "misses": 0}
        for info in self._fan_out("cache_info"):
            for k in out:
                out[k] += int(info[k])
        return out

    def __repr__(self) -> str:
        n_shards = len(self.manifest.shards)
        return f"Index({self.name!r}, {self.n_tokens} tokens, {self.n_docs} docs, {n_shards} shards)"


def index_word_tables(tokenizer: Any | None, vocab_size: int, name: str) -> tuple[WordTables | None, str]:
    """The word-boundary tables of an index's tokenizer, or None and the reason there are none."""
    if tokenizer is None:
        return None, f"index {name!r} was built without a tokenizer"
    try:
        return word_tables(tokenizer, vocab_size), ""
    except ValueError as err:
        return None, f"index {name!r}: {err}"


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
