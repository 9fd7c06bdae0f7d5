"""Numba kernels of the query engine: pure functions over read-only numpy arrays.

Conventions (callers in :mod:`service.engine.index` check every input first; kernels never raise on
user input):

* ``tokens`` — a shard's token array (uint16/uint32); every document is followed by the separator, the
  dtype's maximum, so it sorts after every real token and the array always ends with it.
* ``sa`` — the shard's suffix array (uint32, or uint64 viewed as int64), ``doc_offsets`` — int64 view of
  the document offsets (n_docs + 1 entries, the last one = len(tokens)).
* Ragged batches are flat arrays + offsets: pattern ``i`` is ``flat[offsets[i]:offsets[i + 1]]``.
* Positions and ranks are int64 inside the kernels (mixing uint64 and int64 in numba gives floats).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from taskgram import jit

jit.skip_optional_probes()  # before any kernel loads: the probes cost 0.14 s

# --------------------------------------------------------------------------------------------------
# Suffix-array range search


@njit(cache=True, nogil=True)
def _compare(tokens, pos, pat, ps, pe):
    """-1 if the suffix at ``pos`` sorts before the pattern, 1 if after, 0 if the pattern is its prefix."""
    n = tokens.shape[0]
    for k in range(pe - ps):
        if pos + k >= n:
            return -1
        t = np.int64(tokens[pos + k])
        p = pat[ps + k]
        if t < p:
            return -1
        if t > p:
            return 1
    return 0


@njit(cache=True, nogil=True)
def _sa_range(tokens, sa, pat, ps, pe, a, b, skip):
    """[lo, hi): the suffix-array ranks whose suffix starts with ``pat[ps:pe]``, searched within [a, b),
    a range whose suffixes are known to share the pattern's first ``skip`` tokens."""
    if pe - ps <= skip:
        return a, b
    ps2 = ps + skip
    mid = np.int64(0)
    found = False
    while a < b:
        mid = (a + b) >> 1
        c = _compare(tokens, np.int64(sa[mid]) + skip, pat, ps2, pe)
        if c < 0:
            a = mid + 1
        elif c > 0:
            b = mid
        else:
            found = True
            break
    if not found:
        return a, a
    # lower bound in [a, mid], upper bound in [mid + 1, b]
    lo_a = a
    lo_b = mid
    while lo_a < lo_b:
        m = (lo_a + lo_b) >> 1
        if _compare(tokens, np.int64(sa[m]) + skip, pat, ps2, pe) < 0:
            lo_a = m + 1
        else:
            lo_b = m
    hi_a = mid + 1
    hi_b = b
    while hi_a < hi_b:
        m = (hi_a + hi_b) >> 1
        if _compare(tokens, np.int64(sa[m]) + skip, pat, ps2, pe) <= 0:
            hi_a = m + 1
        else:
            hi_b = m
    return lo_a, hi_a


@njit(cache=True, nogil=True)
def _first_token_starts(tokens, sa, n_values):
    """starts[t] = the first SA rank whose suffix begins with a token >= t, for t in [0, n_values]: the
    range of token t is starts[t]:starts[t + 1]. Each search starts where the previous one ended."""
    starts = np.empty(n_values + 1, dtype=np.int64)
    n = np.int64(sa.shape[0])
    a = np.int64(0)
    for t in range(n_values + 1):
        b = n
        while a < b:
            m = (a + b) >> 1
            if np.int64(tokens[np.int64(sa[m])]) < t:
                a = m + 1
            else:
                b = m
        starts[t] = a
    return starts


@njit(cache=True, nogil=True)
def _sa_ranges(tokens, sa, flat, offsets, order, starts):
    """Suffix-array range of every pattern of a ragged batch: (lo, hi) int64 arrays.

    Patterns are searched in ``order`` (their lexicographic order), so consecutive searches walk mostly
    the same suffix-array and token pages; each search starts in the range of the pattern's first token
    (``starts`` from :func:`_first_token_starts`; every token id is below len(starts) - 1)."""
    n = offsets.shape[0] - 1
    lo = np.empty(n, dtype=np.int64)
    hi = np.empty(n, dtype=np.int64)
    for j in range(n):
        i = order[j]
        ps = offsets[i]
        pe = offsets[i + 1]
        if pe == ps:
            lo[i] = 0
            hi[i] = sa.shape[0]
            continue
        t = flat[ps]
        a, b = _sa_range(tokens, sa, flat, ps, pe, starts[t], starts[t + 1], np.int64(1))
        lo[i] = a
        hi[i] = b
    return lo, hi


