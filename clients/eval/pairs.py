"""Task-gram pairs (Definition 1) and their corpus counts.

The counting backend is anything with the methods of :class:`CountBackend` — the HTTP ``Client`` or the
in-process ``LocalClient`` of ``clients.client``. A phrase is sent as a list of surface variants (an OR,
counted by the engine as a union, never twice): each word n-gram in lower case, with its first letter
capitalised, and in title case; the queries ask for the engine's leading-space policy ``both``, so each
variant is also matched with and without a leading space (a BPE index tokenizes " Paris" and "Paris"
differently). On an index built with a lower-casing normalization the case variants collapse into one.

Counts are exact token-sequence matches on the index, by default at word boundaries (``boundary="word"``:
a match neither starts nor ends inside a word, so ``index`` does not match inside ``indexes``);
``boundary="token"`` also counts matches that start or end inside a longer word. An n-gram
``campbell bannerman`` matches the text "Campbell Bannerman" but not "Campbell-Bannerman" (the paper's
Elasticsearch analyzer matched both), and an n-gram of content words (stopwords removed) matches only
where those words are adjacent in the corpus: exact for what they count, and not a bound of that
analyzer's counts (see docs/evaluation.md). Every count-cache key holds the unit and the boundary, so
counts of different kinds never mix.

The per-example pair cap (:func:`cap_pairs`, off by default) samples uniformly, seeded, after the
semantic filter; :func:`extract_pairs` itself never drops a pair.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from clients.cache import ResultCache, canonical
from clients.eval.errors import CountingError
from clients.eval.ngrams import NgramOptions
from clients.eval.tasks import Example
from taskgram.api import BOUNDARIES, COUNT_UNITS, Boundary, CountUnit

PhraseVariants = list[str]  # an OR of surface forms of one phrase
StopwordPolicy = Literal["auto", "always", "never"]


@runtime_checkable
class CountBackend(Protocol):
    """What the pair-count stage needs from a counting client (``Client`` or ``LocalClient``).

    Every method takes a batch and returns one result per item, in order, or raises; a failed query is
    never returned as 0. A phrase is a string or a list of strings (an OR of variants).
    """

    def doc_freq(self, phrases: Sequence[Any], *, space: str = ..., boundary: str = ...) -> list[int]:
        """Number of distinct documents containing each phrase."""
        ...

    def cooccurrence(
        self, queries: Sequence[Sequence[Any]], *, space: str = ..., unit: str = ..., boundary: str = ...
    ) -> list[int]:
        """Number of documents containing all phrases of each query (``unit="documents"``, the default),
        or the number of occurrences of the first phrase in documents containing all the others
        (``unit="occurrences"``). Only the occurrence unit is ever passed explicitly; ``boundary``
        (``"word"`` or ``"token"``) always is."""
        ...


# ------------------------------------------------------------------------------------------------
# Extraction
# ------------------------------------------------------------------------------------------------
def side_options(
    task: str,
    n: int,
    stopwords: StopwordPolicy = "auto",
    lowercase: bool = True,
) -> tuple[NgramOptions, NgramOptions]:
    """n-gram options of the input and output side of a task.

    ``auto`` removes English stopwords when n <= 3, as the paper's code does. Stopwords are English: the
    target side of a translation task keeps its function words. TriviaQA's answer is one phrase whatever n.
    """
    remove = {"auto": n <= 3, "always": True, "never": False}[stopwords]
    x_opts = NgramOptions(n, remove_stopwords=remove, lowercase=lowercase)
    if task.startswith("translation-"):
        return x_opts, NgramOptions(n, remove_stopwords=False, lowercase=lowercase)
    y_whole = task == "triviaqa"
    return x_opts, NgramOptions(n, remove_stopwords=remove, lowercase=lowercase, whole_text=y_whole)


@dataclass(frozen=True)
class Pair:
    """One (s^x, s^y) pair of one example."""

    task: str
    n: int
    example_id: str
    sx: str
    sy: str


def extract_pairs(
    examples: Iterable[Example],
    task: str,
    n: int,
    *,
    stopwords: StopwordPolicy = "auto",
    lowercase: bool = True,
    max_pairs_per_example: int | None = None,
) -> list[Pair]:
    """A_n(T) restricted to pairs with s^x != s^y, per example, in x-major order.

    An example whose input and output share an n-gram keeps all its other pairs (only identical pairs
    are dropped). ``max_pairs_per_example`` keeps the first pairs of an example in that order: the
    truncation of the shared workload files, never used by ``taskgram eval`` (whose cap is
    :func:`cap_pairs`, a seeded uniform sample after the semantic filter).
    """
    x_opts, y_opts = side_options(task, n, stopwords, lowercase)
    out: list[Pair] = []
    for ex in examples:
        xs, ys = x_opts.extract(ex.x), y_opts.extract(ex.y)
        kept = 0
        for sx in xs:
            for sy in ys:
                if sx == sy:
                    continue
                if max_pairs_per_example is not None and kept >= max_pairs_per_example:
                    break
                out.append(Pair(task, n, ex.id, sx, sy))
                kept += 1
    return out


def cap_pairs(
    rows: Sequence[Sequence[Any]],
    cap: int | None,
    seed: int,
    salt: str,
    in_h: Sequence[bool],
    in_all: Sequence[bool] | None = None,
) -> tuple[list[bool], list[bool]]:
    """Per-example cap on the pairs of one task and n, applied after the semantic filter.

    ``rows`` are ``[example_id, sx, sy, ...]``; ``in_h`` says whether a row is in H_n(T) (passes the
    filter), ``in_all`` whether it may enter the unfiltered analysis (default: every row). Returns two
    flags per row: kept for the filtered analysis (in H_n(T) and among at most ``cap`` pairs of H_n(T)
    sampled uniformly from its example), and kept for the unfiltered analysis (at most ``cap`` of its
    example's eligible pairs, sampled uniformly). The sample is a seeded random order per example
    (``random.Random`` of ``seed``, ``salt`` and the example id), so a run always draws the same pairs
    and the filtered sample does not depend on how many pairs failed the filter. ``cap=None`` keeps
    every pair."""
    import random

    if cap is not None and cap < 1:
        raise ValueError(f"pair cap must be >= 1 (or None for no cap), got {cap}")
    flags_h = [bool(v) for v in in_h]
    flags_all = [True] * len(rows) if in_all is None else [bool(v) for v in in_all]
    if len(flags_h) != len(rows) or len(flags_all) != len(rows):
        raise ValueError("cap_pairs: one flag per row is needed")
    if cap is None:
        return flags_h, flags_all
    by_example: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_example.setdefault(str(r[0]), []).append(i)
    keep_h = [False] * len(rows)
    keep_all = [False] * len(rows)
    for ex_id, idx in by_example.items():
        order = list(idx)
        random.Random(f"{seed}\t{salt}\t{ex_id}").shuffle(order)
        for i in [i for i in order if flags_all[i]][:cap]:
            keep_all[i] = True
        for i in [i for i in order if flags_h[i]][:cap]:
            keep_h[i] = True
    return keep_h, keep_all


def phrase_variants(phrase: str, *, case_variants: bool = True) -> PhraseVariants:
    """Surface forms queried for one word n-gram (the leading space is the engine's ``space`` policy):
    as is, first letter capitalised, title case; without duplicates, in a fixed order."""
    forms = [phrase]
    if case_variants and phrase:
        forms += [phrase[:1].upper() + phrase[1:], phrase.title()]
    return list(dict.fromkeys(forms))


# ------------------------------------------------------------------------------------------------
# Counting
# ------------------------------------------------------------------------------------------------
CountKey = tuple[str, str]  # (kind, key) of one count: see phrase_key, pair_key, exists_key


class CountCache:
    """The evaluation's counts in the clients' result cache (:class:`clients.cache.ResultCache`, one
    sqlite3 file in the run folder), under one ``identity``: a hash of the index identity and of the
    phrase-variant options (case variants, leading-space policy). Each count is a row (identity, kind,
    key) with kind ``counts:<quantity>:<boundary>`` (the quantity names the unit) and the phrase or pair as
    key, so counts of different indexes, units or boundaries never mix.

    A rerun queries only what is missing; a batch is stored (one transaction) after it succeeds, so an
    interrupted run resumes. ``store`` is a ResultCache or the folder to open one in. Thread-safe.
    """

    def __init__(self, store: ResultCache | str | os.PathLike[str], identity: str) -> None:
        self.store = store if isinstance(store, ResultCache) else ResultCache(store)
        self.identity = identity
        self._lock = threading.Lock()
        self._known: dict[CountKey, int] = {}  # what this process has read or stored

    @property
    def path(self) -> Path:
        return self.store.path

    def get_many(self, keys: Iterable[CountKey]) -> dict[CountKey, int]:
        """The stored counts among ``keys``."""
        wanted = list(dict.fromkeys(keys))
        with self._lock:
            found = {k: self._known[k] for k in wanted if k in self._known}
        by_kind: dict[str, list[str]] = {}
        for kind, key in wanted:
            if (kind, key) not in found:
                by_kind.setdefault(kind, []).append(key)
        for kind, keys_of in by_kind.items():
            for key, value in self.store.get_many(self.identity, kind, keys_of).items():
                found[(kind, key)] = int(value)
        with self._lock:
            self._known.update(found)
        return found

    def get(self, key: CountKey) -> int | None:
        return self.get_many([key]).get(key)

    def add(self, items: dict[CountKey, int]) -> None:
        """Store ``items`` (one transaction per kind)."""
        by_kind: dict[str, list[tuple[str, int]]] = {}
        for (kind, key), value in items.items():
            by_kind.setdefault(kind, []).append((key, int(value)))
        for kind, rows in by_kind.items():
            self.store.put_many(self.identity, kind, rows)
        with self._lock:
            self._known.update(items)

    def values(self) -> dict[CountKey, int]:
        """Every count of this identity read or stored by this process."""
        with self._lock:
            return dict(self._known)


def migrate_jsonl(path: str | os.PathLike[str], cache: CountCache) -> int:
    """Read a count cache of the earlier JSON Lines format (``counts-<hash>.jsonl``, one
    ``{"k": "<quantity>\\t<boundary>\\t<phrase>[\\t<phrase>]", "v": count}`` per line) into ``cache``,
    in one transaction per kind, then rename it to ``*.migrated`` so it is read once. Returns the number
    of counts. A torn last line (an interrupted write) is dropped; any other malformed line raises
    :class:`CountingError` naming the file and line, and nothing is stored."""
    path = Path(path)
    items: dict[CountKey, int] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            try:
                rec = json.loads(line)
                fields = rec["k"].split("\t")
                value = int(rec["v"])
                quantity, boundary, phrases = fields[0], fields[1], fields[2:]
                if quantity in ("df", "occ", "ex") and len(phrases) == 1:
                    unit = "documents" if quantity == "df" else "occurrences"
                    key = (
                        exists_key(phrases[0], boundary)
                        if quantity == "ex"
                        else phrase_key(phrases[0], unit, boundary)
                    )
                elif quantity in ("co", "occ-co") and len(phrases) == 2:
                    unit = "documents" if quantity == "co" else "occurrences"
                    key = pair_key(phrases[0], phrases[1], unit, boundary)
                else:
                    raise ValueError(rec["k"])
                if boundary not in BOUNDARIES:
                    raise ValueError(boundary)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, IndexError, AttributeError):
                if line.endswith("\n"):
                    raise CountingError(f"{path}:{lineno}: malformed count cache line") from None
                continue  # a torn last line from an interrupted write: re-queried
            items[key] = value
    cache.add(items)
    os.replace(path, path.with_name(path.name + ".migrated"))
    return len(items)


def _check_counts(result: Any, expected: int, what: str) -> list[int]:
    if not isinstance(result, list) or len(result) != expected:
        got = len(result) if isinstance(result, list) else type(result).__name__
        raise CountingError(f"{what}: backend answered {got} results for {expected} queries")
    out = []
    for i, v in enumerate(result):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise CountingError(f"{what}: result {i} is {v!r}, not a non-negative integer count")
        out.append(v)
    return out


@dataclass(frozen=True)
class CountOptions:
    """How phrases are sent (surface variants, batch size) and the unit of C(s^x) and C((s^x, s^y)) —
    always the same unit and normalization for both (Eq. 1), so P(s^y|s^x) is a proper ratio <= 1:

    * ``documents``: C(s^x) = documents containing s^x, C(pair) = documents containing both;
    * ``occurrences``: C(s^x) = occurrences of s^x (distinct start positions of its variants),
      C(pair) = occurrences of s^x in documents that also contain s^y. P is then the fraction of the
      occurrences of s^x whose document contains s^y, and C(pair) = 0 exactly when no document holds both.
    """

    case_variants: bool = True
    space: str = "both"  # the engine's leading-space policy: "both" = with and without a leading space
    batch_size: int = 20_000
    unit: CountUnit = "documents"
    boundary: Boundary = "word"  # where a match may start and end: at word boundaries, or any token

    def __post_init__(self) -> None:
        if self.unit not in COUNT_UNITS:
            raise ValueError(f"count unit must be one of {', '.join(COUNT_UNITS)}, not {self.unit!r}")
        if self.boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {', '.join(BOUNDARIES)}, not {self.boundary!r}")


def phrase_key(phrase: str, unit: str = "documents", boundary: str = "word") -> CountKey:
    """Count-cache key of C(s^x) in ``unit`` at ``boundary`` (counts of different units or boundaries
    never share a key)."""
    return f"counts:{'df' if unit == 'documents' else 'occ'}:{boundary}", phrase


def pair_key(sx: str, sy: str, unit: str = "documents", boundary: str = "word") -> CountKey:
    """Count-cache key of C((s^x, s^y)) in ``unit`` at ``boundary``."""
    return f"counts:{'co' if unit == 'documents' else 'occ-co'}:{boundary}", canonical([sx, sy])


def exists_key(phrase: str, boundary: str = "word") -> CountKey:
    """Count-cache key of whether a phrase occurs at all (decontamination): 1 or 0."""
    return f"counts:ex:{boundary}", phrase


def _run_batches(
    keys: list[CountKey],
    queries: list[Any],
    call: Callable[[list[Any]], list[int]],
    cache: CountCache,
    what: str,
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> None:
    for start in range(0, len(keys), batch_size):
        batch_q = queries[start : start + batch_size]
        try:
            result = call(batch_q)
        except CountingError:
            raise
        except Exception as err:  # any client/engine failure: stop the stage with context
            raise CountingError(
                f"{what}: batch of {len(batch_q)} queries starting at #{start} failed: "
                f"{type(err).__name__}: {err}"
            ) from err
        counts = _check_counts(result, len(batch_q), what)
        cache.add(dict(zip(keys[start : start + batch_size], counts, strict=True)))
        if progress is not None:
            progress(len(batch_q))


def count_phrases(
    backend: CountBackend,
    phrases: Iterable[str],
    cache: CountCache,
    opts: CountOptions,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """C(s) for each distinct phrase, in ``opts.unit``: the number of documents containing it (any
    variant), or the number of its occurrences. An occurrence count is asked as the co-occurrence of the
    phrase with itself in the occurrence unit (its occurrences in documents containing it: all of them),
    because the engine's plain ``count`` takes one token sequence, not an OR of variants; this also
    makes C(s^x) count exactly what C((s^x, s^y)) counts, with the same union of variants."""
    wanted = list(dict.fromkeys(phrases))
    known = cache.get_many(phrase_key(p, opts.unit, opts.boundary) for p in wanted)
    missing = [p for p in wanted if phrase_key(p, opts.unit, opts.boundary) not in known]
    queries = [phrase_variants(p, case_variants=opts.case_variants) for p in missing]

    def call(batch: list[Any]) -> list[int]:
        if opts.unit == "documents":
            return backend.doc_freq(batch, space=opts.space, boundary=opts.boundary)
        return backend.cooccurrence(
            [[spec, spec] for spec in batch], space=opts.space, unit="occurrences", boundary=opts.boundary
        )

    _run_batches(
        [phrase_key(p, opts.unit, opts.boundary) for p in missing],
        queries,
        call,
        cache,
        f"{'documents' if opts.unit == 'documents' else 'occurrences'} of phrases",
        opts.batch_size,
        progress,
    )
    known = cache.get_many(phrase_key(p, opts.unit, opts.boundary) for p in wanted)
    return {p: known[phrase_key(p, opts.unit, opts.boundary)] for p in wanted}


def phrases_exist(
    backend: CountBackend,
    phrases: Iterable[str],
    cache: CountCache,
    opts: CountOptions,
    progress: Callable[[int], None] | None = None,
) -> dict[str, bool]:
    """Whether each phrase (an OR of its variants) occurs in the corpus at ``opts.boundary``: a document
    count above 0, exact (one ``doc_freq`` query per phrase; the unit does not matter here)."""
    wanted = list(dict.fromkeys(phrases))
    known = cache.get_many(exists_key(p, opts.boundary) for p in wanted)
    missing = [p for p in wanted if exists_key(p, opts.boundary) not in known]
    queries = [phrase_variants(p, case_variants=opts.case_variants) for p in missing]

    def call(batch: list[Any]) -> list[int]:
        counts = _check_counts(
            backend.doc_freq(batch, space=opts.space, boundary=opts.boundary), len(batch), "existence"
        )
        return [int(c > 0) for c in counts]

    _run_batches(
        [exists_key(p, opts.boundary) for p in missing],
        queries,
        call,
        cache,
        "existence of phrases",
        opts.batch_size,
        progress,
    )
    known = cache.get_many(exists_key(p, opts.boundary) for p in wanted)
    return {p: known[exists_key(p, opts.boundary)] > 0 for p in wanted}


def count_pairs(
    backend: CountBackend,
    pairs: Iterable[tuple[str, str]],
    cache: CountCache,
    opts: CountOptions,
    progress: Callable[[int], None] | None = None,
) -> dict[tuple[str, str], int]:
    """C((s^x, s^y)) in ``opts.unit``: documents containing both phrases (each an OR of its variants),
    or occurrences of s^x in documents that contain s^y."""
    wanted = list(dict.fromkeys(pairs))
    known = cache.get_many(pair_key(a, b, opts.unit, opts.boundary) for a, b in wanted)
    missing = [p for p in wanted if pair_key(p[0], p[1], opts.unit, opts.boundary) not in known]
    queries = [
        [
            phrase_variants(a, case_variants=opts.case_variants),
            phrase_variants(b, case_variants=opts.case_variants),
        ]
        for a, b in missing
    ]

    def call(batch: list[Any]) -> list[int]:
        if opts.unit == "documents":  # the unit is not passed: any document-count backend will do
            return backend.cooccurrence(batch, space=opts.space, boundary=opts.boundary)
        return backend.cooccurrence(batch, space=opts.space, unit="occurrences", boundary=opts.boundary)

    _run_batches(
        [pair_key(a, b, opts.unit, opts.boundary) for a, b in missing],
        queries,
        call,
        cache,
        "co-occurrence of pairs" if opts.unit == "documents" else "co-occurrence of pairs in occurrences",
        opts.batch_size,
        progress,
    )
    known = cache.get_many(pair_key(a, b, opts.unit, opts.boundary) for a, b in wanted)
    return {p: known[pair_key(p[0], p[1], opts.unit, opts.boundary)] for p in wanted}
