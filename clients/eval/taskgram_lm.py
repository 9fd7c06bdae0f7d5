"""The task-gram language model (Definition 2, Eq. 1): P(s^y | s^x) = C((s^x, s^y)) / C(s^x).

Both counts are in the same unit over the same index with the same phrase variants, so the ratio is a
conditional probability (<= 1): documents (C(s^x) = documents containing s^x, C(pair) = documents
containing both) or occurrences (C(s^x) = occurrences of s^x, C(pair) = those of its occurrences whose
document contains s^y); see ``clients.eval.pairs.CountOptions``. As in the paper, pairs with a zero
co-occurrence count are not part of the model; they are counted and reported, not silently lost.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from clients.eval.errors import InconsistentCounts


@dataclass(frozen=True)
class TaskgramPair:
    task: str
    n: int
    example_id: str
    sx: str
    sy: str
    cosine: float | None  # None when no semantic filter was run
    pair_count: int
    sx_count: int
    in_h: bool = True  # in the filtered analysis (H_n(T): cosine > γ, within the pair cap)
    in_all: bool = True  # in the unfiltered analysis (within the pair cap)

    @property
    def log_prob(self) -> float:
        return math.log(self.pair_count / self.sx_count)


@dataclass(frozen=True)
class TaskgramStats:
    candidates: int  # pairs after the semantic filter
    zero_count: int  # of those, pairs with C((s^x, s^y)) = 0, dropped
    kept: int  # H_n(T) pairs with a nonzero count


def build_taskgram(
    pairs: Iterable[tuple[Any, ...]],
    pair_counts: Mapping[tuple[str, str], int],
    phrase_counts: Mapping[str, int],
) -> tuple[list[TaskgramPair], TaskgramStats]:
    """Task-gram pairs with probabilities; ``pairs``: (task, n, example_id, sx, sy, cosine or None) and,
    optionally, the flags ``in_h`` and ``in_all`` of :class:`TaskgramPair` (default True)."""
    kept: list[TaskgramPair] = []
    total = zero = 0
    for task, n, ex_id, sx, sy, cos, *flags in pairs:
        total += 1
        c_pair = pair_counts[(sx, sy)]
        if c_pair == 0:
            zero += 1
            continue
        c_x = phrase_counts[sx]
        if c_pair > c_x:
            raise InconsistentCounts(f"C(({sx!r}, {sy!r})) = {c_pair} > C({sx!r}) = {c_x}")
        kept.append(TaskgramPair(task, n, ex_id, sx, sy, cos, c_pair, c_x, *flags))
    return kept, TaskgramStats(total, zero, len(kept))
