"""``taskgram tasks convert`` on small fixtures shaped like the published files: HF Parquet (hub layout
``<config>/<split>-00000-of-00001.parquet``), an Arrow ``save_to_disk`` folder with ``state.json``, JSON
Lines and TriviaQA's original JSON; the outputs load as tasks; bad rows are errors naming file and row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from clients.eval.convert import ConvertError, convert  # noqa: E402
from clients.eval.tasks import load_task  # noqa: E402

TRIVIA_ROW = {
    "question": "Which Lloyd Webber musical premiered in the US on 10th December 1993?",
    "question_id": "tc_33",
    "question_source": "http://www.triviacountry.com/",
    "entity_pages": {"doc_source": [], "filename": [], "title": [], "wiki_context": []},
    "search_results": {
        "description": [],
        "filename": [],
        "rank": [],
        "title": [],
        "url": [],
        "search_context": [],
    },
    "answer": {
        "aliases": ["Sunset Blvd", "Sunset Boulevard"],
        "normalized_aliases": ["sunset blvd", "sunset boulevard"],
        "matched_wiki_entity_name": "",
        "normalized_matched_wiki_entity_name": "",
        "normalized_value": "sunset boulevard",
        "type": "WikipediaEntity",
        "value": "Sunset Boulevard",
    },
}


def _parquet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), str(path))
    return path


def _save_to_disk(folder: Path, rows: list[dict], split: str) -> Path:
    """The layout of ``datasets.Dataset.save_to_disk``: an Arrow IPC stream plus state.json."""
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows)
    with (
        pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink,
        pa.ipc.new_stream(sink, table.schema) as writer,
    ):
        writer.write_table(table)
    (folder / "state.json").write_text(
        json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}], "_split": split})
    )
    (folder / "dataset_info.json").write_text("{}")
    return folder


def test_trivia_qa_parquet_and_original_json(tmp_path: Path) -> None:
    src = tmp_path / "trivia_qa" / "rc.nocontext"
    second = dict(
        TRIVIA_ROW, question_id="tc_40", question="Who?", answer=dict(TRIVIA_ROW["answer"], value="X")
    )
    _parquet(src / "validation-00000-of-00001.parquet", [TRIVIA_ROW, second])
    _parquet(src / "train-00000-of-00001.parquet", [dict(TRIVIA_ROW, question_id="tc_1")])
    out = tmp_path / "tasks"
    written = convert("trivia_qa", [tmp_path / "trivia_qa"], out)
    assert written == {str(out / "triviaqa-train.jsonl"): 1, str(out / "triviaqa-validation.jsonl"): 2}
    [ex, _] = load_task("triviaqa", out)
    assert (ex.id, ex.y, ex.aliases) == ("tc_33", "Sunset Boulevard", ("Sunset Blvd", "Sunset Boulevard"))
    assert [e.id for e in load_task("triviaqa", out, "train")] == ["tc_1"]
    original = tmp_path / "unfiltered-web-dev.json"
    original.write_text(
        json.dumps(
            {
                "Data": [
                    {"Question": "Q?", "QuestionId": "q1", "Answer": {"Value": "A", "Aliases": ["A", "a"]}}
                ]
            }
        )
    )
    convert("trivia_qa", [original], out, split="dev")
    assert load_task("triviaqa", out, "dev")[0].aliases == ("A", "a")
    hidden = _parquet(
        tmp_path / "t" / "test-00000-of-00001.parquet",
        [dict(TRIVIA_ROW, answer=dict(TRIVIA_ROW["answer"], value=""))],
    )
    with pytest.raises(ConvertError, match="row 0.*test split has no answers"):
        convert("trivia_qa", [hidden], out)


def test_mmlu_all_config_parquet(tmp_path: Path) -> None:
    rows = [
        {
            "question": "Find the degree?",
            "subject": "abstract_algebra",
            "choices": ["0", "4", "2", "6"],
            "answer": 1,
        },
        {"question": "Which organ?", "subject": "anatomy", "choices": ["a", "b", "c", "d"], "answer": 0},
        {"question": "Another?", "subject": "abstract_algebra", "choices": ["1", "2", "3", "4"], "answer": 3},
    ]
    _parquet(tmp_path / "mmlu" / "all" / "test-00000-of-00001.parquet", rows)
    out = tmp_path / "tasks"
    convert("mmlu", [tmp_path / "mmlu"], out)
    reasoning = load_task("mmlu-reasoning", out, "test")
    assert [e.id for e in reasoning] == ["abstract_algebra-0", "abstract_algebra-1"]
    assert reasoning[0].y == "4" and [e.id for e in load_task("mmlu-knowledge", out)] == ["anatomy-0"]
    bad = _parquet(tmp_path / "bad" / "test.parquet", [dict(rows[0], answer=7)])
    with pytest.raises(ConvertError, match="row 0.*'answer'"):
        convert("mmlu", [bad], out)


def test_gsm8k_arrow_save_to_disk_folder(tmp_path: Path) -> None:
    rows = [
        {"question": "Janet's ducks lay 16 eggs.", "answer": "16 - 3 = <<16-3=13>>13\n#### 13"},
        {"question": "A robe takes 2 bolts.", "answer": "2 + 1 = <<2+1=3>>3\n#### 3"},
    ]
    folder = _save_to_disk(tmp_path / "gsm8k_saved", rows, "test")
    out = tmp_path / "tasks"
    assert convert("gsm8k", [folder], out) == {str(out / "gsm8k-test.jsonl"): 2}
    [a, b] = load_task("gsm8k", out)
    assert a.id == "test-0" and a.y == "16 - 3 = 13\n#### 13" and b.x == "A robe takes 2 bolts."
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    convert("gsm8k", [jsonl], out)
    assert [e.id for e in load_task("gsm8k", out, "train")] == ["train-0", "train-1"]
    broken = tmp_path / "test.jsonl"
    broken.write_text(json.dumps({"question": "q"}) + "\n")
    with pytest.raises(ConvertError, match="test.jsonl: row 0: missing field 'answer'"):
        convert("gsm8k", [broken], out)


def test_wmt09_all_six_languages(tmp_path: Path) -> None:
    out = tmp_path / "tasks"
    for lang in ("hu", "cs", "de", "it", "es", "fr"):
        rows = [{"translation": {lang: f"{lang} text {i}", "en": f"english text {i}"}} for i in range(3)]
        _parquet(tmp_path / "wmt09" / f"{lang}-en" / "test-00000-of-00001.parquet", rows)
    written = convert("wmt09", [tmp_path / "wmt09"], out)
    assert len(written) == 6 and set(written.values()) == {3}
    for lang in ("hu", "cs", "de", "it", "es", "fr"):
        exs = load_task(f"translation-{lang}", out, "test")
        assert exs[1].x == "english text 1" and exs[1].y == f"{lang} text 1"
    bad = _parquet(tmp_path / "bad" / "test.parquet", [{"translation": {"de": "x", "fr": "y"}}])
    with pytest.raises(ConvertError, match="'en' and one other language"):
        convert("wmt09", [bad], out)


def test_cli_convert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from taskgram.cli import main

    rows = [{"question": "q", "answer": "a\n#### 1"}]
    src = _parquet(tmp_path / "main" / "test-00000-of-00001.parquet", rows)
    assert main(["tasks", "convert", "gsm8k", str(src), "--out", str(tmp_path / "tasks")]) == 0
    assert "gsm8k-test.jsonl: 1 rows" in capsys.readouterr().out
    assert main(["tasks", "convert", "gsm8k", str(tmp_path / "nothing"), "--out", str(tmp_path / "t")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    assert (
        main(["tasks", "convert", "gsm8k", str(tmp_path / "data" / "x.jsonl"), "--out", str(tmp_path / "t")])
        == 2
    )
    assert "--split" in capsys.readouterr().err


def test_pyproject_pins_what_the_evaluation_code_needs() -> None:
    """llm.py passes ``dtype=`` to from_pretrained (transformers >= 4.56; older versions take
    ``torch_dtype`` and ignore ``dtype``); the converters read Parquet/Arrow with pyarrow (eval extra)."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    from packaging.requirements import Requirement

    root = Path(__file__).resolve().parents[3]
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = {Requirement(r).name: Requirement(r) for r in project["dependencies"]}
    assert not reqs["transformers"].specifier.contains("4.55.4")
    assert reqs["transformers"].specifier.contains("4.56.0")
    assert "dtype=torch_dtype" in (root / "clients" / "eval" / "llm.py").read_text(encoding="utf-8")
    assert any(Requirement(r).name == "pyarrow" for r in project["optional-dependencies"]["eval"])
