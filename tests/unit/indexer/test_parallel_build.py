"""The build with several workers, and its inputs at scale (Parquet, datasets save_to_disk folders):
byte-identical shards for any number of workers, errors and counts as with one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from indexer import shardwork
from indexer.corpus import CorpusError
from indexer.manifest import read_manifest
from indexer.pipeline import BuildError, build_index, default_workers
from tests.naive import naive_suffix_array

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "data" / "sample-en.jsonl.zst"


def _shard_bytes(index: Path) -> dict[str, bytes]:
    return {str(p.relative_to(index)): p.read_bytes() for p in sorted(index.glob("shard-*/*")) if p.is_file()}


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pieces of 64 KiB, so that a small corpus is tokenized by several tasks (in this process the
    constant is read when pieces are cut, which the main process does)."""
    monkeypatch.setattr(shardwork, "PIECE_BYTES", 64 << 10)


@pytest.mark.slow
def test_text_build_is_byte_identical_for_any_number_of_workers(tmp_path, pythia_tokenizer, small_pieces):
    builds = {}
    for workers in (1, 2, 3):
        out = tmp_path / f"w{workers}"
        manifest = build_index(
            [SAMPLE],
            out,
            tokenizer=pythia_tokenizer,
            memory_budget_bytes="2M",
            progress=False,
            workers=workers,
        )
        builds[workers] = (manifest, _shard_bytes(out))
        assert not (out / "pieces").exists()
    one, files_one = builds[1]
    assert len(one.shards) > 4 and one.n_docs == 350
    for workers in (2, 3):
        manifest, files = builds[workers]
        assert manifest.shards == one.shards  # sizes and sha256 of every file
        assert manifest.build["fingerprint"] == one.build["fingerprint"]
        assert manifest.build["read"] == one.build["read"]
        assert files == files_one


def test_pretokenized_build_is_byte_identical_for_any_number_of_workers(tmp_path):
    rng = np.random.default_rng(3)
    lengths = rng.integers(0, 400, size=300)
    tokens = rng.integers(0, 1000, size=int(lengths.sum()), dtype=np.uint16)
    data = tmp_path / "t.u16"
    tokens.tofile(data)
    np.concatenate([[0], np.cumsum(lengths)]).astype("<u8").tofile(tmp_path / "t.u16.offsets")
    opts = dict(
        pretokenized="raw-u16",
        tokenizer=None,
        vocab_size=1000,
        memory_budget_bytes=12 * 20_000,
        bytes_per_token=12,
        progress=False,
    )
    one = build_index([data], tmp_path / "one", workers=1, **opts)
    two = build_index([data], tmp_path / "two", workers=2, **opts)
    assert len(one.shards) > 3
    assert two.shards == one.shards
    assert _shard_bytes(tmp_path / "two") == _shard_bytes(tmp_path / "one")
    # Each worker sorted several shards in the memory kept from its last one: the order is still exact.
    from indexer.pipeline import verify_index

    assert verify_index(tmp_path / "one").ok


def test_a_one_shard_pretokenized_build_runs_in_this_process(tmp_path, monkeypatch):
    """Pre-tokenized shards are known before the build: with fewer shards than workers, no more workers
    start than shards, and one shard is built in this process, with the same bytes."""
    from indexer import pipeline

    lengths = np.array([5, 0, 7, 3])
    np.arange(lengths.sum(), dtype=np.uint16).tofile(tmp_path / "t.u16")
    np.concatenate([[0], np.cumsum(lengths)]).astype("<u8").tofile(tmp_path / "t.u16.offsets")
    opts = dict(pretokenized="raw-u16", tokenizer=None, vocab_size=100, progress=False)
    one = build_index([tmp_path / "t.u16"], tmp_path / "one", workers=1, **opts)

    def no_pool(*args, **kwargs):
        raise AssertionError("a worker pool was started for a one-shard build")

    monkeypatch.setattr(pipeline, "ProcessExecutor", no_pool)
    two = build_index([tmp_path / "t.u16"], tmp_path / "two", workers=2, **opts)
    assert len(two.shards) == 1 and two.shards == one.shards
    assert _shard_bytes(tmp_path / "two") == _shard_bytes(tmp_path / "one")


