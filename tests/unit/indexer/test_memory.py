"""indexer.memory: arrays in private anonymous maps of their own, in huge pages only when asked."""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import pytest

from indexer import directio, memory
from indexer.pipeline import BuildError, build_index

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


def _vm_flags(array: np.ndarray) -> set[str]:
    """The VmFlags of the mapping that holds ``array`` (Linux /proc/self/smaps)."""
    address = array.ctypes.data
    lines = Path("/proc/self/smaps").read_text().splitlines()
    for i, line in enumerate(lines):
        span = line.split()[0]
        if "-" in span and all(c in "0123456789abcdef-" for c in span):
            lo, hi = (int(x, 16) for x in span.split("-"))
            if lo <= address < hi:
                flags = next(f for f in lines[i + 1 :] if f.startswith("VmFlags:"))
                return set(flags.split()[1:])
    raise AssertionError("no mapping holds the array")


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc/self/smaps")
def test_huge_pages_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """By default the maps do not ask for huge pages (no ``hg`` flag); ``TASKGRAM_HUGE_PAGES=1`` does."""
    monkeypatch.delenv(memory.HUGE_PAGES_ENV, raising=False)
    assert not memory.huge_pages()
    assert "hg" not in _vm_flags(memory.empty(8 << 20, np.uint8))
    monkeypatch.setenv(memory.HUGE_PAGES_ENV, "1")
    assert memory.huge_pages()
    assert "hg" in _vm_flags(memory.empty(8 << 20, np.uint8))
    monkeypatch.setenv(memory.HUGE_PAGES_ENV, "0")
    assert not memory.huge_pages()


def test_a_bad_huge_pages_setting_fails_the_build_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(memory.HUGE_PAGES_ENV, "yes")
    with pytest.raises(ValueError, match="TASKGRAM_HUGE_PAGES must be 0 or 1, got 'yes'"):
        memory.huge_pages()
    corpus = tmp_path / "cat.txt"
    corpus.write_text("the cat sat on the mat", encoding="utf-8")
    with pytest.raises(BuildError, match="TASKGRAM_HUGE_PAGES"):
        build_index([corpus], tmp_path / "index", progress=False)
    assert not (tmp_path / "index").exists()
