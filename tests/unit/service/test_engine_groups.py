"""The merge layer: an index answered by shard groups of any size gives the answers of one group of all
shards, for every query type (documents never span shards, so sums are exact; next-token counts merge
token by token; document pages are cut across shards; traced spans and their sampled documents are
the same), and the work budget is checked on the whole index, not per group."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from service.engine import BudgetExceeded, Index
from service.engine.index import index_word_tables
from service.engine.opening import open_header, open_shards
from service.engine.shards import ShardGroup

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sample-en.jsonl.zst"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, pythia_tokenizer) -> Path:
    from indexer.pipeline import build_index

    out = tmp_path_factory.mktemp("groups") / "index"
    manifest = build_index(
        [SAMPLE], out, tokenizer=pythia_tokenizer, memory_budget_bytes="2M", progress=False
    )
    assert len(manifest.shards) >= 6
    return out


def grouped(directory: Path, k: int, **options) -> Index:
    """The index with its shards in groups of ``k`` (consecutive), each group with its own cache."""
    manifest, tokenizer = open_header(directory, "grouped")
    shards = open_shards(directory, "grouped", manifest)
    words = index_word_tables(tokenizer, manifest.tokenizer.vocab_size, "grouped")
    cache = {k: options.pop(k) for k in ("cache_min_occurrences",) if k in options}
    groups = [ShardGroup(shards[a : a + k], words=words[0], **cache) for a in range(0, len(shards), k)]
    return Index(directory, "grouped", manifest, groups, tokenizer, words=words, **options)


WORDS = ["the", "import", "index", "Python", "function", "return", "zzqx unseen"]
SPECS = [*WORDS[:5], {"any": ["import", "return"]}]
PAIRS = [[a, b] for a in SPECS for b in SPECS[2:]]
TRACED = [
    "The function returns the value of the file object, and the import statement loads the module.",
    "zzqx unseen words, then the Python index of the data",
]


def answers(ix: Index) -> dict[str, object]:
    n = ix.n_docs
    return {
        "count": ix.count(WORDS),
        "count_word": ix.count(WORDS, boundary="word"),
        "exists": ix.exists(WORDS),
        "doc_freq": ix.doc_freq(SPECS),
        "doc_freq_word": ix.doc_freq(SPECS, boundary="word"),
        "cooc": ix.cooccurrence(PAIRS + [SPECS[:3]]),
        "cooc_occ": ix.cooccurrence(PAIRS, unit="occurrences"),
        "cooc_occ_word": ix.cooccurrence(PAIRS, unit="occurrences", boundary="word"),
        "windowed": ix.windowed_cooccurrence(PAIRS + [SPECS[:3]], 20),
        "ntd": [asdict(d) for d in ix.ntd(["", "the", "import", "zzqx unseen"])],
        "ntd_top": [asdict(d) for d in ix.ntd(["of the"], top_k=3)],
        "prob": [asdict(p) for p in ix.prob([("import", 15), ("the", 273), ("", 253)])],
        "infgram": [asdict(p) for p in ix.infgram_prob([("The function returns", " the value"), ("", "x")])],
        "pages": [
            asdict(ix.documents(["the"], offset=o, limit=7, window=6)) for o in (0, 5, 17, 40, 120, 10**4)
        ],
        "pair_page": asdict(ix.documents(["import", "return"], limit=5, window=4)),
        "word_page": asdict(ix.documents(["index"], limit=4, window=4, boundary="word")),
        "sample": asdict(ix.documents(["the"], sample=True, seed=3, limit=6, window=3)),
        "docs": [asdict(ix.document(d, max_tokens=20)) for d in (0, 1, n // 3, n // 2, n - 1)],
        "trace": [asdict(r) for r in ix.trace(TRACED, max_count=None, docs_per_span=3, context=5)],
        "trace_token": [
            asdict(r) for r in ix.trace(TRACED, boundary="token", min_len=2, max_count=50, seed=4, context=3)
        ],
        "trace_rank": [
            asdict(r)
            for r in ix.trace(TRACED[:1], rank="unigram_logprob", max_spans=3, docs_per_span=0, seed=None)
        ],
    }


def test_every_grouping_answers_as_one_group(index_dir: Path) -> None:
    want = answers(Index.open(index_dir))
    for k in (1, 2, 3, 100):
        got = answers(grouped(index_dir, k))
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == want[key], (k, key)


def test_cached_groups_answer_the_same(index_dir: Path) -> None:
    want = grouped(index_dir, 2).cooccurrence(PAIRS, unit="occurrences")
    ix = grouped(index_dir, 3, cache_min_occurrences=0)
    for _ in range(2):
        assert ix.cooccurrence(PAIRS, unit="occurrences") == want
    assert ix.cache_info()["hits"] > 0


def test_the_work_budget_counts_the_whole_index(index_dir: Path) -> None:
    from service.engine.query import flatten

    one = Index.open(index_dir)
    total = one.count(["the"])[0]
    flat, offsets = flatten([tuple(one.tokenize("the"))])
    per_shard = [int(hi[0] - lo[0]) for lo, hi in (s.ranges(flat, offsets) for s in one.shards)]
    budget = total - 1  # over the budget in the index, under it in every group of one shard
    assert max(per_shard) <= budget
    calls = [
        ("doc_freq", (["the"],), {}),
        ("cooccurrence", ([["the", "import"]],), {}),
        ("cooccurrence", ([["the", "import"]],), {"unit": "occurrences"}),
        ("windowed_cooccurrence", ([["the", "import"]], 5), {}),
        ("documents", (["the"],), {}),
    ]
    for k in (1, 3, 100):
        ix = grouped(index_dir, k)
        for method, args, kwargs in calls:
            with pytest.raises(BudgetExceeded, match=f"{total} occurrences, over the work budget"):
                getattr(ix, method)(*args, max_occurrences=budget, **kwargs)
        assert ix.doc_freq(["the"], max_occurrences=total) == one.doc_freq(["the"])


def test_groups_must_hold_every_shard_once(index_dir: Path) -> None:
    from service.engine import IndexUnavailable

    manifest, tokenizer = open_header(index_dir, "x")
    shards = open_shards(index_dir, "x", manifest)
    for groups in ([], [ShardGroup(shards[1:])], [ShardGroup(shards), ShardGroup(shards[:1])]):
        with pytest.raises(IndexUnavailable, match="shard groups"):
            Index(index_dir, "x", manifest, groups, tokenizer)


def test_a_closed_index_refuses_queries_instead_of_answering_zeros(index_dir: Path) -> None:
    from service.engine import IndexUnavailable

    ix = grouped(index_dir, 3)
    ix.close()
    for call in (
        lambda: ix.count(["the"]),
        lambda: ix.doc_freq(["the"]),
        lambda: ix.trace(["the import"]),
        lambda: ix.document(0),
    ):
        with pytest.raises(IndexUnavailable, match="closed"):
            call()
