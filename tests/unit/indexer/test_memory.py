"""indexer.memory.empty: arrays in private anonymous maps of their own (no huge-page request)."""

from __future__ import annotations

import mmap

import numpy as np
import pytest

from indexer import directio, memory

SIZES = [(1, np.uint8), (5 << 20, np.int32), (12_345, np.uint16), (3, np.int64)]


@pytest.mark.parametrize(("n", "dtype"), SIZES)
def test_empty_is_a_writable_page_aligned_array_of_its_own(n: int, dtype: type) -> None:
    array = memory.empty(n, dtype)
    assert array.shape == (n,) and array.dtype == np.dtype(dtype)
    assert array.flags.writeable and array.flags.c_contiguous
    assert array.ctypes.data % mmap.PAGESIZE == 0
    assert isinstance(array.base, memoryview) and isinstance(array.base.obj, mmap.mmap)
    array[:] = 7
    assert int(array.sum()) == 7 * n
    assert not np.shares_memory(array, memory.empty(n, dtype))


def test_empty_of_nothing() -> None:
    assert memory.empty(0, np.uint32).shape == (0,)


def test_direct_io_buffers_are_aligned() -> None:
    for n_bytes in (1, directio.ALIGN, 3 * directio.ALIGN + 5, 17 << 20):
        buf = directio.aligned_empty(n_bytes)
        assert buf.shape == (n_bytes,) and buf.dtype == np.uint8
        assert buf.ctypes.data % directio.ALIGN == 0