def test_bad_line_in_a_worker_names_file_and_line(tmp_path, pythia_tokenizer):
    corpus = tmp_path / "c.jsonl"
    lines = [json.dumps({"text": f"doc {i}"}) for i in range(40)]
    lines[33] = '{"text": "unterminated'
    corpus.write_text("\n".join(lines) + "\n")
    with pytest.raises(CorpusError, match=r"c\.jsonl:34: malformed JSON"):
        build_index([corpus], tmp_path / "idx", tokenizer=pythia_tokenizer, progress=False, workers=2)
    skipped = build_index(
        [corpus],
        tmp_path / "idx2",
        tokenizer=pythia_tokenizer,
        progress=False,
        workers=2,
        skip_bad_lines=True,
    )
    assert skipped.n_docs == 39 and skipped.build["read"]["skipped"] == {"malformed_json": 1}


def test_workers_must_be_positive(tmp_path, pythia_tokenizer):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "a"}\n')
    with pytest.raises(BuildError, match="workers must be a positive integer"):
        build_index([corpus], tmp_path / "idx", tokenizer=pythia_tokenizer, workers=0)
    assert default_workers("8G") >= 1 and default_workers("2M") == 1


def test_shard_planner_fills_shards_in_order():
    planner = shardwork.ShardPlanner(capacity=10)
    closed = planner.add(0, np.array([3, 4, 2]))  # positions 4, 5 (9) | 3
    closed += planner.add(1, np.array([0, 8]))  # 3+1=4 (7) | 9
    closed += planner.finish()
    assert [(s.first_doc, s.n_docs, s.n_positions) for s in closed] == [(0, 2, 9), (2, 2, 4), (4, 1, 9)]
    assert closed[1].segments == (shardwork.Segment(0, 2, 3), shardwork.Segment(1, 0, 1))
    with pytest.raises(shardwork.DocumentTooLarge):
        shardwork.ShardPlanner(capacity=10).add(0, np.array([10]))


def test_shard_planner_closes_shards_at_the_target_within_the_capacity():
    rng = np.random.default_rng(7)
    for _ in range(200):
        capacity = int(rng.integers(5, 60))
        target = int(rng.integers(1, capacity + 1))
        sources = [rng.integers(0, capacity, size=int(rng.integers(0, 30))) for _ in range(3)]
        planner = shardwork.ShardPlanner(capacity, target)
        shards = [s for i, lengths in enumerate(sources) for s in planner.add(i, lengths)]
        shards += planner.finish()
        lengths = np.concatenate(sources)
        # the shards hold every document once, in order, and their segments agree with their sizes
        assert [s.index for s in shards] == list(range(len(shards)))
        assert sum(s.n_docs for s in shards) == len(lengths)
        doc = 0
        for k, shard in enumerate(shards):
            assert shard.first_doc == doc and shard.n_docs > 0
            segment_docs = [np.asarray(sources[g.source][g.doc_lo : g.doc_hi]) for g in shard.segments]
            assert shard.n_positions == int(sum((d + 1).sum() for d in segment_docs))
            assert shard.n_positions == int((lengths[doc : doc + shard.n_docs] + 1).sum())
            assert shard.n_positions <= capacity
            if k + 1 < len(shards):  # closed early only where the next document did not fit
                next_doc = int(lengths[doc + shard.n_docs]) + 1
                assert shard.n_positions >= target or shard.n_positions + next_doc > capacity
            doc += shard.n_docs


