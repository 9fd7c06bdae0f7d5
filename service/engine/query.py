"""Query phrases: types, validation and tokenization policy.

A **phrase** is text or a sequence of token ids. A **phrase spec** is a phrase or an OR of variants:
a list of phrases (``["Paris", " Paris"]``) or ``{"any": [...]}`` as in JSON. A list whose items are all
integers is one phrase of token ids; a list of strings or of id lists is an OR of variants.

Text is normalized with the index's normalization (from its manifest) and tokenized with the index's
own tokenizer, without special tokens.

**Leading-space policy** (``space=``): byte-level BPE tokenizers (GPT-2, GPT-NeoX/Pythia) encode a word
differently at the start of a text ("Paris" → ``Paris``) and after a space (" Paris" → ``ĠParis``).

* ``"auto"`` (default): the phrase as it appears in running text — a space is prepended unless the text
  already starts with whitespace. ``"Paris"`` is searched as ``" Paris"``.
* ``"exact"``: the text is tokenized as given (use it for a phrase at the start of a document or after a
  newline, or to control the form yourself).
* ``"both"``: an OR of the two forms (``"Paris"`` and ``" Paris"``), counted as a union of documents.
  Valid where a phrase spec is (doc_freq, cooccurrence, windowed_cooccurrence, documents); ``count`` and
  the probability queries take exactly one token sequence and refuse it.

Token ids are validated: each must be below the index's vocabulary size and must not be the separator.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Literal, Union

import numpy as np

from service.engine.errors import QueryError

Phrase = Union[str, Sequence[int]]
PhraseSpec = Union[Phrase, Sequence[Phrase], Mapping[str, Sequence[Phrase]]]
SpacePolicy = Literal["auto", "exact", "both"]
SPACE_POLICIES: tuple[str, ...] = ("auto", "exact", "both")

#: A resolved phrase: a tuple of token ids. A resolved spec: a sorted tuple of distinct variants.
Ids = tuple[int, ...]
SpecKey = tuple[Ids, ...]


def _is_int(x: object) -> bool:
    return isinstance(x, (numbers.Integral, np.integer)) and not isinstance(x, bool)


def check_space(space: str) -> None:
    if space not in SPACE_POLICIES:
        raise QueryError(f"space must be one of {', '.join(SPACE_POLICIES)}, not {space!r}", field="space")


def text_forms(text: str, space: str) -> list[str]:
    """The texts to tokenize for one text phrase under a leading-space policy."""
    spaced = text if text[:1].isspace() else " " + text
    if space == "auto":
        return [spaced]
    if space == "exact":
        return [text]
    return [text] if spaced == text else [text, spaced]


class PhraseResolver:
    """Turns a batch of phrases / specs into token-id tuples with one batched tokenizer call."""

    def __init__(self, tokenize_batch, vocab_size: int, separator: int, space: str) -> None:
        check_space(space)
        self._tokenize_batch = tokenize_batch  # list[str] -> list[list[int]] (normalizes first)
        self.vocab_size = vocab_size
        self.separator = separator
        self.space = space
        self._texts: dict[str, int] = {}
        self._encoded: list[Ids] = []

    # A parsed item is a list of variants; each variant is ("ids", tuple) or ("text", text-form index).
    def _parse_phrase(self, phrase: object, field: str, item: int, allow_empty: bool) -> list[tuple]:
        if isinstance(phrase, str):
            if not phrase.strip():
                if allow_empty and phrase == "":
                    return [("ids", ())]
                raise QueryError(f"{field}: empty phrase", field=field, item=item)
            out = []
            for form in text_forms(phrase, self.space):
                slot = self._texts.setdefault(form, len(self._texts))
                out.append(("text", slot, field))
            return out
        if isinstance(phrase, np.ndarray):
            if phrase.ndim != 1 or not np.issubdtype(phrase.dtype, np.integer):
                raise QueryError(f"{field}: token ids must be a 1-d integer array", field=field, item=item)
            ids = tuple(int(x) for x in phrase)
        elif isinstance(phrase, Sequence) and all(_is_int(x) for x in phrase):
            ids = tuple(int(x) for x in phrase)
        else:
            raise QueryError(
                f"{field}: a phrase is a string or a list of token ids, not {type(phrase).__name__}",
                field=field,
                item=item,
            )
        if not ids and not allow_empty:
            raise QueryError(f"{field}: empty phrase", field=field, item=item)
        for tid in ids:
            if not 0 <= tid < self.vocab_size or tid == self.separator:
                raise QueryError(
                    f"{field}: token id {tid} is out of range (vocabulary of {self.vocab_size}, "
                    f"separator {self.separator} not allowed)",
                    field=field,
                    item=item,
                )
        return [("ids", ids)]

    def parse_phrase(self, phrase: object, field: str, item: int, *, allow_empty: bool = False) -> list[tuple]:
        """A single phrase (no OR); under space="both" a text phrase is refused."""
        parsed = self._parse_phrase(phrase, field, item, allow_empty)
        if len(parsed) != 1:
            raise QueryError(
                f"{field}: this query takes one token sequence; space='both' only applies to phrase specs",
                field=field,
                item=item,
            )
        return parsed

    def parse_spec(self, spec: object, field: str, item: int) -> list[tuple]:
        """A phrase or an OR of variants (list of phrases, or {"any": [...]})."""
        if isinstance(spec, Mapping):
            if set(spec) != {"any"}:
                raise QueryError(f"{field}: an OR of variants is {{\"any\": [...]}}", field=field, item=item)
            variants = spec["any"]
            if isinstance(variants, (str, bytes)) or not isinstance(variants, Sequence):
                raise QueryError(f"{field}.any: must be a list of phrases", field=field, item=item)
        elif isinstance(spec, Sequence) and not isinstance(spec, str) and not all(_is_int(x) for x in spec):
            variants = spec
        else:
            return self._parse_phrase(spec, field, item, False)
        if len(variants) == 0:
            raise QueryError(f"{field}: empty list of variants", field=field, item=item)
        out: list[tuple] = []
        for v, variant in enumerate(variants):
            if isinstance(variant, Mapping) or (
                isinstance(variant, Sequence) and not isinstance(variant, str) and variant
                and not all(_is_int(x) for x in variant)
            ):
                raise QueryError(f"{field}[{v}]: variants cannot be nested", field=field, item=item)
            out.extend(self._parse_phrase(variant, f"{field}[{v}]", item, False))
        return out

    def finish(self) -> None:
        """Tokenize every collected text in one batch."""
        texts = list(self._texts)
        self._encoded = [tuple(int(t) for t in ids) for ids in self._tokenize_batch(texts)] if texts else []

    def ids(self, variant: tuple) -> Ids:
        if variant[0] == "ids":
            return variant[1]
        ids = self._encoded[variant[1]]
        if not ids:
            raise QueryError(f"{variant[2]}: the text has no tokens", field=variant[2])
        return ids

    def key(self, parsed: list[tuple]) -> SpecKey:
        """Canonical key of a spec: its distinct variants, sorted."""
        return tuple(sorted({self.ids(v) for v in parsed}))


def flatten(patterns: Sequence[Ids]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged batch of token tuples -> (flat int64, offsets int64)."""
    lengths = np.fromiter((len(p) for p in patterns), dtype=np.int64, count=len(patterns))
    offsets = np.zeros(len(patterns) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter((t for p in patterns for t in p), dtype=np.int64, count=int(offsets[-1]))
    return flat, offsets
