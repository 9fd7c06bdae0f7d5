"""Suffix-array construction over token arrays: SA-IS (Nong, Zhang & Chan 2009) as numba kernels.

The public entry point is :func:`build_suffix_array`; :func:`place_documents` fills a shard's token
buffer before the sort (here, with the other build kernels, so that numba is imported only by the code
that sorts). It sorts every suffix of a token array by plain
lexicographic order of the raw token values (a suffix that is a prefix of another sorts first, i.e. the
end of the array acts as a sentinel smaller than every token) and returns the positions of the
non-separator tokens. Separators are the largest value, so their suffixes form the last bucket and are
dropped by truncation.

Design (linear time, immune to long repeats; about 8-9 bytes of RAM per u16 token at peak, input
included):

* The alphabet is the token values themselves for uint16 input (65,536 buckets). uint32 input is first
  mapped into an int32 copy: ids below ``_DIRECT_ALPHABET_LIMIT`` keep their value (the separator
  becomes the largest id + 1), larger ones are replaced by their rank among the distinct values.
* Work arrays are int32 up to 2^31 - 1 positions, int64 beyond. The suffix array is the only large work
  array: as in Nong's SA-IS and Yuta Mori's sais-lite, the reduced problem (one name per LMS substring)
  is written into the upper part of the suffix array and solved recursively in its lower part, and
  suffix types are never stored: the induced-sorting passes carry the type of the predecessor in the
  sign bit of each entry. One bit per position marks LMS positions.
* Each level of the recursion is a few kernels called from a small Python driver, so there is no numba
  recursion.
* Memory: a :class:`Workspace` passed to :func:`build_suffix_array` keeps the large work arrays (the
  suffix array, each level's buckets and flags) for the next sort. A build worker sorts shard after
  shard, and fresh memory is costly at this size: every page is faulted in and zeroed again. The
  workspace's arrays are in 4 KiB pages (``indexer.memory``), where numpy would ask for huge pages.
* Threads: bucket counting of the original text, gathering the LMS positions after the first induced
  sort, the LMS-substring lengths, naming the LMS substrings (compare each with its neighbour, then
  scatter the names), packing the reduced string and turning the reduced suffix array back into LMS
  positions split over all numba threads for inputs of ``_PARALLEL_MIN`` items or more; each is a
  handful of parallel regions per level. Finding and placing the LMS positions stays sequential: a
  parallel version (mark and count by slice, then place) took 0.045 s for the 0.048 s of the sequential
  scan on a 14 M-token shard, as marking alone costs most of the scan. Induced sorting is sequential by
  nature; its random reads of the text are prefetched ``_PREFETCH_DISTANCE`` entries ahead instead.
  A block-parallel induced sort (reads of each block of entries done by all threads, placement
  sequential) was measured slower on the 2-core target, even with one thread: the text and suffix
  array of a 14 M-token shard fit that machine's 300 MB last-level cache, so the reads are not the
  bottleneck, and a parallel region per block costs a thread barrier, expensive on a loaded machine.
  A pipelined one (one thread reads entries and the text, the other places the induced entries, a ring
  buffer between them) took 0.26 s for the 0.15 s of the sequential first stage of that shard: every
  cache line of the suffix array then moves between the two cores. Two-stage prefetching (the text,
  then the bucket of the symbol read) was slower too.

Kernels are private, pure functions of numpy arrays and never see unchecked input; the wrapper validates.
"""

from __future__ import annotations

import mmap

import numba
import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from indexer import memory
from indexer.format import suffix_dtype_for_length
from taskgram import jit

jit.skip_optional_probes()  # before any kernel loads: the probes cost 0.14 s

__all__ = ["Workspace", "build_suffix_array", "place_documents", "suffix_array_dtype"]

# Above this many distinct values per position a uint32 alphabet is rank-compacted with np.unique
# instead of used directly (bucket arrays are 2 * alphabet words).
_DIRECT_ALPHABET_LIMIT = 1 << 22
_PARALLEL_MIN = 1 << 20
# Inputs up to this many positions use int32 work arrays (the sign bit marks entries); longer ones int64.
_INT32_MAX_POSITIONS = 2**31 - 1


def suffix_array_dtype(n_positions: int) -> np.dtype:
    """The dtype of :func:`build_suffix_array`'s result for an input of ``n_positions`` tokens: the
    on-disk rule of :func:`indexer.format.suffix_dtype_for_length`."""
    return np.dtype(suffix_dtype_for_length(n_positions))


# How many entries ahead the induced-sorting scans prefetch the text they will read (random access).
_PREFETCH_DISTANCE = 32


# --------------------------------------------------------------------------------------------------
# Kernels


