"""Task loaders: schemas, errors naming file and line, the MMLU split, seeded subsets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clients.eval.tasks import (
    MMLU_EXCLUDED,
    MMLU_KNOWLEDGE,
    MMLU_REASONING,
    MMLU_SUBJECTS,
    TaskDataError,
    load_task,
    sample_examples,
)

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "tasks"


def test_mmlu_split_is_the_papers() -> None:
    assert len(MMLU_SUBJECTS) == len(set(MMLU_SUBJECTS)) == 57
    assert len(MMLU_REASONING) == 22 and len(MMLU_KNOWLEDGE) == 34
    assert {"formal_logic"} == MMLU_EXCLUDED
    assert not (MMLU_REASONING & MMLU_KNOWLEDGE) and "formal_logic" not in MMLU_REASONING | MMLU_KNOWLEDGE
    assert set(MMLU_SUBJECTS) >= MMLU_REASONING


def test_load_fixture_tasks() -> None:
    tr = load_task("translation-es", FIXTURES)
    assert [e.id for e in tr][:2] == ["t1", "t2"]
    assert (
        tr[0].prompt == "English text: Opens a local or remote file, or imports one.\nSpanish translation: "
    )
    tq = load_task("triviaqa", FIXTURES)
    assert tq[0].y == "Sunset Boulevard" and "Sunset Blvd" in tq[0].aliases
    know = load_task("mmlu-knowledge", FIXTURES)
    reas = load_task("mmlu-reasoning", FIXTURES)
    assert [e.id for e in know] == ["anatomy-0", "anatomy-1"]
    assert [e.id for e in reas] == ["college_physics-0", "moral_scenarios-0"]  # formal_logic in neither
    assert know[0].y == "heart" and know[0].answer_index == 1 and len(know[0].choices) == 4
    gsm = load_task("gsm8k", FIXTURES)
    assert "<<" not in gsm[0].y and "16 - 3 - 4 = 9 duck eggs" in gsm[0].y


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["a"]', "expected a JSON object"),
        ('{"id": "a", "question": "q"}', "missing field 'answer'"),
        ('{"id": "a", "question": "q", "answer": 3}', "field 'answer' must be str"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    good = json.dumps({"id": "ok", "question": "q", "answer": "a"})
    (tmp_path / "triviaqa-validation.jsonl").write_text(good + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match=rf"triviaqa-validation.jsonl:2: .*{message}"):
        load_task("triviaqa", tmp_path)


def test_mmlu_answer_out_of_range_and_unknown_subject(tmp_path: Path) -> None:
    row = {"id": "x", "subject": "anatomy", "question": "q", "choices": ["a", "b"], "answer": 2}
    (tmp_path / "mmlu-test.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match=r"mmlu-test.jsonl:1: field 'answer' = 2"):
        load_task("mmlu-knowledge", tmp_path)
    row.update(subject="astrology", answer=0)
    (tmp_path / "mmlu-test.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match="unknown MMLU subject 'astrology'"):
        load_task("mmlu-knowledge", tmp_path)


def test_missing_file_duplicate_ids_unknown_task(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError, match="cannot open task file"):
        load_task("gsm8k", tmp_path)
    row = json.dumps({"id": "a", "question": "q", "answer": "a"})
    (tmp_path / "gsm8k-test.jsonl").write_text(row + "\n" + row + "\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match="duplicate id 'a'"):
        load_task("gsm8k", tmp_path)
    with pytest.raises(TaskDataError, match="unknown task"):
        load_task("squad", tmp_path)


def test_sample_is_seeded_random_not_a_prefix() -> None:
    from clients.eval.tasks import Example

    exs = [Example("gsm8k", str(i), "x", "y", "p") for i in range(1000)]
    a = sample_examples(exs, 50, seed=1)
    assert [e.id for e in a] == [e.id for e in sample_examples(exs, 50, seed=1)]
    assert [e.id for e in a] != [e.id for e in sample_examples(exs, 50, seed=2)]
    assert [e.id for e in a] != [str(i) for i in range(50)]
    assert [int(e.id) for e in a] == sorted(int(e.id) for e in a)  # file order kept
    assert len(sample_examples(exs, None, 0)) == 1000 and len(sample_examples(exs, 5000, 0)) == 1000


@pytest.mark.shared_data
def test_real_mmlu_subjects_and_counts(shared_data: Path) -> None:
    rows = [
        json.loads(line)
        for line in (shared_data / "tasks" / "mmlu-test.jsonl").read_text("utf-8").split("\n")
        if line
    ]
    assert {r["subject"] for r in rows} == set(MMLU_SUBJECTS)
    know, reas = (
        load_task("mmlu-knowledge", shared_data / "tasks"),
        load_task("mmlu-reasoning", shared_data / "tasks"),
    )
    formal = sum(1 for r in rows if r["subject"] == "formal_logic")
    assert len(know) + len(reas) + formal == 14042
    for task in ("translation-es", "translation-fr", "translation-de", "triviaqa", "gsm8k"):
        assert load_task(task, shared_data / "tasks")
