"""LLM scoring (Eq. 2): only the tokens of s^y are labelled, each given everything before it (the paper
code's defect 9), batching and padding change nothing, long texts are scored in windows. A tiny randomly
initialised model is built in the test (no hub, no download)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.eval.llm import ScoreJob, locate
from clients.eval.ngrams import NgramOptions, word_spans

ASSETS = Path(__file__).resolve().parents[3] / "indexer" / "assets" / "gpt-neox-20b.json"


def test_word_spans_and_locate() -> None:
    y = "Janet sells 16 - 3 - 4 = 9 duck eggs a day at the farmer’s market."
    assert word_spans("Campbell-Bannerman x")[:2] == [("campbell", 0, 8), ("bannerman", 9, 18)]
    spans = locate(y, "duck eggs day", NgramOptions(3))  # stopword "a" skipped between eggs and day
    assert [y[s:e] for s, e in spans] == ["duck", "eggs", "day"]
    spans = locate(y, "farmer market", NgramOptions(2))
    assert [y[s:e] for s, e in spans] == ["farmer", "market"]
    assert locate(y, "goose eggs", NgramOptions(2)) is None
    y2 = "Sunset Boulevard, then sunset boulevard again"
    assert locate(y2, "sunset boulevard", NgramOptions(2, remove_stopwords=False)) == [
        (0, 6),
        (7, 16),
    ]  # first


@pytest.fixture(scope="module")
def tiny() -> tuple:
    torch = pytest.importorskip("torch", reason="LLM scoring tests need torch (pip install 'taskgram[eval]')")
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(ASSETS), pad_token="<|padding|>", eos_token="<|endoftext|>"
    )
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
    )
    model = LlamaForCausalLM(cfg).eval()
    return torch, tok, model


def _scorer(tiny: tuple, **kw):
    from clients.eval.llm import CausalLMScorer

    _, tok, model = tiny
    return CausalLMScorer("tiny", model=model, tokenizer=tok, device="cpu", **kw)


def _naive(
    tiny: tuple, text: str, spans: list[tuple[int, int]], window: int | None = None
) -> tuple[float, int]:
    """Sum over tokens overlapping the spans of log p(token | all earlier tokens), one forward per token."""
    torch, tok, model = tiny
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offs = enc["input_ids"], enc["offset_mapping"]
    pos = [i for i, (s, e) in enumerate(offs) if e > s and any(e > a and s < b for a, b in spans)]
    start = 0 if window is None else max(0, pos[-1] + 1 - window)
    total = 0.0
    for i in pos:
        if i < start:
            continue
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids[start:i]])).logits[0, -1]
        total += float(torch.log_softmax(logits.float(), -1)[ids[i]])
    return total, len([p for p in pos if p >= start])


def test_scores_equal_per_token_oracle_and_batching_changes_nothing(tiny: tuple) -> None:
    texts = [
        "Question: Which city?\nAnswer: Paris is the capital of France.",
        "English text: Opens a file.\nSpanish translation: Abre un archivo local o remoto.",
        "Q: x\nA: short",
    ]
    groups = [[[(30, 35)], [(30, 35), (43, 49)]], [[(48, 52), (53, 55)]], [[(10, 15)]]]
    jobs = [ScoreJob(t, g) for t, g in zip(texts, groups, strict=True)]
    one = _scorer(tiny, batch_size=1).score(jobs)
    many = _scorer(tiny, batch_size=3).score(jobs)
    for j, job in enumerate(jobs):
        for g, spans in enumerate(job.groups):
            lp, n = _naive(tiny, job.text, spans)
            assert one[j][g].n_tokens == n and many[j][g].n_tokens == n
            assert one[j][g].logprob == pytest.approx(lp, abs=1e-4)
            assert many[j][g].logprob == pytest.approx(lp, abs=1e-4)


def test_text_after_the_ngram_does_not_change_its_score(tiny: tuple) -> None:
    # defect 9: the authors' label mask ran from the first match to the end of the text
    base = "Question: Which city?\nAnswer: Paris is"
    a, b = _scorer(tiny).score(
        [ScoreJob(base, [[(30, 35)]]), ScoreJob(base + " the capital, Paris.", [[(30, 35)]])]
    )
    assert a[0].logprob == pytest.approx(b[0].logprob, abs=1e-5) and a[0].n_tokens == b[0].n_tokens


def test_empty_group_is_none_and_long_text_uses_windows(tiny: tuple) -> None:
    text = "Answer: " + " ".join(f"word{i}" for i in range(60)) + " target phrase end"
    start = text.index("target")
    spans = [(start, start + len("target phrase"))]
    res = _scorer(tiny, max_length=16).score([ScoreJob(text, [spans, []])])
    assert res[0][1] is None
    lp, n = _naive(tiny, text, spans, window=16)
    assert res[0][0].n_tokens == n and res[0][0].logprob == pytest.approx(lp, abs=1e-4)


def test_model_spec_resolution(tmp_path: Path) -> None:
    from clients.eval.llm import ModelError, resolve_model

    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert resolve_model(str(tmp_path / "m.gguf")) == (str(tmp_path), {"gguf_file": "m.gguf"}, "m")
    assert resolve_model(str(tmp_path)) == (str(tmp_path), {}, tmp_path.name)
    assert resolve_model("EleutherAI/pythia-70m")[0] == "EleutherAI/pythia-70m"
    with pytest.raises(ModelError, match="no such GGUF"):
        resolve_model(str(tmp_path / "missing.gguf"))