def _prefetch_python(arr, index):
    """Plain-Python stand-in for :func:`_prefetch` (used when the JIT is disabled)."""
    return None


def _prefetch_intrinsic_name() -> str:
    """``llvm.prefetch`` is overloaded on the pointer type: ``p0`` with opaque pointers (LLVM 17 and
    later have no other kind), ``p0i8`` with the typed pointers of older LLVM versions."""
    from llvmlite import binding

    return "llvm.prefetch.p0" if binding.llvm_version_info[0] >= 17 else "llvm.prefetch.p0i8"


@intrinsic
def _prefetch_intrinsic(typingctx, arr, index):
    """A read prefetch hint (``llvm.prefetch``) for ``arr[index]``; no effect on results."""
    from llvmlite import ir

    if not isinstance(arr, types.Array) or not isinstance(index, types.Integer):
        return None
    sig = types.void(arr, index)

    def codegen(context, builder, signature, args):
        arr_type = signature.args[0]
        array = context.make_array(arr_type)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, arr_type, array, [args[1]], wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, _prefetch_intrinsic_name())
        # read, high temporal locality, data cache
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


_prefetch = _prefetch_python if numba.config.DISABLE_JIT else _prefetch_intrinsic  # type: ignore[attr-defined]


@njit(cache=True, nogil=True)
def _count_symbols(text, counts):
    counts[:] = 0
    for i in range(text.shape[0]):
        counts[text[i]] += 1


@njit(cache=True, nogil=True)
def _chunk(c, n_chunks, total):
    """Bounds [lo, hi) of slice ``c`` when ``total`` items are cut into ``n_chunks`` slices of equal size
    (the last ones shorter or empty); the parallel kernels give each slice to one iteration."""
    step = (total + n_chunks - 1) // n_chunks
    return min(total, c * step), min(total, (c + 1) * step)


@njit(cache=True, nogil=True)
def _starts(counts, base):
    """Where each slice's items begin when slices of ``counts`` items follow each other from ``base``."""
    starts = np.empty(counts.shape[0], dtype=np.int64)
    total = base
    for c in range(counts.shape[0]):
        starts[c] = total
        total += counts[c]
    return starts


@njit(cache=True, nogil=True, parallel=True)
def _count_symbols_parallel(text, counts, n_chunks):
    """counts[c] = occurrences of c in text, computed over ``n_chunks`` slices in parallel."""
    n = text.shape[0]
    k = counts.shape[0]
    partial = np.zeros((n_chunks, k), dtype=counts.dtype)
    for t in prange(n_chunks):
        lo, hi = _chunk(t, n_chunks, n)
        row = partial[t]
        for i in range(lo, hi):
            row[text[i]] += 1
    counts[:] = 0
    for t in range(n_chunks):
        for c in range(k):
            counts[c] += partial[t, c]


@njit(cache=True, nogil=True)
def _bucket_starts(counts, buckets):
    total = 0
    for c in range(counts.shape[0]):
        buckets[c] = total
        total += counts[c]


@njit(cache=True, nogil=True)
def _bucket_ends(counts, buckets):
    total = 0
    for c in range(counts.shape[0]):
        total += counts[c]
        buckets[c] = total


@njit(cache=True, nogil=True)
def _induce(text, sa, counts, buckets):
    """Induced sorting (both passes) from sorted or unsorted LMS positions placed at bucket ends.

    Empty slots hold 0 (position 0 never induces anything). During the L pass an entry ``~j`` (negative)
    means "j's predecessor is S-type, do not induce from it"; during the S pass the sign means the
    predecessor is L-type. At the end every entry is a plain position."""
    n = text.shape[0]
    _bucket_starts(counts, buckets)
    # The virtual sentinel at n induces suffix n - 1, which is L-type.
    j = n - 1
    c1 = text[j]
    b = buckets[c1]
    if j > 0 and text[j - 1] < c1:
        sa[b] = ~j
    else:
        sa[b] = j
    buckets[c1] = b + 1
    for i in range(n):
        if i + _PREFETCH_DISTANCE < n:
            ahead = sa[i + _PREFETCH_DISTANCE]
            if ahead > 1:
                _prefetch(text, ahead - 2)
        j = sa[i]
        sa[i] = ~j
        if j > 0:
            j -= 1
            c0 = text[j]
            b = buckets[c0]
            buckets[c0] = b + 1
            if j > 0 and text[j - 1] < c0:
                sa[b] = ~j
            else:
                sa[b] = j
    _bucket_ends(counts, buckets)
    for i in range(n - 1, -1, -1):
        if i >= _PREFETCH_DISTANCE:
            ahead = sa[i - _PREFETCH_DISTANCE]
            if ahead > 1:
                _prefetch(text, ahead - 2)
        j = sa[i]
        if j > 0:
            j -= 1
            c0 = text[j]
            b = buckets[c0] - 1
            buckets[c0] = b
            if j == 0 or text[j - 1] > c0:
                sa[b] = ~j
            else:
                sa[b] = j
        else:
            sa[i] = ~j


