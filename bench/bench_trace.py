"""Tracing benchmark: a 400-token text traced (spans, exact counts, documents included) by taskgram's
engine, next to infini-gram 2.6.0's engine on the same token ids, in the same run.

    .venv/bin/python bench/bench_trace.py --index INDEX_DIR [--peer DIR] [--build-peer] [--texts N]

``INDEX_DIR`` is a taskgram index, e.g. the 1 B-token index of ``bench/make_big_corpus.py``. ``--peer DIR``
is an infini-gram index of the same tokens; ``--build-peer`` writes it first from the taskgram index
(``tokenized.0``/``offset.0`` from our token arrays, then ``python -m infini_gram.indexing`` builds
``table.0``). infini-gram runs with prefetch depths 0, as its API server does.

Texts: ``--texts`` texts of 400 tokens, half "model-like" outputs (the reference answers of the shared
GSM8K and TriviaQA tasks, concatenated: mostly novel text), half near-copies of corpus text (400-token
windows of random documents with 3 % of the words replaced: long spans that end at the edits).

Measured per text, best of ``--rounds`` (warm page cache), and reported as p50 / p90 over the texts:

* **ours**: ``Index.trace`` with ``boundary="token"`` and with ``boundary="word"``, ``min_len=1``,
  ``docs_per_span=10``, ``context=100``, for ``max_count=10`` (OLMoTrace's default) and for every span
  (``max_count=None``); documents included (metadata, decoded snippet, the span marked).
* **infini-gram attribute**: ``engine.attribute(input_ids, delim_ids=[], min_len=1, max_cnt=10,
  enforce_bow=False)`` (OLMoTrace's primitive: the same maximal spans, ``boundary="token"``), then its
  documents: ``get_docs_by_ptrs_2`` for up to 10 of each span's occurrences with 100 tokens of context,
  decoded with the same tokenizer. Its spans are checked against ours (start, end, count).
* **infini-gram find per position**: for each start position, ``find`` on growing prefixes until the
  count is 0 (the longest match per position, the step the issue names), without documents.

A machine note: every number depends on the page cache; the script traces each text once before timing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TASKS = REPO / ".." / "shared" / "data" / "tasks"
EOS = 0  # GPT-NeoX <|endoftext|>
N_TOKENS = 400


def log(msg: str) -> None:
    print(msg, flush=True)


def build_peer(ours: Path, out: Path) -> None:
    """infini-gram's index of the same token ids (``bench/infinigram_peer.py``)."""
    from infinigram_peer import build_infinigram  # bench/infinigram_peer.py, next to this script

    t = time.perf_counter()
    build_infinigram(ours, out, out / "tmp", cpus=2, mem_gib=6)
    log(f"infini-gram index built in {time.perf_counter() - t:.1f} s")
    shutil.rmtree(out / "tmp", ignore_errors=True)


