"""Windowed co-occurrence computed by calling ``kernels._windowed_counts`` directly with one forced
method (its ``force_mode`` parameter), shard by shard, for queries of token-id specs: the tests check that
every exact method of the kernel gives the engine's answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from service.engine.index import Index
from service.engine.kernels import _windowed_counts
from service.engine.shards import spec_variants


def _variants(spec: Sequence[Any]) -> tuple[tuple[int, ...], ...]:
    """A token-id spec's distinct variants: a phrase (a list of ids) or an OR (a list of phrases)."""
    if spec and isinstance(spec[0], int):
        return (tuple(spec),)
    return tuple(dict.fromkeys(tuple(v) for v in spec))


def windowed_by_method(index: Index, queries: Sequence[Sequence[Any]], window: int, method: int) -> list[int]:
    """Each query is a list of clauses, a clause a token-id phrase spec (a phrase, or a list of variant
    phrases). The anchor is the clause with the fewest occurrences in the index (distinct variants; the
    first on ties)."""
    keys = [[_variants(clause) for clause in q] for q in queries]
    clauses = [c for q in keys for c in q]
    var_flat, var_off, clause_off = spec_variants(clauses)
    query_off = np.zeros(len(keys) + 1, dtype=np.int64)
    np.cumsum([len(q) for q in keys], out=query_off[1:])
    ranges = [shard.ranges(var_flat, var_off) for shard in index.shards]
    occ = np.zeros(len(clauses), dtype=np.int64)
    for lo, hi in ranges:
        occ += np.add.reduceat(hi - lo, clause_off[:-1])
    anchors = np.array(
        [query_off[q] + int(np.argmin(occ[query_off[q] : query_off[q + 1]])) for q in range(len(keys))],
        dtype=np.int64,
    )
    out = np.zeros(len(keys), dtype=np.int64)
    for shard, (lo, hi) in zip(index.shards, ranges, strict=True):
        if shard.n_tokens:
            out += _windowed_counts(
                shard.tokens,
                shard.sa,
                shard.doc_offsets,
                shard.bucket_table,
                shard.bucket_shift,
                var_flat,
                var_off,
                lo,
                hi,
                clause_off,
                query_off,
                anchors,
                np.int64(window),
                np.int64(method),
            )
    return out.tolist()