@njit(cache=True, nogil=True)
def _is_lms(bits, p):
    return (bits[p >> 3] >> (p & 7)) & 1


@njit(cache=True, nogil=True)
def _place_unsorted_lms(text, sa, counts, buckets, bits):
    """Mark every LMS position in ``bits`` and put it at the end of its bucket (text order within a
    bucket is irrelevant here). Returns the number of LMS positions."""
    n = text.shape[0]
    _bucket_ends(counts, buckets)
    sa[:] = 0
    m = 0
    # Scan right to left; suffix n - 1 is L-type (the sentinel is smaller than every token).
    next_is_s = False
    c1 = text[n - 1]
    for i in range(n - 2, -1, -1):
        c0 = text[i]
        is_s = c0 < c1 or (c0 == c1 and next_is_s)
        if next_is_s and not is_s:
            p = i + 1
            bits[p >> 3] |= np.uint8(1 << (p & 7))
            buckets[c1] -= 1
            sa[buckets[c1]] = p
            m += 1
        next_is_s = is_s
        c1 = c0
    return m


@njit(cache=True, nogil=True)
def _gather_lms(sa, bits, n):
    """Move the LMS positions in sa (in their current order) to the front. Returns how many."""
    return _gather_lms_in(sa, bits, 0, n)


@njit(cache=True, nogil=True)
def _gather_lms_in(sa, bits, lo, hi):
    """Move the LMS positions in sa[lo:hi] (in their current order) to sa[lo:]. Returns how many."""
    k = lo
    for i in range(lo, hi):
        p = sa[i]
        if _is_lms(bits, p):
            sa[k] = p
            k += 1
    return k - lo


@njit(cache=True, nogil=True, parallel=True)
def _gather_lms_parallel(sa, bits, n, n_chunks):
    """:func:`_gather_lms` over ``n_chunks`` slices of sa in parallel, each to its own front; then the
    slices' LMS positions are moved down behind each other, in order (a few ms: m entries)."""
    kept = np.empty(n_chunks, dtype=np.int64)
    for c in prange(n_chunks):
        lo, hi = _chunk(c, n_chunks, n)
        kept[c] = _gather_lms_in(sa, bits, lo, hi)
    k = kept[0]
    for c in range(1, n_chunks):
        lo, _ = _chunk(c, n_chunks, n)
        for t in range(kept[c]):  # forwards: the destination is below the source
            sa[k + t] = sa[lo + t]
        k += kept[c]
    return k


@njit(cache=True, nogil=True)
def _store_lms_lengths(sa, bits, n, m):
    """Clear sa[m:] to -1, then store at sa[m + p // 2] the length of the LMS substring starting at
    each LMS position p (distance to the next LMS position; 0 for the last one, which reaches the
    sentinel and is therefore unique). LMS positions are at least 2 apart, so the slots are distinct."""
    for i in range(m, n):
        sa[i] = -1
    _store_lengths_in(sa, bits, m, 0, bits.shape[0], -1)


@njit(cache=True, nogil=True)
def _store_lengths_in(sa, bits, m, byte_lo, byte_hi, end):
    """The lengths of :func:`_store_lms_lengths` for the LMS positions in bytes [byte_lo, byte_hi) of
    ``bits``; ``end`` is the first LMS position after them (-1: none)."""
    for byte in range(byte_hi - 1, byte_lo - 1, -1):
        word = bits[byte]
        if word == 0:
            continue
        for bit in range(7, -1, -1):
            if (word >> bit) & 1:
                p = (byte << 3) + bit
                sa[m + (p >> 1)] = 0 if end < 0 else end - p
                end = p


@njit(cache=True, nogil=True)
def _first_lms(bits, byte_lo, byte_hi):
    """The first LMS position in bytes [byte_lo, byte_hi) of ``bits``, or -1."""
    for byte in range(byte_lo, byte_hi):
        word = bits[byte]
        if word != 0:
            for bit in range(8):
                if (word >> bit) & 1:
                    return (byte << 3) + bit
    return -1


@njit(cache=True, nogil=True)
def _count_lms(bits, byte_lo, byte_hi):
    """How many LMS positions bytes [byte_lo, byte_hi) of ``bits`` mark."""
    count = 0
    for byte in range(byte_lo, byte_hi):
        word = np.int64(bits[byte])
        while word:
            word &= word - 1
            count += 1
    return count


