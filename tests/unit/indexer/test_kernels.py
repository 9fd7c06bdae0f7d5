"""indexer.kernels.build_suffix_array against naive oracles, on adversarial and edge-case inputs."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from indexer import kernels
from indexer.kernels import build_suffix_array, place_documents, suffix_array_dtype

try:
    from tests.naive import naive_suffix_array, prefix_doubling_suffix_array, suffix_array_errors
except ModuleNotFoundError:  # `pytest` run as a script puts tests/, not the repository root, on sys.path
    from naive import naive_suffix_array, prefix_doubling_suffix_array, suffix_array_errors  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[3]
SEP16 = 65535
SEP32 = 2**32 - 1


def u16(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.uint16)


def u32(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.uint32)


def check(tokens: np.ndarray, separator: int) -> np.ndarray:
    tokens.setflags(write=False)
    before = tokens.copy()
    sa = build_suffix_array(tokens, separator)
    assert sa.dtype == np.uint32
    assert np.array_equal(tokens, before), "input was modified"
    np.testing.assert_array_equal(sa.astype(np.int64), naive_suffix_array(tokens, separator))
    return sa


EDGE_CASES_U16 = {
    "empty": [],
    "one token": [5],
    "one separator": [SEP16],
    "two equal": [7, 7],
    "two increasing": [1, 2],
    "two decreasing": [2, 1],
    "token then separator": [3, SEP16],
    "separator then token": [SEP16, 3],
    "two separators": [SEP16, SEP16],
    "largest id": [65534, 65534, SEP16, 65534, 0, 65534, SEP16],
    "largest id and zero": [0, 65534, 0, 65534, 0, SEP16],
    "empty documents": [SEP16, SEP16, SEP16, 4, SEP16, SEP16, 4, 4, SEP16],
    "one-token documents": [4, SEP16, 2, SEP16, 4, SEP16, 2, SEP16, 4, SEP16],
    "a prefix sorts first": [1, 2, 1, 2, 1, SEP16, 1, 2, 1, 2, SEP16],
    "mississippi": [ord(c) for c in "mississippi"],
}


@pytest.mark.parametrize("name", list(EDGE_CASES_U16))
def test_edge_cases_u16(name: str) -> None:
    check(u16(EDGE_CASES_U16[name]), SEP16)


@pytest.mark.parametrize("name", list(EDGE_CASES_U16))
def test_edge_cases_as_u32(name: str) -> None:
    values = [SEP32 if v == SEP16 else v for v in EDGE_CASES_U16[name]]
    check(u32(values), SEP32)


def test_empty_input_gives_empty_uint32() -> None:
    sa = build_suffix_array(u16([]), SEP16)
    assert sa.dtype == np.uint32 and sa.shape == (0,)


@pytest.mark.parametrize("n", [1, 2, 3, 17, 1000, 5000])
@pytest.mark.parametrize("token", [0, 9, 65534])
def test_single_repeated_token(n: int, token: int) -> None:
    tokens = np.full(n, token, dtype=np.uint16)
    sa = build_suffix_array(tokens, SEP16)
    # Every suffix is a prefix of the longer ones: shortest (last position) first.
    np.testing.assert_array_equal(sa, np.arange(n - 1, -1, -1))


def test_only_separators() -> None:
    sa = build_suffix_array(np.full(1000, SEP16, dtype=np.uint16), SEP16)
    assert sa.shape == (0,)


@pytest.mark.parametrize("period", [1, 2, 3, 7, 64])
def test_long_periodic_repeats(period: int) -> None:
    rng = np.random.default_rng(period)
    block = rng.integers(0, 4, period).astype(np.uint16)
    tokens = np.tile(block, 3000 // period + 1)[:3000]
    tokens[1500] = SEP16  # one document boundary in the middle of the repeat
    tokens.setflags(write=False)
    sa = build_suffix_array(tokens, SEP16)
    assert suffix_array_errors(tokens, SEP16, sa) == []


def test_repeated_documents_and_recursion() -> None:
    """Many copies of the same documents force several recursion levels of SA-IS."""
    rng = np.random.default_rng(7)
    docs = [rng.integers(0, 3, int(rng.integers(1, 40))).astype(np.uint16) for _ in range(12)]
    parts = []
    for _ in range(300):
        parts.append(docs[int(rng.integers(0, len(docs)))])
        parts.append(u16([SEP16]))
    tokens = np.concatenate(parts)
    np.testing.assert_array_equal(
        build_suffix_array(tokens, SEP16).astype(np.int64), prefix_doubling_suffix_array(tokens, SEP16)
    )


def test_one_workspace_sorts_many_inputs_as_fresh_memory_does() -> None:
    """A worker's kept work arrays hold the previous sort's values (and are larger or smaller than the
    next input needs, or of another dtype): every result must still equal the oracle's."""
    rng = np.random.default_rng(11)
    workspace = kernels.Workspace()
    sizes = [3_000, 20_000, 500, 20_000, 0, 7, 12_000]
    for i, n in enumerate(sizes):
        alphabet = [2, 65535, 3, 4, 5, 2, 50][i]
        tokens = rng.integers(0, alphabet, n).astype(np.uint16)
        tokens[rng.random(n) < 0.02] = SEP16
        if i == 3:  # deep recursion: repeated documents
            doc = np.append(rng.integers(0, 3, 40), SEP16).astype(np.uint16)
            tokens = np.tile(doc, n // 41)
        if i == 5:
            tokens = tokens.astype(np.uint32)  # a different work dtype for the text copy
        sep = SEP32 if tokens.dtype == np.uint32 else SEP16
        if tokens.dtype == np.uint32:
            tokens[tokens == SEP16] = SEP32
        sa = build_suffix_array(tokens, sep, workspace=workspace)
        np.testing.assert_array_equal(sa.astype(np.int64), prefix_doubling_suffix_array(tokens, sep))
        assert workspace.nbytes >= (sa.nbytes if sa.size else 0)
    kept = workspace.nbytes
    assert kept >= 4 * 20_000  # the largest input's suffix array is kept
    workspace.clear()
    assert workspace.nbytes == 0


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_faulted_in_work_arrays_are_the_ones_the_sort_uses(dtype) -> None:
    """``sort_work_arrays`` + ``fault_in`` (run while a shard is read) hand the sort the very arrays it
    takes from the workspace; the zeros written into them do not change the result."""
    rng = np.random.default_rng(5)
    sep = SEP32 if dtype == np.uint32 else SEP16
    tokens = rng.integers(0, 7, 30_000).astype(dtype)
    tokens[rng.random(tokens.size) < 0.01] = sep
    workspace = kernels.Workspace()
    arrays = kernels.sort_work_arrays(workspace, tokens.size, dtype)
    assert len(arrays) == (3 if dtype == np.uint32 else 2)
    for array in arrays:
        array.reshape(-1).view(np.uint8)[:] = 0xA5  # stale bytes, as a kept workspace holds
    kernels.fault_in(arrays)
    assert all(array.reshape(-1).view(np.uint8)[:: mmap.PAGESIZE].max() == 0 for array in arrays)
    sa = build_suffix_array(tokens, sep, workspace=workspace)
    assert np.shares_memory(sa, arrays[0])  # the sort wrote into the faulted-in suffix array
    np.testing.assert_array_equal(sa.astype(np.int64), prefix_doubling_suffix_array(tokens, sep))
    kernels.fault_in([np.zeros(0, dtype=np.int32)])  # empty arrays are fine
    with pytest.raises(TypeError, match="workspace must be a Workspace"):
        kernels.sort_work_arrays({}, 10, np.uint16)  # type: ignore[arg-type]


def test_workspace_arrays_do_not_ask_for_huge_pages() -> None:
    """The workspace's arrays are private anonymous maps of their own (numpy would madvise huge pages
    for these sizes); writable, C-contiguous, and usable by the sort."""
    workspace = kernels.Workspace()
    array = workspace.array("suffixes", 3 << 20, np.int32)
    root = array
    while isinstance(root, np.ndarray):
        root = root.base
    assert isinstance(root, memoryview) and isinstance(root.obj, mmap.mmap)
    assert array.flags.writeable and array.flags.c_contiguous and array.ctypes.data % mmap.PAGESIZE == 0
    assert np.shares_memory(workspace.array("suffixes", 10, np.int32), array)  # kept and reused
    assert workspace.array("empty", 0, np.uint8).shape == (0,)


_LOAD_SORT_KERNELS_CHILD = """
import numpy as np
from indexer import kernels
kernels._PARALLEL_MIN = 2_000  # the parallel variants on a small input
dispatchers = [v for v in vars(kernels).values() if hasattr(v, "signatures") and hasattr(v, "compile")]
rng = np.random.default_rng(3)
for dtype, sep, values in ((np.uint16, 65535, 6), (np.uint32, 2**32 - 1, 6), (np.uint32, 2**32 - 1, 1 << 30)):
    tokens = rng.integers(0, values, 60_000).astype(dtype)
    tokens[:30_000:2] = tokens[1:30_000:2] = 3  # repeated LMS substrings: the sort recurses
    tokens[rng.random(tokens.size) < 0.01] = sep
    kernels.load_sort_kernels(tokens.size, dtype)
    loaded = {d: len(d.signatures) for d in dispatchers}
    kernels.build_suffix_array(tokens, sep)
    new = {d.__name__: d.signatures[loaded[d]:] for d in dispatchers if len(d.signatures) > loaded[d]}
    assert not new, f"{np.dtype(dtype)}, {values} values: the sort loaded {new}"
print("ok")
"""


def test_load_sort_kernels_loads_every_variant_the_sort_calls() -> None:
    """In a fresh process (nothing loaded yet), after ``load_sort_kernels`` a sort through every level
    (uint16 and uint32 input, direct and rank-compacted alphabets, parallel naming) loads nothing more:
    its argument types match the sort's calls."""
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    env.pop("NUMBA_DISABLE_JIT", None)
    run = subprocess.run(
        [sys.executable, "-c", _LOAD_SORT_KERNELS_CHILD], capture_output=True, text=True, env=env, cwd=REPO
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]


def test_workspace_must_be_a_workspace() -> None:
    with pytest.raises(TypeError, match="workspace must be a Workspace"):
        build_suffix_array(u16([1, 2]), SEP16, workspace={})  # type: ignore[arg-type]


@pytest.mark.parametrize("alphabet", [2, 3, 5, 50, 65535])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_against_prefix_doubling(alphabet: int, seed: int) -> None:
    rng = np.random.default_rng(seed * 100 + alphabet)
    tokens = rng.integers(0, alphabet, 20_000).astype(np.uint16)
    tokens[rng.random(tokens.size) < 0.01] = SEP16
    tokens.setflags(write=False)
    np.testing.assert_array_equal(
        build_suffix_array(tokens, SEP16).astype(np.int64), prefix_doubling_suffix_array(tokens, SEP16)
    )


@pytest.mark.parametrize("seed", range(40))
def test_small_random_against_naive(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 60))
    tokens = rng.integers(0, int(rng.integers(1, 5)), n).astype(np.uint16)
    tokens[rng.random(n) < 0.15] = SEP16
    check(tokens, SEP16)


