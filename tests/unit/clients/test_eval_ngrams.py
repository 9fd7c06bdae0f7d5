"""Word n-gram extraction and pair construction (Definition 1), incl. the paper code's defects 5 and 6,
and agreement with the shared workload files."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import pytest

from clients.eval.ngrams import NgramOptions, ngrams, remove_stopwords, words
from clients.eval.pairs import extract_pairs
from clients.eval.stopwords import STOPWORDS_EN
from clients.eval.tasks import Example, load_task

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO / ".." / "shared" / "data"


def ex(x: str, y: str, task: str = "triviaqa", id: str = "e") -> Example:
    return Example(task, id, x, y, prompt=f"Question: {x}\nAnswer: ")


def test_words_split_on_punctuation_and_symbols() -> None:
    assert words("Campbell-Bannerman") == ["campbell", "bannerman"]
    assert words("farmer’s market") == ["farmer", "s", "market"]
    assert words("$2.50 snake_case") == ["2", "50", "snake", "case"]
    assert words("ﬁnal Ｘ²") == ["final", "x2"]  # NFKC: ligature, full-width, superscript
    assert words("Keep Case", lowercase=False) == ["Keep", "Case"]


def test_stopwords_list_and_removal() -> None:
    assert len(STOPWORDS_EN) == 179
    assert remove_stopwords(words("The farmer’s market is open")) == ["farmer", "market", "open"]
    assert remove_stopwords(words("The Who")) == ["the", "who"]  # stopwords only: kept whole


def test_ngrams_distinct_in_order_and_short_text_is_one_phrase() -> None:
    assert ngrams(["a", "b", "a", "b", "c"], 2) == ["a b", "b a", "b c"]
    assert ngrams(["sunset", "boulevard"], 3) == ["sunset boulevard"]
    assert ngrams([], 3) == []
    with pytest.raises(ValueError):
        ngrams(["a"], 0)


def test_lengths_are_words_not_characters() -> None:
    # defect 5: the authors' filter compared character lengths and dropped e.g. 5-letter answers at n=5
    opts = NgramOptions(5, remove_stopwords=False)
    assert opts.extract("Paris") == ["paris"]
    assert NgramOptions(3, remove_stopwords=False).extract("cat") == ["cat"]
    assert NgramOptions(2).extract("one two three") == ["one two", "two three"]


def test_pairs_keep_examples_that_share_an_ngram() -> None:
    # defect 6: any shared n-gram discarded the whole example; only identical pairs may go
    e = ex("alpha beta gamma delta", "alpha beta gamma epsilon", task="mmlu-knowledge")
    pairs = extract_pairs([e], "mmlu-knowledge", 3, stopwords="never")
    got = {(p.sx, p.sy) for p in pairs}
    xs, ys = ["alpha beta gamma", "beta gamma delta"], ["alpha beta gamma", "beta gamma epsilon"]
    assert got == {(a, b) for a, b in itertools.product(xs, ys) if a != b}
    assert len(pairs) == 3


def test_triviaqa_answer_is_one_phrase_whatever_n() -> None:
    e = ex(
        "Which Lloyd Webber musical premiered in the US on 10th December 1993?", "Sunset Boulevard Musical"
    )
    for n in (2, 3, 5):
        ys = {p.sy for p in extract_pairs([e], "triviaqa", n)}
        assert ys == {"sunset boulevard musical"}


def test_translation_target_keeps_function_words_and_cap_applies() -> None:
    e = Example("translation-es", "t", "Opens the local file", "Abre el archivo local", prompt="")
    pairs = extract_pairs([e], "translation-es", 2)
    assert {p.sx for p in pairs} == {"opens local", "local file"}
    assert {p.sy for p in pairs} == {"abre el", "el archivo", "archivo local"}
    assert len(extract_pairs([e], "translation-es", 2, max_pairs_per_example=4)) == 4


def test_stopword_policy_auto_follows_n() -> None:
    e = ex("the cat sat on the mat today", "a dog", task="gsm8k")
    assert {p.sx for p in extract_pairs([e], "gsm8k", 3)} == {"cat sat mat", "sat mat today"}
    assert "the cat sat on" in {p.sx for p in extract_pairs([e], "gsm8k", 4)}  # n > 3: no removal


def _workload(name: str, limit_ids: int) -> dict[str, list[tuple[str, str]]]:
    import zstandard

    out: dict[str, list[tuple[str, str]]] = {}
    with open(SHARED / "workloads" / name, "rb") as f:
        for line in io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8"):
            rec = json.loads(line)
            if rec["id"] not in out and len(out) == limit_ids:
                break
            out.setdefault(rec["id"], []).append((rec["x"], rec["y"]))
    return out


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("task", "file", "workload", "n"),
    [
        ("triviaqa", "triviaqa-validation.jsonl", "pairs-triviaqa-n3.jsonl.zst", 3),
        ("gsm8k", "gsm8k-test.jsonl", "pairs-gsm8k-n3.jsonl.zst", 3),
        ("translation-es", "translation-es.jsonl", "pairs-translation-es-n2.jsonl.zst", 2),
        ("mmlu", "mmlu-test.jsonl", "pairs-mmlu-n3.jsonl.zst", 3),
    ],
)
def test_extraction_matches_shared_workloads(
    shared_data: Path, task: str, file: str, workload: str, n: int
) -> None:
    expected = _workload(workload, 60)
    if task == "mmlu":  # the workload covers all subjects; the loader splits them
        examples = {
            e.id: e for t in ("mmlu-knowledge", "mmlu-reasoning") for e in load_task(t, shared_data / "tasks")
        }
        pair_task = "mmlu-knowledge"
    else:
        examples = {e.id: e for e in load_task(task, shared_data / "tasks")}
        pair_task = task
    for ex_id, pairs in expected.items():
        if ex_id not in examples:  # formal_logic is in neither MMLU group
            assert ex_id.startswith("formal_logic")
            continue
        cap = 2000 if task == "gsm8k" else None  # the workloads cap GSM8K only
        got = extract_pairs([examples[ex_id]], pair_task, n, max_pairs_per_example=cap)
        assert [(p.sx, p.sy) for p in got] == pairs, ex_id