# --------------------------------------------------------------------------------------------------
# Positions -> documents


@njit(cache=True, nogil=True)
def _doc_of(doc_offsets, pos):
    """Index of the document holding position ``pos`` (largest i with doc_offsets[i] <= pos)."""
    a = np.int64(0)
    b = np.int64(doc_offsets.shape[0] - 1)
    while b - a > 1:
        m = (a + b) >> 1
        if doc_offsets[m] <= pos:
            a = m
        else:
            b = m
    return a


@njit(cache=True, nogil=True)
def _doc_of_bucketed(doc_offsets, table, shift, pos):
    """``_doc_of`` through a bucket table: ``table[b]`` = the document holding position ``b << shift``, so
    the answer lies in ``[table[b], table[b + 1]]`` — usually one document, no search at all."""
    b = pos >> shift
    a = table[b]
    z = table[b + 1]
    while a < z:
        m = (a + z + 1) >> 1
        if doc_offsets[m] <= pos:
            a = m
        else:
            z = m - 1
    return a


@njit(cache=True, nogil=True)
def _grown(arr, used, cap):
    """A new array of ``cap`` entries holding the first ``used`` entries of ``arr``."""
    out = np.empty(cap, dtype=arr.dtype)
    out[:used] = arr[:used]
    return out


@njit(cache=True, nogil=True)
def _doc_sets(sa, doc_offsets, table, shift, lo, hi, spec_offsets):
    """Sorted distinct local doc ids of every spec; spec j is the union of the SA ranges
    ``lo[v]:hi[v]`` for v in ``spec_offsets[j]:spec_offsets[j + 1]`` (OR of variants, no double count).

    A spec with many occurrences (more than n_docs / 8) marks its documents in a bitset (branch-free, the
    bitset of n_docs bits stays in cache) and reads them back in order; a smaller one marks a stamp array
    of n_docs entries (never cleared: the stamp is the spec number) and sorts what it collected.
    Returns (flat, offsets)."""
    n_docs = doc_offsets.shape[0] - 1
    n_specs = spec_offsets.shape[0] - 1
    n_words = (n_docs + 63) >> 6
    stamp = np.zeros(max(n_docs, 1), dtype=np.int64)
    bits = np.zeros(max(n_words, 1), dtype=np.uint64)
    out_off = np.zeros(n_specs + 1, dtype=np.int64)
    cap = 1024
    out = np.empty(cap, dtype=np.int64)
    used = 0
    for j in range(n_specs):
        tag = j + 1
        start = used
        occ = 0
        for v in range(spec_offsets[j], spec_offsets[j + 1]):
            occ += hi[v] - lo[v]
        if occ * 8 > n_docs:
            for v in range(spec_offsets[j], spec_offsets[j + 1]):
                for r in range(lo[v], hi[v]):
                    d = _doc_of_bucketed(doc_offsets, table, shift, np.int64(sa[r]))
                    bits[d >> 6] |= np.uint64(1) << np.uint64(d & 63)
            size = 0
            for w in range(n_words):
                size += _popcount64(bits[w])
            if used + size > cap:
                cap = max(cap * 2, used + size)
                out = _grown(out, used, cap)
            for w in range(n_words):
                word = bits[w]
                if word == 0:
                    continue
                bits[w] = 0
                base = w << 6
                while word != 0:
                    low = word & (~word + np.uint64(1))  # lowest set bit
                    out[used] = base + _popcount64(low - np.uint64(1))
                    used += 1
                    word ^= low
        else:
            for v in range(spec_offsets[j], spec_offsets[j + 1]):
                for r in range(lo[v], hi[v]):
                    d = _doc_of_bucketed(doc_offsets, table, shift, np.int64(sa[r]))
                    if stamp[d] != tag:
                        stamp[d] = tag
                        if used == cap:
                            cap *= 2
                            out = _grown(out, used, cap)
                        out[used] = d
                        used += 1
            if used - start > 1:
                out[start:used].sort()
        out_off[j + 1] = used
    return out[:used].copy(), out_off


