"""Task-gram pairs (Definition 1) and their corpus counts.

The counting backend is anything with the methods of :class:`CountBackend` — the HTTP ``Client`` or the
in-process ``LocalClient`` of ``clients.client``. A phrase is sent as a list of surface variants (an OR,
counted by the engine as a union, never twice): each word n-gram in lower case, with its first letter
capitalised, and in title case; the queries ask for the engine's leading-space policy ``both``, so each
variant is also matched with and without a leading space (a BPE index tokenizes " Paris" and "Paris"
differently). On an index built with a lower-casing normalization the case variants collapse into one.

Counts are exact token-sequence matches on the index: an n-gram ``campbell bannerman`` matches the text
"Campbell Bannerman" but not "Campbell-Bannerman" (the paper's Elasticsearch analyzer matched both), and
an n-gram of content words (stopwords removed) matches only where those words are adjacent in the
corpus. Both make our counts a lower bound of a word-level analyzer's counts; they are exact for what
they count.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from clients.eval.errors import CountingError
from clients.eval.ngrams import NgramOptions
from clients.eval.tasks import Example
from taskgram.api import COUNT_UNITS, CountUnit

PhraseVariants = list[str]  # an OR of surface forms of one phrase
StopwordPolicy = Literal["auto", "always", "never"]


@runtime_checkable
class CountBackend(Protocol):
    """What the pair-count stage needs from a counting client (``Client`` or ``LocalClient``).

    Every method takes a batch and returns one result per item, in order, or raises; a failed query is
    never returned as 0. A phrase is a string or a list of strings (an OR of variants).
    """

    def doc_freq(self, phrases: Sequence[Any], *, space: str = ...) -> list[int]:
        """Number of distinct documents containing each phrase."""
        ...

    def cooccurrence(
        self, queries: Sequence[Sequence[Any]], *, space: str = ..., unit: str = ...
    ) -> list[int]:
        """Number of documents containing all phrases of each query (``unit="documents"``, the default),
        or the number of occurrences of the first phrase in documents containing all the others
        (``unit="occurrences"``). Only the occurrence unit is ever passed explicitly."""
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
    are dropped). ``max_pairs_per_example`` keeps the first pairs of an example in that order.
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
class CountCache:
    """Append-only JSON Lines cache of counts, keyed by query kind and normalized phrase(s).

    One file per index identity (the caller puts the manifest hash in the file name). A rerun reads it and
    queries only what is missing; a batch is appended after it succeeds, so an interrupted run resumes.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.values: dict[str, int] = {}
        if self.path.exists():
            with self.path.open(encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    try:
                        rec = json.loads(line)
                        self.values[rec["k"]] = int(rec["v"])
                    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                        # A torn last line from an interrupted write is dropped (it is re-queried).
                        if line.endswith("\n"):
                            raise CountingError(f"{self.path}:{lineno}: malformed count cache line") from None

    def get(self, key: str) -> int | None:
        return self.values.get(key)

    def add(self, items: dict[str, int]) -> None:
        self.values.update(items)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            for k, v in items.items():
                f.write(json.dumps({"k": k, "v": v}, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


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

    def __post_init__(self) -> None:
        if self.unit not in COUNT_UNITS:
            raise ValueError(f"count unit must be one of {', '.join(COUNT_UNITS)}, not {self.unit!r}")


def phrase_key(phrase: str, unit: str = "documents") -> str:
    """Count-cache key of C(s^x) in ``unit`` (document and occurrence counts never share a key)."""
    return f"{'df' if unit == 'documents' else 'occ'}\t{phrase}"


def pair_key(sx: str, sy: str, unit: str = "documents") -> str:
    """Count-cache key of C((s^x, s^y)) in ``unit``."""
    return f"{'co' if unit == 'documents' else 'occ-co'}\t{sx}\t{sy}"


def _run_batches(
    keys: list[str],
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
    missing = [p for p in wanted if cache.get(phrase_key(p, opts.unit)) is None]
    queries = [phrase_variants(p, case_variants=opts.case_variants) for p in missing]

    def call(batch: list[Any]) -> list[int]:
        if opts.unit == "documents":
            return backend.doc_freq(batch, space=opts.space)
        return backend.cooccurrence([[spec, spec] for spec in batch], space=opts.space, unit="occurrences")

    _run_batches(
        [phrase_key(p, opts.unit) for p in missing],
        queries,
        call,
        cache,
        f"{'documents' if opts.unit == 'documents' else 'occurrences'} of phrases",
        opts.batch_size,
        progress,
    )
    return {p: cache.values[phrase_key(p, opts.unit)] for p in wanted}


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
    missing = [p for p in wanted if cache.get(pair_key(p[0], p[1], opts.unit)) is None]
    queries = [
        [
            phrase_variants(a, case_variants=opts.case_variants),
            phrase_variants(b, case_variants=opts.case_variants),
        ]
        for a, b in missing
    ]

    def call(batch: list[Any]) -> list[int]:
        if opts.unit == "documents":  # the unit is not passed: any document-count backend will do
            return backend.cooccurrence(batch, space=opts.space)
        return backend.cooccurrence(batch, space=opts.space, unit="occurrences")

    _run_batches(
        [pair_key(a, b, opts.unit) for a, b in missing],
        queries,
        call,
        cache,
        "co-occurrence of pairs" if opts.unit == "documents" else "co-occurrence of pairs in occurrences",
        opts.batch_size,
        progress,
    )
    return {p: cache.values[pair_key(p[0], p[1], opts.unit)] for p in wanted}
