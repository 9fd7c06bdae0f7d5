"""Make a >= 1-billion-token pre-tokenized corpus (Megatron .bin/.idx) from the shared corpora, for the
large-build check of ``taskgram build``.

The four corpora of ``../shared/data/corpus`` are tokenized once with the Pythia tokenizer (about 25 M
tokens), then written again and again until the target size is reached. Copy 0 is the real token stream;
every later copy is perturbed so that the copies are not identical: documents in a fresh random order and
a fraction (``--perturb``, default 1%) of the tokens replaced by random ids. Seeds are fixed, so the output
is reproducible.

    python bench/make_big_corpus.py --out /work/big-corpus/big --tokens 1_000_000_000
    taskgram build /work/big-corpus/big --pretokenized megatron --tokenizer pythia --vocab-size 50280 \\
        --output /work/big-index --memory 8G

The output is written with a streaming writer (one copy in memory at a time).

Measured on the 2-core, 24 GiB build machine (quiet), 1,010,995,384 tokens / 661,330 documents (41 copies of
the three corpora, 24.7 M tokens each): ``taskgram build ... --memory 8G`` took 170.5 s wall (suffix arrays
139.8 s, write+hash 21.0 s), peak RSS 4.7 GiB, 2 shards, 5.7 GiB on disk (6.01 bytes/token);
``taskgram verify`` full check 74.8 s (peak RSS 6.5 GiB, memory maps included), ``--sample 1000000`` 6.4 s.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_CORPUS = REPO / ".." / "shared" / "data" / "corpus"
MEGATRON_MAGIC = b"MMIDIDX\x00\x00"
UINT16_CODE = 8


def tokenize_corpora(paths: list[Path], cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """All documents of ``paths`` as flat uint16 ids and int64 lengths (cached in ``cache``)."""
    if cache.with_suffix(".tokens.npy").is_file():
        return np.load(cache.with_suffix(".tokens.npy")), np.load(cache.with_suffix(".lengths.npy"))
    import zstandard

    from indexer.tokenize import load_tokenizer

    tok = load_tokenizer("pythia")
    parts: list[np.ndarray] = []
    lengths: list[int] = []
    started = time.monotonic()
    text_bytes = 0
    for path in paths:
        with open(path, "rb") as f:
            reader = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8")
            batch: list[str] = []
            for line in reader:
                text = json.loads(line)["text"]
                text_bytes += len(text.encode("utf-8"))
                batch.append(text)
                if len(batch) == 512:
                    for ids in tok.encode_batch(batch):
                        parts.append(ids.astype(np.uint16))
                        lengths.append(len(ids))
                    batch.clear()
            for ids in tok.encode_batch(batch):
                parts.append(ids.astype(np.uint16))
                lengths.append(len(ids))
    tokens = np.concatenate(parts)
    lens = np.asarray(lengths, dtype=np.int64)
    elapsed = time.monotonic() - started
    print(
        f"tokenized {len(paths)} corpora: {len(lens):,} documents, {len(tokens):,} tokens, "
        f"{text_bytes / 1e6:.1f} MB of text in {elapsed:.1f} s ({text_bytes / 1e6 / elapsed:.2f} MB/s)",
        file=sys.stderr,
    )
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache.with_suffix(".tokens.npy"), tokens)
    np.save(cache.with_suffix(".lengths.npy"), lens)
    return tokens, lens


def write_copies(
    prefix: Path, tokens: np.ndarray, lengths: np.ndarray, target: int, perturb: float, vocab: int
) -> tuple[int, int]:
    """Write perturbed copies as a Megatron dataset (one sequence per document); return (tokens, docs)."""
    starts = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    all_sizes: list[np.ndarray] = []
    written = 0
    copy = 0
    with open(prefix.with_suffix(".bin"), "wb") as out:
        while written < target:
            rng = np.random.default_rng(copy)
            order = np.arange(len(lengths)) if copy == 0 else rng.permutation(len(lengths))
            # gather the documents in the new order: token j of the copy comes from
            # starts[doc] + (j - new_start[doc])
            new_lengths = lengths[order]
            new_starts = np.zeros(len(order), dtype=np.int64)
            np.cumsum(new_lengths[:-1], out=new_starts[1:])
            idx = np.arange(len(tokens), dtype=np.int64)
            idx += np.repeat(starts[order] - new_starts, new_lengths)
            data = tokens[idx]
            del idx
            if copy and perturb > 0:
                hits = rng.random(len(data)) < perturb
                data[hits] = rng.integers(0, vocab, size=int(hits.sum()), dtype=np.uint16)
            out.write(data.astype("<u2").tobytes())
            all_sizes.append(lengths[order])
            written += len(data)
            copy += 1
            print(f"copy {copy}: {written:,} tokens", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    sizes = np.concatenate(all_sizes)
    n = len(sizes)
    if sizes.max() >= 2**31:
        raise SystemExit("a document is too long for Megatron's int32 sequence lengths")
    pointers = np.zeros(n, dtype=np.int64)
    pointers[1:] = np.cumsum(sizes[:-1]) * 2
    with open(prefix.with_suffix(".idx"), "wb") as f:
        f.write(MEGATRON_MAGIC)
        f.write(struct.pack("<QBQQ", 1, UINT16_CODE, n, n + 1))
        f.write(sizes.astype("<i4").tobytes())
        f.write(pointers.astype("<i8").tobytes())
        f.write(np.arange(n + 1, dtype="<i8").tobytes())
    return written, n


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, type=Path, help="output prefix (PREFIX.bin + PREFIX.idx)")
    parser.add_argument("--tokens", type=lambda s: int(s.replace("_", "")), default=1_000_000_000)
    parser.add_argument("--perturb", type=float, default=0.01, help="fraction of tokens replaced per copy")
    parser.add_argument("--corpus", type=Path, nargs="*", default=None, help="default: ../shared/data/corpus")
    args = parser.parse_args()
    # sample-en is a subset of techdocs-en: leave it out
    paths = args.corpus or sorted(
        p for p in SHARED_CORPUS.glob("*.jsonl.zst") if not p.name.startswith("sample")
    )
    if not paths:
        print(f"no corpora found in {SHARED_CORPUS.resolve()}; give --corpus", file=sys.stderr)
        return 2
    if str(args.out.resolve()).startswith(str(REPO) + "/"):
        print("write the big corpus outside the repository", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tokens, lengths = tokenize_corpora(paths, args.out.parent / "base")
    started = time.monotonic()
    n_tokens, n_docs = write_copies(args.out, tokens, lengths, args.tokens, args.perturb, vocab=50277)
    print(
        f"wrote {args.out}.bin/.idx: {n_tokens:,} tokens, {n_docs:,} documents in "
        f"{time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
