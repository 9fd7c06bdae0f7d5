"""Word-boundary matching with the real tokenizer (Pythia's byte-level BPE) on the embedded sample corpus:
word counts equal a regex count of whole words on the decoded documents, and differ from token counts
where a phrase's tokens also begin longer words."""

from __future__ import annotations

import re

import pytest

from service.engine import Index

WORDS = ["index", "function", "data", "file", "list", "string", "memory", "type", "class", "value"]


@pytest.fixture(scope="module")
def ix(sample_index) -> Index:
    return Index.open(sample_index, name="sample")


@pytest.fixture(scope="module")
def texts(ix: Index) -> list[str]:
    return [ix.document(d).text or "" for d in range(ix.n_docs)]


def test_tables_of_the_pythia_tokenizer(ix: Index, pythia_tokenizer) -> None:
    words = ix._words
    assert words is not None
    vocab = pythia_tokenizer.hf.get_vocab()
    assert words.starts_word[vocab["Ġindex"]] and not words.starts_word[vocab["index"]]
    assert not words.starts_word[vocab["es"]] and words.starts_word[vocab[","]]
    assert words.ends_nonword[vocab["."]] and not words.ends_nonword[vocab["Ġindex"]]
    assert words.starts_word[vocab["<|endoftext|>"]]  # an added token: its text "<|...", not a word start


def test_word_counts_equal_a_regex_count_of_whole_words(ix: Index, texts: list[str]) -> None:
    word = ix.count(WORDS, boundary="word")  # space="auto": " index" as in running text
    token = ix.count(WORDS)
    # the token " index" is the word after ONE space: after a run of spaces the tokenizer's whitespace
    # tokens take the spaces, and the word is the token "index" (no space)
    regex = [sum(len(re.findall(rf"(?<! ) {w}(?!\w)", t)) for t in texts) for w in WORDS]
    assert word == regex
    assert all(w <= t for w, t in zip(word, token, strict=True))
    assert any(w < t for w, t in zip(word, token, strict=True))  # " index" + "es" and the like
    docs = [sum(1 for t in texts if re.search(rf"(?<! ) {w}(?!\w)", t)) for w in WORDS]
    assert ix.doc_freq(WORDS, boundary="word") == docs


def test_a_phrase_that_starts_inside_words(ix: Index, texts: list[str], pythia_tokenizer) -> None:
    # "index" without its leading space: the token matches inside "reindex" and at line starts; as a word
    # only where the character before it is not a word character
    ids = [int(t) for t in pythia_tokenizer.encode("index")]
    assert len(ids) == 1
    word = ix.count([ids], boundary="word")[0]
    # the regex: every whole word "index", less those after exactly one space (the token " index")
    whole = sum(len(re.findall(r"(?<!\w)index(?!\w)", t)) for t in texts)
    spaced = sum(len(re.findall(r"(?<! ) index(?!\w)", t)) for t in texts)
    regex = whole - spaced
    assert word == regex
    assert ix.count([ids])[0] >= word


def test_documents_and_cooccurrence_use_word_matches(ix: Index, texts: list[str]) -> None:
    res = ix.documents(["index"], limit=3, boundary="word")
    assert res.total == sum(1 for t in texts if re.search(r"(?<! ) index(?!\w)", t))
    for hit in res.docs:
        assert hit.text is not None and hit.spans
        for s, e, _ in hit.spans:
            assert hit.text[s:e] == " index"
            assert not re.match(r"\w", hit.text[e : e + 1])
    both = ix.cooccurrence([["index", "data"]], boundary="word")[0]
    expected = sum(
        1 for t in texts if re.search(r"(?<! ) index(?!\w)", t) and re.search(r"(?<! ) data(?!\w)", t)
    )
    assert both == expected
