"""Test doubles for the evaluation tests (no tests here): a brute-force counting backend over a list of
documents, a deterministic embedder and a scorer. Test-only code."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np


def _variants(spec: Any) -> list[str]:
    return [spec] if isinstance(spec, str) else list(spec)


class BruteForceBackend:
    """Counts by scanning every document: a phrase occurs where one of its variants occurs as a word
    sequence (the variant's words, separated by whitespace), at word boundaries (``boundary="word"``) or
    also where it ends inside a longer word (``"token"``, a stand-in for a BPE match that stops
    mid-word). Records every call and the boundary it was asked for."""

    def __init__(self, docs: Sequence[str]) -> None:
        self.docs = list(docs)
        self.calls: list[tuple[str, int]] = []
        self.fail_on: str | None = None
        self.answer: Any = None  # a malformed answer to return instead of counts
        self.boundaries: set[str] = set()
        self._end = r"(?!\w)"

    def _has(self, doc: str, spec: Any) -> bool:
        return any(re.search(r"(?<!\w)" + re.escape(v.strip()) + self._end, doc) for v in _variants(spec))

    def _starts(self, doc: str, spec: Any) -> set[int]:
        """Distinct start offsets of the spec's variants in ``doc`` (overlapping matches included)."""
        return {
            m.start()
            for v in _variants(spec)
            for m in re.finditer(r"(?=(?<!\w)" + re.escape(v.strip()) + self._end + ")", doc)
        }

    def _call(self, kind: str, n: int, space: str, boundary: str | None = None) -> None:
        self.calls.append((kind, n))
        if space not in ("auto", "exact", "both"):
            raise ValueError(f"bad space {space!r}")
        if boundary is None:  # not a count query
            return
        if boundary not in ("token", "word"):
            raise ValueError(f"bad boundary {boundary!r}")
        self.boundaries.add(boundary)
        self._end = r"(?!\w)" if boundary == "word" else ""
        if self.fail_on == kind:
            raise ConnectionError("server went away")

    def doc_freq(self, phrases: Sequence[Any], *, space: str = "auto", boundary: str = "token") -> list[int]:
        self._call("doc_freq", len(phrases), space, boundary)
        if self.answer is not None:
            return self.answer
        return [sum(self._has(d, p) for d in self.docs) for p in phrases]

    def cooccurrence(
        self,
        queries: Sequence[Sequence[Any]],
        *,
        space: str = "auto",
        unit: str = "documents",
        boundary: str = "token",
    ) -> list[int]:
        kind = "cooccurrence" if unit == "documents" else "cooccurrence-occurrences"
        self._call(kind, len(queries), space, boundary)
        if self.answer is not None:
            return self.answer
        if unit == "occurrences":  # occurrences of the first phrase in documents holding all the others
            return [
                sum(len(self._starts(d, q[0])) for d in self.docs if all(self._has(d, p) for p in q[1:]))
                for q in queries
            ]
        if unit != "documents":
            raise ValueError(f"bad unit {unit!r}")
        return [sum(all(self._has(d, p) for p in q) for d in self.docs) for q in queries]

    def infgram_prob(self, items: Sequence[tuple[str, str]], *, space: str = "auto") -> list[dict]:
        """A character-level stand-in: each word of the continuation has probability 1/(1+len(word)),
        0 for words absent from every document. Records every continuation."""
        self._call("infgram_prob", len(items), space)
        self.continuations = getattr(self, "continuations", []) + [c for _, c in items]
        out = []
        for _, cont in items:
            toks = []
            for w in cont.split():
                seen = any(w in d for d in self.docs)
                toks.append({"prob": 1.0 / (1 + len(w)) if seen else 0.0})
            out.append({"tokens": toks})
        return out


class HashEmbedder:
    """Bag-of-character-trigram vectors: similar strings get high cosine; deterministic; counts calls."""

    name = "hash-trigrams"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.seen.extend(texts)
        out = np.zeros((len(texts), 256), dtype=np.float32)
        for i, t in enumerate(texts):
            s = f"  {t} "
            for j in range(len(s) - 2):
                out[i, hash(s[j : j + 3]) % 256] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


class LengthScorer:
    """Scores a span group as -(number of characters) * 0.1: deterministic, no model; counts jobs."""

    name = "length-scorer"

    def __init__(self, fail: bool = False) -> None:
        self.jobs = 0
        self.fail = fail

    def score(self, jobs: Sequence[Any], progress: Any = None) -> list[list[Any]]:
        from clients.eval.llm import GroupScore, ModelError

        if self.fail:
            raise ModelError("model length-scorer: forward pass failed: out of memory")
        self.jobs += len(jobs)
        out = []
        for job in jobs:
            row: list[Any] = []
            for spans in job.groups:
                chars = sum(e - s for s, e in spans)
                row.append(GroupScore(-0.1 * chars - math.log(2), max(1, chars // 4)) if spans else None)
            out.append(row)
        if progress is not None:
            progress(len(jobs))
        return out
