"""Generated outputs (``taskgram eval --generate``): novelty and BLEU of translations, TriviaQA exact
match, GSM8K BERTScore precision and final-answer accuracy.

For a translation task, the paper's generalization measure on WMT: the word n-gram pairs between the
source sentence x and the model's greedy translation ŷ (the same extraction as the task-gram pairs,
:func:`clients.eval.pairs.extract_pairs` with ŷ as the output) are counted in the corpus (documents
containing both phrases, through the counting backend), and a pair is *novel* when that count is 0: the
model produced an (input, output) pairing the pretraining data never shows together. The count of a
pair is exact for what it counts (see :mod:`clients.eval.pairs`), so "novel" means no document contains
both phrases as token sequences; a failed query stops the stage, it is never a zero (never a novel pair).

The paper's performance measures (its §4), per example so that they can be binned by pair count (Fig. 3):
translation — BLEU of the greedy translation against the reference (sacreBLEU, sentence BLEU per example
and corpus BLEU per task); TriviaQA — exact match against the answer and its aliases after SQuAD-style
normalization (lower case, punctuation and the articles a/an/the removed, whitespace collapsed); GSM8K —
BERTScore precision of the generated solution against the gold one (the paper names precision; its code
used F1), with the final-answer accuracy (the number after ``####`` in the gold solution against the last
number of the generated one) beside it.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from clients.eval.errors import MetricError
from clients.eval.pairs import (
    CountBackend,
    CountCache,
    CountOptions,
    StopwordPolicy,
    count_pairs,
    extract_pairs,
)
from clients.eval.tasks import Example
from taskgram.files import write_csv_atomic


class Generator(Protocol):
    """What the generation stage needs from a model (``CausalLMScorer`` has it)."""

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = ...,
        progress: Any = None,
        *,
        stop: Sequence[str] = ...,
    ) -> list[str]:
        """One greedy continuation per prompt, in order, cut at the first stop string."""
        ...


def generated_task(task: str) -> bool:
    return task.startswith("translation-") or task in ("triviaqa", "gsm8k")


def stop_strings(task: str) -> tuple[str, ...]:
    """Where a greedy output ends: translations and TriviaQA answers are one line; a GSM8K solution runs
    over several lines and ends at a blank line or where the model starts a new question."""
    return ("\n\n", "\nQuestion:") if task == "gsm8k" else ("\n",)



# ------------------------------------------------------------------------------------------------
# Exact match (TriviaQA)
# ------------------------------------------------------------------------------------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalization: lower case, remove punctuation, remove articles, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, golds: Sequence[str]) -> bool:
    """Whether the normalized prediction equals one normalized gold answer (an empty gold never matches)."""
    pred = normalize_answer(prediction)
    return any(pred == g for g in (normalize_answer(x) for x in golds) if g)


def triviaqa_accuracy(examples: Sequence[Example], outputs: dict[str, str]) -> dict[str, Any]:
    """Exact-match accuracy of greedy answers; ``outputs`` maps example id -> generated answer."""
    hits = [exact_match(outputs[ex.id], [ex.y, *ex.aliases]) for ex in examples]
    return {
        "examples": len(hits),
        "exact_match": sum(hits),
        "accuracy": sum(hits) / len(hits) if hits else None,
        "per_example": {ex.id: h for ex, h in zip(examples, hits, strict=True)},
    }


# ------------------------------------------------------------------------------------------------
# BLEU (translation)
# ------------------------------------------------------------------------------------------------
def translation_bleu(examples: Sequence[Example], outputs: dict[str, str]) -> dict[str, Any]:
    """sacreBLEU with its defaults (13a tokenization, exponential smoothing for sentence BLEU): corpus BLEU
    of the task and sentence BLEU per example, both on the 0-100 scale; the signature says how."""
    try:
        from sacrebleu.metrics import BLEU
    except ImportError as err:
        raise MetricError("BLEU needs sacrebleu: pip install 'taskgram[eval]'") from err
    hyps = [outputs[ex.id] for ex in examples]
    refs = [ex.y for ex in examples]
    corpus = BLEU()
    sentence = BLEU(effective_order=True)  # short sentences: no zero from a missing 4-gram order
    return {
        "examples": len(examples),
        "bleu": corpus.corpus_score(hyps, [refs]).score if examples else None,
        "signature": str(corpus.get_signature()),
        "per_example": {
            ex.id: sentence.sentence_score(h, [r]).score
            for ex, h, r in zip(examples, hyps, refs, strict=True)
        },
    }


# ------------------------------------------------------------------------------------------------
# GSM8K: BERTScore precision and final answers
# ------------------------------------------------------------------------------------------------
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def final_answer(text: str) -> str | None:
    """The number after ``####`` when present (GSM8K's gold format), else the last number in the text;
    thousands separators and a trailing ``.0`` removed. None when the text has no number."""
    tail = text.rsplit("####", 1)[1] if "####" in text else text
    found = _NUMBER.findall(tail)
    if not found:
        return None
    value = found[0] if "####" in text else found[-1]
    value = value.replace(",", "")
    if "." in value:
        value = value.rstrip("0").rstrip(".")
    return value


@dataclass(frozen=True)
class BertScoreModel:
    """The encoder of BERTScore: a transformers model (directory or hub name) and the layer used."""

    model: str
    num_layers: int


def default_bertscore_model() -> BertScoreModel:
    """all-MiniLM-L6-v2 (the offline semantic-filter model), its last (6th) layer. The paper used
    BERTScore's English default, roberta-large layer 17, which needs a hub: give it with
    ``--bertscore-model roberta-large --bertscore-layers 17`` where one is reachable."""
    from clients.eval.embed import EmbeddingError, default_model_dir

    try:
        return BertScoreModel(str(default_model_dir()), 6)
    except EmbeddingError as err:
        raise MetricError(f"BERTScore: {err}") from err


def gsm8k_scores(
    examples: Sequence[Example],
    outputs: dict[str, str],
    model: BertScoreModel,
    *,
    device: str | None = None,
    batch_size: int = 32,
) -> dict[str, Any]:
    """BERTScore precision (no idf, no baseline rescaling) of each generated solution against the gold
    one, and final-answer accuracy. An empty output has precision 0 (it has no token to match)."""
    try:
        import bert_score
    except ImportError as err:
        raise MetricError("BERTScore needs bert-score: pip install 'taskgram[eval]'") from err
    where = Path(model.model).expanduser()
    if (where.is_absolute() or model.model.startswith(".")) and not where.is_dir():
        raise MetricError(f"BERTScore: {where}: no such model directory")
    scored = [ex for ex in examples if outputs[ex.id].strip()]
    precision = {ex.id: 0.0 for ex in examples}
    if scored:
        try:
            p, _, _ = bert_score.score(
                [outputs[ex.id] for ex in scored],
                [ex.y for ex in scored],
                model_type=model.model,
                num_layers=model.num_layers,
                batch_size=batch_size,
                device=device,
                idf=False,
                rescale_with_baseline=False,
            )
        except Exception as err:  # model loading (OSError, ValueError, ...) or a failed forward pass
            raise MetricError(f"BERTScore with {model.model!r}: {err}") from err
        for ex, value in zip(scored, p.tolist(), strict=True):
            precision[ex.id] = float(value)
    gold = {ex.id: final_answer(ex.y) for ex in examples}
    correct = {
        ex.id: gold[ex.id] is not None and final_answer(outputs[ex.id]) == gold[ex.id] for ex in examples
    }
    n = len(examples)
    return {
        "examples": n,
        "empty_outputs": n - len(scored),
        "bertscore_precision": sum(precision.values()) / n if n else None,
        "bertscore_model": model.model,
        "bertscore_layers": model.num_layers,
        "answer_accuracy": sum(correct.values()) / n if n else None,
        "per_example": {
            ex.id: {"bertscore_precision": precision[ex.id], "answer_correct": correct[ex.id]}
            for ex in examples
        },
    }


# ------------------------------------------------------------------------------------------------
# One task's measures
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskMeasures:
    """The paper's performance measures of one task's generated outputs."""

    summary: dict[str, float | None]  # measure over the task -> value
    per_example: dict[str, dict[str, Any]]  # example id -> its measures
    binned: str  # the per-example measure of the performance bins (Fig. 3)
    extra: dict[str, Any]  # how the measures were computed (BLEU signature, BERTScore encoder)


def task_measures(
    task: str,
    examples: Sequence[Example],
    outputs: dict[str, str],
    *,
    bertscore_model: Callable[[], BertScoreModel],
    device: str | None = None,
) -> TaskMeasures:
    """BLEU for translation, exact match for TriviaQA, BERTScore precision and final answers for GSM8K.
    Raises :class:`MetricError` when a measure cannot be computed."""
    if task == "triviaqa":
        acc = triviaqa_accuracy(examples, outputs)
        return TaskMeasures(
            {"exact_match": acc["accuracy"]},
            {i: {"exact_match": hit} for i, hit in acc["per_example"].items()},
            "exact_match",
            {},
        )
    if task == "gsm8k":
        g = gsm8k_scores(examples, outputs, bertscore_model(), device=device)
        return TaskMeasures(
            {"bertscore_precision": g["bertscore_precision"], "answer_accuracy": g["answer_accuracy"]},
            g["per_example"],
            "bertscore_precision",
            {"bertscore": {"model": g["bertscore_model"], "layers": g["bertscore_layers"]}},
        )
    b = translation_bleu(examples, outputs)
    return TaskMeasures(
        {"bleu": b["bleu"]},
        {i: {"sentence_bleu": v} for i, v in b["per_example"].items()},
        "sentence_bleu",
        {"bleu_signature": b["signature"]},
    )


# ------------------------------------------------------------------------------------------------
# Novel pairs (translation)
# ------------------------------------------------------------------------------------------------
def novel_pairs(
    backend: CountBackend,
    examples: Sequence[Example],
    outputs: dict[str, str],
    task: str,
    n: int,
    cache: CountCache,
    opts: CountOptions,
    *,
    stopwords: StopwordPolicy = "auto",
    lowercase: bool = True,
    max_pairs_per_example: int | None = None,
    progress: Callable[[int], None] | None = None,
    cosines: Callable[[list[tuple[str, str]]], Sequence[float]] | None = None,
    gamma: float | None = None,
) -> dict[str, Any]:
    """Pairs between each source x and its generated translation, their co-occurrence counts and the
    number and fraction of novel pairs (count 0). A pair occurring in several examples counts once per
    example. With ``cosines`` (the semantic filter's embedder) and ``gamma``, the same numbers over the
    pairs with cosine > γ (the generated counterpart of H_n(T)) as ``filtered_*``. Raises
    :class:`clients.eval.pairs.CountingError` when a query fails."""
    generated = [replace(ex, y=outputs[ex.id]) for ex in examples]
    pairs = extract_pairs(
        generated,
        task,
        n,
        stopwords=stopwords,
        lowercase=lowercase,
        max_pairs_per_example=max_pairs_per_example,
    )
    keys = [(p.sx, p.sy) for p in pairs]
    counts = count_pairs(backend, keys, cache, opts, progress=progress)
    novel = sum(1 for k in keys if counts[k] == 0)
    cos: list[float | None] = [None] * len(keys)
    if cosines is not None and gamma is not None and keys:
        cos = [float(c) for c in cosines(keys)]
    passed = [k for k, c in zip(keys, cos, strict=True) if c is not None and gamma is not None and c > gamma]
    filtered_novel = sum(1 for k in passed if counts[k] == 0)
    return {
        "examples": len(examples),
        "empty_outputs": sum(1 for ex in examples if not outputs[ex.id].strip()),
        "pairs": len(pairs),
        "novel": novel,
        "novel_fraction": novel / len(pairs) if pairs else None,
        "gamma": gamma if cosines is not None else None,
        "filtered_pairs": len(passed) if cosines is not None else None,
        "filtered_novel": filtered_novel if cosines is not None else None,
        "filtered_novel_fraction": filtered_novel / len(passed) if cosines is not None and passed else None,
        "rows": [[p.example_id, p.sx, p.sy, c, counts[k]] for p, k, c in zip(pairs, keys, cos, strict=True)],
    }


# ------------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------------
NOVELTY_HEADER = [
    "task",
    "n",
    "model",
    "examples",
    "pairs",
    "novel",
    "novel_fraction",
    "gamma",
    "filtered_pairs",
    "filtered_novel",
    "filtered_novel_fraction",
]
PERFORMANCE_HEADER = ["task", "model", "metric", "examples", "value"]


def write_tables(tables: Path, result: dict[str, Any]) -> list[str]:
    """``generation-novelty.csv`` and ``generation-performance.csv``; the paths written. ``result`` is the
    ``generation`` entry of report.json."""
    tables.mkdir(parents=True, exist_ok=True)
    written = []

    def _csv(name: str, header: list[str], rows: list[list[Any]]) -> None:
        written.append(str(write_csv_atomic(tables / name, header, rows)))

    _csv(
        "generation-novelty.csv",
        NOVELTY_HEADER,
        [[r[h] for h in NOVELTY_HEADER] for r in result["novelty"]],
    )
    _csv(
        "generation-performance.csv",
        PERFORMANCE_HEADER,
        [[r[h] for h in PERFORMANCE_HEADER] for r in result["performance"]],
    )
    return written
