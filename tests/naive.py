"""Slow, obviously correct oracles for the fast kernels (import as ``from tests.naive import ...``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def naive_suffix_array(tokens: Sequence[int] | np.ndarray, separator: int) -> np.ndarray:
    """Positions of the non-separator tokens sorted by the suffix starting there (plain lexicographic
    order of the values; a proper prefix sorts first)."""
    values = [int(v) for v in tokens]
    order = sorted(range(len(values)), key=lambda i: values[i:])
    return np.array([i for i in order if values[i] != separator], dtype=np.int64)


def naive_count(tokens: Sequence[int] | np.ndarray, query: Sequence[int]) -> int:
    """Occurrences of ``query`` (a non-empty id sequence) in ``tokens``, by sliding window."""
    values = [int(v) for v in tokens]
    q = [int(v) for v in query]
    if not q:
        raise ValueError("query must not be empty")
    return sum(values[i : i + len(q)] == q for i in range(len(values) - len(q) + 1))


def naive_documents_containing(
    tokens: Sequence[int] | np.ndarray, separator: int, query: Sequence[int]
) -> list[int]:
    """Indices of the documents (separated by ``separator``) that contain ``query``."""
    values = [int(v) for v in tokens]
    docs: list[list[int]] = [[]]
    for v in values:
        if v == separator:
            docs.append([])
        else:
            docs[-1].append(v)
    if values and values[-1] == separator:
        docs.pop()
    return [d for d, doc in enumerate(docs) if naive_count(doc, query) > 0]
