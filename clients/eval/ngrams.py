"""Word-level n-grams (Definition 1 of the paper), the same rules as the shared workload files.

1. Words: the text is NFKC-normalised (and lower-cased unless ``lowercase=False``); a word is a maximal
   run of letters and digits. Every other character (whitespace, punctuation, symbols, ``_``) separates
   words: ``Campbell-Bannerman`` gives ``campbell bannerman``, ``$2.50`` gives ``2 50``.
2. Stopwords (optional, English only): the NLTK English list is removed. A text made only of stopwords
   keeps all its words ("The Who" stays ``the who``), so a short answer never becomes the empty phrase.
3. n-grams: the distinct runs of n consecutive words, joined by one space, in order of first occurrence.
   A text with fewer than n words gives one phrase, its whole text (short answers); a text without any
   word gives none. Lengths are counted in words, never in characters.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from clients.eval.stopwords import STOPWORDS_EN

_WORD = re.compile(r"[^\W_]+")  # a maximal run of letters and digits (str.isalnum characters)
CALCULATOR_ANNOTATION = re.compile(r"<<[^<>]*>>")  # GSM8K's <<16-3-4=9>>


def words(text: str, *, lowercase: bool = True) -> list[str]:
    """NFKC, optionally lower-case, split into maximal runs of letters and digits."""
    text = unicodedata.normalize("NFKC", text)
    if lowercase:
        text = text.lower()
    return _WORD.findall(text)


def word_spans(text: str, *, lowercase: bool = True) -> list[tuple[str, int, int]]:
    """(normalized word, start, end) for each word of ``text``; spans index the raw text.

    The words are those of :func:`words`: a raw run of letters and digits is
    NFKC-normalised (and lower-cased) and may yield several words, which share its span.
    """
    out = []
    for m in _WORD.finditer(text):
        for w in words(m.group(), lowercase=lowercase):
            out.append((w, m.start(), m.end()))
    return out


def remove_stopwords(ws: list[str]) -> list[str]:
    """``ws`` less English stopwords (compared lower-cased); a list of stopwords only is kept whole."""
    kept = [w for w in ws if w.lower() not in STOPWORDS_EN]
    return kept if kept else ws


def ngrams(ws: list[str], n: int) -> list[str]:
    """Distinct n-grams of a word list in order of first occurrence; fewer than n words -> one phrase."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not ws:
        return []
    if len(ws) < n:
        return [" ".join(ws)]
    return list(dict.fromkeys(" ".join(ws[i : i + n]) for i in range(len(ws) - n + 1)))


def whole(ws: list[str]) -> list[str]:
    """The whole text as one phrase (TriviaQA answers: "whole answer text as s^y no matter n")."""
    return [" ".join(ws)] if ws else []


@dataclass(frozen=True)
class NgramOptions:
    """How one side (input or output) of an example is cut into n-grams."""

    n: int
    remove_stopwords: bool = True
    lowercase: bool = True
    whole_text: bool = False  # the whole text is one phrase whatever n (TriviaQA answers)

    def extract(self, text: str) -> list[str]:
        ws = words(text, lowercase=self.lowercase)
        if self.remove_stopwords:
            ws = remove_stopwords(ws)
        return whole(ws) if self.whole_text else ngrams(ws, self.n)
