"""Kernels that check a shard's arrays: document offsets, separators and suffix order.

Full check (:func:`check_suffix_array`), linear time whatever the repeats: the suffix array must be a
permutation of the non-separator positions, and every adjacent pair ``(p, q) = (sa[k], sa[k+1])`` must
satisfy ``tokens[p] < tokens[q]``, or ``tokens[p] == tokens[q]`` and ``rank(p + 1) < rank(q + 1)``, where
``rank`` is each suffix's place in the full suffix order (Burkhardt & Kärkkäinen's check). Non-separator
positions take their rank from the suffix array itself. Suffixes starting at a separator (absent from the
array) come after all others, since the separator is the largest value; among themselves a suffix of
``a`` consecutive separators followed by ``X`` sorts by ``(a, rank(X))`` (fewer separators first, the end
of the array smallest), which :func:`check_suffix_array` computes per document.

Sample check (:func:`check_suffix_pairs`): compares the suffixes of chosen adjacent pairs token by token.

Kernels are private and take validated arrays (read-only memmaps are fine); wrappers validate.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from indexer.errors import IndexerError
from taskgram import jit

jit.skip_optional_probes()  # before any kernel loads: the probes cost 0.14 s

__all__ = ["check_doc_offsets", "check_suffix_array", "check_suffix_pairs", "ShardCheckError"]


class ShardCheckError(IndexerError):
    """A shard's arrays are inconsistent; the message says where."""


@njit(cache=True, nogil=True)
def _check_offsets(tokens, offsets, separator, vocab_size):
    """(code, index): 0 ok; 1 offsets not increasing at index; 2 no separator ending document index;
    3 separator inside a document at position index; 4 token id >= vocab_size at position index."""
    n_docs = offsets.shape[0] - 1
    for d in range(n_docs):
        lo = offsets[d]
        hi = offsets[d + 1]
        if hi <= lo:
            return 1, d
        if tokens[hi - 1] != separator:
            return 2, d
        for p in range(lo, hi - 1):
            t = tokens[p]
            if t == separator:
                return 3, p
            if t >= vocab_size:
                return 4, p
    return 0, 0


@njit(cache=True, nogil=True)
def _rank_non_separators(tokens, sa, separator, rank):
    """Fill rank[sa[k]] = k; (code, k): 0 ok; 1 position out of range; 2 separator position; 3 repeated."""
    n = tokens.shape[0]
    for k in range(sa.shape[0]):
        p = sa[k]
        if p >= n:
            return 1, k
        if tokens[p] == separator:
            return 2, k
        if rank[p] != -1:
            return 3, k
        rank[p] = k
    return 0, 0


@njit(cache=True, nogil=True)
def _separator_keys(tokens, offsets, rank, run, after):
    """For the separator ending each document: run = consecutive separators from there, after = rank of
    the suffix that follows the run (-1 for the end of the array)."""
    n = tokens.shape[0]
    n_docs = offsets.shape[0] - 1
    for d in range(n_docs - 1, -1, -1):
        s = offsets[d + 1] - 1
        if d + 1 < n_docs and offsets[d + 2] - offsets[d + 1] == 1:
            run[d] = run[d + 1] + 1  # the next document is empty: its separator follows directly
            after[d] = after[d + 1]
        else:
            run[d] = 1
            after[d] = rank[s + 1] if s + 1 < n else -1


@njit(cache=True, nogil=True)
def _check_adjacent(tokens, sa, rank):
    """Index k of the first adjacent pair out of order, or -1."""
    n = tokens.shape[0]
    for k in range(sa.shape[0] - 1):
        p = sa[k]
        q = sa[k + 1]
        tp = tokens[p]
        tq = tokens[q]
        if tp < tq:
            continue
        if tp > tq:
            return k
        rp = rank[p + 1] if p + 1 < n else -1
        rq = rank[q + 1] if q + 1 < n else -1
        if rp >= rq:
            return k
    return -1


@njit(cache=True, nogil=True)
def _compare_pairs(tokens, sa, ks):
    """For each k in ks, whether suffix sa[k] < suffix sa[k+1] (token by token); index into ks of the
    first failure, or -1."""
    n = tokens.shape[0]
    for j in range(ks.shape[0]):
        k = ks[j]
        p = sa[k]
        q = sa[k + 1]
        if p >= n or q >= n or p == q:
            return j
        ok = False
        while True:
            if q >= n:  # suffix q ended first: it is the smaller one
                break
            if p >= n:
                ok = True
                break
            if tokens[p] != tokens[q]:
                ok = tokens[p] < tokens[q]
                break
            p += 1
            q += 1
        if not ok:
            return j
    return -1


