"""∞-gram baseline (Eq. 5): P_∞(s^y | u ⊕ x ⊕ y[:m]) through the backend's ``infgram_prob``.

The ∞-gram scores the same text as the LLM (:mod:`clients.eval.llm`): the words of s^y. s^y's words are
cut into runs of words separated by whitespace only; each run is one query, whose context is the prompt
and y up to the run and whose continuation is the run, so every index token of those words is scored
(the authors' code scored only the last token of each word, with the context cut at 500 characters).
When stopwords were removed, the stopwords and punctuation between runs are context, never scored, as on
the LLM side. A space before a run moves into the continuation, so the index tokenizes " word" as it
appears in running text. Each token's probability is that of its
longest suffix with a nonzero count; as in Eq. 5, tokens with probability 0 are left out of the product,
and P_∞ = 0 (log = None, reported) only when every token has probability 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from clients.eval.errors import InfgramError


class InfgramBackend(Protocol):
    def infgram_prob(self, items: Sequence[tuple[Any, Any]], *, space: str = ...) -> list[Any]: ...



def word_runs(y: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The character spans of ``y`` covered by runs of s^y's words that only whitespace separates."""
    runs: list[list[int]] = []
    for s, e in spans:
        if runs and not y[runs[-1][1] : s].strip():
            runs[-1][1] = e
        else:
            runs.append([s, e])
    return [(s, e) for s, e in runs]


def split_for_infgram(
    prompt: str,
    y: str,
    spans: list[tuple[int, int]],
    max_context_chars: int = 4000,
) -> list[tuple[str, str]]:
    """(context, continuation) texts, one per run of words (:func:`word_runs`), for an s^y located at
    character ``spans`` of y; log P_∞ of s^y is the sum over its runs (:func:`combine_runs`)."""
    out = []
    for start, end in word_runs(y, spans):
        context = prompt + y[:start]
        continuation = y[start:end]
        if context.endswith(" "):
            context, continuation = context[:-1], " " + continuation
        if len(context) > max_context_chars:
            context = context[-max_context_chars:]
        out.append((context, continuation))
    return out


def combine_runs(scores: Sequence[float | None]) -> float | None:
    """log P_∞ of an s^y from those of its runs: their sum, runs whose every token had probability 0
    left out (Eq. 5); None when all were."""
    kept = [s for s in scores if s is not None]
    return sum(kept) if kept else None


def _token_probs(result: Any) -> list[float]:
    tokens = result.get("tokens") if isinstance(result, dict) else getattr(result, "tokens", None)
    if tokens is None:
        raise InfgramError(f"∞-gram result without tokens: {result!r}")
    out = []
    for t in tokens:
        p = t.get("prob") if isinstance(t, dict) else getattr(t, "prob", None)
        if p is None or not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
            raise InfgramError(f"∞-gram token probability {p!r} is not in [0, 1]")
        out.append(float(p))
    if not out:
        raise InfgramError("∞-gram result has no tokens for a non-empty continuation")
    return out


def infgram_log_prob(probs: Sequence[float]) -> float | None:
    """Eq. 5 in log space: the sum of log p over tokens with p > 0; None when all are 0."""
    kept = [math.log(p) for p in probs if p > 0.0]
    return sum(kept) if kept else None


def infgram_scores(
    backend: InfgramBackend,
    items: Sequence[tuple[str, str]],
    *,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> list[float | None]:
    """log P_∞ of each (context, continuation); raises ``InfgramError`` on any failed query."""
    out: list[float | None] = []
    for start in range(0, len(items), batch_size):
        batch = list(items[start : start + batch_size])
        try:
            results = backend.infgram_prob(batch, space="exact")  # the continuation carries its own space
        except Exception as err:
            raise InfgramError(
                f"∞-gram batch of {len(batch)} starting at #{start} failed: {type(err).__name__}: {err}"
            ) from err
        if not isinstance(results, list) or len(results) != len(batch):
            raise InfgramError(
                f"∞-gram backend answered {len(results) if isinstance(results, list) else results!r}"
                f" results for {len(batch)} queries"
            )
        out.extend(infgram_log_prob(_token_probs(r)) for r in results)
        if progress is not None:
            progress(len(batch))
    return out
