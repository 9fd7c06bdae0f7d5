"""The shard-check kernels against naive oracles, on adversarial layouts and read-only input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.verify_kernels import ShardCheckError, check_doc_offsets, check_suffix_array, check_suffix_pairs


def layout(docs: list[list[int]], dtype=np.uint16) -> tuple[np.ndarray, np.ndarray, int]:
    sep = int(np.iinfo(dtype).max)
    tokens: list[int] = []
    offsets = [0]
    for d in docs:
        tokens.extend(d)
        tokens.append(sep)
        offsets.append(len(tokens))
    t = np.asarray(tokens, dtype=dtype)
    o = np.asarray(offsets, dtype=np.uint64)
    t.setflags(write=False)
    o.setflags(write=False)
    return t, o, sep


def naive_sa(tokens: np.ndarray, sep: int) -> np.ndarray:
    seq = [int(x) for x in tokens]
    order = [i for i in sorted(range(len(seq)), key=lambda i: seq[i:]) if seq[i] != sep]
    sa = np.asarray(order, dtype=np.uint32)
    sa.setflags(write=False)
    return sa


docs_strategy = st.lists(st.lists(st.integers(0, 3), max_size=6), min_size=1, max_size=8)


@settings(max_examples=150, deadline=None)
@given(docs_strategy)
def test_correct_suffix_array_passes(docs):
    t, o, sep = layout(docs)
    check_doc_offsets(t, o, sep, 4)
    sa = naive_sa(t, sep)
    check_suffix_array(t, o, sa, sep)
    if len(sa) > 1:
        check_suffix_pairs(t, sa, np.arange(len(sa) - 1))


@settings(max_examples=150, deadline=None)
@given(docs_strategy, st.data())
def test_any_other_permutation_fails(docs, data):
    t, o, sep = layout(docs)
    sa = naive_sa(t, sep)
    if len(sa) < 2:
        return
    i = data.draw(st.integers(0, len(sa) - 2))
    j = data.draw(st.integers(i + 1, len(sa) - 1))
    bad = sa.copy()
    bad[[i, j]] = bad[[j, i]]
    with pytest.raises(ShardCheckError, match="out of order"):
        check_suffix_array(t, o, bad, sep)
    with pytest.raises(ShardCheckError, match="out of order"):
        check_suffix_pairs(t, bad, np.arange(len(bad) - 1))


@pytest.mark.parametrize(
    "docs",
    [
        [[], [], [1], [], [], [1], []],  # runs of empty documents: separator runs decide the order
        [[5] * 50, [5] * 50, [5] * 49],  # one repeated token, long repeats across documents
        [[1, 2] * 30, [1, 2] * 30],
        [[65534, 0, 65534], [65534]],  # the largest id below the separator
    ],
)
def test_adversarial_layouts(docs):
    t, o, sep = layout(docs)
    check_doc_offsets(t, o, sep, 65535)
    check_suffix_array(t, o, naive_sa(t, sep), sep)


def test_uint32_and_memmap(tmp_path):
    t, o, sep = layout([[70_000, 3, 70_000], [], [3, 70_000]], dtype=np.uint32)
    sa = naive_sa(t, sep)
    path = tmp_path / "t.bin"
    t.tofile(path)
    mm = np.memmap(path, dtype=np.uint32, mode="r")
    check_doc_offsets(mm, o, sep, 70_001)
    check_suffix_array(mm, o, sa, sep)


def test_permutation_errors():
    t, o, sep = layout([[1, 2, 1]])
    sa = naive_sa(t, sep)
    with pytest.raises(ShardCheckError, match="has 2 entries, expected 3"):
        check_suffix_array(t, o, sa[:2], sep)
    dup = sa.copy()
    dup[1] = dup[0]
    with pytest.raises(ShardCheckError, match="appears twice"):
        check_suffix_array(t, o, dup, sep)
    sep_pos = sa.copy()
    sep_pos[0] = 3
    with pytest.raises(ShardCheckError, match="is a separator position"):
        check_suffix_array(t, o, sep_pos, sep)
    out = sa.copy()
    out[0] = 99
    with pytest.raises(ShardCheckError, match="is out of range"):
        check_suffix_array(t, o, out, sep)


def test_doc_offset_errors():
    t, o, sep = layout([[1, 2], [3]])
    with pytest.raises(ShardCheckError, match="not below 3"):
        check_doc_offsets(t, o, sep, 3)
    with pytest.raises(ShardCheckError, match="spans"):
        check_doc_offsets(t, o[:-1], sep, 10)
    with pytest.raises(ShardCheckError, match="not followed by the separator"):
        check_doc_offsets(t, np.array([0, 2, 5], dtype=np.uint64), sep, 10)
    with pytest.raises(ShardCheckError, match="separator inside a document"):
        check_doc_offsets(t, np.array([0, 5], dtype=np.uint64), sep, 10)
    with pytest.raises(ShardCheckError, match="do not increase"):
        check_doc_offsets(t, np.array([0, 3, 3, 5], dtype=np.uint64), sep, 10)
    with pytest.raises(TypeError, match="1-D unsigned"):
        check_doc_offsets(t.astype(np.int64), o, sep, 10)
