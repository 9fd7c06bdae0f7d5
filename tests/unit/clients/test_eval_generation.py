"""Generated outputs: novel pairs of a translation counted exactly (brute-force backend, a fake generator),
failed queries are errors, SQuAD exact match on tricky answers, the ``--generate`` stage end to end, and
greedy generation of a tiny randomly initialised model against a one-row no-cache oracle."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from clients.eval.generation import exact_match, normalize_answer, novel_pairs, triviaqa_accuracy
from clients.eval.pairs import CountCache, CountingError, CountOptions, extract_pairs
from clients.eval.pipeline import EvalError
from clients.eval.tasks import Example
from tests.unit.clients.test_eval_fakes import BruteForceBackend, LengthScorer
from tests.unit.clients.test_eval_llm import tiny  # noqa: F401  # the tiny-model fixture
from tests.unit.clients.test_eval_pipeline import DOCS, _config, _run

DOCS_ES = [
    "Opens a local file. Abre un archivo local.",
    "The remote file opens. Archivo remoto abierto.",
    "Nothing in common here.",
]


class FakeGenerator(LengthScorer):
    """A scorer that also 'generates': a fixed answer per prompt substring, else the empty string."""

    name = "fake-generator"

    def __init__(self, answers: dict[str, str]) -> None:
        super().__init__()
        self.answers = answers
        self.prompts: list[str] = []

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64, progress: Any = None) -> list[str]:
        self.prompts.extend(prompts)
        out = [next((a for k, a in self.answers.items() if k in p), "") for p in prompts]
        if progress is not None:
            progress(len(prompts))
        return out


def _ex(i: str, x: str, y: str, task: str = "translation-es") -> Example:
    return Example(task, i, x, y, f"English text: {x}\nSpanish translation: ")


def test_novel_pairs_match_brute_force(tmp_path: Path) -> None:
    exs = [_ex("a", "Opens a local file", "ref"), _ex("b", "The remote file", "ref")]
    outs = {"a": "Abre un archivo local", "b": "Archivo zzz remoto"}
    backend = BruteForceBackend(DOCS_ES)
    opts = CountOptions(batch_size=3)
    res = novel_pairs(backend, exs, outs, "translation-es", 2, CountCache(tmp_path / "c.jsonl"), opts)
    # oracle: the same pairs, each counted by scanning the documents directly
    gen = [Example(e.task, e.id, e.x, outs[e.id], e.prompt) for e in exs]
    pairs = extract_pairs(gen, "translation-es", 2)
    oracle = [
        sum(
            1
            for d in DOCS_ES
            if all(backend._has(d, [s, s[:1].upper() + s[1:], s.title()]) for s in (p.sx, p.sy))
        )
        for p in pairs
    ]
    assert res["pairs"] == len(pairs) > 0
    assert [r[3] for r in res["rows"]] == oracle
    assert res["novel"] == oracle.count(0)
    assert 0 < res["novel"] < res["pairs"]  # the fixture has both kinds
    assert res["novel_fraction"] == pytest.approx(oracle.count(0) / len(oracle))
    assert all(n <= 3 for kind, n in backend.calls)  # batched


def test_failed_or_malformed_query_is_an_error_not_a_novel_pair(tmp_path: Path) -> None:
    exs = [_ex("a", "Opens a local file", "ref")]
    outs = {"a": "Abre un archivo local"}
    backend = BruteForceBackend(DOCS_ES)
    backend.fail_on = "cooccurrence"
    with pytest.raises(CountingError, match="server went away"):
        novel_pairs(backend, exs, outs, "translation-es", 2, CountCache(tmp_path / "c.jsonl"), CountOptions())
    backend.fail_on, backend.answer = None, [None] * 6  # 2 x 3 pairs
    with pytest.raises(CountingError, match="not a non-negative integer"):
        novel_pairs(backend, exs, outs, "translation-es", 2, CountCache(tmp_path / "d.jsonl"), CountOptions())


@pytest.mark.parametrize(
    ("pred", "golds", "hit"),
    [
        ("The Who", ["The Who"], True),
        ("who", ["The Who"], True),  # the article goes
        ("  Sunset   Blvd. ", ["Sunset Boulevard", "Sunset Blvd"], True),
        ("Paris, France", ["Paris"], False),  # not a substring match
        ("an apple", ["Apple"], True),
        ("Theodore", ["odore"], False),  # articles only as whole words
        ("Campbell-Bannerman", ["CampbellBannerman"], True),  # punctuation is removed, not spaced
        ("", [""], False),  # an empty gold never matches
        ("a", ["the"], False),
        ("Ça va", ["ça va"], True),
    ],
)
def test_exact_match(pred: str, golds: list[str], hit: bool) -> None:
    assert exact_match(pred, golds) is hit


def test_normalize_answer() -> None:
    assert normalize_answer("The  Quick, Brown Fox!") == "quick brown fox"
    assert normalize_answer("A.B.C.") == "abc"
    assert normalize_answer("\tthe\nend ") == "end"


def test_triviaqa_accuracy_uses_aliases() -> None:
    exs = [
        Example("triviaqa", "1", "q", "Sunset Boulevard", "Q", aliases=("Sunset Blvd",)),
        Example("triviaqa", "2", "q", "Paris", "Q"),
    ]
    acc = triviaqa_accuracy(exs, {"1": "sunset blvd", "2": "Lyon"})
    assert (
        acc["exact_match"] == 1 and acc["accuracy"] == 0.5 and acc["per_example"] == {"1": True, "2": False}
    )


def test_generate_stage_end_to_end(tmp_path: Path) -> None:
    gen = FakeGenerator({"Paris": "x", "capital city of France": "Paris.", "Opens": "Abre un archivo local"})
    cfg = _config(tmp_path / "run", generate=True, max_new_tokens=8)
    run, report, _, _ = _run(cfg, BruteForceBackend(DOCS), scorer=gen)
    assert report["ok"], report["errors"]
    g = report["generation"]
    assert g["models"] == {"length": "fake-generator"}
    nov = {(r["task"], r["n"]): r for r in g["novelty"]}
    assert set(nov) == {("translation-es", 2), ("translation-es", 3)}
    for r in nov.values():
        assert r["novel"] <= r["pairs"]
    (acc,) = g["accuracy"]
    assert acc["task"] == "triviaqa" and acc["exact_match"] >= 1 and 0 < acc["accuracy"] <= 1
    with (tmp_path / "run" / "tables" / "generation-novelty.csv").open(encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == 2
    per = json.loads((tmp_path / "run" / "tables" / "generations-length.json").read_text(encoding="utf-8"))
    assert set(per) == {"translation-es", "triviaqa"}
    assert json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))["generation"] == g
    # a rerun reuses the stage: no new prompts
    asked = len(gen.prompts)
    _run(cfg, BruteForceBackend(DOCS), scorer=gen)
    assert len(gen.prompts) == asked


def test_generate_off_by_default_and_failures(tmp_path: Path) -> None:
    _, report, _, _ = _run(_config(tmp_path / "off"), BruteForceBackend(DOCS))
    assert "generation" not in report
    # a scorer without generate: the model's generation is an error in the report
    _, report, _, _ = _run(_config(tmp_path / "nogen", generate=True), BruteForceBackend(DOCS))
    assert not report["ok"] and any(e["stage"] == "generate length" for e in report["errors"])
    # a failed count of generated pairs stops the run
    backend = BruteForceBackend(DOCS)
    gen = FakeGenerator({"Opens": "zzz qqq www"})

    class Failing(BruteForceBackend):
        def cooccurrence(self, queries: Sequence[Sequence[Any]], *, space: str = "auto") -> list[int]:
            if any("zzz" in v for q in queries for p in q for v in p):
                raise ConnectionError("server went away")
            return super().cooccurrence(queries, space=space)

    with pytest.raises(EvalError, match="generation counts"):
        _run(_config(tmp_path / "fail", generate=True), Failing(backend.docs), scorer=gen)


def _oracle_greedy(tiny: tuple, prompt: str, max_new: int) -> str:  # noqa: F811
    """One row, no padding, no cache: the full sequence through the model at every step."""
    torch, tok, model = tiny
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    new: list[int] = []
    for _ in range(max_new):
        with torch.no_grad():
            t = int(model(input_ids=torch.tensor([ids + new])).logits[0, -1].float().argmax())
        if t == tok.eos_token_id:
            break
        new.append(t)
    return tok.decode(new, skip_special_tokens=True).lstrip().split("\n", 1)[0].strip()


def test_greedy_generation_matches_oracle_and_batching(tiny: tuple) -> None:  # noqa: F811
    from clients.eval.llm import CausalLMScorer

    _, tok, model = tiny
    prompts = [
        "Question: What is the capital city of France?\nAnswer: ",
        "English text: Opens a file.\nSpanish translation: ",
        "Q: x\nA: ",
    ]
    expected = [_oracle_greedy(tiny, p, 6) for p in prompts]
    for bs in (1, 3):
        s = CausalLMScorer("tiny", model=model, tokenizer=tok, device="cpu", batch_size=bs)
        assert s.generate(prompts, max_new_tokens=6) == expected
    s = CausalLMScorer("tiny", model=model, tokenizer=tok, device="cpu")
    assert s.generate(prompts, max_new_tokens=6) == s.generate(prompts, max_new_tokens=6)  # deterministic
    with pytest.raises(ValueError, match="max_new_tokens"):
        s.generate(prompts, max_new_tokens=0)


def test_cli_refuses_zero_new_tokens(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from taskgram.cli import main

    rc = main(
        ["eval", "--index", str(tmp_path), "--tasks-dir", str(tmp_path), "--run-dir", str(tmp_path / "r")]
        + ["--generate", "--max-new-tokens", "0"]
    )
    assert rc == 2 and "--max-new-tokens 0" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
