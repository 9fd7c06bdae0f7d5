"""The merge layer's arithmetic: shard (or shard group) answers -> index answers.

Used both inside a :class:`~service.engine.shards.ShardGroup` (its shards) and by the index over its
groups (local, or Ray Serve replicas), so shards merge the same way however they are grouped:

* counts, document frequencies, co-occurrence in either unit and windowed co-occurrence are sums (a
  document never spans two shards);
* next-token counts are merged token by token (:func:`merge_next_tokens`);
* the work budget is checked on the index's total occurrences (:func:`check_budget`);
* a documents page is cut from the per-shard totals in doc-id order (:func:`page_picks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.engine.errors import BudgetExceeded


@dataclass(frozen=True)
class NextTokens:
    """Next-token counts of a batch of prompts: prompt j's distinct next tokens are
    ``ids[offsets[j]:offsets[j + 1]]`` with their ``counts``; ``totals[j]`` counts the prompt's
    occurrences and ``ends[j]`` those that end a document (no next token)."""

    ids: np.ndarray
    counts: np.ndarray
    offsets: np.ndarray
    totals: np.ndarray
    ends: np.ndarray

    @classmethod
    def pack(
        cls,
        per_prompt: Sequence[tuple[np.ndarray, np.ndarray] | None],
        totals: np.ndarray,
        ends: np.ndarray,
    ) -> NextTokens:
        """The batch of prompts whose distinct next tokens and counts are given one by one (None: the
        prompt has no next token)."""
        sizes = np.array([0 if p is None else len(p[0]) for p in per_prompt], dtype=np.int64)
        off = np.zeros(len(per_prompt) + 1, dtype=np.int64)
        np.cumsum(sizes, out=off[1:])
        present = [p for p in per_prompt if p is not None]
        empty = np.zeros(0, dtype=np.int64)
        return cls(
            ids=np.concatenate([p[0] for p in present]).astype(np.int64) if present else empty,
            counts=np.concatenate([p[1] for p in present]).astype(np.int64) if present else empty,
            offsets=off,
            totals=totals,
            ends=ends,
        )

    @classmethod
    def concat(cls, parts: Sequence[NextTokens]) -> NextTokens:
        """Consecutive batches as one."""
        if len(parts) == 1:
            return parts[0]
        empty = np.zeros(0, dtype=np.int64)
        sizes = [np.diff(p.offsets) for p in parts]
        off = np.zeros(sum(len(s) for s in sizes) + 1, dtype=np.int64)
        if sizes:
            np.cumsum(np.concatenate(sizes), out=off[1:])
        return cls(
            ids=np.concatenate([p.ids for p in parts]) if parts else empty,
            counts=np.concatenate([p.counts for p in parts]) if parts else empty,
            offsets=off,
            totals=np.concatenate([p.totals for p in parts]) if parts else empty,
            ends=np.concatenate([p.ends for p in parts]) if parts else empty,
        )


def merge_next_tokens(parts: Sequence[NextTokens], n: int) -> NextTokens:
    """The next-token counts of the same ``n`` prompts in several shards, added token by token."""
    if len(parts) == 1:
        return parts[0]
    totals = np.zeros(n, dtype=np.int64)
    ends = np.zeros(n, dtype=np.int64)
    for p in parts:
        totals += p.totals
        ends += p.ends
    per_prompt: list[tuple[np.ndarray, np.ndarray] | None] = []
    for j in range(n):
        live = [p for p in parts if p.offsets[j + 1] > p.offsets[j]]
        if not live:
            per_prompt.append(None)
            continue
        ids = np.concatenate([p.ids[p.offsets[j] : p.offsets[j + 1]] for p in live])
        cnt = np.concatenate([p.counts[p.offsets[j] : p.offsets[j + 1]] for p in live])
        if len(live) > 1:
            ids, inv = np.unique(ids, return_inverse=True)
            cnt = np.bincount(inv, weights=cnt, minlength=len(ids)).astype(np.int64)
        per_prompt.append((ids, cnt))
    return NextTokens.pack(per_prompt, totals, ends)


def add_up(arrays: Sequence[np.ndarray], n: int) -> np.ndarray:
    """Element-wise sum of int64 arrays of length ``n`` (one per shard or group)."""
    out = np.zeros(n, dtype=np.int64)
    for arr in arrays:
        out += arr
    return out


BUDGET_MESSAGE = "{what}: a phrase has {n} occurrences, over the work budget of {budget}"


def check_budget(occ: np.ndarray, budget: int | None, what: str, message: str = BUDGET_MESSAGE) -> None:
    """Raise :class:`BudgetExceeded` when a spec's occurrences in the whole index are over ``budget``
    (``message`` is formatted with ``what``, ``n`` and ``budget``)."""
    if budget is not None and len(occ) and int(occ.max()) > budget:
        raise BudgetExceeded(message.format(what=what, n=int(occ.max()), budget=budget), kind="work")


def summed(
    answers: Sequence[tuple[np.ndarray, np.ndarray | None]],
    budget: int | None,
    what: str,
    message: str = BUDGET_MESSAGE,
) -> np.ndarray:
    """Sum of the groups' (occurrences, values) answers; the budget is checked on the summed occurrences,
    so a group that stopped because a spec is over the budget in it alone always raises here."""
    occ = add_up([a[0] for a in answers], len(answers[0][0]))
    check_budget(occ, budget, what, message)
    values = [a[1] for a in answers if a[1] is not None]
    if len(values) < len(answers):  # pragma: no cover - a group only stops when the index is over
        raise BudgetExceeded(f"{what}: over the work budget of {budget}", kind="work")
    return add_up(values, len(values[0]))


def page_picks(shard_numbers: Sequence[int], totals: np.ndarray, ranks: np.ndarray) -> dict[int, np.ndarray]:
    """Global ranks (in doc-id order) of the documents to show -> local ranks per shard. Shards are in
    manifest order, so a document's global rank is its shard's offset + its rank in the shard."""
    starts = np.zeros(len(totals) + 1, dtype=np.int64)
    np.cumsum(totals, out=starts[1:])
    where = np.searchsorted(starts, ranks, side="right") - 1
    return {int(shard_numbers[s]): (ranks[where == s] - starts[s]).astype(np.int64) for s in np.unique(where)}