def test_u32_large_ids_use_rank_compaction() -> None:
    rng = np.random.default_rng(3)
    ids = u32([70_000, 1, 4_000_000_000, 65_536, 2**32 - 2])
    tokens = ids[rng.integers(0, ids.size, 400)]
    tokens[::37] = SEP32
    check(tokens, SEP32)


def test_u32_small_ids_direct_alphabet() -> None:
    rng = np.random.default_rng(4)
    tokens = rng.integers(65_530, 65_540, 500).astype(np.uint32)  # ids on both sides of 65535
    tokens[::23] = SEP32
    check(tokens, SEP32)


def test_u32_without_separators_and_ids_above_u16() -> None:
    check(u32([100_000, 99_999, 100_000, 100_001, 99_999, 100_000]), SEP32)


def test_custom_separator_below_dtype_max() -> None:
    rng = np.random.default_rng(5)
    tokens = rng.integers(0, 10, 300).astype(np.uint16)  # 9 acts as the separator
    check(tokens, 9)


def test_memmap_read_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(6)
    values = rng.integers(0, 6, 5000).astype(np.uint16)
    values[::100] = SEP16
    path = tmp_path / "tokens.bin"
    values.tofile(path)
    tokens = np.memmap(path, dtype=np.uint16, mode="r")
    sa = build_suffix_array(tokens, SEP16)
    np.testing.assert_array_equal(sa.astype(np.int64), prefix_doubling_suffix_array(values, SEP16))


