"""LLM scoring (Eq. 2) and greedy generation (``--generate``) on CPU and GPU, for Pythia-shaped models.

These are the evaluation's model-bound stages. No model hub is reachable where this runs, so the models
are GPT-NeoX networks with the published Pythia configurations and random weights: the time of a forward
pass depends on the shape, not on the weights. Two parts:

1. GPU vs CPU agreement (only with a GPU): a small GPT-NeoX model scored in float32 on both gives the
   same log-probabilities (|difference| <= 1e-2 x max(1, |log p|): relative, since the spread of the
   weights makes them large; an H200 in float32 differed by up to 4.7e-3 in an end-to-end run), and its
   greedy outputs on the GPU
   are identical to the CPU's and do not depend on the batch size. The weights are drawn with a large
   spread so that arg-max decisions are not near-ties that rounding could flip.
2. Throughput per model shape and device: texts of the embedded sample corpus (about ``--tokens`` tokens
   each), an n-gram-like span labelled at the end of each, scored by ``CausalLMScorer.score`` (scored
   tokens per second of context); then greedy generation of ``--new-tokens`` tokens for ``--prompts``
   prompts (generated tokens per second). The CPU runs the smallest shape as the reference measured in
   the same run.

    python bench/bench_llm.py                      # CPU: pythia-14m and -70m shapes
    python bench/bench_llm.py --sizes 160m 1.4b 6.9b 12b   # on a GPU machine

Prints one table; ``--json PATH`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (hidden size, layers, attention heads, vocabulary) of the Pythia suite's config.json files
PYTHIA = {
    "14m": (128, 6, 4, 50304),
    "70m": (512, 6, 8, 50304),
    "160m": (768, 12, 12, 50304),
    "410m": (1024, 24, 16, 50304),
    "1b": (2048, 16, 8, 50304),
    "1.4b": (2048, 24, 16, 50304),
    "2.8b": (2560, 32, 32, 50304),
    "6.9b": (4096, 32, 32, 50432),
    "12b": (5120, 36, 40, 50688),
}
NEVER = ("\x00never\x00",)  # a stop string that does not occur: every row generates all its tokens


def pythia_model(size: str, device: str, dtype, *, init_range: float = 0.02):
    import torch
    from transformers import AutoModelForCausalLM, GPTNeoXConfig

    hidden, layers, heads, vocab = PYTHIA[size]
    cfg = GPTNeoXConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        rotary_pct=0.25,
        max_position_embeddings=2048,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        initializer_range=init_range,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    return model.eval()


def tokenizer():
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_file=str(ROOT / "indexer" / "assets" / "gpt-neox-20b.json"),
        eos_token="<|endoftext|>",
        pad_token="<|padding|>",
    )


def sample_texts(tok, count: int, tokens: int) -> list[str]:
    """``count`` texts of about ``tokens`` tokens cut from the embedded sample corpus."""
    import zstandard

    raw = zstandard.ZstdDecompressor().stream_reader((ROOT / "data" / "sample-en.jsonl.zst").open("rb"))
    texts: list[str] = []
    for line in io.TextIOWrapper(raw, encoding="utf-8"):
        ids = tok(json.loads(line)["text"], add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids) - tokens, tokens):
            texts.append(tok.decode(ids[start : start + tokens]))
            if len(texts) == count:
                return texts
    raise SystemExit(f"the sample corpus has fewer than {count} texts of {tokens} tokens")


def jobs_for(texts: list[str]):
    from clients.eval.llm import ScoreJob

    return [ScoreJob(t, [[(max(0, len(t) - 24), len(t))]]) for t in texts]  # the last ~5 words


def agreement(tok, texts: list[str]) -> dict:
    """float32 GPU vs CPU: log-probabilities and greedy outputs of one small model."""
    import torch

    from clients.eval.llm import CausalLMScorer

    model = pythia_model("14m", "cpu", torch.float32, init_range=0.5)
    jobs = jobs_for(texts[:64])
    prompts = [t[:300] for t in texts[:32]]
    out = {}
    results = {}
    for device in ("cpu", "cuda"):
        s = CausalLMScorer(
            "pythia-14m-shape", model=model.to(device), tokenizer=tok, device=device, batch_size=16
        )
        results[device] = (
            [g.logprob for row in s.score(jobs) for g in row if g is not None],
            s.generate(prompts, 24, stop=NEVER),
        )
        s.batch_size = 1
        out[f"generate_batch1_equals_batch16_{device}"] = (
            s.generate(prompts, 24, stop=NEVER) == results[device][1]
        )
    cpu, gpu = results["cpu"], results["cuda"]
    out["scored_spans"] = len(cpu[0])
    out["max_abs_logprob_diff"] = max(abs(a - b) for a, b in zip(cpu[0], gpu[0], strict=True))
    out["max_abs_logprob"] = max(abs(a) for a in cpu[0])
    out["max_rel_logprob_diff"] = max(
        abs(a - b) / max(1.0, abs(a)) for a, b in zip(cpu[0], gpu[0], strict=True)
    )
    out["generate_gpu_equals_cpu"] = cpu[1] == gpu[1]
    out["ok"] = (
        out["max_rel_logprob_diff"] <= 1e-2
        and out["generate_gpu_equals_cpu"]
        and all(v for k, v in out.items() if k.startswith("generate_batch1"))
    )
    return out


def throughput(tok, size: str, device: str, texts: list[str], args) -> dict:
    import torch

    from clients.eval.llm import CausalLMScorer

    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    started = time.perf_counter()
    model = pythia_model(size, device, dtype)
    if device == "cuda":
        torch.cuda.synchronize()  # the random initialisation runs asynchronously
    built = time.perf_counter() - started
    batch = args.cpu_batch if device == "cpu" else args.gpu_batch
    s = CausalLMScorer(f"pythia-{size}-shape", model=model, tokenizer=tok, device=device, batch_size=batch)
    n = args.cpu_texts if device == "cpu" else args.gpu_texts
    jobs = jobs_for(texts[:n])
    s.score(jobs[:batch])  # warm-up (kernels, allocator)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    s.score(jobs)
    if device == "cuda":
        torch.cuda.synchronize()
    score_s = time.perf_counter() - t0
    context_tokens = sum(
        len(ids) for ids in tok([j.text for j in jobs], add_special_tokens=False)["input_ids"]
    )
    prompts = [t[:400] for t in texts[: args.prompts]]
    s.generate(prompts[:batch], 4, stop=NEVER)  # warm-up
    t0 = time.perf_counter()
    s.generate(prompts, args.new_tokens, stop=NEVER)
    if device == "cuda":
        torch.cuda.synchronize()
    gen_s = time.perf_counter() - t0
    row = {
        "size": size,
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
        "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "build_s": round(built, 2),
        "texts": len(jobs),
        "score_s": round(score_s, 3),
        "texts_per_s": round(len(jobs) / score_s, 1),
        "context_tokens_per_s": round(context_tokens / score_s),
        "prompts": len(prompts),
        "new_tokens": args.new_tokens,
        "generate_s": round(gen_s, 3),
        "generated_tokens_per_s": round(len(prompts) * args.new_tokens / gen_s, 1),
    }
    if device == "cuda":
        row["peak_gpu_GiB"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        torch.cuda.reset_peak_memory_stats()
    del s, model
    if device == "cuda":
        torch.cuda.empty_cache()
    return row


def main() -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", default=None, help="Pythia shapes for the GPU (CPU: --cpu-sizes)")
    p.add_argument("--cpu-sizes", nargs="+", default=["14m", "70m"])
    p.add_argument("--tokens", type=int, default=256, help="tokens per scored text")
    p.add_argument("--cpu-texts", type=int, default=64)
    p.add_argument("--gpu-texts", type=int, default=1024)
    p.add_argument("--cpu-batch", type=int, default=8)
    p.add_argument("--gpu-batch", type=int, default=64)
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    for size in (args.sizes or []) + args.cpu_sizes:
        if size not in PYTHIA:
            p.error(f"unknown size {size!r}; one of {', '.join(PYTHIA)}")
    tok = tokenizer()
    gpu = torch.cuda.is_available()
    texts = sample_texts(
        tok, max(args.gpu_texts if gpu else 0, args.cpu_texts, args.prompts, 64), args.tokens
    )
    report: dict = {
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if gpu else None,
        "cpu_threads": torch.get_num_threads(),
    }
    if gpu:
        report["agreement"] = agreement(tok, texts)
        print("GPU vs CPU (float32):", json.dumps(report["agreement"]), flush=True)
    rows = [throughput(tok, size, "cpu", texts, args) for size in args.cpu_sizes]
    if gpu:
        rows += [throughput(tok, size, "cuda", texts, args) for size in (args.sizes or ["160m", "1.4b"])]
    report["throughput"] = rows
    cols = [
        "size",
        "device",
        "dtype",
        "params_M",
        "texts_per_s",
        "context_tokens_per_s",
        "generated_tokens_per_s",
    ]
    print("\t".join(cols + ["peak_gpu_GiB"]))
    for r in rows:
        print("\t".join(str(r.get(c, "")) for c in cols + ["peak_gpu_GiB"]), flush=True)
    base = next(
        (
            r
            for r in rows
            if r["device"] == "cpu" and r["size"] in {x["size"] for x in rows if x["device"] == "cuda"}
        ),
        None,
    )
    if base:
        g = next(r for r in rows if r["device"] == "cuda" and r["size"] == base["size"])
        print(
            f"pythia-{base['size']} shape, GPU / CPU: scoring {g['texts_per_s'] / base['texts_per_s']:.1f}x, "
            f"generation {g['generated_tokens_per_s'] / base['generated_tokens_per_s']:.1f}x"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0 if report.get("agreement", {}).get("ok", True) else 1


if __name__ == "__main__":
    raise SystemExit(main())
