"""Generated outputs: novel pairs of a translation counted exactly (brute-force backend, a fake generator),
failed queries are errors, SQuAD exact match on tricky answers, BLEU, GSM8K final answers and BERTScore,
the ``--generate`` stage end to end (performance bins from generated outputs), and greedy generation of a
tiny randomly initialised model against a one-row no-cache oracle, stop strings included."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from clients.eval.errors import EvalError
from clients.eval.generation import (
    BertScoreModel,
    MetricError,
    exact_match,
    final_answer,
    gsm8k_scores,
    normalize_answer,
    novel_pairs,
    stop_strings,
    translation_bleu,
    triviaqa_accuracy,
)
from clients.eval.pairs import CountCache, CountingError, CountOptions, extract_pairs
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
        self.calls: list[tuple[int, tuple[str, ...]]] = []

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 64,
        progress: Any = None,
        *,
        stop: Sequence[str] = ("\n",),
    ) -> list[str]:
        self.prompts.extend(prompts)
        self.calls.append((max_new_tokens, tuple(stop)))
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
    res = novel_pairs(backend, exs, outs, "translation-es", 2, CountCache(tmp_path / "c", "test"), opts)
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
    assert [r[4] for r in res["rows"]] == oracle
    assert res["novel"] == oracle.count(0)
    assert res["filtered_pairs"] is None and res["gamma"] is None  # no filter asked
    assert 0 < res["novel"] < res["pairs"]  # the fixture has both kinds
    assert res["novel_fraction"] == pytest.approx(oracle.count(0) / len(oracle))
    assert all(n <= 3 for kind, n in backend.calls)  # batched


def test_novel_pairs_filtered_by_cosine(tmp_path: Path) -> None:
    exs = [_ex("a", "Opens a local file", "ref"), _ex("b", "The remote file", "ref")]
    outs = {"a": "Abre un archivo local", "b": "Archivo zzz remoto"}
    backend = BruteForceBackend(DOCS_ES)
    cos = {}

    def cosines(keys: list[tuple[str, str]]) -> list[float]:
        out = [0.9 if "archivo" in sy else 0.1 for _, sy in keys]  # a made-up filter: keeps "archivo" pairs
        cos.update(zip(keys, out, strict=True))
        return out

    opts = CountOptions(batch_size=3)
    res = novel_pairs(
        backend,
        exs,
        outs,
        "translation-es",
        2,
        CountCache(tmp_path / "c", "test"),
        opts,
        cosines=cosines,
        gamma=0.5,
    )
    kept = [r for r in res["rows"] if r[3] > 0.5]
    assert [r[3] for r in res["rows"]] == [cos[(r[1], r[2])] for r in res["rows"]]
    assert 0 < res["filtered_pairs"] == len(kept) < res["pairs"] and res["gamma"] == 0.5
    assert res["filtered_novel"] == sum(1 for r in kept if r[4] == 0)
    assert res["filtered_novel_fraction"] == pytest.approx(res["filtered_novel"] / len(kept))


def test_failed_or_malformed_query_is_an_error_not_a_novel_pair(tmp_path: Path) -> None:
    exs = [_ex("a", "Opens a local file", "ref")]
    outs = {"a": "Abre un archivo local"}
    backend = BruteForceBackend(DOCS_ES)
    backend.fail_on = "cooccurrence"
    with pytest.raises(CountingError, match="server went away"):
        novel_pairs(backend, exs, outs, "translation-es", 2, CountCache(tmp_path / "c", "t"), CountOptions())
    backend.fail_on, backend.answer = None, [None] * 6  # 2 x 3 pairs
    with pytest.raises(CountingError, match="not a non-negative integer"):
        novel_pairs(backend, exs, outs, "translation-es", 2, CountCache(tmp_path / "d", "t"), CountOptions())


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
    pytest.importorskip("sacrebleu", reason="BLEU needs sacrebleu (pip install 'taskgram[eval]')")
    gen = FakeGenerator({"Paris": "x", "capital city of France": "Paris.", "Opens": "Abre un archivo local"})
    cfg = _config(tmp_path / "run", generate=True, max_new_tokens=8, tasks=["translation-es", "triviaqa"])
    run, report, _, _ = _run(cfg, BruteForceBackend(DOCS), scorer=gen)
    assert report["ok"], report["errors"]
    assert gen.calls == [(8, ("\n",)), (8, ("\n",))]  # one call per task, one-line outputs
    g = report["generation"]
    assert g["models"] == {"length": "fake-generator"}
    nov = {(r["task"], r["n"]): r for r in g["novelty"]}
    assert set(nov) == {("translation-es", 2), ("translation-es", 3)}
    for (task, n), r in nov.items():
        assert r["novel"] <= r["pairs"] and r["gamma"] == 0.0  # the config's thresholds
        with (tmp_path / "run" / "tables" / f"generation-pairs-length-{task}-n{n}.csv").open() as f:
            rows = list(csv.DictReader(f))
        kept = [x for x in rows if float(x["cosine"]) > 0.0]
        assert r["filtered_pairs"] == len(kept) and r["pairs"] == len(rows)
        assert r["filtered_novel"] == sum(1 for x in kept if x["pair_count"] == "0")
    perf = {(r["task"], r["metric"]): r for r in g["performance"]}
    assert set(perf) == {("triviaqa", "exact_match"), ("translation-es", "bleu")}
    assert perf[("triviaqa", "exact_match")]["examples"] >= 1
    assert 0 < perf[("triviaqa", "exact_match")]["value"] <= 1
    assert 0 <= perf[("translation-es", "bleu")]["value"] <= 100 and "nrefs:1" in g["bleu_signature"]
    with (tmp_path / "run" / "tables" / "generation-novelty.csv").open(encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == 2
    with (tmp_path / "run" / "tables" / "generation-performance.csv").open(encoding="utf-8") as f:
        assert {(r["task"], r["metric"]) for r in csv.DictReader(f)} == set(perf)
    per = json.loads((tmp_path / "run" / "tables" / "generations-length.json").read_text(encoding="utf-8"))
    assert set(per) == {"translation-es", "triviaqa"}
    assert all("sentence_bleu" in r for r in per["translation-es"].values())
    assert all(isinstance(r["exact_match"], bool) for r in per["triviaqa"].values())
    assert json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))["generation"] == g
    # the performance bins (Fig. 3) use the generated outputs' measures
    with (tmp_path / "run" / "tables" / "performance.csv").open(encoding="utf-8") as f:
        metrics = {(r["task"], r["metric"]) for r in csv.DictReader(f)}
    assert ("translation-es", "sentence_bleu") in metrics and ("triviaqa", "exact_match") in metrics
    # a rerun reuses the stage: no new prompts
    asked = len(gen.prompts)
    _run(cfg, BruteForceBackend(DOCS), scorer=gen)
    assert len(gen.prompts) == asked


def test_gsm8k_generation_stops_at_blank_line_and_failed_bertscore_is_an_error(tmp_path: Path) -> None:
    gen = FakeGenerator({"Question": "It is 2+2=4\n#### 4"})
    cfg = _config(
        tmp_path / "run",
        generate=True,
        tasks=["gsm8k"],
        cot_max_new_tokens=32,
        bertscore_model=str(tmp_path / "no-such-model"),
    )
    _, report, _, _ = _run(cfg, BruteForceBackend(DOCS), scorer=gen)
    assert gen.calls == [(32, stop_strings("gsm8k"))] and "\n\n" in stop_strings("gsm8k")
    assert not report["ok"]
    assert [e["stage"] for e in report["errors"]] == ["generation metrics length gsm8k"]
    assert report["generation"]["performance"] == []


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
        def cooccurrence(
            self, queries: Sequence[Sequence[Any]], *, space: str = "auto", boundary: str = "token"
        ) -> list[int]:
            if any("zzz" in v for q in queries for p in q for v in p):
                raise ConnectionError("server went away")
            return super().cooccurrence(queries, space=space, boundary=boundary)

    with pytest.raises(EvalError, match="generation counts"):
        _run(_config(tmp_path / "fail", generate=True), Failing(backend.docs), scorer=gen)


def test_translation_bleu_matches_sacrebleu() -> None:
    sacrebleu = pytest.importorskip("sacrebleu", reason="BLEU needs sacrebleu (pip install 'taskgram[eval]')")
    exs = [
        _ex("a", "x", "Abre un archivo local."),
        _ex("b", "x", "El archivo remoto se abre."),
        _ex("c", "x", "Nada."),
    ]
    outs = {"a": "Abre un archivo local.", "b": "El archivo se abre.", "c": ""}
    b = translation_bleu(exs, outs)
    assert b["per_example"]["a"] == pytest.approx(100.0)
    assert b["per_example"]["c"] == 0.0
    assert 0 < b["per_example"]["b"] < 100
    assert b["per_example"]["b"] == pytest.approx(
        sacrebleu.sentence_bleu("El archivo se abre.", ["El archivo remoto se abre."]).score
    )
    hyps, refs = [outs[e.id] for e in exs], [e.y for e in exs]
    assert b["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert b["signature"].startswith("nrefs:1|") and "tok:13a" in b["signature"]


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("She makes 9 * 2 = $18 every day.\n#### 18", "18"),
        ("#### 1,234", "1234"),
        ("So the total is 3.50 dollars.", "3.5"),
        ("It costs 18.0", "18"),
        ("The answer is -5.", "-5"),
        ("First 12, then 7, so 19 apples", "19"),  # the last number of a generated solution
        ("#### 42 and then 7", "42"),  # after ####, the first number
        ("no number here", None),
        ("", None),
    ],
)
def test_final_answer(text: str, answer: str | None) -> None:
    assert final_answer(text) == answer


def test_gsm8k_bertscore_precision_and_answers() -> None:
    pytest.importorskip("bert_score", reason="BERTScore needs bert-score (pip install 'taskgram[eval]')")
    from clients.eval.generation import default_bertscore_model

    try:
        model = default_bertscore_model()
    except MetricError as err:
        pytest.skip(f"no offline BERTScore model: {err}")
    gold = "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2 = $18 every day.\n#### 18"
    exs = [Example("gsm8k", str(i), "q", gold, "Question: q\nAnswer: ") for i in range(3)]
    outs = {"0": gold, "1": "The weather is nice and 7 birds sing.", "2": "  "}
    g = gsm8k_scores(exs, outs, model, device="cpu")
    per = g["per_example"]
    assert per["0"]["bertscore_precision"] == pytest.approx(1.0, abs=1e-4)  # identical text
    assert 0 < per["1"]["bertscore_precision"] < per["0"]["bertscore_precision"]
    assert per["2"]["bertscore_precision"] == 0.0 and g["empty_outputs"] == 1
    assert [per[i]["answer_correct"] for i in "012"] == [True, False, False]
    assert g["answer_accuracy"] == pytest.approx(1 / 3)
    assert g["bertscore_layers"] == 6 and g["bertscore_model"] == model.model


def test_bertscore_model_that_is_missing_is_a_metric_error(tmp_path: Path) -> None:
    exs = [Example("gsm8k", "0", "q", "#### 1", "Q")]
    with pytest.raises(MetricError):
        gsm8k_scores(exs, {"0": "1"}, BertScoreModel(str(tmp_path / "missing"), 6))


def _oracle_greedy(tiny: tuple, prompt: str, max_new: int, stop: Sequence[str] = ("\n",)) -> str:  # noqa: F811
    """One row, no padding, no cache: the full sequence through the model at every step; cut afterwards."""
    torch, tok, model = tiny
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    new: list[int] = []
    for _ in range(max_new):
        with torch.no_grad():
            t = int(model(input_ids=torch.tensor([ids + new])).logits[0, -1].float().argmax())
        if t == tok.eos_token_id:
            break
        new.append(t)
    text = tok.decode(new, skip_special_tokens=True).lstrip()
    ends = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[: min(ends)] if ends else text).strip()


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
    # other stop strings (GSM8K's), and a stop string the random model is sure to produce: "e"
    for stop in (stop_strings("gsm8k"), ("e",)):
        expected = [_oracle_greedy(tiny, p, 24, stop) for p in prompts]
        for bs in (1, 3):
            s = CausalLMScorer("tiny", model=model, tokenizer=tok, device="cpu", batch_size=bs)
            assert s.generate(prompts, max_new_tokens=24, stop=stop) == expected
    with pytest.raises(ValueError, match="stop strings"):
        s.generate(prompts, stop=("",))


def test_greedy_generation_ignores_the_models_generation_defaults(tiny: tuple) -> None:  # noqa: F811
    """A model whose generation config samples, penalises repeats and suppresses the greedy first token
    still decodes by plain arg-max, and its config is left as it was."""
    from transformers import GenerationConfig

    from clients.eval.llm import CausalLMScorer

    torch, tok, model = tiny
    prompts = ["Question: What is the capital city of France?\nAnswer: ", "Q: x\nA: "]
    expected = [_oracle_greedy(tiny, p, 8) for p in prompts]
    with torch.no_grad():  # the arg-max first token of each prompt, which the config below suppresses
        first = [
            int(
                model(input_ids=torch.tensor([tok(p, add_special_tokens=False)["input_ids"]]))
                .logits[0, -1]
                .argmax()
            )
            for p in prompts
        ]
    own = model.generation_config
    model.generation_config = GenerationConfig(
        do_sample=True, temperature=5.0, repetition_penalty=3.0, suppress_tokens=first, no_repeat_ngram_size=1
    )
    try:
        s = CausalLMScorer("tiny", model=model, tokenizer=tok, device="cpu", batch_size=2)
        assert s.generate(prompts, max_new_tokens=8) == expected
        assert model.generation_config.suppress_tokens == first  # restored
    finally:
        model.generation_config = own
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
