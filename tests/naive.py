"""Slow, obviously correct oracles for the fast kernels.

Import as ``from tests.naive import ...`` under ``python -m pytest`` (the repository root is on sys.path);
plain ``pytest`` puts ``tests/`` on sys.path instead, where ``from naive import ...`` works.
"""

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


def prefix_doubling_suffix_array(tokens: np.ndarray, separator: int) -> np.ndarray:
    """Same result as :func:`naive_suffix_array` by numpy prefix doubling (O(n log^2 n)): an
    independent oracle fast enough for inputs of a few hundred thousand tokens."""
    n = len(tokens)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rank = np.asarray(tokens).astype(np.int64)
    k = 1
    while True:
        second = np.full(n, -1, dtype=np.int64)
        if k < n:
            second[: n - k] = rank[k:]
        sa = np.lexsort((second, rank))
        r, s = rank[sa], second[sa]
        new = np.empty(n, dtype=np.int64)
        new[0] = 0
        new[1:] = np.cumsum((r[1:] != r[:-1]) | (s[1:] != s[:-1]))
        rank = np.empty(n, dtype=np.int64)
        rank[sa] = new
        if new[-1] == n - 1 or k >= n:
            break
        k *= 2
    return sa[np.asarray(tokens)[sa] != separator].astype(np.int64)


def suffix_array_errors(tokens: np.ndarray, separator: int, sa: np.ndarray, limit: int = 5) -> list[str]:
    """Check ``sa`` directly: a permutation of the non-separator positions whose suffixes are in
    strictly increasing order (each adjacent pair compared with numpy). Returns up to ``limit``
    problems (empty when correct). Cost O(n + sum of adjacent common prefix lengths)."""
    values = np.asarray(tokens)
    n = len(values)
    positions = np.asarray(sa).astype(np.int64)
    expected = np.flatnonzero(values != separator)
    if len(positions) != len(expected) or not np.array_equal(np.sort(positions), expected):
        return ["not a permutation of the non-separator positions"]
    problems: list[str] = []
    for r in range(len(positions) - 1):
        a, b = int(positions[r]), int(positions[r + 1])
        length = min(n - a, n - b)
        ok = n - a < n - b  # if one is a prefix of the other, the shorter suffix sorts first
        start, window = 0, 16
        while start < length:
            stop = min(length, start + window)
            diff = np.flatnonzero(values[a + start : a + stop] != values[b + start : b + stop])
            if len(diff):
                ok = bool(values[a + start + diff[0]] < values[b + start + diff[0]])
                break
            start, window = stop, window * 2
        if not ok:
            problems.append(f"suffixes at ranks {r} and {r + 1} (positions {a}, {b}) are out of order")
            if len(problems) >= limit:
                break
    return problems


def naive_positions(docs: Sequence[Sequence[int]], variants: Sequence[Sequence[int]]) -> set[tuple[int, int]]:
    """(document, start) of every occurrence of any of ``variants`` in ``docs`` (a list of documents of
    token ids): an OR of variants is the union of their start positions."""
    found = set()
    for d, doc in enumerate(docs):
        values = [int(v) for v in doc]
        for v in variants:
            q = [int(t) for t in v]
            found.update((d, i) for i in range(len(values) - len(q) + 1) if values[i : i + len(q)] == q)
    return found


def naive_cooccurrence(
    docs: Sequence[Sequence[int]], clauses: Sequence[Sequence[Sequence[int]]], unit: str = "documents"
) -> int:
    """Co-occurrence of ``clauses`` (each a list of variants) by brute force: ``"documents"`` = documents
    containing every clause; ``"occurrences"`` = occurrences of the first clause (distinct start
    positions of its variants) in documents containing every other clause."""
    doc_sets = [{d for d, _ in naive_positions(docs, c)} for c in clauses]
    both = set.intersection(*doc_sets)
    if unit == "documents":
        return len(both)
    if unit != "occurrences":
        raise ValueError(f"unknown unit {unit!r}")
    return sum(1 for d, _ in naive_positions(docs, clauses[0]) if d in both)


def _utf8_chars(data: bytes) -> list[tuple[int, int]]:
    """(start, end) byte spans of the characters of ``data``, read forward; a byte that does not start
    a valid UTF-8 sequence is a character of its own."""
    spans = []
    i = 0
    while i < len(data):
        b = data[i]
        n = (
            1
            if b < 0x80
            else 2
            if 0xC2 <= b <= 0xDF
            else 3
            if 0xE0 <= b <= 0xEF
            else 4
            if 0xF0 <= b <= 0xF4
            else 0
        )
        end = i + n
        if n > 1 and end <= len(data):
            try:
                data[i:end].decode("utf-8")
            except UnicodeDecodeError:
                n = 0
        if n == 0 or end > len(data):
            end = i + 1
        spans.append((i, end))
        i = end
    return spans


def naive_word_positions(
    docs: Sequence[Sequence[int]], token_bytes: Sequence[bytes], variants: Sequence[Sequence[int]]
) -> set[tuple[int, int]]:
    """(document, start) of every word-bounded occurrence of any of ``variants``, found on the decoded
    bytes of each document: the character before the match and its first character are not both word
    characters (regex ``\\w``), nor are its last character and the one after it; a document's edges are
    boundaries. A character whose bytes span two tokens, or an invalid byte, counts as a word character."""
    import re

    found: set[tuple[int, int]] = set()
    for d, doc in enumerate(docs):
        data = b"".join(token_bytes[t] for t in doc)
        starts = [0]
        for t in doc:
            starts.append(starts[-1] + len(token_bytes[t]))
        token_at = [k for k, t in enumerate(doc) for _ in range(len(token_bytes[t]))]
        is_word = [False] * len(data)  # per byte: the class of the character holding it
        for a, b in _utf8_chars(data):
            spans_tokens = token_at[a] != token_at[b - 1]
            try:
                ch = data[a:b].decode("utf-8")
                word = spans_tokens or re.fullmatch(r"\w", ch) is not None
            except UnicodeDecodeError:
                word = True
            for k in range(a, b):
                is_word[k] = word
        for _, i in sorted(naive_positions([doc], variants)):
            for v in variants:
                m = len(v)
                if [int(x) for x in doc[i : i + m]] != [int(x) for x in v]:
                    continue
                bs, be = starts[i], starts[i + m]
                ok_start = bs == 0 or not (is_word[bs - 1] and is_word[bs])
                ok_end = be == len(data) or not (is_word[be - 1] and is_word[be])
                if ok_start and ok_end:
                    found.add((d, i))
    return found
