"""Traced spans of generated outputs (``taskgram eval --generate --trace-outputs N``).

Each greedy output is traced over the index (:meth:`clients.Client.trace`, word boundaries, every count
kept): the spans of it found verbatim in the corpus, its span density (spans per token) and coverage
(fraction of its tokens inside a span). An output is **novel** when none of its spans has ``N`` words or
more (words = whitespace-separated pieces of the span's text). Documents are not fetched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

TRACE_HEADER = [
    "task",
    "model",
    "min_words",
    "outputs",
    "novel",
    "novel_fraction",
    "mean_span_density",
    "mean_coverage",
    "mean_longest_words",
]


def trace_outputs(
    client: Any, outputs: dict[str, str], min_words: int, *, batch: int = 64
) -> dict[str, dict[str, Any]]:
    """example id -> {span_density, coverage, n_tokens, longest_words, novel, spans: [[text, words,
    count]] of the spans with at least ``min_words`` words}. Empty outputs are novel with no spans.
    A failed trace raises (it is never recorded as a novel output)."""
    ids = [i for i, text in outputs.items() if text.strip()]
    found: list[Any] = []
    for start in range(0, len(ids), batch):
        chunk = [outputs[i] for i in ids[start : start + batch]]
        found += client.trace(chunk, max_count=None, boundary="word", docs_per_span=0, context=0)
    out: dict[str, dict[str, Any]] = {
        i: {
            "span_density": 0.0,
            "coverage": 0.0,
            "n_tokens": 0,
            "longest_words": 0,
            "novel": True,
            "spans": [],
        }
        for i in outputs
    }
    for i, result in zip(ids, found, strict=True):
        spans = [(s.text or "", len((s.text or "").split()), s.count) for s in result.spans]
        longest = max((w for _, w, _ in spans), default=0)
        out[i] = {
            "span_density": result.span_density,
            "coverage": result.coverage,
            "n_tokens": result.n_tokens,
            "longest_words": longest,
            "novel": longest < min_words,
            "spans": [[t, w, c] for t, w, c in spans if w >= min_words],
        }
    return out


def trace_summary(task: str, model: str, min_words: int, traced: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One row of ``tables/generation-trace.csv``."""
    rows: Sequence[dict[str, Any]] = list(traced.values())
    n = len(rows)

    def mean(key: str) -> float | None:
        return sum(r[key] for r in rows) / n if n else None

    novel = sum(r["novel"] for r in rows)
    return {
        "task": task,
        "model": model,
        "min_words": min_words,
        "outputs": n,
        "novel": novel,
        "novel_fraction": novel / n if n else None,
        "mean_span_density": mean("span_density"),
        "mean_coverage": mean("coverage"),
        "mean_longest_words": mean("longest_words"),
    }
