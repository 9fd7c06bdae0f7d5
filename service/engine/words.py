"""Word-boundary matching (``boundary="word"``): a phrase matches only where it neither starts nor ends
inside a word.

**Word character.** A character is a word character when ``ch.isalnum() or ch == "_"`` (unicode), the
definition of ``\\w`` in Python's :mod:`re`. Everything else (whitespace, punctuation, symbols) separates
words.

**Per token** (computed once per index, when it is opened, from the index's stored tokenizer): the class
of its first and of its last character. Tokens are read as bytes: a byte-level BPE token string is mapped
back to its bytes (GPT-2's byte <-> unicode table), an added token (special tokens, GPT-NeoX's runs of
spaces) is its content in UTF-8. A character cut by a token edge — a token that starts with UTF-8
continuation bytes, or ends with an incomplete sequence — counts as a *word* character, so a match never
starts or ends inside a character (a punctuation character that the tokenizer splits into bytes next to a
match therefore also rejects it; rare, and the same rule on both sides). An empty token counts as a word
character at both edges. Tokenizers that are not byte-level BPE are refused (their token strings do not
say which bytes they stand for).

Two tables, indexed by token id: ``starts_word[t]`` (t's first character is not a word character: t
begins a new word) and ``ends_nonword[t]`` (t's last character is not a word character).

**A match of phrase p_0..p_{m-1} at position i is word-bounded** when

* start: ``starts_word[p_0]``, or i is the first position of its document, or
  ``ends_nonword[token[i - 1]]``; and
* end: ``ends_nonword[p_{m-1}]``, or the phrase ends its document (the next token is the separator), or
  ``starts_word[token[i + m]]``.

That is: the characters on either side of each edge of the match are not both word characters. For a
phrase of whole words (" index" after the leading-space policy) this is the regex `` index(?!\\w)``
(the leading space is not a word character, so any character may precede it).

**How it is counted** (kernels in :mod:`service.engine.kernels`):

* End. The occurrences of p sit in one suffix-array range, ordered by the token that follows them, so
  the occurrences followed by a word start (or the separator) are a union of contiguous sub-ranges
  ``[p t]``. ``_word_ranges`` finds them by walking the distinct next tokens with galloping search (as
  ``_next_tokens`` does for next-token distributions): O(distinct next tokens x log(range)), never a scan
  of the occurrences. When p's last token ends with a non-word character, the whole range is kept.
* Start. When p's first token begins a word (the common case: text under the leading-space policy
  ``auto`` starts with a space), every occurrence qualifies. Otherwise the token BEFORE each occurrence
  decides, and the suffix array does not group occurrences by what precedes them: the occurrences of the
  kept sub-ranges are scanned one by one, one random read of the token array each — O(occurrences),
  bounded by the index's work budget ``max_occurrences`` like the document-level queries.
* Document sets (doc_freq, co-occurrence, documents): sub-ranges are passed to the document-set kernels
  as the variants of an OR are; a spec that needs the start scan is turned into its list of distinct
  word-bounded positions first, which the same kernels take in place of the suffix array.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.engine.errors import QueryError
from service.engine.kernels import (
    _doc_counts,
    _doc_sets,
    _scatter_segments,
    _word_counts,
    _word_positions,
    _word_ranges,
)
from taskgram.api import BOUNDARIES


def is_word_char(ch: str) -> bool:
    """The one definition of a word character (``\\w`` of Python's re): alphanumeric or underscore."""
    return ch.isalnum() or ch == "_"


def check_boundary(boundary: object) -> bool:
    """Validate ``boundary``; True for word-boundary matching."""
    if boundary not in BOUNDARIES:
        raise QueryError(
            f"boundary must be one of {', '.join(BOUNDARIES)}, not {boundary!r}", field="boundary"
        )
    return boundary == "word"


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet, inverted: the printable character that stands for each byte."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def _utf8_length(lead: int) -> int:
    """Length of the UTF-8 sequence a byte starts (0: a continuation byte or an invalid lead)."""
    if lead < 0x80:
        return 1
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0


def _char_is_word(seq: bytes) -> bool:
    """Whether one whole UTF-8 sequence is a word character (an invalid sequence counts as one)."""
    try:
        ch = seq.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return len(ch) != 1 or is_word_char(ch)


def first_char_is_word(data: bytes) -> bool:
    """Class of a token's first character, from its bytes (see the module docstring for cut characters)."""
    if not data:
        return True
    n = _utf8_length(data[0])
    if n == 0 or len(data) < n:
        return True
    return _char_is_word(data[:n])


def last_char_is_word(data: bytes) -> bool:
    """Class of a token's last character, from its bytes (see the module docstring for cut characters)."""
    if not data:
        return True
    j = len(data) - 1
    while j > 0 and len(data) - j < 4 and 0x80 <= data[j] <= 0xBF:
        j -= 1
    if _utf8_length(data[j]) != len(data) - j:
        return True
    return _char_is_word(data[j:])


@dataclass(frozen=True)
class WordTables:
    """Per token id: ``starts_word`` (its first character is not a word character) and ``ends_nonword``
    (its last character is not a word character). Read-only bool arrays of vocab_size entries."""

    starts_word: np.ndarray
    ends_nonword: np.ndarray
    #: the bytes of each token id (``token_bytes``), for the character edges of snippets
    data: tuple[bytes, ...] = ()

    @classmethod
    def from_token_bytes(cls, tokens: list[bytes]) -> WordTables:
        starts = np.fromiter((not first_char_is_word(b) for b in tokens), dtype=np.bool_, count=len(tokens))
        ends = np.fromiter((not last_char_is_word(b) for b in tokens), dtype=np.bool_, count=len(tokens))
        starts.setflags(write=False)
        ends.setflags(write=False)
        return cls(starts, ends, tuple(tokens))

    def _bytes(self, token: int) -> bytes:
        t = int(token)
        return self.data[t] if 0 <= t < len(self.data) else b""

    def cuts_char(self, toks: Sequence[int] | np.ndarray, i: int) -> bool:
        """Whether the edge before ``toks[i]`` falls inside a UTF-8 character: ``toks[i]`` starts with a
        continuation byte that completes a character whose lead byte lies in the (at most three) bytes
        before the edge. A stray continuation byte (no such lead) is no character to keep whole."""
        if i <= 0 or i >= len(toks):
            return False
        after = self._bytes(toks[i])
        if not after or not 0x80 <= after[0] <= 0xBF:
            return False
        before = b""
        j = i - 1
        while j >= 0 and len(before) < 3:
            before = self._bytes(toks[j]) + before
            j -= 1
        before = before[-3:]
        k = len(before) - 1
        while k >= 0 and 0x80 <= before[k] <= 0xBF:
            k -= 1
        return k >= 0 and _utf8_length(before[k]) > len(before) - k

    def char_span(self, toks: Sequence[int] | np.ndarray, start: int, end: int) -> tuple[int, int]:
        """The token span ``[start, end)`` of ``toks`` widened until neither edge cuts a character, so
        that its decoded text holds whole characters only (no U+FFFD from a cut)."""
        while self.cuts_char(toks, start):
            start -= 1
        while self.cuts_char(toks, end):
            end += 1
        return start, end

    def match_ok(self, toks: np.ndarray, start: int, end: int) -> bool:
        """Whether the match ``toks[start:end]`` inside one document's tokens is word-bounded."""
        ok_start = (
            bool(self.starts_word[toks[start]]) or start == 0 or bool(self.ends_nonword[toks[start - 1]])
        )
        ok_end = (
            bool(self.ends_nonword[toks[end - 1]]) or end == len(toks) or bool(self.starts_word[toks[end]])
        )
        return ok_start and ok_end


def _is_byte_level(hf: Any) -> bool:
    decoder = getattr(getattr(hf, "backend_tokenizer", None), "decoder", None)
    kind = type(decoder).__name__
    if kind == "ByteLevel":
        return True
    if kind != "Sequence":
        return False
    try:  # a Sequence of decoders: look inside through the tokenizer's JSON
        spec = json.loads(hf.backend_tokenizer.to_str()).get("decoder") or {}
    except ValueError:
        return False
    return any(d.get("type") == "ByteLevel" for d in spec.get("decoders", []) or [])


def token_bytes(tokenizer: Any, vocab_size: int) -> list[bytes]:
    """The bytes each token id stands for (a byte-level BPE tokenizer). Raises ValueError otherwise."""
    hf = getattr(tokenizer, "hf", None)
    if hf is None or not _is_byte_level(hf):
        name = getattr(tokenizer, "name", type(tokenizer).__name__)
        raise ValueError(f"word boundaries need a byte-level BPE tokenizer; {name!r} is not one")
    added = {int(i): tok.content for i, tok in hf.backend_tokenizer.get_added_tokens_decoder().items()}
    strings = tokenizer.id_to_token(list(range(vocab_size)))
    # each character of the byte-level alphabet -> the byte it stands for; any other character below 256
    # -> U+FFFF, which latin-1 cannot encode (such a string is not byte-level: taken as UTF-8 text)
    to_latin1 = {c: 0xFFFF for c in range(256)}
    to_latin1.update({ord(c): b for c, b in _byte_decoder().items()})
    out = []
    for i, s in enumerate(strings):
        if i in added:
            out.append(added[i].encode("utf-8"))
        elif s is None:
            out.append(b"")
        else:
            try:
                out.append(s.translate(to_latin1).encode("latin-1"))
            except UnicodeEncodeError:
                out.append(s.encode("utf-8"))
    return out


def word_tables(tokenizer: Any, vocab_size: int) -> WordTables:
    """The tables of an index's tokenizer (ValueError when it is not byte-level BPE)."""
    return WordTables.from_token_bytes(token_bytes(tokenizer, vocab_size))


# --------------------------------------------------------------------------------------------------
# Per shard (called by service.engine.index with validated inputs)


def word_subranges(
    shard: Any, tables: WordTables, separator: int, flat: np.ndarray, offsets: np.ndarray, lo, hi
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sub-ranges of each pattern's SA range whose occurrences end at a word boundary."""
    return _word_ranges(
        shard.tokens,
        shard.sa,
        flat,
        offsets,
        lo,
        hi,
        tables.starts_word,
        tables.ends_nonword,
        np.int64(separator),
    )


def needs_start_scan(tables: WordTables, flat: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per pattern: whether its first token does not begin a word (its occurrences must be scanned)."""
    firsts = flat[offsets[:-1]] if len(flat) else np.zeros(0, dtype=np.int64)
    return ~tables.starts_word[firsts]


def shard_word_counts(
    shard: Any, tables: WordTables, separator: int, flat: np.ndarray, offsets: np.ndarray, lo, hi
) -> np.ndarray:
    """Word-bounded occurrences of each pattern in one shard."""
    sub_lo, sub_hi, sub_off = word_subranges(shard, tables, separator, flat, offsets, lo, hi)
    scan = needs_start_scan(tables, flat, offsets)
    return _word_counts(
        shard.tokens,
        shard.sa,
        sub_lo,
        sub_hi,
        sub_off,
        scan,
        tables.starts_word,
        tables.ends_nonword,
        np.int64(separator),
    )


def shard_word_doc_sets(
    shard: Any,
    tables: WordTables,
    separator: int,
    flat: np.ndarray,
    offsets: np.ndarray,
    lo,
    hi,
    spec_off: np.ndarray,
    with_counts: bool,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Like ``kernels._doc_sets`` / ``_doc_counts`` over the word-bounded occurrences of each spec
    (variants ``flat[offsets[v]:offsets[v + 1]]`` with SA ranges lo[v]:hi[v], spec j = variants
    spec_off[j]:spec_off[j + 1]). Returns (docs, counts or None, offsets), local doc ids."""
    n_specs = len(spec_off) - 1
    sub_lo, sub_hi, sub_off = word_subranges(shard, tables, separator, flat, offsets, lo, hi)
    spec_sub_off = sub_off[spec_off]
    scan_variant = needs_start_scan(tables, flat, offsets)
    scan = np.zeros(n_specs, dtype=np.bool_)
    if len(scan_variant):
        scan = np.logical_or.reduceat(scan_variant, spec_off[:-1]) if n_specs else scan
        scan &= np.diff(spec_off) > 0
    common = (shard.doc_offsets, shard.bucket_table, shard.bucket_shift)
    parts = []
    # specs without a start scan: their sub-ranges, as OR variants (the scanned specs' ranges emptied)
    if not scan.all():
        r_lo, r_hi = sub_lo.copy(), sub_hi.copy()
        for j in np.flatnonzero(scan):
            r_hi[spec_sub_off[j] : spec_sub_off[j + 1]] = r_lo[spec_sub_off[j] : spec_sub_off[j + 1]]
        parts.append((shard.sa, r_lo, r_hi, spec_sub_off))
    # specs with a start scan: their distinct word-bounded positions stand in for the suffix array
    if scan.any():
        pos, pos_off = _word_positions(
            shard.tokens,
            shard.sa,
            sub_lo,
            sub_hi,
            spec_sub_off,
            scan,
            tables.starts_word,
            tables.ends_nonword,
            np.int64(separator),
        )
        parts.append((pos, pos_off[:-1].copy(), pos_off[1:].copy(), np.arange(n_specs + 1, dtype=np.int64)))
    results = []
    for sa, p_lo, p_hi, p_off in parts:
        if with_counts:
            results.append(_doc_counts(sa, *common, p_lo, p_hi, p_off))
        else:
            d, o = _doc_sets(sa, *common, p_lo, p_hi, p_off)
            results.append((d, None, o))
    if len(results) == 1:
        return results[0]
    (d0, c0, o0), (d1, c1, o1) = results  # every spec is empty in one of the two
    sizes0, sizes1 = np.diff(o0), np.diff(o1)
    off = np.zeros(n_specs + 1, dtype=np.int64)
    np.cumsum(sizes0 + sizes1, out=off[1:])
    docs = np.empty(int(off[-1]), dtype=np.int64)
    _scatter_segments(d0, o0, off[:-1], docs)
    _scatter_segments(d1, o1, off[:-1] + sizes0, docs)
    counts = None
    if with_counts and c0 is not None and c1 is not None:
        counts = np.empty(int(off[-1]), dtype=np.int64)
        _scatter_segments(c0, o0, off[:-1], counts)
        _scatter_segments(c1, o1, off[:-1] + sizes0, counts)
    return docs, counts, off
