"""Text normalization and tokenization, shared by the builder and the query engine.

The engine loads the tokenizer stored in the index (``tokenizer.json``) and applies the normalization
recorded in the manifest, so a query is tokenized exactly as the corpus was.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from indexer.errors import IndexerError
from indexer.format import TOKENIZER_FILE, Normalization, sha256_file

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

BUILTIN_TOKENIZERS = {
    # The Pythia models' tokenizer (GPT-NeoX-20B, with three added PII tokens); shipped in the package.
    "pythia": Path(__file__).with_name("assets") / "gpt-neox-20b.json",
    "gpt-neox-20b": Path(__file__).with_name("assets") / "gpt-neox-20b.json",
}
DEFAULT_TOKENIZER = "pythia"
NORMALIZATIONS: tuple[Normalization, ...] = ("none", "lower", "nfkc", "nfkc-lower")


class TokenizerError(IndexerError):
    """A tokenizer could not be loaded or used."""


def normalize_text(text: str, mode: Normalization) -> str:
    """Apply an index's normalization. ``lower`` uses ``str.lower``; ``nfkc`` is Unicode NFKC."""
    if mode == "none":
        return text
    if mode == "lower":
        return text.lower()
    if mode == "nfkc":
        return unicodedata.normalize("NFKC", text)
    if mode == "nfkc-lower":
        return unicodedata.normalize("NFKC", text).lower()
    raise ValueError(f"unknown normalization {mode!r}; choose one of {', '.join(NORMALIZATIONS)}")


class TextTokenizer:
    """A transformers fast tokenizer, used without special tokens, with batched (multi-core) encoding."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, name: str, sha256: str | None) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise TokenizerError(f"tokenizer {name!r} is not a fast (Rust) tokenizer; taskgram needs one")
        self.hf = tokenizer
        self.name = name
        self.sha256 = sha256
        self.vocab_size = len(tokenizer)
        if self.vocab_size <= 1:
            raise TokenizerError(f"tokenizer {name!r} has an empty vocabulary")

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token ids of each text (no special tokens added); the Rust backend encodes in parallel."""
        encodings = self.hf.backend_tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int64) for e in encodings]

    def encode(self, text: str) -> np.ndarray:
        return self.encode_batch([text])[0]

    def decode(self, ids: Sequence[int]) -> str:
        text = self.hf.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return str(text)  # decode of one id list is one string; the stubs also allow a list

    def id_to_token(self, ids: Sequence[int]) -> list[str]:
        return list(self.hf.convert_ids_to_tokens(list(ids)))

    def save(self, index_dir: str | os.PathLike[str]) -> str:
        """Store the tokenizer as ``tokenizer.json`` in ``index_dir``; return its sha256."""
        path = Path(index_dir) / TOKENIZER_FILE
        try:
            self.hf.backend_tokenizer.save(str(path), pretty=False)  # compact: 1.6 MB, not 3.6
        except Exception as err:  # the Rust backend raises a bare Exception for I/O errors (e.g. disk full)
            raise TokenizerError(f"{path}: cannot write the tokenizer: {err}") from err
        return sha256_file(path)


def load_tokenizer(spec: str | os.PathLike[str] = DEFAULT_TOKENIZER) -> TextTokenizer:
    """Load a tokenizer from a builtin name (``pythia``), a ``tokenizer.json`` file, a local directory
    (``AutoTokenizer``), or a hub name when a hub is reachable."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    spec_str = str(spec)
    path = BUILTIN_TOKENIZERS.get(spec_str, Path(spec_str))
    try:
        if path.is_file():
            # tokenizer_file= (not vocab_file=): transformers 5 silently builds an empty tokenizer otherwise.
            hf = PreTrainedTokenizerFast(tokenizer_file=str(path))
            return TextTokenizer(hf, spec_str, sha256_file(path))
        if path.is_dir():
            return TextTokenizer(AutoTokenizer.from_pretrained(str(path)), spec_str, None)
        return TextTokenizer(AutoTokenizer.from_pretrained(spec_str), spec_str, None)
    except TokenizerError:
        raise
    except Exception as err:  # transformers raises many types (OSError, ValueError, HTTP errors)
        raise TokenizerError(
            f"cannot load tokenizer {spec_str!r}: {err}. Give a builtin name "
            f"({', '.join(BUILTIN_TOKENIZERS)}), a tokenizer.json file or a local tokenizer directory."
        ) from err


def load_index_tokenizer(index_dir: str | os.PathLike[str], expected_sha256: str | None) -> TextTokenizer:
    """Load the tokenizer stored in an index, checking it against the manifest's sha256."""
    path = Path(index_dir) / TOKENIZER_FILE
    if not path.is_file():
        raise TokenizerError(
            f"{path}: missing; the index was built without a tokenizer (query with token ids)"
        )
    actual = sha256_file(path)
    if expected_sha256 is not None and actual != expected_sha256:
        raise TokenizerError(f"{path}: sha256 {actual} does not match the manifest's {expected_sha256}")
    tokenizer = load_tokenizer(path)
    tokenizer.sha256 = actual
    return tokenizer