@njit(cache=True, nogil=True, parallel=True)
def _store_lms_lengths_parallel(sa, bits, n, m, n_chunks):
    """:func:`_store_lms_lengths` over ``n_chunks`` slices of sa[m:] and of ``bits`` in parallel: each
    slice of bits needs only the first LMS position after it."""
    for c in prange(n_chunks):
        lo, hi = _chunk(c, n_chunks, n - m)
        for i in range(m + lo, m + hi):
            sa[i] = -1
    n_bytes = bits.shape[0]
    first = np.empty(n_chunks, dtype=np.int64)
    for c in prange(n_chunks):
        lo, hi = _chunk(c, n_chunks, n_bytes)
        first[c] = _first_lms(bits, lo, hi)
    ends = np.empty(n_chunks, dtype=np.int64)
    after = -1
    for c in range(n_chunks - 1, -1, -1):
        ends[c] = after
        if first[c] >= 0:
            after = first[c]
    for c in prange(n_chunks):
        lo, hi = _chunk(c, n_chunks, n_bytes)
        _store_lengths_in(sa, bits, m, lo, hi, ends[c])


@njit(cache=True, nogil=True)
def _name_flags(text, sa, m, lo, hi, flags):
    """flags[i] = 1 if the LMS substring at sa[i] differs from the one at sa[i - 1] (always 1 for
    i = 0), for i in [lo, hi). Lengths are read from sa[m + p // 2]. Returns the number of ones."""
    count = 0
    for i in range(lo, hi):
        if i + _PREFETCH_DISTANCE < hi:
            ahead = sa[i + _PREFETCH_DISTANCE]
            _prefetch(text, ahead)
            _prefetch(sa, m + (ahead >> 1))
        p = sa[i]
        d = 1
        if i > 0:
            q = sa[i - 1]
            plen = sa[m + (p >> 1)]
            if plen != 0 and plen == sa[m + (q >> 1)]:
                d = 0
                for t in range(plen + 1):
                    if text[p + t] != text[q + t]:
                        d = 1
                        break
        flags[i] = d
        count += d
    return count


@njit(cache=True, nogil=True)
def _name_scatter(sa, m, lo, hi, flags, first_name):
    """Write the name of each LMS substring sa[i], i in [lo, hi), to sa[m + sa[i] // 2]."""
    name = np.int64(first_name) - 1
    for i in range(lo, hi):
        name += np.int64(flags[i])  # int64: a uint8 sum would wrap (and fails at -1 without the JIT)
        sa[m + (sa[i] >> 1)] = name


@njit(cache=True, nogil=True, parallel=True)
def _name_parallel(text, sa, m, flags, n_chunks):
    """Both naming passes over ``n_chunks`` slices of sa[:m] in parallel. Returns the number of names."""
    new_in_chunk = np.zeros(n_chunks, dtype=np.int64)
    for c in prange(n_chunks):
        lo, hi = _chunk(c, n_chunks, m)
        new_in_chunk[c] = _name_flags(text, sa, m, lo, hi, flags)
    first_name = _starts(new_in_chunk, 0)
    for c in prange(n_chunks):
        lo, hi = _chunk(c, n_chunks, m)
        _name_scatter(sa, m, lo, hi, flags, first_name[c])
    return new_in_chunk.sum()


@njit(cache=True, nogil=True)
def _name_sequential(text, sa, m, flags):
    total = _name_flags(text, sa, m, 0, m, flags)
    _name_scatter(sa, m, 0, m, flags, 0)
    return total


@njit(cache=True, nogil=True)
def _pack_reduced_string(sa, n, m):
    """Move the names (non-negative entries of sa[m:], in text order) to sa[n - m:]."""
    _pack_names_in(sa, m, n)


@njit(cache=True, nogil=True)
def _pack_names_in(sa, lo, hi):
    """Move the non-negative entries of sa[lo:hi], in order, to the end of that slice. Returns how many."""
    j = hi
    for i in range(hi - 1, lo - 1, -1):
        v = sa[i]
        if v >= 0:
            j -= 1
            sa[j] = v
    return hi - j


@njit(cache=True, nogil=True, parallel=True)
def _pack_reduced_string_parallel(sa, n, m, n_chunks):
    """:func:`_pack_reduced_string` over ``n_chunks`` slices of sa[m:] in parallel, each to its own end;
    then the slices' names are moved up behind each other, in order."""
    kept = np.empty(n_chunks, dtype=np.int64)
    for c in prange(n_chunks):
        lo, hi = _chunk(c, n_chunks, n - m)
        kept[c] = _pack_names_in(sa, m + lo, m + hi)
    j = n - kept[n_chunks - 1]
    for c in range(n_chunks - 2, -1, -1):
        _, hi = _chunk(c, n_chunks, n - m)
        end = m + hi
        for t in range(1, kept[c] + 1):  # backwards: the destination is above the source
            sa[j - t] = sa[end - t]
        j -= kept[c]


