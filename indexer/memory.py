"""Large buffers of a build (shard tokens, the sort's work arrays, direct-I/O buffers) in 4 KiB pages.

numpy asks the kernel for transparent huge pages (``madvise``) for every array of 4 MB or more. On the
2-core virtual machine of ``bench/README.md``, the first touch of huge pages cost about 7 s per GB when
that memory had not been used for a while, of 4 KiB pages 0.33 s. Sorts on huge pages already faulted in
ran about 18 % faster, but whole builds were faster without them: 75.0 s against 78.0 s for 1.01 B tokens
(a worker's first shard read in 2.0 s instead of 10.8 s), 1.75 s against 1.9-2.5 s for 14 M tokens.
Huge pages would pay off from a worker's third shard on (sixth series), and on machines that fault them
in cheaply: ``TASKGRAM_HUGE_PAGES=1`` asks for them (``madvise``) in every process of the build that sees
it (for Ray, set it on every node). Where the system puts every mapping in huge pages
(``transparent_hugepage=always``), these are huge pages anyway.
"""

from __future__ import annotations

import mmap
import os

import numpy as np

HUGE_PAGES_ENV = "TASKGRAM_HUGE_PAGES"


def huge_pages() -> bool:
    """Whether ``TASKGRAM_HUGE_PAGES`` asks for huge pages: ``1`` yes, ``0`` or unset no. Raises
    ValueError, naming the variable, for any other value."""
    value = os.environ.get(HUGE_PAGES_ENV, "").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"{HUGE_PAGES_ENV} must be 0 or 1, got {value!r}")
    return value == "1"


def empty(n: int, dtype: np.dtype | type | str) -> np.ndarray:
    """``np.empty(n, dtype)`` in a private anonymous map of its own: page-aligned, zero pages faulted in
    on first touch, freed with the last array that uses it; in huge pages if :func:`huge_pages`."""
    dtype = np.dtype(dtype)
    n_bytes = int(n) * dtype.itemsize
    if n_bytes == 0:
        return np.empty(n, dtype=dtype)
    mapping = mmap.mmap(-1, n_bytes, flags=mmap.MAP_PRIVATE)
    if huge_pages() and hasattr(mmap, "MADV_HUGEPAGE"):
        mapping.madvise(mmap.MADV_HUGEPAGE)
    return np.frombuffer(mapping, dtype=dtype, count=n)
