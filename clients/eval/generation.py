"""Generated outputs (``taskgram eval --generate``): novelty of translations and TriviaQA exact match.

For a translation task, the paper's generalization measure on WMT: the word n-gram pairs between the
source sentence x and the model's greedy translation ŷ (the same extraction as the task-gram pairs,
:func:`clients.eval.pairs.extract_pairs` with ŷ as the output) are counted in the corpus (documents
containing both phrases, through the counting backend), and a pair is *novel* when that count is 0: the
model produced an (input, output) pairing the pretraining data never shows together. The count of a
pair is exact for what it counts (see :mod:`clients.eval.pairs`), so "novel" means no document contains
both phrases as token sequences; a failed query stops the stage, it is never a zero (never a novel pair).

For TriviaQA, the greedy answer's exact match against the answer and its aliases after SQuAD-style
normalization (lower case, punctuation and the articles a/an/the removed, whitespace collapsed).
"""

from __future__ import annotations

import csv
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from clients.eval.pairs import (
    CountBackend,
    CountCache,
    CountOptions,
    StopwordPolicy,
    count_pairs,
    extract_pairs,
)
from clients.eval.tasks import Example


class Generator(Protocol):
    """What the generation stage needs from a model (``CausalLMScorer`` has it)."""

    def generate(self, prompts: Sequence[str], max_new_tokens: int = ..., progress: Any = None) -> list[str]:
        """One greedy continuation per prompt, in order."""
        ...


def generated_task(task: str) -> bool:
    return task.startswith("translation-") or task == "triviaqa"


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
) -> dict[str, Any]:
    """Pairs between each source x and its generated translation, their co-occurrence counts and the
    number and fraction of novel pairs (count 0). A pair occurring in several examples counts once per
    example. Raises :class:`clients.eval.pairs.CountingError` when a query fails."""
    generated = [replace(ex, y=outputs[ex.id]) for ex in examples]
    pairs = extract_pairs(
        generated,
        task,
        n,
        stopwords=stopwords,
        lowercase=lowercase,
        max_pairs_per_example=max_pairs_per_example,
    )
    counts = count_pairs(backend, [(p.sx, p.sy) for p in pairs], cache, opts, progress=progress)
    novel = sum(1 for p in pairs if counts[(p.sx, p.sy)] == 0)
    return {
        "examples": len(examples),
        "empty_outputs": sum(1 for ex in examples if not outputs[ex.id].strip()),
        "pairs": len(pairs),
        "novel": novel,
        "novel_fraction": novel / len(pairs) if pairs else None,
        "rows": [[p.example_id, p.sx, p.sy, counts[(p.sx, p.sy)]] for p in pairs],
    }


# ------------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------------
NOVELTY_HEADER = ["task", "n", "model", "examples", "pairs", "novel", "novel_fraction"]
ACCURACY_HEADER = ["task", "model", "examples", "exact_match", "accuracy"]


def write_tables(tables: Path, result: dict[str, Any]) -> list[str]:
    """``generation-novelty.csv``, ``generation-accuracy.csv`` and per model/task/n pair tables; the
    paths written. ``result`` is the ``generation`` entry of report.json."""
    tables.mkdir(parents=True, exist_ok=True)
    written = []

    def _csv(name: str, header: list[str], rows: list[list[Any]]) -> None:
        path = tables / name
        with path.open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
        written.append(str(path))

    _csv(
        "generation-novelty.csv",
        NOVELTY_HEADER,
        [[r[h] for h in NOVELTY_HEADER] for r in result["novelty"]],
    )
    _csv(
        "generation-accuracy.csv",
        ACCURACY_HEADER,
        [[r[h] for h in ACCURACY_HEADER] for r in result["accuracy"]],
    )
    return written
