"""The numba kernels run as plain Python (``NUMBA_DISABLE_JIT=1``) and give the naive oracles' answers.

The house style keeps every kernel runnable without the JIT so that coverage can count kernel lines.
Plain Python follows numpy's scalar rules instead of numba's (a Python ``int`` meeting a ``uint8`` stays
``uint8`` and may not go negative, scalar overflow warns instead of wrapping), so a kernel that leans on
numba's integer typing fails here even though it is correct when compiled.

numba reads the setting when it is imported, so the checks run in one child process started with the
JIT off (this file is its script); warnings are errors there, as in the suite, so a silent scalar
wrap-around fails a check. Each check is reported as its own test. The child also lowers
``indexer.kernels._PARALLEL_MIN`` for one check so that the ``prange`` kernels run on small inputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SEP16 = 65535
SEP32 = 2**32 - 1


# --------------------------------------------------------------------------------------------------
# Helpers (child side)


def _ro(values: object, dtype: object = None) -> np.ndarray:
    arr = np.array(values, dtype=dtype)
    arr.setflags(write=False)
    return arr


def _oracles() -> tuple[Callable[..., np.ndarray], Callable[..., np.ndarray], Callable[..., list[str]]]:
    from tests.naive import naive_suffix_array, prefix_doubling_suffix_array, suffix_array_errors

    return naive_suffix_array, prefix_doubling_suffix_array, suffix_array_errors


def _check_sa(tokens: np.ndarray, separator: int, oracle: str = "naive") -> np.ndarray:
    from indexer.kernels import build_suffix_array

    naive_suffix_array, prefix_doubling_suffix_array, suffix_array_errors = _oracles()
    if tokens.flags.writeable:
        tokens.setflags(write=False)
    before = tokens.copy()
    sa = build_suffix_array(tokens, separator)
    assert sa.dtype == np.uint32, sa.dtype
    assert np.array_equal(tokens, before), "input was modified"
    want = (
        naive_suffix_array(tokens, separator)
        if oracle == "naive"
        else prefix_doubling_suffix_array(tokens, separator)
    )
    if not np.array_equal(sa.astype(np.int64), want):
        problems = suffix_array_errors(tokens, separator, sa)
        raise AssertionError(f"suffix array of {len(tokens)} {tokens.dtype} tokens differs: {problems}")
    return sa


def _lms_count(values: list[int]) -> int:
    """Number of LMS positions (S-type after L-type; the end of the text is the smallest symbol)."""
    n = len(values)
    is_s = [False] * n
    for i in range(n - 2, -1, -1):
        is_s[i] = values[i] < values[i + 1] or (values[i] == values[i + 1] and is_s[i + 1])
    return sum(1 for i in range(1, n) if is_s[i] and not is_s[i - 1])


def _fibonacci_word(n: int) -> list[int]:
    a, b = [1], [1, 2]
    while len(b) < n:
        a, b = b, b + a
    return b[:n]


def _documents(rng: np.random.Generator, n_docs: int, alphabet: int, max_len: int, sep: int) -> list[int]:
    out: list[int] = []
    for _ in range(n_docs):
        out += rng.integers(0, alphabet, size=int(rng.integers(0, max_len))).tolist() + [sep]
    return out


def _doc_offsets(values: list[int], sep: int) -> np.ndarray:
    ends = [i + 1 for i, v in enumerate(values) if v == sep]
    return _ro([0] + ends, np.int64)


def _flatten(patterns: list[tuple[int, ...]]) -> tuple[np.ndarray, np.ndarray]:
    flat = _ro([t for p in patterns for t in p], np.int64)
    offsets = _ro(np.concatenate([[0], np.cumsum([len(p) for p in patterns])]), np.int64)
    return flat, offsets


def _occurrences(values: list[int], pat: tuple[int, ...]) -> list[int]:
    k = len(pat)
    return [i for i in range(len(values) - k + 1) if tuple(values[i : i + k]) == pat]


# --------------------------------------------------------------------------------------------------
# Checks (child side): each raises on a wrong answer


def check_jit_is_off() -> None:
    import types

    import numba

    import indexer.kernels as ik
    import service.engine.kernels as ek

    assert numba.config.DISABLE_JIT, "the child process runs with the JIT on"
    for mod, names in ((ik, ("_name_scatter", "_induce", "_count_symbols_parallel")), (ek, ("_sa_ranges",))):
        for name in names:
            assert isinstance(getattr(mod, name), types.FunctionType), f"{mod.__name__}.{name} is compiled"


def check_sa_edge_cases() -> None:
    cases = [
        [],
        [5],
        [SEP16],
        [SEP16] * 4,
        [7, 7],
        [2, 1],
        [SEP16, 3],
        [0, 65534, 0, 65534, 0, SEP16],  # two LMS substrings: the first name is -1 + 1 (uint8 under numpy)
        [65534, 65534, SEP16, 65534, 0, 65534, SEP16],
        [SEP16, SEP16, 4, SEP16, SEP16, 4, 4, SEP16],
        [1, 2, 1, 2, 1, SEP16, 1, 2, 1, 2, SEP16],
        [ord(c) for c in "mississippi"],
        [0] * 300,
        [65534] * 257 + [SEP16],
    ]
    for values in cases:
        _check_sa(_ro(values, np.uint16), SEP16)
        _check_sa(_ro([SEP32 if v == SEP16 else v for v in values], np.uint32), SEP32)


def check_sa_memmap() -> None:
    values = _documents(np.random.default_rng(7), 40, 6, 30, SEP16)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokens.bin"
        np.array(values, dtype=np.uint16).tofile(path)
        tokens = np.memmap(path, dtype=np.uint16, mode="r")
        _check_sa(tokens, SEP16)
        del tokens


def check_sa_more_than_256_names() -> None:
    # Hundreds of distinct LMS substrings: a name counter held in the flags' uint8 would wrap at 256.
    rng = np.random.default_rng(11)
    for alphabet, n in ((5000, 2500), (40, 3000)):
        values = _documents(rng, 12, alphabet, 2 * n // 12, SEP16)
        assert _lms_count(values) > 300, "the input does not exercise more than 256 names"
        _check_sa(_ro(values, np.uint16), SEP16)


def check_sa_recursion() -> None:
    # Repeated LMS substrings force the reduced problem, several levels deep for these.
    cases = [
        _fibonacci_word(1500),
        ([3, 1, 2] * 300)[:899] + [SEP16],
        [ord(c) for c in "abracadabra" * 90],
        ([0] * 5 + [1]) * 150,
        ([2, 1] * 200 + [SEP16]) * 3,
        [9 if i % 97 == 0 else 4 for i in range(2000)],
    ]
    for values in cases:
        _check_sa(_ro(values, np.uint16), SEP16)


def check_sa_random_alphabets() -> None:
    rng = np.random.default_rng(3)
    for alphabet in (2, 3, 4, 17, 256, 65535):
        for _ in range(3):
            values = _documents(rng, int(rng.integers(1, 30)), alphabet, 80, SEP16)
            _check_sa(_ro(values, np.uint16), SEP16, oracle="doubling")
    values = rng.integers(0, 65535, size=1000).tolist()  # no separator at all
    _check_sa(_ro(values, np.uint16), SEP16)


def check_sa_u32_paths() -> None:
    rng = np.random.default_rng(5)
    small = _documents(rng, 30, 5, 60, SEP32)  # ids used directly
    _check_sa(_ro(small, np.uint32), SEP32, oracle="doubling")
    big = [SEP32 if v == SEP32 else (1 << 30) + 977 * v for v in _documents(rng, 30, 7, 60, SEP32)]
    _check_sa(_ro(big, np.uint32), SEP32, oracle="doubling")  # ids ranked through np.unique
    below = [v if v != SEP32 else 1 << 23 for v in small]  # separator below the dtype maximum
    _check_sa(_ro(below, np.uint32), 1 << 23, oracle="doubling")


def check_sa_parallel_kernels() -> None:
    # Small thresholds so the prange kernels (parallel counting, parallel naming, sorted compaction)
    # run on inputs that plain Python handles quickly.
    import numba

    import indexer.kernels as ik

    assert numba.get_num_threads() > 1, "the parallel paths need more than one thread"
    saved = ik._PARALLEL_MIN
    ik._PARALLEL_MIN = 64
    try:
        rng = np.random.default_rng(9)
        small = _documents(rng, 40, 6, 80, SEP32)
        assert ik._chunks(_lms_count(small)) > 1
        _check_sa(_ro(small, np.uint32), SEP32, oracle="doubling")
        big = [SEP32 if v == SEP32 else (1 << 28) + 131 * v for v in _documents(rng, 40, 300, 80, SEP32)]
        _check_sa(_ro(big, np.uint32), SEP32, oracle="doubling")
        text = _ro(small, np.uint32)
        counts = np.empty(8, dtype=np.int32)
        direct = np.where(text == SEP32, 7, text).astype(np.int32)
        ik._count_symbols_parallel(direct, counts, 4)
        assert counts.tolist() == np.bincount(direct, minlength=8).tolist()
    finally:
        ik._PARALLEL_MIN = saved


def check_engine_ranges_and_next_tokens() -> None:
    from indexer.kernels import build_suffix_array
    from service.engine import kernels as K

    rng = np.random.default_rng(0)
    for dtype, sep in ((np.uint16, SEP16), (np.uint32, SEP32)):
        values = _documents(rng, 25, 4, 30, sep)
        tokens = _ro(values, dtype)
        sa = build_suffix_array(tokens, sep)
        sa.setflags(write=False)
        pats = [()] + [tuple(rng.integers(0, 5, size=int(rng.integers(1, 4))).tolist()) for _ in range(60)]
        flat, offsets = _flatten(pats)
        starts = K._first_token_starts(tokens, sa, np.int64(5))
        starts.setflags(write=False)
        order = _ro(sorted(range(len(pats)), key=lambda i: pats[i]), np.int64)  # lexicographic
        lo, hi = K._sa_ranges(tokens, sa, flat, offsets, order, starts)
        real = [i for i, v in enumerate(values) if v != sep]
        for p, a, b in zip(pats, lo.tolist(), hi.tolist(), strict=True):
            where = _occurrences(values, p) if p else real
            assert sorted(sa[a:b].tolist()) == where, p
            ids, cnt, ends = K._next_tokens(
                tokens, sa, np.int64(a), np.int64(b), np.int64(len(p)), np.int64(sep)
            )
            following = Counter(values[i + len(p)] for i in where)
            assert int(ends) == following.pop(sep, 0), p
            assert dict(zip(ids.tolist(), cnt.tolist(), strict=True)) == dict(following), p
            assert ids.tolist() == sorted(ids.tolist()), p


def check_engine_doc_sets() -> None:
    from indexer.kernels import build_suffix_array
    from service.engine import kernels as K
    from service.engine.shards import bucket_table as _bucket_table
    from tests.naive import naive_documents_containing

    rng = np.random.default_rng(1)
    for n_docs in (8, 400):  # few docs: bitset path; many docs: stamp + sort path
        values = _documents(rng, n_docs, 3, 12 if n_docs > 100 else 200, SEP16)
        tokens = _ro(values, np.uint16)
        sa = build_suffix_array(tokens, SEP16)
        sa.setflags(write=False)
        off = _doc_offsets(values, SEP16)
        shift, table = _bucket_table(off)
        table.setflags(write=False)
        specs = [[(0,)], [(1, 2), (2, 1)], [(0, 0, 0), (0, 0)], [(2, 2, 2, 2, 2)], [(1,), (1, 1)]]
        variants = [v for s in specs for v in s]
        flat, offsets = _flatten(variants)
        starts = K._first_token_starts(tokens, sa, np.int64(3))
        order = _ro(np.arange(len(variants)), np.int64)
        lo, hi = K._sa_ranges(tokens, sa, flat, offsets, order, starts)
        spec_off = _ro(np.concatenate([[0], np.cumsum([len(s) for s in specs])]), np.int64)
        docs, docs_off = K._doc_sets(sa, off, table, shift, lo, hi, spec_off)
        for j, spec in enumerate(specs):
            want = sorted({d for v in spec for d in naive_documents_containing(values, SEP16, v)})
            assert docs[docs_off[j] : docs_off[j + 1]].tolist() == want, (n_docs, spec)
        c_docs, c_counts, c_off = K._doc_counts(sa, off, table, shift, lo, hi, spec_off)
        assert c_docs.tolist() == docs.tolist() and c_off.tolist() == docs_off.tolist()
        for j, spec in enumerate(specs):  # occurrences per document: distinct start positions of the OR
            starts = {p for v in spec for p in _occurrences(values, v)}
            per_doc = Counter(int(np.searchsorted(off, p, side="right")) - 1 for p in starts)
            got = dict(
                zip(
                    c_docs[c_off[j] : c_off[j + 1]].tolist(),
                    c_counts[c_off[j] : c_off[j + 1]].tolist(),
                    strict=True,
                )
            )
            assert got == dict(per_doc), (n_docs, spec)
        for pos in range(len(values)):
            want_doc = int(np.searchsorted(off, pos, side="right")) - 1
            assert K._doc_of(off, np.int64(pos)) == want_doc
            assert K._doc_of_bucketed(off, table, shift, np.int64(pos)) == want_doc


def check_engine_intersections() -> None:
    from service.engine import kernels as K

    for x in (0, 1, 2**63, 2**64 - 1, 0x5555, 123456789123456789):
        assert K._popcount64(np.uint64(x)) == bin(x).count("1"), x
    rng = np.random.default_rng(4)
    n_docs = 300
    sets = [np.unique(rng.integers(0, n_docs, size=s)) for s in (0, 1, 5, 60, 150, 290, 600)]
    flat = _ro(np.concatenate(sets), np.int64)
    set_off = _ro(np.concatenate([[0], np.cumsum([len(s) for s in sets])]), np.int64)
    queries = [list(q) for q in rng.integers(0, len(sets), size=(40, 2))] + [[4, 5, 6, 6], [6, 5, 3]]
    q_flat = _ro([s for q in queries for s in q], np.int64)
    q_off = _ro(np.concatenate([[0], np.cumsum([len(q) for q in queries])]), np.int64)
    want = [set.intersection(*[set(sets[s].tolist()) for s in q]) for q in queries]
    weights = _ro(rng.integers(1, 9, size=len(flat)), np.int64)
    weight_of = [
        dict(zip(sets[s].tolist(), weights[set_off[s] : set_off[s + 1]].tolist(), strict=True))
        for s in range(len(sets))
    ]
    n_words = (n_docs + 63) // 64
    for dense in ([], [5, 6], list(range(len(sets)))):
        rows_of = np.full(len(sets), -1, dtype=np.int64)
        rows_of[dense] = np.arange(len(dense))
        rows_of.setflags(write=False)
        bits = K._build_bitsets(flat, set_off, rows_of, len(dense), n_words)
        bits.setflags(write=False)
        got = K._intersect_counts(flat, set_off, q_flat, q_off, bits, rows_of)
        assert got.tolist() == [len(w) for w in want], dense
        sums = K._anchored_sums(flat, weights, set_off, q_flat, q_off, bits, rows_of)
        assert sums.tolist() == [
            sum(weight_of[q[0]][x] for x in w) for q, w in zip(queries, want, strict=True)
        ]
    for q, w in zip(queries, want, strict=True):
        assert K._intersect_members(flat, set_off, _ro(q, np.int64)).tolist() == sorted(w), q
    arr = sets[4].astype(np.int64)
    for start in (0, 3, len(arr)):
        for x in range(-1, n_docs + 2, 5):
            assert K._gallop(arr, start, len(arr), x) == max(start, int(np.searchsorted(arr, x)))


def check_engine_windowed() -> None:
    from indexer.kernels import build_suffix_array
    from service.engine import kernels as K
    from service.engine.shards import bucket_table as _bucket_table

    rng = np.random.default_rng(2)
    values = _documents(rng, 30, 4, 50, SEP16)
    tokens = _ro(values, np.uint16)
    sa = build_suffix_array(tokens, SEP16)
    sa.setflags(write=False)
    off = _doc_offsets(values, SEP16)
    shift, table = _bucket_table(off)
    doc_of = [int(np.searchsorted(off, p, side="right")) - 1 for p in range(len(values))]
    queries = [  # query = clauses, clause = OR of variants; the first clause is the anchor
        [[(0, 1)], [(2,)]],
        [[(3, 3)], [(1, 2), (2, 1)], [(0,)]],
        [[(1,), (1, 1)], [(3, 0, 3)]],
        [[(2, 2, 2)], [(0, 0)]],
    ]
    clauses = [c for q in queries for c in q]
    variants = [v for c in clauses for v in c]
    var_flat, var_off = _flatten(variants)
    clause_off = _ro(np.concatenate([[0], np.cumsum([len(c) for c in clauses])]), np.int64)
    query_off = _ro(np.concatenate([[0], np.cumsum([len(q) for q in queries])]), np.int64)
    anchors = _ro(query_off[:-1], np.int64)
    starts = K._first_token_starts(tokens, sa, np.int64(4))
    lo, hi = K._sa_ranges(tokens, sa, var_flat, var_off, _ro(np.arange(len(variants)), np.int64), starts)

    def at(clause: list[tuple[int, ...]]) -> set[int]:
        return {p for v in clause for p in _occurrences(values, v)}

    for window in (0, 3, 10):
        want = []
        for q in queries:
            others = [at(c) for c in q[1:]]
            want.append(
                sum(
                    all(any(abs(x - p) <= window and doc_of[x] == doc_of[p] for x in o) for o in others)
                    for p in at(q[0])
                )
            )
        for mode in (-1, 0, 1, 2):
            got = K._windowed_counts(
                tokens,
                sa,
                off,
                table,
                shift,
                var_flat,
                var_off,
                lo,
                hi,
                clause_off,
                query_off,
                anchors,
                np.int64(window),
                np.int64(mode),
            )
            assert got.tolist() == want, (window, mode, got.tolist(), want)


def check_engine_find_in() -> None:
    from service.engine import kernels as K

    rng = np.random.default_rng(6)
    doc = _ro(rng.integers(0, 3, size=400), np.uint16)
    for pat in ((0,), (1, 2), (2, 2, 2), (0, 1, 2, 0), tuple(doc[:400].tolist()), (1,) * 401):
        got = K._find_in(doc, _ro(pat, np.int64))
        assert got.tolist() == _occurrences(doc.tolist(), pat), pat


def check_engine_trace_longest_matches() -> None:
    from indexer.kernels import build_suffix_array
    from service.engine import kernels as K
    from service.engine.trace import _longest_matches

    rng = np.random.default_rng(7)
    for dtype, sep in ((np.uint16, SEP16), (np.uint32, SEP32)):
        values = _documents(rng, 20, 3, 25, sep)
        tokens = _ro(values, dtype)
        sa = build_suffix_array(tokens, sep)
        sa.setflags(write=False)
        starts = K._first_token_starts(tokens, sa, np.int64(5))
        starts.setflags(write=False)
        for _ in range(20):
            q = rng.integers(0, 5, size=int(rng.integers(1, 12)))
            positions = _ro(np.flatnonzero(rng.random(len(q)) < 0.7), np.int64)
            length, lo, hi = _longest_matches(tokens, sa, starts, _ro(q, np.int64), positions)
            for j, p in enumerate(positions.tolist()):
                best = 0
                while p + best < len(q) and _occurrences(values, tuple(q[p : p + best + 1].tolist())):
                    best += 1
                assert int(length[j]) == best, (q.tolist(), p)
                want = _occurrences(values, tuple(q[p : p + best].tolist())) if best else []
                assert sorted(sa[lo[j] : hi[j]].tolist()) == want, (q.tolist(), p)


CHECKS: dict[str, Callable[[], None]] = {
    name[len("check_") :]: fn
    for name, fn in sorted(globals().items())
    if name.startswith("check_") and callable(fn)
}


def _run_checks() -> dict[str, str | None]:
    """Run every check; name -> None when it passed, else its traceback."""
    warnings.simplefilter("error")
    results: dict[str, str | None] = {}
    for name, fn in CHECKS.items():
        try:
            fn()
            results[name] = None
        except Exception:
            results[name] = traceback.format_exc()
    return results


# --------------------------------------------------------------------------------------------------
# Tests (parent side)


@pytest.fixture(scope="module")
def nojit_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    tmp = tmp_path_factory.mktemp("nojit")
    env = dict(os.environ)
    env["NUMBA_DISABLE_JIT"] = "1"
    env.setdefault("NUMBA_NUM_THREADS", "2")
    if int(env["NUMBA_NUM_THREADS"]) < 2:
        env["NUMBA_NUM_THREADS"] = "2"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    out = tmp / "results.json"
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and out.is_file(), (
        f"the child process with NUMBA_DISABLE_JIT=1 failed (exit {proc.returncode}):\n"
        f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return json.loads(out.read_text())


@pytest.mark.parametrize("name", list(CHECKS))
def test_kernels_without_jit(name: str, nojit_results: dict[str, str | None]) -> None:
    assert name in nojit_results, f"check {name} did not run"
    error = nojit_results[name]
    assert error is None, f"{name} failed with NUMBA_DISABLE_JIT=1:\n{error}"


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(json.dumps(_run_checks()))