def test_non_contiguous_view() -> None:
    base = np.random.default_rng(8).integers(0, 4, 2000).astype(np.uint16)
    view = base[::2]
    np.testing.assert_array_equal(
        build_suffix_array(view, SEP16).astype(np.int64), naive_suffix_array(view, SEP16)
    )


@pytest.mark.parametrize("seed", range(6))
def test_parallel_paths_match(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The multi-threaded counting and naming give the same result as the sequential ones."""
    monkeypatch.setattr(kernels, "_PARALLEL_MIN", 8)
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 3, int(rng.integers(50, 3000))).astype(np.uint16)
    tokens[rng.random(tokens.size) < 0.05] = SEP16
    tokens.setflags(write=False)
    np.testing.assert_array_equal(
        build_suffix_array(tokens, SEP16).astype(np.int64), prefix_doubling_suffix_array(tokens, SEP16)
    )


def _lms_bits(positions: list[int], n: int) -> np.ndarray:
    bits = np.zeros((n >> 3) + 1, dtype=np.uint8)
    for p in positions:
        bits[p >> 3] |= 1 << (p & 7)
    return bits


_LMS_LAYOUTS = {
    "spread": lambda n: list(range(1, n, 3)),
    "first slice only": lambda n: list(range(1, n // 9, 2)),
    "last slice only": lambda n: list(range(n - n // 9, n, 2)),
    "one": lambda n: [n // 2],
    "slice ends": lambda n: sorted({p for c in range(1, 8) for p in (c * n // 8 - 2, c * n // 8 + 1)}),
    "dense": lambda n: list(range(1, n, 2)),
}


@pytest.mark.parametrize("layout", sorted(_LMS_LAYOUTS))
@pytest.mark.parametrize("n_chunks", [2, 3, 8, 64])
def test_parallel_lms_passes_equal_the_sequential_ones(layout: str, n_chunks: int) -> None:
    """The parallel LMS-substring lengths and reduced-order-to-positions passes write what the
    sequential ones write, for LMS positions spread out, crowded into one slice of the bit array, alone,
    on slice boundaries, and as dense as they can be; more slices than bytes leaves some empty."""
    n = 403
    positions = _LMS_LAYOUTS[layout](n)
    m = len(positions)
    bits = _lms_bits(positions, n)
    rng = np.random.default_rng(n_chunks)

    sa = rng.integers(-5, n, n).astype(np.int32)
    expected, got = sa.copy(), sa.copy()
    kernels._store_lms_lengths(expected, bits, n, m)
    kernels._store_lms_lengths_parallel(got, bits, n, m, n_chunks)
    np.testing.assert_array_equal(got, expected)

    sa[:m] = rng.permutation(m)  # a reduced suffix array: ranks of the LMS positions
    expected, got = sa.copy(), sa.copy()
    kernels._lms_order_to_positions(expected, bits, n, m)
    kernels._lms_order_to_positions_parallel(got, bits, n, m, n_chunks)
    np.testing.assert_array_equal(got[:m], expected[:m])
    np.testing.assert_array_equal(expected[:m], np.array(positions)[sa[:m]])


@pytest.mark.parametrize("layout", sorted(_LMS_LAYOUTS))
@pytest.mark.parametrize("n_chunks", [2, 3, 8, 64])
def test_parallel_gathering_and_packing_equal_the_sequential_ones(layout: str, n_chunks: int) -> None:
    """Gathering the LMS positions to the front and packing the names to the end, slice by slice in
    parallel, give the sequential passes' result, for the layouts of LMS positions above."""
    n = 403
    positions = _LMS_LAYOUTS[layout](n)
    m = len(positions)
    bits = _lms_bits(positions, n)
    rng = np.random.default_rng(n_chunks)

    sa = rng.permutation(n).astype(np.int32)  # every position once, as after induced sorting
    expected, got = sa.copy(), sa.copy()
    assert kernels._gather_lms(expected, bits, n) == m
    assert kernels._gather_lms_parallel(got, bits, n, n_chunks) == m
    np.testing.assert_array_equal(got[:m], expected[:m])
    np.testing.assert_array_equal(got[:m], sa[np.isin(sa, positions)])

    sa = np.full(n, -1, dtype=np.int32)
    sa[:m] = rng.integers(0, 1000, m)  # anything: the front is not read
    sa[m + np.array(positions, dtype=np.int64) // 2] = rng.integers(0, m, m)  # names at m + p // 2
    expected, got = sa.copy(), sa.copy()
    kernels._pack_reduced_string(expected, n, m)
    kernels._pack_reduced_string_parallel(got, n, m, n_chunks)
    np.testing.assert_array_equal(got[n - m :], expected[n - m :])
    np.testing.assert_array_equal(got[n - m :], sa[m:][sa[m:] >= 0])


def test_u32_compaction_path_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "_DIRECT_ALPHABET_LIMIT", 4)
    rng = np.random.default_rng(9)
    tokens = rng.integers(0, 20, 500).astype(np.uint32)
    tokens[::31] = SEP32
    check(tokens, SEP32)


def test_output_dtype_rule() -> None:
    assert suffix_array_dtype(0) == np.uint32
    assert suffix_array_dtype(2**32 - 1) == np.uint32
    assert suffix_array_dtype(2**32) == np.uint64


# ------------------------------------------------------------------------------------------------
# Validation


def test_rejects_list() -> None:
    with pytest.raises(TypeError, match="numpy array"):
        build_suffix_array([1, 2, 3], SEP16)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.uint64, np.float32, np.int16])
