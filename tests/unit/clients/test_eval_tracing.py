"""``taskgram eval --generate --trace-outputs N``: each generated output traced over the index (spans,
span density, novel = no span of >= N words), checked against the engine's own trace and end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from clients import LocalClient
from clients.eval.tracing import trace_outputs, trace_summary
from tests.unit.clients.test_eval_generation import FakeGenerator
from tests.unit.clients.test_eval_pipeline import DOCS, _config, _run


@pytest.fixture(scope="module")
def docs_index(tmp_path_factory: pytest.TempPathFactory, pythia_tokenizer: Any) -> Path:
    from indexer.pipeline import build_index

    root = tmp_path_factory.mktemp("eval-trace")
    corpus = root / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS), encoding="utf-8")
    build_index([corpus], root / "index", tokenizer=pythia_tokenizer, progress=False)
    return root / "index"


def test_trace_outputs_novelty_and_density(docs_index: Path) -> None:
    outputs = {
        "a": "I heard the capital city of France is Paris, they say.",
        "b": "zebras quantum xylophone",
        "c": "",
    }
    with LocalClient(docs_index) as client:
        traced = trace_outputs(client, outputs, 4, batch=1)
        engine = client.engine.trace([outputs["a"], outputs["b"]], max_count=None, docs_per_span=0)
    assert traced["a"]["span_density"] == engine[0].span_density
    assert traced["a"]["coverage"] == engine[0].coverage
    assert traced["a"]["novel"] is False
    assert ["capital city of France is Paris", 6, 1] in traced["a"]["spans"]
    assert all(words >= 4 for _, words, _ in traced["a"]["spans"])
    assert traced["b"]["novel"] is True and traced["b"]["longest_words"] < 4
    assert traced["c"] == {
        "span_density": 0.0, "coverage": 0.0, "n_tokens": 0, "longest_words": 0, "novel": True, "spans": []
    }  # fmt: skip
    row = trace_summary("triviaqa", "m", 4, traced)
    assert (row["outputs"], row["novel"]) == (3, 2)


def test_generate_with_trace_outputs_end_to_end(tmp_path: Path, docs_index: Path) -> None:
    gen = FakeGenerator({"capital city of France": "The capital city of France is Paris."})
    cfg = _config(tmp_path / "run", generate=True, max_new_tokens=8, tasks=["triviaqa"], trace_outputs=3)
    with LocalClient(docs_index) as client:
        _, report, _, _ = _run(cfg, client, scorer=gen)
    assert report["ok"], report["errors"]
    (row,) = report["generation"]["trace"]
    assert row["task"] == "triviaqa" and row["min_words"] == 3 and row["outputs"] >= 1
    per = json.loads((tmp_path / "run" / "tables" / "generations-length.json").read_text(encoding="utf-8"))
    traces = [r["trace"] for r in per["triviaqa"].values()]
    assert row["novel"] == sum(t["novel"] for t in traces)
    assert any(not t["novel"] for t in traces)  # the Paris answer is in the corpus
    with (tmp_path / "run" / "tables" / "generation-trace.csv").open(encoding="utf-8") as f:
        assert [r["task"] for r in csv.DictReader(f)] == ["triviaqa"]


def test_cli_refuses_trace_outputs_without_generate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from taskgram.cli import main

    argv = ["eval", "--index", str(tmp_path), "--tasks-dir", str(tmp_path), "--run-dir", str(tmp_path / "r")]
    code = main([*argv, "--trace-outputs", "3"])
    assert code == 2 and "--trace-outputs N needs --generate" in capsys.readouterr().err