def texts(index, n: int, rng: np.random.Generator, tasks: Path = TASKS) -> list[tuple[str, str]]:
    """(kind, text of 400 tokens): half task answers, half edited corpus windows."""
    tok = index._tokenizer
    out: list[tuple[str, str]] = []
    answers: list[str] = []
    for name in ("gsm8k-test.jsonl", "triviaqa-validation.jsonl"):
        path = tasks / name
        if path.is_file():
            for line in path.open(encoding="utf-8"):
                rec = json.loads(line)
                for key in ("answer", "output", "target", "y"):
                    if isinstance(rec.get(key), str):
                        answers.append(rec[key])
                        break
    if answers:
        ids: list[int] = []
        for a in answers:
            ids += tok.encode(" " + a.strip()).tolist()
        for k in range(n // 2):
            out.append(("model-like", tok.decode(ids[k * N_TOKENS : (k + 1) * N_TOKENS])))
    shards = index.shards
    vocab_words = [
        t for t in range(1000, 40000) if tok.decode([t]).startswith(" ") and tok.decode([t])[1:].isalpha()
    ]
    while len(out) < n:
        shard = shards[int(rng.integers(len(shards)))]
        d = int(rng.integers(shard.n_docs))
        a, b = int(shard.doc_offsets[d]), int(shard.doc_offsets[d + 1]) - 1
        if b - a < N_TOKENS + 10:
            continue
        s = int(rng.integers(a, b - N_TOKENS))
        window = shard.tokens[s : s + N_TOKENS].astype(np.int64).tolist()
        for j in rng.choice(N_TOKENS, size=N_TOKENS * 3 // 100, replace=False):
            window[int(j)] = int(rng.choice(vocab_words))
        out.append(("edited corpus", tok.decode(window)))
    return out


def pctl(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def best_of(rounds: int, fn) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(rounds):
        t = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t)
    return best, value


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--peer", type=Path, default=None, help="infini-gram index of the same tokens")
    ap.add_argument("--build-peer", action="store_true", help="write the peer index first (needs --peer)")
    ap.add_argument("--texts", type=int, default=20)
    ap.add_argument("--tasks-dir", type=Path, default=TASKS, help="the shared task files (model-like texts)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-find", action="store_true", help="skip infini-gram's find per position")
    args = ap.parse_args()

    from service.engine import Index

    if args.build_peer:
        if args.peer is None:
            raise SystemExit("--build-peer needs --peer DIR")
        build_peer(args.index, args.peer)
    ix = Index.open(args.index)
    shards = len(ix.manifest.shards)
    log(f"index: {ix.n_tokens:,} tokens, {ix.n_docs:,} documents, {shards} shards ({args.index})")
    rng = np.random.default_rng(args.seed)
    items = texts(ix, args.texts, rng, args.tasks_dir)
    log(
        f"texts: {len(items)} ({sum(k == 'model-like' for k, _ in items)} model-like), {N_TOKENS} tokens each"
    )
    peer = None
    if args.peer is not None:
        from infini_gram.engine import InfiniGramEngine

        peer = InfiniGramEngine(
            index_dir=str(args.peer), eos_token_id=EOS, token_dtype="u16", vocab_size=65535,
            ds_prefetch_depth=0, sa_prefetch_depth=0, od_prefetch_depth=0,
        )  # fmt: skip
        assert peer.count(input_ids=[])["count"] == ix.n_tokens + ix.n_docs, "the peer holds other tokens"
    ix.warm_up()
    configs = [
        ("ours token max_count=10", dict(boundary="token", max_count=10)),
        ("ours word  max_count=10", dict(boundary="word", max_count=10)),
        ("ours token every span  ", dict(boundary="token", max_count=None)),
        ("ours word  every span  ", dict(boundary="word", max_count=None)),
    ]
    times: dict[str, list[float]] = {name: [] for name, _ in configs}
    spans: dict[str, list[int]] = {name: [] for name, _ in configs}
    docs: dict[str, list[int]] = {name: [] for name, _ in configs}
    peer_attr: list[float] = []
    peer_find: list[float] = []
    agree = 0
    tok = ix._tokenizer
    n_tokens = []
    for k, (_, text) in enumerate(items):
        ids = ix.trace([text], docs_per_span=0)[0].token_ids  # the text's tokens (what the peer traces)
        n_tokens.append(len(ids))
        for name, opts in configs:
            ix.trace([text], docs_per_span=10, context=100, **opts)  # page cache

            def ours(text=text, opts=opts):
                return ix.trace([text], docs_per_span=10, context=100, **opts)

            t, res = best_of(args.rounds, ours)
            times[name].append(t)
            spans[name].append(len(res[0].spans))
            docs[name].append(sum(len(s.documents) for s in res[0].spans))
        if peer is None:
            continue

        def attribute(ids=ids):
            r = peer.attribute(input_ids=ids, delim_ids=[], min_len=1, max_cnt=10, enforce_bow=False)
            reqs = [(d["s"], d["ptr"], s["length"], 100) for s in r["spans"] for d in s["docs"][:10]]
            fetched = peer.get_docs_by_ptrs_2(requests=reqs) if reqs else []
            if isinstance(fetched, dict):
                raise RuntimeError(f"infini-gram get_docs_by_ptrs_2: {fetched}")
            texts_ = [tok.decode(d["token_ids"]) for d in fetched] if fetched else []
            return r, texts_

        attribute()
        t, (r, _) = best_of(args.rounds, attribute)
        peer_attr.append(t)
        theirs = sorted((s["l"], s["r"], s["count"]) for s in r["spans"])
        mine = ix.trace([ids], boundary="token", max_count=10, docs_per_span=0)[0]
        agree += theirs == sorted((s.start, s.end, s.count) for s in mine.spans)
        if not args.no_find:

            def find_per_position(ids=ids):
                longest = []
                for p in range(len(ids)):
                    m = 0
                    while p + m < len(ids) and peer.find(input_ids=ids[p : p + m + 1])["cnt"] > 0:
                        m += 1
                    longest.append(m)
                return longest

            t, longest = best_of(1, find_per_position)
            peer_find.append(t)
            cands = ix._tracer.candidates(np.asarray(ids, dtype=np.int64), "token")
            assert (cands[1] - cands[0]).tolist() == longest, "longest matches differ from infini-gram's find"
        log(f"  text {k + 1}/{len(items)} done")
    log("")
    log(f"tokens per text as traced (text tokenized again): median {statistics.median(n_tokens):.0f}")
    log(f"p50 / p90 per {N_TOKENS}-token text (best of {args.rounds}), documents included")
    log("(up to 10 per span, ±100 tokens of context, metadata, decoded snippet):")
    for name, _ in configs:
        p50, p90 = 1000 * pctl(times[name], 50), 1000 * pctl(times[name], 90)
        log(
            f"  {name}  p50 {p50:7.1f} ms  p90 {p90:7.1f} ms"
            f"   spans/text median {statistics.median(spans[name]):.0f}, documents/text median "
            f"{statistics.median(docs[name]):.0f}"
        )
    if peer is not None:
        ours50 = pctl(times["ours token max_count=10"], 50)
        p50 = pctl(peer_attr, 50)
        p90 = pctl(peer_attr, 90)
        log(
            f"  infini-gram attribute+docs  p50 {1000 * p50:7.1f} ms  p90 {1000 * p90:7.1f} ms"
            f"   same spans as ours (token, max_count=10) on {agree}/{len(items)} texts"
        )
        log(f"  ratio infini-gram / ours (token, max_count=10), p50: {p50 / ours50:.2f}x")
        if peer_find:
            f50 = pctl(peer_find, 50)
            log(f"  infini-gram find per position (no documents)  p50 {1000 * f50:7.1f} ms  ")
            log(f"  ({f50 / ours50:.1f}x ours with documents); longest matches identical on every text")
    return 0


if __name__ == "__main__":
    sys.exit(main())