def _name_lms_substrings(
    text: np.ndarray, sa: np.ndarray, bits: np.ndarray, m: int, flags: np.ndarray
) -> int:
    """After induced sorting from unsorted LMS positions: move the LMS positions (now in LMS-substring
    order) to sa[:m], give equal substrings equal names, and write the reduced string (names in text
    order) to sa[n - m:]. Returns the number of distinct names. ``flags`` is scratch of ``m`` bytes."""
    n = text.shape[0]
    chunks = _chunks(n)
    if chunks == 1:
        _gather_lms(sa, bits, n)
    else:
        _gather_lms_parallel(sa, bits, n, chunks)
    chunks = _chunks(m)
    if chunks == 1:
        _store_lms_lengths(sa, bits, n, m)
        names = _name_sequential(text, sa, m, flags)
    else:
        _store_lms_lengths_parallel(sa, bits, n, m, chunks)
        names = _name_parallel(text, sa, m, flags, chunks)
    chunks = _chunks(n - m)
    if chunks == 1:
        _pack_reduced_string(sa, n, m)
    else:
        _pack_reduced_string_parallel(sa, n, m, chunks)
    return int(names)


@njit(cache=True, nogil=True)
def _lms_order_to_positions(sa, bits, n, m):
    """sa[:m] holds the suffix array of the reduced string (ranks of LMS positions in text order);
    replace it by the LMS positions themselves. Uses sa[n - m:] as scratch."""
    _list_lms(sa, bits, 0, bits.shape[0], n - m)
    _ranks_to_positions(sa, n - m, 0, m)


@njit(cache=True, nogil=True)
def _list_lms(sa, bits, byte_lo, byte_hi, j):
    """Write the LMS positions in bytes [byte_lo, byte_hi) of ``bits``, in text order, to sa[j:]."""
    for byte in range(byte_lo, byte_hi):
        word = bits[byte]
        if word == 0:
            continue
        for bit in range(8):
            if (word >> bit) & 1:
                sa[j] = (byte << 3) + bit
                j += 1


@njit(cache=True, nogil=True)
def _ranks_to_positions(sa, base, lo, hi):
    """sa[i] = sa[base + sa[i]] for i in [lo, hi): the reads (sa[base:]) lie above the writes."""
    for i in range(lo, hi):
        if i + _PREFETCH_DISTANCE < hi:
            _prefetch(sa, base + sa[i + _PREFETCH_DISTANCE])
        sa[i] = sa[base + sa[i]]


@njit(cache=True, nogil=True, parallel=True)
def _lms_order_to_positions_parallel(sa, bits, n, m, n_chunks):
    """:func:`_lms_order_to_positions` over ``n_chunks`` slices in parallel. LMS positions are at least
    2 apart, so m <= n - m and sa[:m] (written) never overlaps sa[n - m:] (read)."""
    n_bytes = bits.shape[0]
    counts = np.empty(n_chunks, dtype=np.int64)
    for c in prange(n_chunks):
        lo, hi = _chunk(c, n_chunks, n_bytes)
        counts[c] = _count_lms(bits, lo, hi)
    starts = _starts(counts, n - m)
    for c in prange(n_chunks):
        lo, hi = _chunk(c, n_chunks, n_bytes)
        _list_lms(sa, bits, lo, hi, starts[c])
    for c in prange(n_chunks):
        lo, hi = _chunk(c, n_chunks, m)
        _ranks_to_positions(sa, n - m, lo, hi)


@njit(cache=True, nogil=True)
def _place_sorted_lms(text, sa, counts, buckets, m):
    """Move the sorted LMS positions in sa[:m] to the ends of their buckets, keeping their order, and
    clear every other slot."""
    n = text.shape[0]
    _bucket_ends(counts, buckets)
    j = n
    i = m - 1
    while i >= 0:
        if i >= _PREFETCH_DISTANCE:
            _prefetch(text, sa[i - _PREFETCH_DISTANCE])
        p = sa[i]
        c = text[p]
        q = buckets[c]
        while q < j:
            j -= 1
            sa[j] = 0
        while True:
            j -= 1
            sa[j] = p
            i -= 1
            if i < 0:
                break
            p = sa[i]
            if text[p] != c:
                break
    while j > 0:
        j -= 1
        sa[j] = 0


@njit(cache=True, nogil=True)
def _compact_alphabet_direct(tokens, separator, sep_rank, out):
    """int32 copy of tokens with the separator mapped to ``sep_rank`` (the alphabet's last symbol)."""
    for i in range(tokens.shape[0]):
        v = tokens[i]
        out[i] = sep_rank if v == separator else v