# --------------------------------------------------------------------------------------------------
# Wrappers


def _as_1d(name: str, arr: np.ndarray, kinds: str = "u") -> np.ndarray:
    if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype.kind not in kinds:
        raise TypeError(f"{name} must be a 1-D unsigned integer array")
    return arr


def check_doc_offsets(tokens: np.ndarray, doc_offsets: np.ndarray, separator: int, vocab_size: int) -> None:
    """Documents tile the token array, each ends with the one separator it contains, and every other id is
    below ``vocab_size``. Raises ShardCheckError."""
    _as_1d("tokens", tokens)
    _as_1d("doc_offsets", doc_offsets)
    n = len(tokens)
    if len(doc_offsets) == 0:
        raise ShardCheckError("doc_offsets is empty (it holds n_docs + 1 entries)")
    if int(doc_offsets[0]) != 0 or int(doc_offsets[-1]) != n:
        raise ShardCheckError(f"doc_offsets spans {int(doc_offsets[0])}..{int(doc_offsets[-1])}, not 0..{n}")
    code, where = _check_offsets(tokens, doc_offsets, separator, vocab_size)
    if code == 1:
        raise ShardCheckError(f"doc_offsets do not increase at document {where}")
    if code == 2:
        raise ShardCheckError(f"document {where} is not followed by the separator")
    if code == 3:
        raise ShardCheckError(f"separator inside a document at token position {where}")
    if code == 4:
        raise ShardCheckError(f"token id {int(tokens[where])} at position {where} is not below {vocab_size}")


def check_suffix_array(
    tokens: np.ndarray, doc_offsets: np.ndarray, suffix_array: np.ndarray, separator: int
) -> None:
    """Full linear-time check that ``suffix_array`` is the sorted suffix order of the non-separator
    positions (call :func:`check_doc_offsets` first). Uses 4 bytes per position (8 past 2^31)."""
    _as_1d("tokens", tokens)
    _as_1d("doc_offsets", doc_offsets)
    _as_1d("suffix_array", suffix_array)
    n = len(tokens)
    n_docs = len(doc_offsets) - 1
    if len(suffix_array) != n - n_docs:
        raise ShardCheckError(f"suffix array has {len(suffix_array)} entries, expected {n - n_docs}")
    rank_dtype = np.int32 if n < 2**31 - 1 else np.int64
    rank = np.full(n, -1, dtype=rank_dtype)
    code, k = _rank_non_separators(tokens, suffix_array, separator, rank)
    if code:
        what = {1: "is out of range", 2: "is a separator position", 3: "appears twice"}[code]
        raise ShardCheckError(f"suffix_array[{k}] = {int(suffix_array[k])} {what}")
    run = np.empty(n_docs, dtype=np.int64)
    after = np.empty(n_docs, dtype=np.int64)
    _separator_keys(tokens, doc_offsets, rank, run, after)
    order = np.lexsort((after, run))
    sep_positions = doc_offsets[1:].astype(np.int64) - 1
    rank[sep_positions[order]] = np.arange(len(suffix_array), n, dtype=rank_dtype)
    del run, after, order, sep_positions
    k = _check_adjacent(tokens, suffix_array, rank)
    if k >= 0:
        raise ShardCheckError(
            f"suffixes out of order at suffix_array[{k}] = {int(suffix_array[k])} and "
            f"suffix_array[{k + 1}] = {int(suffix_array[k + 1])}"
        )


def check_suffix_pairs(tokens: np.ndarray, suffix_array: np.ndarray, ks: np.ndarray) -> None:
    """Check the adjacent pairs ``(sa[k], sa[k+1])`` for ``k`` in ``ks`` by direct comparison."""
    _as_1d("tokens", tokens)
    _as_1d("suffix_array", suffix_array)
    ks = np.asarray(ks, dtype=np.int64)
    if len(ks) and (ks.min() < 0 or ks.max() >= len(suffix_array) - 1):
        raise ValueError("pair indices must lie in [0, len(suffix_array) - 1)")
    j = _compare_pairs(tokens, suffix_array, ks)
    if j >= 0:
        k = int(ks[j])
        raise ShardCheckError(
            f"suffixes out of order at suffix_array[{k}] = {int(suffix_array[k])} and "
            f"suffix_array[{k + 1}] = {int(suffix_array[k + 1])}"
        )
