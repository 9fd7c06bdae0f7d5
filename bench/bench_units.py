"""Cost of the occurrence unit of co-occurrence against the document unit, on the real pair workload.

    .venv/bin/python bench/bench_units.py [--work DIR] [--pairs N] [--rounds R] [--seed S]

Uses the techdocs index of ``bench_query.py`` (built once into ``--work``, the same default folder, so
the two scripts share it) and a sample of ``--pairs`` (x, y) pairs, an equal share from each
``../shared/data/workloads/pairs-*.jsonl.zst``. Both units are measured in the same run, on the same
index, with the document-set cache cleared before every timed round (cold), best of ``--rounds``:

1. engine, pairs: ``Index.cooccurrence([[x, y], ...], space="both")`` with ``unit="documents"`` and
   ``unit="occurrences"``; the C(s^x) side: ``doc_freq([x, ...])`` against the occurrence count
   ``cooccurrence([[x, x], ...], unit="occurrences")`` over the distinct x. The workload's pairs are
   almost never in this corpus, so the same is measured on as many pairs that all co-occur: two token
   bigrams at random positions of one random document (frequencies as in the corpus);
2. the evaluation's counts stage: ``count_phrases`` + ``count_pairs`` of ``clients.eval.pairs`` through
   ``LocalClient`` (each phrase an OR of its three case forms, each with and without a leading space),
   with ``CountOptions(unit=...)`` and an empty count cache.

Checks: the occurrence counts of 40 sampled pairs equal numpy brute force over the corpus tokens; a
pair's count is 0 in one unit exactly when it is 0 in the other; C(pair) <= C(s^x) for every pair.
Prints pairs/s per unit and the ratio (occurrence time / document time); writes
``bench/results/units.json``. Skips (exit 0, saying why) when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_query import CORPUS, REPO, ROUNDS, WORKLOADS, Brute, best, build_ours, log, read_pairs  # noqa: E402

TOTAL_LINES = {"triviaqa": 47_813, "mmlu": 1_241_047, "gsm8k": 1_086_139, "translation-es": 1_038_029}


def sample_pairs(n_pairs: int, rng) -> list[tuple[str, str]]:
    per_file = max(1, n_pairs // len(WORKLOADS))
    sampled: list[tuple[str, str]] = []
    for path in WORKLOADS:
        key = next((k for k in TOTAL_LINES if k in path.name), None)
        rate = min(1.0, 1.2 * per_file / TOTAL_LINES.get(key, 1_000_000))
        got = read_pairs(path, rate, rng)
        picked = rng.choice(len(got), size=min(per_file, len(got)), replace=False)
        sampled += [got[i] for i in np.sort(picked)]
    return sampled


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "taskgram-bench-query")
    ap.add_argument("--pairs", type=int, default=20_000, help="pairs sampled from the workload files")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per measurement (best is reported)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not CORPUS.is_file() or not WORKLOADS:
        log(f"SKIP: {CORPUS} or the pair workloads not found (the shared data folder is absent)")
        return 0
    ROUNDS[0] = max(1, args.rounds)
    rng = np.random.default_rng(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)

    from clients.client import LocalClient
    from clients.eval.pairs import CountCache, CountOptions, count_pairs, count_phrases
    from service.engine import Index

    index_dir = build_ours(args.work)
    ix = Index.open(index_dir, name="techdocs")
    ix.warm_up()
    pairs = sample_pairs(args.pairs, rng)
    queries = [[x, y] for x, y in pairs]
    xs = list(dict.fromkeys(x for x, _ in pairs))
    log(
        f"index: {ix.n_tokens:,} tokens, {ix.n_docs:,} documents; {len(pairs):,} pairs, "
        f"{len(xs):,} distinct x"
    )
    results: dict[str, dict[str, float]] = {}

    # ---------------------------------------------------------------- 1. engine
    clear = ix._cache.clear
    docs, d_secs = best(ix.cooccurrence, queries, space="both", before=clear)
    occs, o_secs = best(ix.cooccurrence, queries, space="both", unit="occurrences", before=clear)
    df, df_secs = best(ix.doc_freq, xs, space="both", before=clear)
    selves = [[x, x] for x in xs]
    occ_x, ox_secs = best(ix.cooccurrence, selves, space="both", unit="occurrences", before=clear)
    if [c == 0 for c in docs] != [c == 0 for c in occs]:
        raise SystemExit("FAIL: a pair is zero in one unit and not in the other")
    x_of = dict(zip(xs, occ_x, strict=True))
    if any(c > x_of[x] for (x, _), c in zip(pairs, occs, strict=True)):
        raise SystemExit("FAIL: an occurrence pair count exceeds the occurrence count of its x")
    if any(a < b for a, b in zip(occ_x, df, strict=True)):
        raise SystemExit("FAIL: a phrase has fewer occurrences than documents")
    brute = Brute(ix)
    for i in rng.choice(len(queries), size=min(40, len(queries)), replace=False):
        x, y = queries[i]
        fx = {tuple(ix.tokenize(x)), tuple(ix.tokenize(x, space="exact"))}
        fy = {tuple(ix.tokenize(y)), tuple(ix.tokenize(y, space="exact"))}
        starts = np.unique(np.concatenate([brute.positions(v) for v in fx]))
        want = int(np.isin(brute.doc[starts], np.fromiter(brute.docs(fy), dtype=np.int64)).sum())
        if occs[i] != want:
            raise SystemExit(f"FAIL: {x!r}, {y!r}: {occs[i]} occurrences, brute force {want}")
    nonzero = sum(c > 0 for c in docs)
    log(
        f"engine, pairs: documents {len(queries) / d_secs:,.0f} pairs/s ({d_secs:.2f} s), occurrences "
        f"{len(queries) / o_secs:,.0f} pairs/s ({o_secs:.2f} s): occurrences/documents time = "
        f"{o_secs / d_secs:.2f}; {nonzero:,} nonzero; occurrence counts of 40 pairs equal brute force"
    )
    log(
        f"engine, C(s^x): doc_freq {len(xs) / df_secs:,.0f}/s ({df_secs:.2f} s), occurrences (x with "
        f"itself) {len(xs) / ox_secs:,.0f}/s ({ox_secs:.2f} s): ratio {ox_secs / df_secs:.2f}"
    )
    results["engine"] = {
        "pairs": len(queries),
        "documents_s": d_secs,
        "occurrences_s": o_secs,
        "distinct_x": len(xs),
        "doc_freq_s": df_secs,
        "occurrence_count_s": ox_secs,
    }

    # ---------------------------------------------------------------- 1b. engine, nonzero pairs
    # the workload pairs are almost all absent from this corpus; these pairs are token bigrams taken at
    # two random positions of one random document: every pair co-occurs, frequencies as in the corpus
    starts = brute.doc_start
    ends = np.concatenate([starts[1:] - 1, [len(brute.toks) - 1]])
    long_docs = np.flatnonzero(ends - starts >= 4)
    picked = rng.choice(long_docs, size=len(queries))
    lo, hi = starts[picked], ends[picked] - 2
    a = lo + (rng.random(len(picked)) * (hi - lo + 1)).astype(np.int64)
    b = lo + (rng.random(len(picked)) * (hi - lo + 1)).astype(np.int64)
    toks = brute.toks
    corpus_pairs = [
        [[int(toks[i]), int(toks[i + 1])], [int(toks[j]), int(toks[j + 1])]]
        for i, j in zip(a, b, strict=True)
    ]
    cdocs, cd_secs = best(ix.cooccurrence, corpus_pairs, before=clear)
    coccs, co_secs = best(ix.cooccurrence, corpus_pairs, unit="occurrences", before=clear)
    if min(cdocs) == 0 or any(o < d for o, d in zip(coccs, cdocs, strict=True)):
        raise SystemExit("FAIL: corpus pairs: a zero or an occurrence count below the document count")
    for i in rng.choice(len(corpus_pairs), size=20, replace=False):
        x, y = corpus_pairs[i]
        want = int(np.isin(brute.doc[brute.positions(x)], np.fromiter(brute.docs([y]), dtype=np.int64)).sum())
        if coccs[i] != want:
            raise SystemExit(f"FAIL: {x}, {y}: {coccs[i]} occurrences, brute force {want}")
    log(
        f"engine, corpus bigram pairs (all nonzero; median C_occ(pair) {int(np.median(coccs)):,}): documents "
        f"{len(corpus_pairs) / cd_secs:,.0f} pairs/s ({cd_secs:.2f} s), occurrences "
        f"{len(corpus_pairs) / co_secs:,.0f} pairs/s ({co_secs:.2f} s): occurrences/documents time = "
        f"{co_secs / cd_secs:.2f}; 20 equal brute force"
    )
    results["engine_corpus_pairs"] = {
        "pairs": len(corpus_pairs),
        "documents_s": cd_secs,
        "occurrences_s": co_secs,
    }

    # ---------------------------------------------------------------- 2. the evaluation's counts stage
    with LocalClient(index_dir, name="techdocs") as client, tempfile.TemporaryDirectory() as tmp:
        client.engine.warm_up()
        stage: dict[str, float] = {}
        for unit in ("documents", "occurrences"):
            opts = CountOptions(unit=unit)  # type: ignore[arg-type]
            secs = float("inf")
            for r in range(ROUNDS[0]):
                client.engine._cache.clear()
                cache = CountCache(Path(tmp) / f"{unit}-{r}.jsonl")
                t = time.perf_counter()
                x_counts = count_phrases(client, xs, cache, opts)
                pair_counts = count_pairs(client, pairs, cache, opts)
                secs = min(secs, time.perf_counter() - t)
            if any(pair_counts[p] > x_counts[p[0]] for p in pairs):
                raise SystemExit(f"FAIL: {unit}: C(pair) > C(s^x)")
            stage[unit] = secs
            log(
                f"eval counts stage, {unit}: {len(xs):,} C(s^x) + {len(set(pairs)):,} C(pair) in "
                f"{secs:.2f} s = {len(set(pairs)) / secs:,.0f} pairs/s (with their C(s^x))"
            )
        log(
            f"eval counts stage: occurrences/documents time = {stage['occurrences'] / stage['documents']:.2f}"
        )
        results["eval_counts_stage"] = {"pairs": len(set(pairs)), **{f"{u}_s": s for u, s in stage.items()}}

    out = REPO / "bench" / "results" / "units.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    log(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