@pytest.mark.parametrize(
    ("total", "capacity", "slots", "shards"),
    [
        (1_010_276_120 + 649_200, 268_435_456, 2, 4),  # the 1 B-token benchmark corpus: 4 equal shards
        (600, 268, 2, 4),  # 3 shards by capacity, rounded up to a full round of 2
        (500, 268, 2, 2),
        (300, 268, 2, 2),
        (268, 268, 2, 1),
        (540, 268, 2, 4),
        (300, 268, 4, 2),  # 4 shards would be under half full: stay at 2
        (10, 268, 2, 1),
        (1000, 100, 3, 12),
    ],
)
def test_balanced_target_gives_equal_shards_in_full_rounds(total, capacity, slots, shards):
    target = shardwork.balanced_target(total, capacity, slots)
    assert target <= capacity
    assert -(-total // target) == shards


# --------------------------------------------------------------------------------------------------
# Parquet and datasets save_to_disk folders


def _texts(n: int) -> list[str]:
    return [f"row {i} says {'hello ' * (i % 5)}world" for i in range(n)]


def test_parquet_and_jsonl_give_the_same_tokens(tmp_path, pythia_tokenizer, small_pieces):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    texts = _texts(50)
    table = pa.table({"id": list(range(50)), "content": texts})
    pq.write_table(table, tmp_path / "part.parquet", row_group_size=7)
    (tmp_path / "same.jsonl").write_text("".join(json.dumps({"content": t}) + "\n" for t in texts))
    opts = dict(
        tokenizer=pythia_tokenizer,
        text_field="content",
        progress=False,
        memory_budget_bytes=12 * 300,
        bytes_per_token=12,
    )
    from_parquet = build_index([tmp_path / "part.parquet"], tmp_path / "pq", workers=2, **opts)
    from_jsonl = build_index([tmp_path / "same.jsonl"], tmp_path / "jl", **opts)
    assert from_parquet.n_docs == 50 and len(from_parquet.shards) > 1
    for a, b in zip(from_parquet.shards, from_jsonl.shards, strict=True):
        assert a.files["tokens.bin"] == b.files["tokens.bin"]
        assert a.files["suffix_array.bin"] == b.files["suffix_array.bin"]
    from indexer.format import iter_metadata
    from indexer.manifest import open_shard

    first = open_shard(tmp_path / "pq", from_parquet, from_parquet.shards[0])
    rows = [m["row"] for m in iter_metadata(first)]
    assert rows == list(range(len(rows))) and all(
        m["source"].endswith("part.parquet") for m in iter_metadata(first)
    )
    tokens = np.asarray(first.tokens)
    assert list(map(int, first.suffix_array)) == list(naive_suffix_array(tokens, from_parquet.separator_id))


def test_parquet_errors_name_the_file(tmp_path, pythia_tokenizer):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"body": ["a", "b"]}), tmp_path / "p.parquet")
    with pytest.raises(CorpusError, match=r"p\.parquet: no column 'text' \(columns: body\)"):
        build_index([tmp_path / "p.parquet"], tmp_path / "i1", tokenizer=pythia_tokenizer, progress=False)
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "n.parquet")
    with pytest.raises(CorpusError, match=r"n\.parquet: column 'text' is int64, not a string"):
        build_index([tmp_path / "n.parquet"], tmp_path / "i2", tokenizer=pythia_tokenizer, progress=False)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(CorpusError, match=r"bad\.parquet: not a readable parquet file"):
        build_index([tmp_path / "bad.parquet"], tmp_path / "i3", tokenizer=pythia_tokenizer, progress=False)