@njit(cache=True, nogil=True, parallel=True)
def _compact_alphabet_sorted(tokens, values, out, n_chunks):
    """out[i] = index of tokens[i] in the sorted array of distinct values ``values``."""
    n = tokens.shape[0]
    for t in prange(n_chunks):
        lo, hi = _chunk(t, n_chunks, n)
        for i in range(lo, hi):
            out[i] = np.searchsorted(values, tokens[i])


# --------------------------------------------------------------------------------------------------
# Driver


class Workspace:
    """Work arrays kept from one sort for the next (by role), so that a process sorting many shards
    faults its memory in once. Holds at most what one sort of the largest input used; :meth:`clear`
    frees it. Not thread-safe: one sort at a time per workspace."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def array(self, role: str, n: int, dtype: np.dtype | type) -> np.ndarray:
        """An uninitialized array of ``n`` items for ``role``: the kept one (a view of its first ``n``
        items) when it is large enough and of the same dtype, else a new one that is kept instead."""
        dtype = np.dtype(dtype)
        kept = self._arrays.get(role)
        if kept is None or kept.dtype != dtype or kept.shape[0] < n:
            self._arrays.pop(role, None)  # free the old one before its replacement is allocated
            kept = memory.empty(n, dtype)
            self._arrays[role] = kept
        return kept[:n]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._arrays.values())

    def clear(self) -> None:
        self._arrays.clear()


def _work_dtype(n_positions: int) -> np.dtype:
    return np.dtype(np.int32 if n_positions <= _INT32_MAX_POSITIONS else np.int64)


def sort_work_arrays(
    workspace: Workspace, n_positions: int, token_dtype: np.dtype | type | str
) -> list[np.ndarray]:
    """Take from ``workspace`` the largest work arrays that :func:`build_suffix_array` will use for
    ``n_positions`` tokens of ``token_dtype`` (the suffix array, the level-0 LMS bits, and for uint32 the
    compacted text), so that :func:`fault_in` can fault them in before the sort needs them."""
    if not isinstance(workspace, Workspace):
        raise TypeError(f"workspace must be a Workspace, got {type(workspace).__name__}")
    n = int(n_positions)
    work = _work_dtype(n)
    arrays = [workspace.array("suffixes", n, work), workspace.array("lms0", (n >> 3) + 1, np.uint8)]
    if np.dtype(token_dtype) == np.uint32:
        arrays.append(workspace.array("text", n, work))
    return arrays


def fault_in(arrays: list[np.ndarray]) -> None:
    """Touch every memory page of ``arrays`` (their contents become undefined), without the GIL.

    A fresh large array costs its page faults when first written (0.33 s per GB of 4 KiB pages on the
    machine of ``bench/README.md``). Faulting the sort's arrays in while the shard is read from disk
    takes that cost off the sort. A strided numpy assignment (it releases the GIL) rather than a
    kernel, so that it starts before numba has loaded anything."""
    for array in arrays:
        data = array.reshape(-1).view(np.uint8)
        data[:: mmap.PAGESIZE] = 0


def load_sort_kernels(n_positions: int, token_dtype: np.dtype | type | str) -> None:
    """Load (from numba's cache, else compile) every kernel variant that :func:`build_suffix_array` will
    call for ``n_positions`` tokens of ``token_dtype``, without running any.

    A process's first sort otherwise loads some twenty variants one at a time as it reaches them
    (about 0.1 s, GIL-bound); a build calls this on a thread while the shard is still being read. The
    types below mirror the arguments :func:`_sais` passes: the level-0 text (read-only uint16, or the
    compacted work array), the reduced texts (slices of the suffix array), work arrays, bit and flag
    bytes, and Python ints. A mismatch only costs a second load at the call."""
    if numba.config.DISABLE_JIT:  # type: ignore[attr-defined]
        return
    n = int(n_positions)
    token_dtype = np.dtype(token_dtype)
    work = numba.typeof(np.empty(1, _work_dtype(n)))
    u8 = numba.typeof(np.empty(1, np.uint8))
    i64 = types.int64
    if token_dtype == np.uint16:
        level0 = numba.typeof(np.empty(1, np.uint16)).copy(readonly=True)
    else:
        level0 = work
        tokens = numba.typeof(np.empty(1, token_dtype))
        scalar = numba.typeof(token_dtype.type(0))
        _max_below.compile((tokens, scalar))
        _compact_alphabet_direct.compile((tokens, scalar, i64, work))
        _compact_alphabet_sorted.compile((tokens, tokens, work, i64))
    parallel = n >= _PARALLEL_MIN
    if parallel:
        _count_symbols_parallel.compile((level0, work, i64))
    for text in dict.fromkeys((level0, work)):  # level 0, then the reduced strings
        _count_symbols.compile((text, work))
        _place_unsorted_lms.compile((text, work, work, work, u8))
        _induce.compile((text, work, work, work))
        _name_sequential.compile((text, work, i64, u8))
        if parallel:
            _name_parallel.compile((text, work, i64, u8, i64))
        _place_sorted_lms.compile((text, work, work, work, i64))
    _gather_lms.compile((work, u8, i64))
    _store_lms_lengths.compile((work, u8, i64, i64))
    _pack_reduced_string.compile((work, i64, i64))
    _lms_order_to_positions.compile((work, u8, i64, i64))
    if parallel:
        _gather_lms_parallel.compile((work, u8, i64, i64))
        _store_lms_lengths_parallel.compile((work, u8, i64, i64, i64))
        _pack_reduced_string_parallel.compile((work, i64, i64, i64))
        _lms_order_to_positions_parallel.compile((work, u8, i64, i64, i64))


def _chunks(n_items: int) -> int:
    """How many slices a parallel kernel splits ``n_items`` into (1 for small inputs)."""
    threads = numba.get_num_threads()
    if threads == 1 or n_items < _PARALLEL_MIN:
        return 1
    return 4 * threads


def _sais(
    text: np.ndarray,
    sa: np.ndarray,
    alphabet: int,
    workspace: Workspace,
    counts: np.ndarray | None = None,
    level: int = 0,
) -> None:
    """Fill ``sa`` (same length as ``text``, int32/int64, writable) with the suffix array of ``text``
    (values in [0, alphabet)). ``counts`` may hold the symbol counts already; ``level`` is the depth of
    the recursion (work arrays of different levels are alive at once)."""
    n = text.shape[0]
    if n == 0:
        return
    if n == 1:
        sa[0] = 0
        return
    if counts is None:
        counts = workspace.array(f"counts{level}", alphabet, sa.dtype)
        _count_symbols(text, counts)
    buckets = workspace.array(f"buckets{level}", alphabet, sa.dtype)
    bits = workspace.array(f"lms{level}", (n >> 3) + 1, np.uint8)
    bits[:] = 0
    m = _place_unsorted_lms(text, sa, counts, buckets, bits)
    if m > 1:
        _induce(text, sa, counts, buckets)
        names = _name_lms_substrings(text, sa, bits, m, workspace.array(f"flags{level}", m, np.uint8))
        if names < m:
            # sa[:m] is free for the reduced suffix array, sa[n - m:] holds the reduced string.
            _sais(sa[n - m :], sa[:m], names, workspace, level=level + 1)
            chunks = _chunks(m)
            if chunks == 1:
                _lms_order_to_positions(sa, bits, n, m)
            else:
                _lms_order_to_positions_parallel(sa, bits, n, m, chunks)
        # else: LMS substrings are all distinct, so sa[:m] is already the sorted LMS suffixes.
    elif m == 1:
        # A single LMS suffix is trivially sorted; it is the only non-zero entry.
        sa[0] = sa[np.flatnonzero(sa)[0]]
    del bits
    _place_sorted_lms(text, sa, counts, buckets, m)
    _induce(text, sa, counts, buckets)


def _check_tokens(tokens: object, separator: object) -> tuple[np.ndarray, int]:
    if not isinstance(tokens, np.ndarray):
        raise TypeError(f"tokens must be a numpy array, got {type(tokens).__name__}")
    if tokens.ndim != 1:
        raise ValueError(f"tokens must be 1-D, got an array of shape {tokens.shape}")
    if tokens.dtype not in (np.dtype(np.uint16), np.dtype(np.uint32)):
        raise TypeError(f"tokens must have dtype uint16 or uint32, got {tokens.dtype}")
    if isinstance(separator, (bool, np.bool_)) or not isinstance(separator, (int, np.integer)):
        raise TypeError(f"separator must be an integer, got {type(separator).__name__}")
    sep = int(separator)
    limit = int(np.iinfo(tokens.dtype).max)
    if not 0 <= sep <= limit:
        raise ValueError(f"separator {sep} does not fit in {tokens.dtype} (0..{limit})")
    if tokens.size:
        top = int(tokens.max())
        if top > sep:
            pos = int(np.argmax(tokens > sep))
            raise ValueError(
                f"token id {int(tokens[pos])} at position {pos} is larger than the separator {sep}; "
                "the separator must be the largest value"
            )
    return tokens, sep


def build_suffix_array(
    tokens: np.ndarray, separator: int, *, workspace: Workspace | None = None
) -> np.ndarray:
    """Positions of all non-separator tokens, sorted by the suffix starting there (lexicographic order
    of token values; a suffix that is a prefix of another sorts first). Returns uint32 when the array
    has fewer than 2^32 positions, else uint64.

    ``tokens`` is a 1-D uint16 or uint32 array (read-only arrays and ``np.memmap(mode="r")`` are fine;
    it is never modified) in which no value exceeds ``separator`` (normally the dtype's maximum).
    With a ``workspace``, the work arrays are taken from it and kept there, and the result may be a
    view of its memory: valid until the workspace sorts again or is cleared.
    Raises TypeError for a wrong type or dtype and ValueError for a wrong shape or value."""
    tokens, sep = _check_tokens(tokens, separator)
    if workspace is None:
        workspace = Workspace()
    elif not isinstance(workspace, Workspace):
        raise TypeError(f"workspace must be a Workspace, got {type(workspace).__name__}")
    n = int(tokens.shape[0])
    out_dtype = suffix_array_dtype(n)
    if n == 0:
        return np.zeros(0, dtype=out_dtype)
    work_dtype = _work_dtype(n)
    threads = numba.get_num_threads()

    if not tokens.flags.c_contiguous:
        tokens = np.ascontiguousarray(tokens)
    if tokens.dtype == np.uint16:
        # A read-only view: one compiled variant serves writable arrays and np.memmap(mode="r") alike.
        text: np.ndarray = tokens.view()
        text.setflags(write=False)
        alphabet = sep + 1
        sep_symbol = sep
    else:
        # uint32: map the ids onto a small alphabet in an int32/int64 copy.
        text = workspace.array("text", n, work_dtype)
        top_real = _largest_non_separator(tokens, sep)
        if top_real + 2 <= _DIRECT_ALPHABET_LIMIT:
            sep_symbol = top_real + 1
            _compact_alphabet_direct(tokens, tokens.dtype.type(sep), sep_symbol, text)
            alphabet = sep_symbol + 1
        else:
            values = np.unique(tokens)
            _compact_alphabet_sorted(tokens, values, text, max(1, threads))
            alphabet = int(values.shape[0])
            sep_symbol = alphabet - 1 if int(values[-1]) == sep else alphabet
            del values

    counts = workspace.array("counts0", alphabet, work_dtype)
    if n >= _PARALLEL_MIN and threads > 1 and alphabet * threads <= n // 4:  # per-thread counts
        _count_symbols_parallel(text, counts, threads)
    else:
        _count_symbols(text, counts)
    n_separators = int(counts[sep_symbol]) if sep_symbol < alphabet else 0

    sa = workspace.array("suffixes", n, work_dtype)
    _sais(text, sa, alphabet, workspace, counts)
    del text

    keep = n - n_separators  # separator suffixes form the last bucket
    if work_dtype == np.int32:
        result = sa.view(np.uint32)
    elif out_dtype == np.uint64:
        result = sa.view(np.uint64)
    else:
        result = sa[:keep].astype(np.uint32)
    result = result[:keep]
    if keep < n // 2:
        result = result.copy()  # do not pin a mostly unused buffer
    return result


def place_documents(buf: np.ndarray, pos: int, ids: np.ndarray, lengths: np.ndarray, sep: int) -> np.ndarray:
    """Copy documents (flat ``ids`` of ``lengths``) into ``buf`` from ``pos``, each followed by ``sep``;
    return the end positions (one past each separator). Raises ValueError when the lengths do not add
    up to the ids or the documents do not fit in ``buf``."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if (lengths < 0).any() or total != len(ids):
        raise ValueError(f"document lengths sum to {total}, not the {len(ids)} ids given")
    ends = pos + np.cumsum(lengths + 1)
    if len(ends) and int(ends[-1]) > len(buf):
        raise ValueError(f"{len(lengths)} documents end at {int(ends[-1])}, past the shard's {len(buf)}")
    _copy_documents(buf, pos, ids.astype(buf.dtype, copy=False), lengths, buf.dtype.type(sep))
    return ends


@njit(cache=True, nogil=True)
def _copy_documents(buf, pos, ids, lengths, sep):
    """The copy of :func:`place_documents`, one slice per document (a boolean mask over the shard was
    30x slower than copying)."""
    src = 0
    for length in lengths:
        buf[pos : pos + length] = ids[src : src + length]
        pos += length
        buf[pos] = sep
        pos += 1
        src += length


def _largest_non_separator(tokens: np.ndarray, sep: int) -> int:
    return int(_max_below(tokens, tokens.dtype.type(sep)))


@njit(cache=True, nogil=True)
def _max_below(tokens, separator):
    """Largest value of tokens different from ``separator`` (-1 if none)."""
    best = -1
    for i in range(tokens.shape[0]):
        v = tokens[i]
        if v != separator and np.int64(v) > best:
            best = np.int64(v)
    return best
