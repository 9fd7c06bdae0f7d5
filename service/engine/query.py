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
from typing import Any

import numpy as np

from service.engine.errors import QueryError
from taskgram.api import SPACE_POLICIES

Phrase = str | Sequence[int]
PhraseSpec = Phrase | Sequence[Phrase] | Mapping[str, Sequence[Phrase]]

#: A resolved phrase: a tuple of token ids. A resolved spec: a sorted tuple of distinct variants.
Ids = tuple[int, ...]
SpecKey = tuple[Ids, ...]


def is_int(x: object) -> bool:
    """An integer (Python, numpy or any ``numbers.Integral``), not a boolean."""
    return isinstance(x, (numbers.Integral, np.integer)) and not isinstance(x, bool)


def check_int(value: Any, field: str, *, minimum: int = 0, none_ok: bool = False) -> int | None:
    """``value`` as an ``int`` of at least ``minimum`` (or None, when ``none_ok``); a QueryError naming
    ``field`` otherwise. The one integer check of the engine's options."""
    if value is None and none_ok:
        return None
    if not is_int(value) or value < minimum:
        alternative = " or None" if none_ok else ""
        raise QueryError(f"{field} must be an integer >= {minimum}{alternative}, not {value!r}", field=field)
    return int(value)


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
    """Turns a batch of phrases / specs into token-id tuples with one batched tokenizer call.

    A parsed variant is either a tuple of token ids or an int: the slot of a text form, tokenized in
    :meth:`finish`. Plain lists/tuples of Python ints take a fast path (the common case of large batches)."""

    def __init__(self, tokenize_batch, vocab_size: int, separator: int, space: str) -> None:
        check_space(space)
        self._tokenize_batch = tokenize_batch  # list[str] -> list[list[int]] (normalizes first)
        self.vocab_size = vocab_size
        self.separator = separator
        self.space = space
        self._texts: dict[str, int] = {}
        self._fields: list[str] = []
        self._encoded: list[Ids] = []

    def _check_ids(self, ids: Ids, field: str, item: int, allow_empty: bool) -> Ids:
        if not ids:
            if allow_empty:
                return ids
            raise QueryError(f"{field}: empty phrase", field=field, item=item)
        if min(ids) < 0 or max(ids) >= self.vocab_size or self.separator in ids:
            bad = next(t for t in ids if not 0 <= t < self.vocab_size or t == self.separator)
            raise QueryError(
                f"{field}: token id {bad} is out of range (vocabulary of {self.vocab_size}, "
                f"separator {self.separator} not allowed)",
                field=field,
                item=item,
            )
        return ids

    def _text(self, text: str, field: str, item: int, allow_empty: bool) -> list:
        if text == "":
            if allow_empty:
                return [()]
            raise QueryError(f"{field}: empty phrase", field=field, item=item)
        out = []
        for form in text_forms(text, self.space):
            slot = self._texts.get(form)
            if slot is None:
                slot = self._texts[form] = len(self._fields)
                self._fields.append(field)
            out.append(slot)
        return out

    def _parse_phrase(self, phrase: object, field: str, item: int, allow_empty: bool) -> list:
        t = type(phrase)
        if t is tuple or t is list:
            ids: Ids = tuple(phrase)  # type: ignore[arg-type]
            if all(type(x) is int for x in ids):
                return [self._check_ids(ids, field, item, allow_empty)]
        if t is str:
            return self._text(phrase, field, item, allow_empty)  # type: ignore[arg-type]
        if isinstance(phrase, str):
            return self._text(str(phrase), field, item, allow_empty)
        if isinstance(phrase, np.ndarray):
            if phrase.ndim != 1 or not np.issubdtype(phrase.dtype, np.integer):
                raise QueryError(f"{field}: token ids must be a 1-d integer array", field=field, item=item)
            return [self._check_ids(tuple(int(x) for x in phrase), field, item, allow_empty)]
        if isinstance(phrase, Sequence) and all(is_int(x) for x in phrase):
            return [self._check_ids(tuple(int(x) for x in phrase), field, item, allow_empty)]
        raise QueryError(
            f"{field}: a phrase is a string or a list of token ids, not {type(phrase).__name__}",
            field=field,
            item=item,
        )

    def parse_phrase(self, phrase: object, field: str, item: int, *, allow_empty: bool = False) -> Ids | int:
        """A single phrase (no OR); under space="both" a text phrase is refused."""
        parsed = self._parse_phrase(phrase, field, item, allow_empty)
        if len(parsed) != 1:
            raise QueryError(
                f"{field}: this query takes one token sequence; space='both' only applies to phrase specs",
                field=field,
                item=item,
            )
        return parsed[0]

    def parse_spec(self, spec: object, field: str, item: int) -> list:
        """A phrase or an OR of variants (list of phrases, or {"any": [...]})."""
        t = type(spec)
        if t is str:
            return self._text(spec, field, item, False)  # type: ignore[arg-type]
        if (t is list or t is tuple) and spec and type(spec[0]) is int:  # type: ignore[index]
            return self._parse_phrase(spec, field, item, False)
        if isinstance(spec, Mapping):
            if set(spec) != {"any"}:
                raise QueryError(f'{field}: an OR of variants is {{"any": [...]}}', field=field, item=item)
            variants = spec["any"]
            if isinstance(variants, (str, bytes)) or not isinstance(variants, Sequence):
                raise QueryError(f"{field}.any: must be a list of phrases", field=field, item=item)
        elif isinstance(spec, Sequence) and not isinstance(spec, str) and not all(is_int(x) for x in spec):
            variants = spec
        else:
            return self._parse_phrase(spec, field, item, False)
        if len(variants) == 0:
            raise QueryError(f"{field}: empty list of variants", field=field, item=item)
        out: list = []
        for v, variant in enumerate(variants):
            if isinstance(variant, Mapping) or (
                isinstance(variant, Sequence)
                and not isinstance(variant, str)
                and variant
                and not all(is_int(x) for x in variant)
            ):
                raise QueryError(f"{field}[{v}]: variants cannot be nested", field=field, item=item)
            out.extend(self._parse_phrase(variant, f"{field}[{v}]", item, False))
        return out

    def finish(self) -> None:
        """Tokenize every collected text in one batch."""
        texts = list(self._texts)
        self._encoded = [tuple(int(t) for t in ids) for ids in self._tokenize_batch(texts)] if texts else []

    def ids(self, variant: Ids | int) -> Ids:
        if type(variant) is tuple:
            return variant
        ids = self._encoded[variant]  # type: ignore[index]
        if not ids:
            field = self._fields[variant]  # type: ignore[index]
            raise QueryError(f"{field}: the text has no tokens", field=field)
        return ids

    def key(self, parsed: list) -> SpecKey:
        """Canonical key of a spec: its distinct variants, sorted."""
        if len(parsed) == 1:
            return (self.ids(parsed[0]),)
        return tuple(sorted({self.ids(v) for v in parsed}))


def flatten(patterns: Sequence[Ids]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged batch of token tuples -> (flat int64, offsets int64)."""
    lengths = np.fromiter((len(p) for p in patterns), dtype=np.int64, count=len(patterns))
    offsets = np.zeros(len(patterns) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter((t for p in patterns for t in p), dtype=np.int64, count=int(offsets[-1]))
    return flat, offsets
