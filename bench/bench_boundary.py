"""Word against token boundaries (``boundary="word"`` / ``"token"``) on real phrases: how many counts
change, by how much in total, and what the word test costs.

    .venv/bin/python bench/bench_boundary.py [--index DIR] [--workloads DIR] [--phrases N] [--rounds R]
                                             [--seed S] [--check K]

``--index``: an index built from text with a byte-level BPE tokenizer (default ``/work/eval-index``, or
``$TASKGRAM_BENCH_INDEX``): the four shared corpora under ``--normalization nfkc-lower``. The phrases are
a seeded uniform sample of ``--phrases`` distinct phrases of ``phrases.jsonl.zst`` in ``--workloads``
(default ``../shared/data/workloads``; the single-count workload of the evaluation: word n-grams,
stopwords removed). Both boundaries are
measured in the same run on the same index, best of ``--rounds``, with the document-set cache off:

1. ``count(phrases)`` — the phrase as in running text (``space="auto"``: a leading space, so its first
   token begins a word and only the end test runs);
2. ``count(phrases, space="exact")`` — as given (a phrase at a line start; its first token usually does
   not begin a word, so each occurrence's preceding token is read: the start scan);
3. ``doc_freq(phrases, space="both")`` — documents containing either form, as the evaluation asks.

Two samples: uniform over the workload (most of its word 3-grams never occur in the corpus), and uniform
over the phrases that occur (token count > 0, space="auto", found by counting every workload phrase).

Correctness on the real corpus: ``--check`` occurring phrases (half of them among those whose word and
token counts differ) are recounted by a regex over every
decoded document (`` phrase(?!\\w)`` after exactly one space, see :func:`regex_check`).

Prints, per query: phrases whose count differs, total token and word counts and their ratio, queries/s
for each boundary and the cost ratio (word time / token time); writes ``bench/results/boundary.json``.
Skips (exit 0, saying why) when the index or the workload file is absent.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
WORKLOADS = REPO / ".." / "shared" / "data" / "workloads"
DEFAULT_INDEX = os.environ.get("TASKGRAM_BENCH_INDEX", "/work/eval-index")


def read_phrases(path: Path) -> list[str]:
    import zstandard

    out = []
    with open(path, "rb") as f:
        text = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8")
        for line in text:
            out.append(json.loads(line)["phrase"])
    return out


def best(fn, rounds: int, reset) -> tuple[float, list[int]]:
    times, result = [], []
    for _ in range(rounds):
        reset()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def measure(ix, phrases: list[str], rounds: int) -> dict:
    queries = {
        "count (space=auto)": lambda b: ix.count(phrases, boundary=b),
        "count (space=exact)": lambda b: ix.count(phrases, space="exact", boundary=b),
        "doc_freq (space=both)": lambda b: ix.doc_freq(phrases, space="both", boundary=b),
    }
    results = {}
    for name, run in queries.items():
        t_token, token = best(lambda run=run: run("token"), rounds, ix._cache.clear)
        t_word, word = best(lambda run=run: run("word"), rounds, ix._cache.clear)
        tok, wrd = np.asarray(token), np.asarray(word)
        if np.any(wrd > tok):
            raise SystemExit(f"{name}: a word count exceeds its token count")
        row = {
            "phrases": len(phrases),
            "differ": int(np.sum(wrd != tok)),
            "nonzero_token": int(np.sum(tok > 0)),
            "zero_word_nonzero_token": int(np.sum((wrd == 0) & (tok > 0))),
            "total_token": int(tok.sum()),
            "total_word": int(wrd.sum()),
            "ratio_word_token": float(wrd.sum() / tok.sum()) if tok.sum() else None,
            "qps_token": len(phrases) / t_token,
            "qps_word": len(phrases) / t_word,
            "cost_word_over_token": t_word / t_token,
        }
        results[name] = row
        ratio = f"{row['ratio_word_token']:.4f}" if row["ratio_word_token"] is not None else "n/a"
        print(
            f"{name:22s} differ {row['differ']:4d}/{len(phrases)} (token>0: {row['nonzero_token']}, "
            f"word=0<token: {row['zero_word_nonzero_token']})  total token {row['total_token']:,} "
            f"word {row['total_word']:,} ratio {ratio}  q/s token {row['qps_token']:,.0f} "
            f"word {row['qps_word']:,.0f}  cost x{row['cost_word_over_token']:.2f}"
        )
    return results


def regex_check(ix, phrases: list[str]) -> dict:
    """Word counts (space="auto") against a regex count on every decoded document: the token " w1 w2"
    sequence is the text after exactly one space (after a run of spaces the tokenizer's whitespace
    tokens take them), ending where no word character follows."""
    import re

    t0 = time.perf_counter()
    texts = [ix.document(d).text or "" for d in range(ix.n_docs)]
    decoded = time.perf_counter() - t0
    word = ix.count(phrases, boundary="word")
    token = ix.count(phrases)
    regex = [sum(len(re.findall(rf"(?<! ) {re.escape(p)}(?!\w)", t)) for t in texts) for p in phrases]
    equal = sum(w == r for w, r in zip(word, regex, strict=True))
    n_differ = sum(w != t for w, t in zip(word, token, strict=True))
    print(
        f"regex check: {equal}/{len(phrases)} word counts equal a regex count on the decoded corpus "
        f"({n_differ} of these phrases have word != token counts; decoded in {decoded:.0f} s)"
    )
    for p, w, r in zip(phrases, word, regex, strict=True):
        if w != r:
            print(f"  differs: {p!r} word {w} regex {r}")
    return {"phrases": phrases, "equal": equal, "token": token, "word": word, "regex": regex}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", type=Path, default=Path(DEFAULT_INDEX))
    ap.add_argument("--phrases", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workloads", type=Path, default=WORKLOADS, help="folder of phrases.jsonl.zst")
    ap.add_argument("--check", type=int, default=20, help="occurring phrases recounted by regex (0: none)")
    args = ap.parse_args()
    phrases_file = args.workloads / "phrases.jsonl.zst"
    if not (args.index / "manifest.json").is_file():
        print(f"skipped: no index at {args.index}")
        return 0
    if not phrases_file.is_file():
        print(f"skipped: {phrases_file.resolve()} is absent")
        return 0
    from service.engine import Index

    ix = Index.open(args.index, cache_bytes=0)
    every = read_phrases(phrases_file)
    rng = np.random.default_rng(args.seed)
    ix.warm_up()
    print(
        f"index {args.index} ({ix.n_tokens:,} tokens, {ix.n_docs:,} docs, normalization "
        f"{ix.manifest.normalization}); {len(every):,} workload phrases; seed {args.seed}"
    )
    uniform = rng.choice(len(every), size=min(args.phrases, len(every)), replace=False)
    # most workload phrases (word 3-grams) never occur: a second sample among those that do
    t0 = time.perf_counter()
    occurring = np.flatnonzero(np.asarray(ix.count(every)) > 0)
    print(
        f"{len(occurring):,} of the phrases occur (token boundary, space=auto; "
        f"{time.perf_counter() - t0:.0f} s)"
    )
    among = rng.choice(len(occurring), size=min(args.phrases, len(occurring)), replace=False)
    report: dict = {
        "index": str(args.index),
        "seed": args.seed,
        "n_workload_phrases": len(every),
        "samples": {},
    }
    for sample_name, chosen in (("uniform", np.sort(uniform)), ("occurring", np.sort(occurring[among]))):
        phrases = [every[i] for i in chosen]
        print(f"-- {sample_name} sample: {len(phrases)} phrases")
        report["samples"][sample_name] = measure(ix, phrases, args.rounds)
    if args.check:  # half among the occurring sample's phrases whose two counts differ, half at random
        sample = [every[i] for i in np.sort(occurring[among])]
        differ = [
            p
            for p, t, w in zip(sample, ix.count(sample), ix.count(sample, boundary="word"), strict=True)
            if t != w
        ]
        half = min(args.check // 2, len(differ))
        checked = [differ[i] for i in rng.choice(len(differ), size=half, replace=False)]
        rest = rng.choice(len(occurring), size=min(args.check - half, len(occurring)), replace=False)
        checked += [every[i] for i in occurring[rest]]
        report["regex_check"] = regex_check(ix, checked)
    out = REPO / "bench" / "results" / "boundary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
