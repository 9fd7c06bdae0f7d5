"""Property tests: build_suffix_array equals the naive oracle on generated token arrays."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.kernels import build_suffix_array

try:
    from tests.naive import naive_suffix_array, suffix_array_errors
except ModuleNotFoundError:  # `pytest` run as a script puts tests/, not the repository root, on sys.path
    from naive import naive_suffix_array, suffix_array_errors  # type: ignore[no-redef]

SEP16 = 65535
SEP32 = 2**32 - 1

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_matches_oracle(values: list[int], dtype: type, separator: int) -> None:
    tokens = np.array(values, dtype=dtype)
    tokens.setflags(write=False)
    sa = build_suffix_array(tokens, separator)
    assert sa.dtype == np.uint32
    np.testing.assert_array_equal(sa.astype(np.int64), naive_suffix_array(values, separator))


@st.composite
def documents(draw: st.DrawFn, alphabet: list[int], separator: int, max_docs: int = 8) -> list[int]:
    """Documents (possibly empty) over ``alphabet``, each followed by the separator, optionally
    without the final separator."""
    docs = draw(st.lists(st.lists(st.sampled_from(alphabet), max_size=12), max_size=max_docs))
    values: list[int] = []
    for doc in docs:
        values.extend(doc)
        values.append(separator)
    if values and draw(st.booleans()):
        values.pop()
    return values


small_alphabet = st.integers(1, 4).map(lambda k: list(range(k)))


@SETTINGS
@given(st.lists(st.integers(0, 3), max_size=80))
def test_random_small_alphabet_u16(values: list[int]) -> None:
    assert_matches_oracle(values, np.uint16, SEP16)


@SETTINGS
@given(small_alphabet.flatmap(lambda a: documents(a, SEP16)))
def test_documents_u16(values: list[int]) -> None:
    assert_matches_oracle(values, np.uint16, SEP16)


@SETTINGS
@given(st.lists(st.sampled_from([0, 1, 65533, 65534, SEP16]), max_size=60))
def test_largest_ids_and_runs_of_separators(values: list[int]) -> None:
    assert_matches_oracle(values, np.uint16, SEP16)


@SETTINGS
@given(
    st.lists(st.integers(0, 3), min_size=1, max_size=8),
    st.integers(1, 12),
    st.lists(st.tuples(st.integers(0, 200), st.sampled_from([0, 1, 2, 3, SEP16])), max_size=3),
)
def test_long_repeats_with_mutations(block: list[int], copies: int, edits: list[tuple[int, int]]) -> None:
    values = block * copies
    for pos, value in edits:
        if pos < len(values):
            values[pos] = value
    assert_matches_oracle(values, np.uint16, SEP16)


@SETTINGS
@given(st.integers(0, 70), st.sampled_from([0, 5, 65534, SEP16]))
def test_single_repeated_value(n: int, value: int) -> None:
    assert_matches_oracle([value] * n, np.uint16, SEP16)


@SETTINGS
@given(documents([0, 70_000, 65_535, 65_536, 2**31, 2**32 - 2], SEP32))
def test_u32_ids_above_u16(values: list[int]) -> None:
    assert_matches_oracle(values, np.uint32, SEP32)


@SETTINGS
@given(st.lists(st.integers(0, 2), max_size=40), st.integers(2, 9))
def test_custom_separator(values: list[int], separator: int) -> None:
    values = [min(v, separator) for v in values]
    assert_matches_oracle(values, np.uint16, separator)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(200, 3000), st.integers(1, 6))
def test_longer_inputs_are_sorted_permutations(seed: int, n: int, alphabet: int) -> None:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, alphabet, n).astype(np.uint16)
    # a long repeat of an earlier stretch and a few document boundaries
    start, length = int(rng.integers(0, n // 2)), int(rng.integers(1, n // 2))
    end = min(n, start + 2 * length)
    tokens[start + length : end] = tokens[start : end - length]
    tokens[rng.random(n) < 0.01] = SEP16
    tokens.setflags(write=False)
    assert suffix_array_errors(tokens, SEP16, build_suffix_array(tokens, SEP16)) == []