@njit(cache=True, nogil=True)
def _merged_ranges(lo, hi, v0, v1):
    """The union of the SA ranges lo[v]:hi[v], v in [v0, v1), as sorted disjoint (starts, ends).

    Two patterns' ranges are nested (one pattern is a prefix of the other) or disjoint, so a rank in the
    union is one distinct start position of the OR: merging the ranges deduplicates positions exactly."""
    k = v1 - v0
    starts = np.empty(k, dtype=np.int64)
    ends = np.empty(k, dtype=np.int64)
    for i in range(k):
        starts[i] = lo[v0 + i]
        ends[i] = hi[v0 + i]
    order = np.argsort(starts, kind="mergesort")
    out_s = np.empty(k, dtype=np.int64)
    out_e = np.empty(k, dtype=np.int64)
    n = 0
    for i in range(k):
        a = starts[order[i]]
        b = ends[order[i]]
        if b <= a:
            continue
        if n > 0 and a <= out_e[n - 1]:
            if b > out_e[n - 1]:
                out_e[n - 1] = b
        else:
            out_s[n] = a
            out_e[n] = b
            n += 1
    return out_s[:n], out_e[:n]


@njit(cache=True, nogil=True)
def _doc_counts(sa, doc_offsets, table, shift, lo, hi, spec_offsets):
    """Like :func:`_doc_sets`, with the number of occurrences of the spec in each of its documents: the
    distinct start positions of its variants (an OR is a union of positions, see :func:`_merged_ranges`).

    Each spec tallies its occurrences per document in an array of n_docs entries (cleared again by what
    it touched). A spec with many occurrences (more than n_docs / 8) reads its documents back by scanning
    the tallies in order; a smaller one stamps its documents as it meets them and sorts them.
    Returns (docs, counts, offsets): docs sorted per spec, counts aligned with docs."""
    n_docs = doc_offsets.shape[0] - 1
    n_specs = spec_offsets.shape[0] - 1
    stamp = np.zeros(max(n_docs, 1), dtype=np.int64)
    tally = np.zeros(max(n_docs, 1), dtype=np.int64)
    out_off = np.zeros(n_specs + 1, dtype=np.int64)
    cap = 1024
    out = np.empty(cap, dtype=np.int64)
    cnt = np.empty(cap, dtype=np.int64)
    used = 0
    for j in range(n_specs):
        tag = j + 1
        start = used
        r0, r1 = _merged_ranges(lo, hi, spec_offsets[j], spec_offsets[j + 1])
        occ = 0
        for i in range(r0.shape[0]):
            occ += r1[i] - r0[i]
        dense = occ * 8 > n_docs
        if dense:
            for i in range(r0.shape[0]):
                for r in range(r0[i], r1[i]):
                    tally[_doc_of_bucketed(doc_offsets, table, shift, np.int64(sa[r]))] += 1
            for d in range(n_docs):
                if tally[d] != 0:
                    if used == cap:
                        cap *= 2
                        out = _grown(out, used, cap)
                        cnt = _grown(cnt, used, cap)
                    out[used] = d
                    used += 1
        else:
            for i in range(r0.shape[0]):
                for r in range(r0[i], r1[i]):
                    d = _doc_of_bucketed(doc_offsets, table, shift, np.int64(sa[r]))
                    if stamp[d] != tag:
                        stamp[d] = tag
                        if used == cap:
                            cap *= 2
                            out = _grown(out, used, cap)
                            cnt = _grown(cnt, used, cap)
                        out[used] = d
                        used += 1
                    tally[d] += 1
            if used - start > 1:
                out[start:used].sort()
        for k in range(start, used):
            cnt[k] = tally[out[k]]
            tally[out[k]] = 0
        out_off[j + 1] = used
    return out[:used].copy(), cnt[:used].copy(), out_off


@njit(cache=True, nogil=True)
def _scatter_segments(src, src_off, dest_start, out):
    """Copy segment i of ``src`` to ``out[dest_start[i]:]`` (pure apart from filling ``out``)."""
    for i in range(src_off.shape[0] - 1):
        a = src_off[i]
        b = src_off[i + 1]
        d = dest_start[i]
        for k in range(b - a):
            out[d + k] = src[a + k]


# --------------------------------------------------------------------------------------------------
# Intersections of sorted doc-id sets