def _save_to_disk_by_hand(folder: Path, texts: list[str]) -> None:
    """The layout of ``datasets.Dataset.save_to_disk``: Arrow stream files listed in state.json."""
    pa = pytest.importorskip("pyarrow")
    folder.mkdir()
    half = len(texts) // 2
    names = []
    for i, part in enumerate((texts[:half], texts[half:])):
        name = f"data-{i:05d}-of-00002.arrow"
        table = pa.table({"text": part, "n": list(range(len(part)))})
        with pa.OSFile(str(folder / name), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as out:
            for batch in table.to_batches(max_chunksize=4):
                out.write_batch(batch)
        names.append({"filename": name})
    (folder / "state.json").write_text(json.dumps({"_data_files": names}))
    (folder / "dataset_info.json").write_text("{}")


def test_datasets_save_to_disk_folder(tmp_path, pythia_tokenizer):
    texts = _texts(30)
    _save_to_disk_by_hand(tmp_path / "ds", texts)
    (tmp_path / "same.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    opts = dict(tokenizer=pythia_tokenizer, progress=False)
    arrow = build_index([tmp_path / "ds"], tmp_path / "a", **opts)
    jsonl = build_index([tmp_path / "same.jsonl"], tmp_path / "j", **opts)
    assert arrow.n_docs == 30
    assert [i.format for i in arrow.inputs] == ["arrow", "arrow"]
    assert arrow.shards[0].files["tokens.bin"] == jsonl.shards[0].files["tokens.bin"]


def test_real_datasets_save_to_disk(tmp_path, pythia_tokenizer):
    datasets = pytest.importorskip("datasets")
    texts = _texts(20)
    datasets.Dataset.from_dict({"text": texts}).save_to_disk(str(tmp_path / "ds"))
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": texts})}).save_to_disk(
        str(tmp_path / "dd")
    )
    one = build_index([tmp_path / "ds"], tmp_path / "a", tokenizer=pythia_tokenizer, progress=False)
    two = build_index([tmp_path / "dd"], tmp_path / "b", tokenizer=pythia_tokenizer, progress=False)
    assert one.n_docs == two.n_docs == 20
    assert one.shards[0].files["tokens.bin"] == two.shards[0].files["tokens.bin"]
    assert read_manifest(tmp_path / "a").inputs[0].format == "arrow"


class _RecordingExecutor:
    """Completes every shard at once and records whether the schedule said it would run alone."""

    shard_slots = 2

    def __init__(self) -> None:
        self.alone: dict[int, bool] = {}

    def submit_piece(self, spec, piece):  # type: ignore[no-untyped-def]
        raise AssertionError("a pre-tokenized schedule has no pieces")

    def submit_shard(self, spec, shard, sources, alone=False):  # type: ignore[no-untyped-def]
        self.alone[shard.index] = alone
        return shardwork.ShardResult(info=shard.index, kept=False)

    def wait_any(self, handles) -> None:  # type: ignore[no-untyped-def]
        return None

    def done(self, handle) -> bool:  # type: ignore[no-untyped-def]
        return True

    def result(self, handle):  # type: ignore[no-untyped-def]
        return handle

    def close(self, cancel: bool) -> None:
        return None


def test_only_a_shard_with_nothing_else_to_run_is_started_alone() -> None:
    """Two slots, three shards: the first two run together; the third starts when nothing else runs,
    waits or is left to plan, so its sort may take every core's numba thread."""
    from types import SimpleNamespace

    from indexer.schedule import run_schedule

    executor = _RecordingExecutor()
    shards = iter([SimpleNamespace(index=i) for i in range(3)])
    result = run_schedule(
        executor,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        workers=2,
        slots=2,
        pieces=None,
        plan_piece=lambda piece: [],
        shard_plan=shards,  # type: ignore[arg-type]
        finish_plan=lambda: [],
    )
    assert [r.info for r in result.shards] == [0, 1, 2]
    assert executor.alone == {0: False, 1: False, 2: True}


def test_numba_threads_for_one_shard_and_back() -> None:
    import numba

    before = numba.get_num_threads()
    with shardwork.numba_threads(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    with shardwork.numba_threads(10_000):  # at most the threads numba started
        assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS
    with shardwork.numba_threads(None):
        assert numba.get_num_threads() == before
    assert numba.get_num_threads() == before