def test_rejects_other_dtypes(dtype: type) -> None:
    with pytest.raises(TypeError, match="uint16 or uint32"):
        build_suffix_array(np.zeros(4, dtype=dtype), 3)


def test_rejects_2d() -> None:
    with pytest.raises(ValueError, match="1-D"):
        build_suffix_array(np.zeros((2, 2), dtype=np.uint16), SEP16)


def test_rejects_token_above_separator() -> None:
    with pytest.raises(ValueError, match=r"token id 12 at position 2 is larger than the separator 10"):
        build_suffix_array(u16([1, 10, 12, 3]), 10)


@pytest.mark.parametrize("separator", [-1, 65536])
def test_rejects_separator_out_of_range(separator: int) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        build_suffix_array(u16([1, 2]), separator)


@pytest.mark.parametrize("separator", [1.5, "65535", True, None])
def test_rejects_non_integer_separator(separator: object) -> None:
    with pytest.raises(TypeError, match="separator must be an integer"):
        build_suffix_array(u16([1, 2]), separator)  # type: ignore[arg-type]


@pytest.mark.parametrize("output_u64", [False, True])
def test_int64_work_arrays(output_u64: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The path for inputs of 2^31 positions or more (int64 work arrays, and u64 output from 2^32),
    exercised on a small input by lowering the thresholds."""
    monkeypatch.setattr(kernels, "_INT32_MAX_POSITIONS", 16)
    if output_u64:
        monkeypatch.setattr(kernels, "suffix_array_dtype", lambda n: np.dtype(np.uint64))
    rng = np.random.default_rng(10)
    for dtype, sep in ((np.uint16, SEP16), (np.uint32, SEP32)):
        tokens = rng.integers(0, 3, 2000).astype(dtype)
        tokens[rng.random(tokens.size) < 0.02] = sep
        tokens.setflags(write=False)
        sa = build_suffix_array(tokens, sep)
        assert sa.dtype == (np.uint64 if output_u64 else np.uint32)
        np.testing.assert_array_equal(sa.astype(np.int64), prefix_doubling_suffix_array(tokens, sep))


def test_real_text_sample(pythia_tokenizer) -> None:  # type: ignore[no-untyped-def]
    """Real token statistics (Zipfian ids, repeated boilerplate): the first documents of the embedded
    sample corpus, tokenized with the Pythia tokenizer, against the prefix-doubling oracle."""
    import io
    import itertools
    import json
    from pathlib import Path

    import zstandard

    corpus = Path(__file__).resolve().parents[3] / "data" / "sample-en.jsonl.zst"
    with open(corpus, "rb") as raw:
        lines = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw), encoding="utf-8")
        texts = [json.loads(line)["text"] for line in itertools.islice(lines, 40)]
    parts = []
    for ids in pythia_tokenizer.encode_batch(texts):
        parts.append(ids.astype(np.uint16))
        parts.append(u16([SEP16]))
    tokens = np.concatenate(parts)
    tokens.setflags(write=False)
    assert tokens.size > 50_000
    np.testing.assert_array_equal(
        build_suffix_array(tokens, SEP16).astype(np.int64), prefix_doubling_suffix_array(tokens, SEP16)
    )


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_documents_are_placed_with_separators_as_the_naive_copy_does(dtype):
    rng = np.random.default_rng(11)
    sep = int(np.iinfo(dtype).max)
    for lengths in ([], [0], [0, 0, 3], [5], list(rng.integers(0, 40, 300)), [1] * 50):
        lengths = np.asarray(lengths, dtype=np.int64)
        ids = rng.integers(0, 1000, int(lengths.sum())).astype(dtype)
        pos = int(rng.integers(0, 5))
        buf = np.full(pos + len(ids) + len(lengths) + 3, 7, dtype=dtype)
        ends = place_documents(buf, pos, ids, lengths, sep)
        want, src = [], 0
        for n in lengths:
            want += [*ids[src : src + n].tolist(), sep]
            src += n
        assert buf[pos : pos + len(want)].tolist() == want
        assert buf[:pos].tolist() == [7] * pos and buf[pos + len(want) :].tolist() == [7] * 3
        assert ends.tolist() == (pos + np.cumsum(lengths + 1)).tolist()
    with pytest.raises(ValueError, match="sum to 3, not the 2 ids"):
        place_documents(np.zeros(10, dtype=dtype), 0, np.ones(2, dtype=dtype), np.array([3]), sep)
    with pytest.raises(ValueError, match="past the shard"):
        place_documents(np.zeros(3, dtype=dtype), 1, np.ones(2, dtype=dtype), np.array([2]), sep)
