"""Indexes written directly from token arrays, with exact control over documents, shards and token dtype,
through ``indexer.format`` and ``indexer.kernels.build_suffix_array`` (no corpus reading, no tokenizer
training). Used by the engine tests (``tests/unit/service/conftest.py``: ``index_writer``) and the
property tests.

Import as ``from tests.index_writer import write_index`` under ``python -m pytest`` (the repository root
is on sys.path), like :mod:`tests.naive`. :class:`IndexOpener` writes and opens such indexes in fresh
folders; ``tests/conftest.py`` hands one out per test module as the fixture ``open_index``.
:func:`byte_level_tokenizer` makes a tokenizer over a tiny byte-level vocabulary given as bytes.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.format import (
    DOC_OFFSETS_FILE,
    FORMAT_VERSION,
    METADATA_FILE,
    METADATA_OFFSETS_FILE,
    SUFFIX_ARRAY_FILE,
    TOKENS_FILE,
    separator_id,
    shard_dir_name,
    suffix_dtype_for_length,
    write_metadata,
)
from indexer.kernels import build_suffix_array
from indexer.manifest import Manifest, ShardInfo, TokenizerInfo, file_info, write_manifest


def write_index(
    root: str | os.PathLike[str],
    docs: Sequence[Sequence[int]],
    *,
    token_dtype: str = "uint16",
    shard_docs: Sequence[int] | None = None,
    vocab_size: int | None = None,
    tokenizer: Any | None = None,
    metadata: Sequence[dict[str, Any]] | None = None,
) -> Path:
    """Write an index of token-id documents. ``shard_docs`` = documents per shard (default: one shard)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sep = separator_id(token_dtype)  # type: ignore[arg-type]
    if shard_docs is None:
        shard_docs = [len(docs)]
    if sum(shard_docs) != len(docs):
        raise ValueError("shard_docs must add up to the number of documents")
    if metadata is None:
        metadata = [{"doc": i} for i in range(len(docs))]
    if vocab_size is None:
        vocab_size = (
            tokenizer.vocab_size if tokenizer is not None else max([1] + [t + 1 for d in docs for t in d])
        )
    shards = []
    first = 0
    for number, n in enumerate(shard_docs):
        part = docs[first : first + n]
        meta = metadata[first : first + n]
        first += n
        sdir = root / shard_dir_name(number)
        sdir.mkdir(exist_ok=True)
        pieces = []
        offsets = [0]
        for d in part:
            pieces.append(np.asarray(list(d) + [sep], dtype=token_dtype))
            offsets.append(offsets[-1] + len(d) + 1)
        tokens = np.concatenate(pieces) if pieces else np.zeros(0, dtype=token_dtype)
        sa = build_suffix_array(tokens, sep) if len(tokens) else np.zeros(0, dtype=np.uint32)
        n_tokens = int(len(tokens) - len(part))
        sdt = suffix_dtype_for_length(len(tokens))
        tokens.astype("<" + np.dtype(token_dtype).str[1:]).tofile(sdir / TOKENS_FILE)
        np.asarray(offsets, dtype="<u8").tofile(sdir / DOC_OFFSETS_FILE)
        np.asarray(sa, dtype=sdt).tofile(sdir / SUFFIX_ARRAY_FILE)
        write_metadata(meta, sdir / METADATA_FILE, sdir / METADATA_OFFSETS_FILE)
        files = {
            name: file_info(sdir / name)
            for name in (
                TOKENS_FILE,
                DOC_OFFSETS_FILE,
                SUFFIX_ARRAY_FILE,
                METADATA_FILE,
                METADATA_OFFSETS_FILE,
            )
        }
        shards.append(
            ShardInfo(
                name=shard_dir_name(number),
                n_tokens=n_tokens,
                n_docs=len(part),
                suffix_dtype=sdt,
                files=files,
            )
        )
    if tokenizer is not None:
        sha = tokenizer.save(root)
        tinfo = TokenizerInfo(kind="transformers", name=tokenizer.name, sha256=sha, vocab_size=vocab_size)
    else:
        tinfo = TokenizerInfo(kind="none", name="none", sha256=None, vocab_size=vocab_size)
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        taskgram_version="test",
        created_at="2026-01-01T00:00:00Z",
        tokenizer=tinfo,
        normalization="none",
        token_dtype=token_dtype,  # type: ignore[arg-type]
        n_tokens=sum(s.n_tokens for s in shards),
        n_docs=len(docs),
        shards=shards,
        inputs=[],
    )
    write_manifest(root, manifest)
    return root


def shard_sizes(n_docs: int, shard_cut: Sequence[int]) -> list[int]:
    """Documents per shard when shards are cut before the documents ``shard_cut`` (clipped to n_docs)."""
    cuts = sorted({min(c, n_docs) for c in shard_cut})
    return [b - a for a, b in zip([0] + cuts, cuts + [n_docs], strict=True)]


class IndexOpener:
    """``opener(docs, shard_cut=(), dtype="uint16", **options) -> Index``: writes ``docs`` with
    :func:`write_index` (shards cut before the documents ``shard_cut``) into a fresh folder under
    ``root`` and opens it. ``vocab_size``, ``tokenizer`` and ``metadata`` in ``options`` (or in the
    opener's defaults, see :meth:`using`) go to the writer, the rest to ``Index.open``."""

    WRITER_OPTIONS = ("vocab_size", "tokenizer", "metadata")

    def __init__(self, root: str | os.PathLike[str], **defaults: Any) -> None:
        self.root = Path(root)
        self.defaults = defaults

    def using(self, **defaults: Any) -> IndexOpener:
        """An opener into the same folder with more default options."""
        return IndexOpener(self.root, **{**self.defaults, **defaults})

    def __call__(
        self,
        docs: Sequence[Sequence[int]],
        shard_cut: Sequence[int] = (),
        dtype: str = "uint16",
        **options: Any,
    ) -> Any:
        from service.engine import Index

        options = {**self.defaults, **options}
        write = {k: options.pop(k) for k in self.WRITER_OPTIONS if k in options}
        root = Path(tempfile.mkdtemp(dir=self.root)) / "index"
        sizes = shard_sizes(len(docs), shard_cut)
        path = write_index(root, docs, token_dtype=dtype, shard_docs=sizes, **write)
        return Index.open(path, **options)


def byte_level_tokenizer(vocab: Sequence[bytes], name: str = "tiny-bytelevel") -> Any:
    """A byte-level BPE tokenizer (no merges) whose token ``i`` stands for the bytes ``vocab[i]``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from indexer.tokenize import TextTokenizer
    from service.engine.words import _byte_decoder

    to_char = {b: c for c, b in _byte_decoder().items()}
    strings = {"".join(to_char[x] for x in tok): i for i, tok in enumerate(vocab)}
    backend = Tokenizer(models.BPE(vocab=strings, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return TextTokenizer(PreTrainedTokenizerFast(tokenizer_object=backend), name, None)
