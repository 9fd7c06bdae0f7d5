"""Pair counting: batching, caching and resume, one unit for Eq. 1, failures never become zeros."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from clients.cache import CACHE_FILE, ResultCache
from clients.eval.pairs import (
    CountBackend,
    CountCache,
    CountingError,
    CountOptions,
    count_pairs,
    count_phrases,
    exists_key,
    migrate_jsonl,
    pair_key,
    phrase_key,
    phrase_variants,
)
from clients.eval.taskgram_lm import InconsistentCounts, build_taskgram
from tests.unit.clients.test_eval_fakes import BruteForceBackend

DOCS = [
    "The Python language has a garbage collector. Python code runs.",
    "Garbage collector pauses are short in the Python runtime.",
    "A file system stores files. The garbage collector is unrelated.",
    "Nothing here.",
]


def test_variants_cover_case_forms_without_duplicates() -> None:
    assert phrase_variants("garbage collector") == [
        "garbage collector",
        "Garbage collector",
        "Garbage Collector",
    ]
    assert phrase_variants("2 50") == ["2 50"]
    assert phrase_variants("python", case_variants=False) == ["python"]


def test_counts_match_brute_force_in_small_batches(tmp_path: Path) -> None:
    backend = BruteForceBackend(DOCS)
    assert isinstance(backend, CountBackend)
    opts = CountOptions(batch_size=2)
    cache = CountCache(tmp_path / "c", "test")
    x = count_phrases(backend, ["python", "garbage collector", "file system", "absent words"], cache, opts)
    assert x == {"python": 2, "garbage collector": 3, "file system": 1, "absent words": 0}
    pairs = [
        ("python", "garbage collector"),
        ("file system", "garbage collector"),
        ("python", "file system"),
        ("python", "garbage collector"),
    ]
    c = count_pairs(backend, pairs, cache, opts)
    assert c == {
        ("python", "garbage collector"): 2,
        ("file system", "garbage collector"): 1,
        ("python", "file system"): 0,
    }
    # distinct pairs only, in batches of 2: 3 pairs -> 2 calls
    assert [k for k in backend.calls if k[0] == "cooccurrence"] == [("cooccurrence", 2), ("cooccurrence", 1)]


def test_cache_resumes_without_requerying(tmp_path: Path) -> None:
    backend = BruteForceBackend(DOCS)
    count_pairs(backend, [("python", "garbage collector")], CountCache(tmp_path, "ix"), CountOptions())
    again = BruteForceBackend(DOCS)
    got = count_pairs(
        again,
        [("python", "garbage collector"), ("python", "file system")],
        CountCache(tmp_path, "ix"),  # a new process: a fresh connection to the same sqlite file
        CountOptions(),
    )
    assert got == {("python", "garbage collector"): 2, ("python", "file system"): 0}
    assert again.calls == [("cooccurrence", 1)]  # only the new pair
    # another identity (another index, or other phrase variants) shares nothing
    other = BruteForceBackend(DOCS)
    count_pairs(
        other, [("python", "garbage collector")], CountCache(tmp_path, "another index"), CountOptions()
    )
    assert other.calls == [("cooccurrence", 1)]
    assert len(ResultCache(tmp_path)) == 3


def test_one_cache_file_for_the_client_and_the_evaluation(tmp_path: Path) -> None:
    store = ResultCache(tmp_path)
    cache = CountCache(store, "ix")
    cache.add({phrase_key("python"): 2, pair_key("python", "file system"): 0})
    assert cache.store.path == tmp_path / CACHE_FILE
    assert store.get_many("ix", "counts:df:word", ["python"]) == {"python": 2}
    assert store.get_many("ix", "counts:co:word", ['["python","file system"]']) == {
        '["python","file system"]': 0
    }
    assert CountCache(tmp_path, "ix").get(pair_key("python", "file system", boundary="token")) is None


def test_jsonl_cache_of_the_earlier_format_is_migrated_once(tmp_path: Path) -> None:
    old = tmp_path / "counts-0123456789abcdef.jsonl"
    lines = [
        {"k": "df\tword\tpython", "v": 2},
        {"k": "occ\ttoken\tpython", "v": 4},
        {"k": "co\tword\tpython\tgarbage collector", "v": 2},
        {"k": "occ-co\tword\tpython\tgarbage collector", "v": 3},
        {"k": "ex\tword\tfile system", "v": 1},
    ]
    old.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"k": "co\\tx', encoding="utf-8")
    cache = CountCache(tmp_path, "ix")
    assert migrate_jsonl(old, cache) == 5  # the torn last line is dropped
    assert not old.exists() and old.with_name(old.name + ".migrated").exists()
    reread = CountCache(tmp_path, "ix")
    assert reread.get(phrase_key("python")) == 2
    assert reread.get(phrase_key("python", "occurrences", "token")) == 4
    assert reread.get(pair_key("python", "garbage collector")) == 2
    assert reread.get(pair_key("python", "garbage collector", "occurrences")) == 3
    assert reread.get(exists_key("file system")) == 1
    backend = BruteForceBackend(DOCS)
    assert count_pairs(backend, [("python", "garbage collector")], reread, CountOptions()) == {
        ("python", "garbage collector"): 2
    }
    assert backend.calls == []
    for bad in (
        '{"k": "co\\tx\\ty"}\n',
        '{"k": "co\\tword\\tx", "v": 1}\n',
        '{"k": "df\\twords\\tx", "v": 1}\n',
    ):
        old.write_text('{"k": "df\\tword\\tx", "v": 1}\n' + bad, encoding="utf-8")
        with pytest.raises(CountingError, match=r"counts-0123456789abcdef.jsonl:2: malformed"):
            migrate_jsonl(old, CountCache(tmp_path / "bad", "ix"))
        assert len(ResultCache(tmp_path / "bad")) == 0 and old.exists()  # nothing stored, file kept


def test_failures_and_malformed_answers_are_errors_not_zeros(tmp_path: Path) -> None:
    backend = BruteForceBackend(DOCS)
    backend.fail_on = "cooccurrence"
    cache = CountCache(tmp_path / "c", "test")
    with pytest.raises(CountingError, match="ConnectionError: server went away"):
        count_pairs(backend, [("python", "file system")], cache, CountOptions())
    assert cache.values() == {} and len(cache.store) == 0  # nothing recorded for the failed batch
    for bad, msg in [
        ([1], "2 queries"),
        ([1, -1], "not a non-negative"),
        ([1, None], "not a non-negative"),
        ([1, True], "not a non-negative"),
        ("12", "str"),
    ]:
        backend = BruteForceBackend(DOCS)
        backend.answer = bad
        with pytest.raises(CountingError, match=msg):
            count_phrases(backend, ["python", "file"], CountCache(tmp_path / "d", "test"), CountOptions())


UNIT_DOCS = ["the cat sat with the cat", "Cat and dog", "a dog and a cat and a cat", "dog dog"]


def _unit_counts(backend, cache: CountCache, unit: str) -> tuple[dict, dict]:
    opts = CountOptions(unit=unit)  # type: ignore[arg-type]
    x = count_phrases(backend, ["cat", "dog", "bird"], cache, opts)
    pairs = count_pairs(
        backend, [("cat", "dog"), ("dog", "cat"), ("cat", "bird"), ("bird", "cat")], cache, opts
    )
    return x, pairs


def _check_unit_counts(backend, cache: CountCache) -> None:
    # documents: cat in docs 0, 1 ("Cat" is a variant), 2; dog in docs 1, 2, 3
    x, pairs = _unit_counts(backend, cache, "documents")
    assert x == {"cat": 3, "dog": 3, "bird": 0}
    assert pairs == {("cat", "dog"): 2, ("dog", "cat"): 2, ("cat", "bird"): 0, ("bird", "cat"): 0}
    # occurrences: cat 2 + 1 + 2 = 5, of which 1 + 2 lie in documents with a dog: P(dog | cat) = 3/5;
    # dog 1 + 1 + 2 = 4, of which 1 + 1 lie in documents with a cat: P(cat | dog) = 2/4
    x, pairs = _unit_counts(backend, cache, "occurrences")
    assert x == {"cat": 5, "dog": 4, "bird": 0}
    assert pairs == {("cat", "dog"): 3, ("dog", "cat"): 2, ("cat", "bird"): 0, ("bird", "cat"): 0}
    rows = [("t", 1, "e", sx, sy, None) for sx, sy in pairs]
    kept, stats = build_taskgram(rows, pairs, x)
    assert (stats.zero_count, stats.kept) == (2, 2)
    assert [round(math.exp(p.log_prob), 9) for p in kept] == [0.6, 0.5]
    # the document counts are still there, under their own keys: the units never mix in one cache
    x, pairs = _unit_counts(backend, cache, "documents")
    assert x["cat"] == 3 and pairs[("cat", "dog")] == 2
    reread = CountCache(cache.path.parent, cache.identity)
    assert (
        reread.get(phrase_key("cat", "documents")) == 3 and reread.get(phrase_key("cat", "occurrences")) == 5
    )
    assert reread.get(pair_key("cat", "dog", "documents")) == 2
    assert reread.get(pair_key("cat", "dog", "occurrences")) == 3


def test_occurrence_unit_by_hand_and_cached_apart_from_documents(tmp_path: Path) -> None:
    backend = BruteForceBackend(UNIT_DOCS)
    _check_unit_counts(backend, CountCache(tmp_path / "c", "test"))
    assert ("cooccurrence-occurrences", 3) in backend.calls  # C(s^x) as the phrase with itself
    calls = len(backend.calls)
    _check_unit_counts(backend, CountCache(tmp_path / "c", "test"))
    assert len(backend.calls) == calls  # a rerun is answered from the cache, in both units
    with pytest.raises(ValueError, match="count unit"):
        CountOptions(unit="tokens")  # type: ignore[arg-type]


def test_occurrence_unit_by_hand_on_a_real_index(tmp_path: Path, build_small_index) -> None:
    from clients.client import LocalClient

    with LocalClient(build_small_index(UNIT_DOCS)) as client:
        _check_unit_counts(client, CountCache(tmp_path / "c", "test"))


def test_taskgram_probabilities_and_dropped_zero_pairs() -> None:
    rows = [
        ("triviaqa", 3, "e1", "python", "garbage collector", 0.9),
        ("triviaqa", 3, "e1", "python", "file system", 0.8),
        ("triviaqa", 3, "e2", "file system", "garbage collector", None),
    ]
    counts = {
        ("python", "garbage collector"): 2,
        ("python", "file system"): 0,
        ("file system", "garbage collector"): 1,
    }
    kept, stats = build_taskgram(rows, counts, {"python": 2, "file system": 1})
    assert (stats.candidates, stats.zero_count, stats.kept) == (3, 1, 2)
    assert kept[0].log_prob == pytest.approx(0.0) and kept[1].pair_count == 1
    with pytest.raises(InconsistentCounts):
        build_taskgram(rows[:1], counts, {"python": 1})
