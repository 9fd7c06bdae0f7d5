"""Suffix-array construction over token arrays.

Interim implementation: numpy prefix doubling (correct, O(n log^2 n)); to be replaced by a numba kernel.
"""

from __future__ import annotations

import numpy as np


def build_suffix_array(tokens: np.ndarray, separator: int) -> np.ndarray:
    """Positions of all non-separator tokens, sorted by the suffix starting there (lexicographic order
    of token values; a suffix that is a prefix of another sorts first). Returns uint32 when the array
    has fewer than 2^32 positions, else uint64."""
    n = len(tokens)
    out_dtype = np.uint32 if n < 2**32 else np.uint64
    if n == 0:
        return np.zeros(0, dtype=out_dtype)
    rank = tokens.astype(np.int64)
    k = 1
    while True:
        second = np.full(n, -1, dtype=np.int64)
        second[: n - k] = rank[k:] if k < n else second[:0]
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
    sa = sa[tokens[sa] != separator]
    return sa.astype(out_dtype)