@njit(cache=True, nogil=True)
def _popcount64(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    x = x + (x >> np.uint64(8))  # shifts and adds, no multiply: no overflow when run as plain Python
    x = x + (x >> np.uint64(16))
    x = x + (x >> np.uint64(32))
    return np.int64(x & np.uint64(0x7F))


@njit(cache=True, nogil=True)
def _gallop(arr, start, end, x):
    """First index in [start, end) with arr[i] >= x (end if none), searching forward from start."""
    if start >= end or arr[start] >= x:
        return start
    step = np.int64(1)
    prev = start
    cur = start + 1
    while cur < end and arr[cur] < x:
        prev = cur
        step *= 2
        cur = start + step
    a = prev + 1
    b = min(cur, end)
    while a < b:
        m = (a + b) >> 1
        if arr[m] < x:
            a = m + 1
        else:
            b = m
    return a


@njit(cache=True, nogil=True)
def _build_bitsets(flat, set_off, rows_of, n_rows, n_words):
    """Dense bitsets (n_rows x n_words uint64) of the sets with rows_of[s] >= 0."""
    bits = np.zeros((max(n_rows, 1), max(n_words, 1)), dtype=np.uint64)
    for s in range(rows_of.shape[0]):
        r = rows_of[s]
        if r < 0:
            continue
        for k in range(set_off[s], set_off[s + 1]):
            d = flat[k]
            bits[r, d >> 6] |= np.uint64(1) << np.uint64(d & 63)
    return bits


@njit(cache=True, nogil=True)
def _intersect_counts(flat, set_off, q_flat, q_off, bits, rows_of):
    """Size of the intersection of the sets ``q_flat[q_off[q]:q_off[q + 1]]`` for every query q.

    The smallest set drives: each of its elements is tested in every other set, by a bit test when that
    set has a dense bitset row, else by galloping search with a forward-only cursor (sets are sorted).
    When every set is dense and the smallest is larger than the bitset, the rows are ANDed and counted."""
    nq = q_off.shape[0] - 1
    out = np.zeros(nq, dtype=np.int64)
    max_k = 0
    for q in range(nq):
        max_k = max(max_k, q_off[q + 1] - q_off[q])
    cursor = np.zeros(max(max_k, 1), dtype=np.int64)
    n_words = bits.shape[1]
    for q in range(nq):
        a = q_off[q]
        b = q_off[q + 1]
        best = a
        best_size = set_off[q_flat[a] + 1] - set_off[q_flat[a]]
        all_dense = True
        for t in range(a, b):
            s = q_flat[t]
            size = set_off[s + 1] - set_off[s]
            if size < best_size:
                best = t
                best_size = size
            if rows_of[s] < 0:
                all_dense = False
        if best_size == 0:
            continue
        if all_dense and best_size > n_words:
            total = 0
            for w in range(n_words):
                word = bits[rows_of[q_flat[a]], w]
                for t in range(a + 1, b):
                    word &= bits[rows_of[q_flat[t]], w]
                total += _popcount64(word)
            out[q] = total
            continue
        for t in range(a, b):
            cursor[t - a] = set_off[q_flat[t]]
        s_best = q_flat[best]
        count = 0
        exhausted = False
        for k in range(set_off[s_best], set_off[s_best + 1]):
            x = flat[k]
            ok = True
            for t in range(a, b):
                if t == best:
                    continue
                s = q_flat[t]
                r = rows_of[s]
                if r >= 0:
                    if (bits[r, x >> 6] >> np.uint64(x & 63)) & np.uint64(1) == 0:
                        ok = False
                        break
                else:
                    end = set_off[s + 1]
                    c = _gallop(flat, cursor[t - a], end, x)
                    cursor[t - a] = c
                    if c == end:
                        ok = False
                        exhausted = True
                        break
                    if flat[c] != x:
                        ok = False
                        break
            if ok:
                count += 1
            if exhausted:
                break
        out[q] = count
    return out


@njit(cache=True, nogil=True)
def _anchored_sums(flat, weights, set_off, q_flat, q_off, bits, rows_of):
    """For every query q: the sum of ``weights`` over the elements of its first set
    (``q_flat[q_off[q]]``) that are in every other set of the query; ``weights`` is aligned with ``flat``.

    As :func:`_intersect_counts`, the smallest set drives (the first set on ties) and each element is
    tested in the other sets by a bit test or galloping search. When the first set does not drive, an
    element found in all the others is then looked up in it (a bit test first when it has a row, then
    galloping search with a forward-only cursor), since the position found gives the weight."""
    nq = q_off.shape[0] - 1
    out = np.zeros(nq, dtype=np.int64)
    max_k = 0
    for q in range(nq):
        max_k = max(max_k, q_off[q + 1] - q_off[q])
    cursor = np.zeros(max(max_k, 1), dtype=np.int64)
    for q in range(nq):
        a = q_off[q]
        b = q_off[q + 1]
        best = a
        best_size = set_off[q_flat[a] + 1] - set_off[q_flat[a]]
        for t in range(a + 1, b):
            s = q_flat[t]
            size = set_off[s + 1] - set_off[s]
            if size < best_size:
                best = t
                best_size = size
        if best_size == 0:
            continue
        for t in range(a, b):
            cursor[t - a] = set_off[q_flat[t]]
        s_best = q_flat[best]
        first = q_flat[a]
        first_row = rows_of[first]
        first_end = set_off[first + 1]
        total = 0
        for k in range(set_off[s_best], set_off[s_best + 1]):
            x = flat[k]
            ok = True
            exhausted = False
            for t in range(a + 1, b):
                if t == best:
                    continue
                s = q_flat[t]
                r = rows_of[s]
                if r >= 0:
                    if (bits[r, x >> 6] >> np.uint64(x & 63)) & np.uint64(1) == 0:
                        ok = False
                        break
                else:
                    end = set_off[s + 1]
                    c = _gallop(flat, cursor[t - a], end, x)
                    cursor[t - a] = c
                    if c == end:
                        ok = False
                        exhausted = True
                        break
                    if flat[c] != x:
                        ok = False
                        break
            if exhausted:
                break
            if not ok:
                continue
            if best == a:
                total += weights[k]
                continue
            if first_row >= 0 and (bits[first_row, x >> 6] >> np.uint64(x & 63)) & np.uint64(1) == 0:
                continue
            c = _gallop(flat, cursor[0], first_end, x)
            cursor[0] = c
            if c == first_end:
                break
            if flat[c] == x:
                total += weights[c]
        out[q] = total
    return out


@njit(cache=True, nogil=True)
def _intersect_members(flat, set_off, members):
    """The sorted intersection of the sets listed in ``members``."""
    best = members[0]
    for s in members:
        if set_off[s + 1] - set_off[s] < set_off[best + 1] - set_off[best]:
            best = s
    out = np.empty(set_off[best + 1] - set_off[best], dtype=np.int64)
    cursor = np.empty(members.shape[0], dtype=np.int64)
    for i in range(members.shape[0]):
        cursor[i] = set_off[members[i]]
    n = 0
    for k in range(set_off[best], set_off[best + 1]):
        x = flat[k]
        ok = True
        for i in range(members.shape[0]):
            s = members[i]
            if s == best:
                continue
            end = set_off[s + 1]
            c = _gallop(flat, cursor[i], end, x)
            cursor[i] = c
            if c == end or flat[c] != x:
                ok = False
                break
        if ok:
            out[n] = x
            n += 1
    return out[:n].copy()


# --------------------------------------------------------------------------------------------------
# Windowed AND (infini-gram CNF semantics, exact, document-aware)


@njit(cache=True, nogil=True)
def _sorted_unique_positions(sa, lo, hi, v0, v1):
    """Sorted distinct start positions of the union of SA ranges lo[v]:hi[v], v in [v0, v1)."""
    total = 0
    for v in range(v0, v1):
        total += hi[v] - lo[v]
    pos = np.empty(total, dtype=np.int64)
    k = 0
    for v in range(v0, v1):
        for r in range(lo[v], hi[v]):
            pos[k] = np.int64(sa[r])
            k += 1
    pos.sort()
    n = 0
    for i in range(total):
        if n == 0 or pos[i] != pos[n - 1]:
            pos[n] = pos[i]
            n += 1
    return pos[:n]


@njit(cache=True, nogil=True)
def _match_at(tokens, q, var_flat, v0, v1):
    """Whether the pattern var_flat[v0:v1] occurs at position q."""
    n = tokens.shape[0]
    if q + (v1 - v0) > n:
        return False
    for k in range(v1 - v0):  # noqa: SIM110 (numba: no generator expressions)
        if np.int64(tokens[q + k]) != var_flat[v0 + k]:
            return False
    return True


@njit(cache=True, nogil=True)
def _windowed_counts(
    tokens,
    sa,
    doc_offsets,
    table,
    shift,
    var_flat,
    var_off,
    lo,
    hi,
    clause_off,
    query_off,
    anchors,
    window,
    force_mode,
):
    """For each query (clauses ``query_off[q]:query_off[q + 1]``, clause c = OR of the variants
    ``clause_off[c]:clause_off[c + 1]``; variant v = pattern ``var_flat[var_off[v]:var_off[v + 1]]`` with SA
    range ``lo[v]:hi[v]``): the number of distinct occurrences of the anchor clause (``anchors[q]``,
    absolute clause index) such that every other clause has an occurrence starting at most ``window``
    tokens before or after it in the same document.

    Each other clause is tested by the cheapest of three exact methods, chosen from the counts:
    (0) its sorted positions, galloping forward with the anchors; (1) scanning the tokens of the anchor's
    window for its variants (rare anchor, frequent partner); (2) a bitmap of its positions (both frequent).
    ``force_mode`` >= 0 imposes one method (tests); -1 chooses."""
    nq = query_off.shape[0] - 1
    out = np.zeros(nq, dtype=np.int64)
    n_pos = tokens.shape[0]
    n_words = (n_pos + 63) >> 6
    empty = np.zeros(0, dtype=np.int64)
    max_other = 1
    for q in range(nq):
        max_other = max(max_other, query_off[q + 1] - query_off[q] - 1)
    # one position bitmap per other clause, allocated once per call (zero pages cost nothing until
    # touched) and cleared after each query by unmarking what was marked: O(occurrences), not O(n)
    bitmap_rows = np.zeros((max_other, n_words), dtype=np.uint64)
    for q in range(nq):
        c0 = query_off[q]
        c1 = query_off[q + 1]
        ac = anchors[q]
        k_anchor = 0
        for v in range(clause_off[ac], clause_off[ac + 1]):
            k_anchor += hi[v] - lo[v]
        if k_anchor == 0:
            continue
        n_other = c1 - c0 - 1
        others = []
        modes = np.zeros(max(n_other, 1), dtype=np.int64)
        clause_of = np.zeros(max(n_other, 1), dtype=np.int64)
        j = 0
        for c in range(c0, c1):
            if c == ac:
                continue
            k_other = 0
            n_var = clause_off[c + 1] - clause_off[c]
            for v in range(clause_off[c], clause_off[c + 1]):
                k_other += hi[v] - lo[v]
            # rough ns, calibrated on the techdocs index
            cost_sorted = k_other * (np.log2(k_other + 2.0) + 2.0) * 6.0 + k_anchor * 8.0
            cost_scan = k_anchor * (2.0 * window + 1.0) * n_var * 5.0
            cost_bitmap = k_other * 6.0 + k_anchor * ((2.0 * window + 1.0) / 64.0 + 4.0) * 2.0
            clause_of[j] = c
            if force_mode >= 0:
                cost_sorted = 0.0 if force_mode == 0 else 1.0
                cost_scan = 0.0 if force_mode == 1 else 1.0
                cost_bitmap = 0.0 if force_mode == 2 else 1.0
            if cost_scan <= cost_sorted and cost_scan <= cost_bitmap:
                modes[j] = 1
                others.append(empty)
            elif cost_bitmap < cost_sorted:
                modes[j] = 2
                for v in range(clause_off[c], clause_off[c + 1]):
                    for r in range(lo[v], hi[v]):
                        pos = np.int64(sa[r])
                        bitmap_rows[j, pos >> 6] |= np.uint64(1) << np.uint64(pos & 63)
                others.append(empty)
            else:
                others.append(_sorted_unique_positions(sa, lo, hi, clause_off[c], clause_off[c + 1]))
            j += 1
        # sorted distinct anchors when a clause gallops forward (mode 0) or the anchor clause is an OR
        # (variants may start at the same position); else the anchor's SA range as is: its positions are
        # already distinct and the other methods do not need them in order
        need_sorted = clause_off[ac + 1] - clause_off[ac] > 1
        for j in range(n_other):
            if modes[j] == 0:
                need_sorted = True
        if need_sorted:
            anchor = _sorted_unique_positions(sa, lo, hi, clause_off[ac], clause_off[ac + 1])
        else:
            v = clause_off[ac]
            anchor = np.empty(hi[v] - lo[v], dtype=np.int64)
            for r in range(lo[v], hi[v]):
                anchor[r - lo[v]] = np.int64(sa[r])
        k_anchor = anchor.shape[0]
        cursor = np.zeros(max(n_other, 1), dtype=np.int64)
        count = 0
        for i in range(k_anchor):
            p = anchor[i]
            d = _doc_of_bucketed(doc_offsets, table, shift, p)
            first = max(p - window, doc_offsets[d])
            last = min(p + window, doc_offsets[d + 1] - 2)  # doc_offsets[d+1]-1 is the separator
            ok = True
            for j in range(n_other):
                mode = modes[j]
                found = False
                if mode == 0:
                    arr = others[j]
                    k = _gallop(arr, cursor[j], arr.shape[0], first)
                    cursor[j] = k
                    found = k < arr.shape[0] and arr[k] <= last
                elif mode == 1:
                    c = clause_of[j]
                    for x in range(first, last + 1):
                        for v in range(clause_off[c], clause_off[c + 1]):
                            if _match_at(tokens, x, var_flat, var_off[v], var_off[v + 1]):
                                found = True
                                break
                        if found:
                            break
                else:
                    w0 = first >> 6
                    w1 = last >> 6
                    for w in range(w0, w1 + 1):
                        word = bitmap_rows[j, w]
                        if w == w0:
                            word &= ~np.uint64(0) << np.uint64(first & 63)
                        if w == w1 and (last & 63) != 63:
                            word &= (np.uint64(1) << np.uint64((last & 63) + 1)) - np.uint64(1)
                        if word != 0:
                            found = True
                            break
                if not found:
                    ok = False
                    break
            if ok:
                count += 1
        out[q] = count
        for j in range(n_other):
            if modes[j] == 2:
                c = clause_of[j]
                for v in range(clause_off[c], clause_off[c + 1]):
                    for r in range(lo[v], hi[v]):
                        bitmap_rows[j, np.int64(sa[r]) >> 6] = 0
    return out


# --------------------------------------------------------------------------------------------------
# Next-token distributions


@njit(cache=True, nogil=True)
def _next_token_run_end(tokens, sa, i, hi, m, t):
    """End (exclusive) of the run of ranks from ``i`` in [i, hi) whose token at offset m is ``t``: the
    token at offset m is non-decreasing along an SA range of a length-m prefix, so gallop to the first
    rank whose token is > t, then binary-search inside the last step."""
    step = np.int64(1)
    prev = i
    cur = i + 1
    while cur < hi and np.int64(tokens[np.int64(sa[cur]) + m]) <= t:
        prev = cur
        step *= 2
        cur = i + step
    a = prev + 1
    b = min(cur, hi)
    while a < b:
        mid = (a + b) >> 1
        if np.int64(tokens[np.int64(sa[mid]) + m]) <= t:
            a = mid + 1
        else:
            b = mid
    return a


@njit(cache=True, nogil=True)
def _next_tokens(tokens, sa, lo, hi, m, sep):
    """Distinct next tokens after a prompt of length m with SA range [lo, hi) and their counts.

    The suffixes of the range share their first m tokens, so the token at offset m is non-decreasing
    along the range (the separator, the largest value, comes last). Each distinct token's run is found
    by galloping + binary search: O(distinct * log(range)) probes instead of a scan; exact.
    Returns (token ids, counts, number of occurrences followed by the separator)."""
    cap = 64
    ids = np.empty(cap, dtype=np.int64)
    cnt = np.empty(cap, dtype=np.int64)
    n = 0
    ends = np.int64(0)
    i = lo
    while i < hi:
        t = np.int64(tokens[np.int64(sa[i]) + m])
        if t == sep:
            ends = hi - i
            break
        a = _next_token_run_end(tokens, sa, i, hi, m, t)
        if n == cap:
            cap *= 2
            ids2 = np.empty(cap, dtype=np.int64)
            cnt2 = np.empty(cap, dtype=np.int64)
            ids2[:n] = ids[:n]
            cnt2[:n] = cnt[:n]
            ids = ids2
            cnt = cnt2
        ids[n] = t
        cnt[n] = a - i
        n += 1
        i = a
    return ids[:n].copy(), cnt[:n].copy(), ends


# --------------------------------------------------------------------------------------------------
# Matches inside one document (for snippets)


@njit(cache=True, nogil=True)
def _find_in(doc, pat):
    """Start positions of ``pat`` inside ``doc`` (naive scan; used on single documents only)."""
    m = pat.shape[0]
    n = doc.shape[0]
    out = np.empty(max(n - m + 1, 0), dtype=np.int64)
    k = 0
    for i in range(n - m + 1):
        ok = True
        for j in range(m):
            if np.int64(doc[i + j]) != pat[j]:
                ok = False
                break
        if ok:
            out[k] = i
            k += 1
    return out[:k].copy()


# --------------------------------------------------------------------------------------------------
# Word boundaries (see service.engine.words for the rule and the tables)


@njit(cache=True, nogil=True)
def _word_ranges(tokens, sa, flat, offsets, lo, hi, starts_word, ends_nonword, sep):
    """For each pattern (``flat[offsets[i]:offsets[i + 1]]``, SA range lo[i]:hi[i]): the sub-ranges of its
    range whose occurrences END at a word boundary. The whole range when the pattern's last token ends with
    a non-word character; else the runs of the distinct next tokens (non-decreasing along the range, the
    separator last) that begin a word or are the separator, found by galloping + binary search per
    distinct token as in :func:`_next_tokens`; adjacent kept runs are merged.
    Returns (sub_lo, sub_hi, sub_off): pattern i's sub-ranges are sub_off[i]:sub_off[i + 1]."""
    n = offsets.shape[0] - 1
    cap = max(n, 16)
    sub_lo = np.empty(cap, dtype=np.int64)
    sub_hi = np.empty(cap, dtype=np.int64)
    sub_off = np.zeros(n + 1, dtype=np.int64)
    used = 0
    for p in range(n):
        a0 = lo[p]
        b0 = hi[p]
        m = offsets[p + 1] - offsets[p]
        if b0 > a0:
            if ends_nonword[flat[offsets[p + 1] - 1]]:
                if used == cap:
                    cap *= 2
                    sub_lo = _grown(sub_lo, used, cap)
                    sub_hi = _grown(sub_hi, used, cap)
                sub_lo[used] = a0
                sub_hi[used] = b0
                used += 1
            else:
                i = a0
                open_run = False
                while i < b0:
                    t = np.int64(tokens[np.int64(sa[i]) + m])
                    a = b0 if t == sep else _next_token_run_end(tokens, sa, i, b0, m, t)
                    keep = t == sep or starts_word[t]
                    if keep:
                        if open_run:
                            sub_hi[used - 1] = a
                        else:
                            if used == cap:
                                cap *= 2
                                sub_lo = _grown(sub_lo, used, cap)
                                sub_hi = _grown(sub_hi, used, cap)
                            sub_lo[used] = i
                            sub_hi[used] = a
                            used += 1
                            open_run = True
                    else:
                        open_run = False
                    i = a
        sub_off[p + 1] = used
    return sub_lo[:used].copy(), sub_hi[:used].copy(), sub_off


@njit(cache=True, nogil=True)
def _word_start_ok(tokens, pos, starts_word, ends_nonword, sep):
    """Whether an occurrence at ``pos`` starts at a word boundary: its first token begins a word, or it
    starts its document, or the token before it ends with a non-word character."""
    if starts_word[np.int64(tokens[pos])]:
        return True
    if pos == 0:
        return True
    prev = np.int64(tokens[pos - 1])
    return prev == sep or ends_nonword[prev]


@njit(cache=True, nogil=True)
def _word_counts(tokens, sa, sub_lo, sub_hi, sub_off, scan, starts_word, ends_nonword, sep):
    """Word-bounded occurrences of each pattern: its sub-ranges from :func:`_word_ranges`, whose sizes
    are summed; when ``scan[i]`` (the pattern's first token does not begin a word) each occurrence is
    tested with :func:`_word_start_ok` instead (one read of the preceding token per occurrence)."""
    n = sub_off.shape[0] - 1
    out = np.zeros(n, dtype=np.int64)
    for i in range(n):
        total = np.int64(0)
        for k in range(sub_off[i], sub_off[i + 1]):
            if not scan[i]:
                total += sub_hi[k] - sub_lo[k]
            else:
                for r in range(sub_lo[k], sub_hi[k]):
                    if _word_start_ok(tokens, np.int64(sa[r]), starts_word, ends_nonword, sep):
                        total += 1
        out[i] = total
    return out


@njit(cache=True, nogil=True)
def _word_positions(tokens, sa, sub_lo, sub_hi, spec_off, scan, starts_word, ends_nonword, sep):
    """For each spec j with ``scan[j]``: the distinct start positions of its word-bounded occurrences, the
    union of its sub-ranges sub_lo[v]:sub_hi[v] for v in spec_off[j]:spec_off[j + 1] (sub-ranges of SA
    ranges are nested or disjoint: merged by :func:`_merged_ranges`, each position is met once) that pass
    :func:`_word_start_ok`. Specs without ``scan`` get no positions. Returns (positions, offsets)."""
    n = spec_off.shape[0] - 1
    out_off = np.zeros(n + 1, dtype=np.int64)
    cap = 1024
    out = np.empty(cap, dtype=np.int64)
    used = 0
    for j in range(n):
        if scan[j]:
            r0, r1 = _merged_ranges(sub_lo, sub_hi, spec_off[j], spec_off[j + 1])
            for i in range(r0.shape[0]):
                for r in range(r0[i], r1[i]):
                    pos = np.int64(sa[r])
                    if _word_start_ok(tokens, pos, starts_word, ends_nonword, sep):
                        if used == cap:
                            cap *= 2
                            out = _grown(out, used, cap)
                        out[used] = pos
                        used += 1
        out_off[j + 1] = used
    return out[:used].copy(), out_off
