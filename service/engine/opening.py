"""Opening an index directory: the manifest and tokenizer (what the merge layer needs) and the shards
(what a shard group maps), each checked, each failure an :class:`IndexUnavailable` naming the index.

The shards are opened by read-only memory maps (``indexer.manifest.open_shard``); nothing of them is copied
into process memory (the page cache holds what queries touch). Per shard the engine keeps a position ->
document bucket table (about two int64 entries per document) and a first-token range table
(vocab_size + 1 int64 entries).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.format import IndexFormatError
from indexer.manifest import Manifest, open_shard, read_manifest, verify_shard
from service.engine.errors import IndexUnavailable
from service.engine.shards import Shard


def open_header(directory: Path, name: str) -> tuple[Manifest, Any | None]:
    """The manifest and the tokenizer (None for a token-id index) of an index directory."""
    try:
        manifest = read_manifest(directory)
    except (IndexFormatError, OSError) as err:
        raise IndexUnavailable(f"index {name!r}: {err}", name=name) from err
    tokenizer = None
    if manifest.tokenizer.kind == "transformers":
        from indexer.tokenize import TokenizerError, load_index_tokenizer

        try:
            tokenizer = load_index_tokenizer(directory, manifest.tokenizer.sha256)
        except TokenizerError as err:
            raise IndexUnavailable(f"index {name!r}: {err}", name=name) from err
        if tokenizer.vocab_size != manifest.tokenizer.vocab_size:
            raise IndexUnavailable(
                f"index {name!r}: the stored tokenizer has {tokenizer.vocab_size} tokens, the manifest "
                f"says {manifest.tokenizer.vocab_size}",
                name=name,
            )
    if manifest.tokenizer.vocab_size > manifest.separator_id:
        raise IndexUnavailable(
            f"index {name!r}: vocabulary of {manifest.tokenizer.vocab_size} does not fit "
            f"{manifest.token_dtype} with separator {manifest.separator_id}",
            name=name,
        )
    return manifest, tokenizer


def doc_bases(manifest: Manifest) -> np.ndarray:
    """First global doc id of every shard, then n_docs (shards in manifest order)."""
    bases = np.zeros(len(manifest.shards) + 1, dtype=np.int64)
    np.cumsum([info.n_docs for info in manifest.shards], out=bases[1:])
    return bases


def open_shards(
    directory: Path,
    name: str,
    manifest: Manifest,
    numbers: Sequence[int] | None = None,
    *,
    verify_checksums: bool = False,
) -> list[Shard]:
    """Open shards ``numbers`` (default: all) read-only. Checks every shard file's size against the
    manifest, samples of the arrays (suffix-array entries in range and not on a separator, documents
    followed by the separator) and with ``verify_checksums`` every file's sha256."""
    bases = doc_bases(manifest)
    numbers = range(len(manifest.shards)) if numbers is None else numbers
    shards: list[Shard] = []
    try:
        for number in numbers:
            info = manifest.shards[number]
            if verify_checksums:
                problems = verify_shard(directory, info)
                if problems:
                    raise IndexFormatError("; ".join(problems))
            arrays = open_shard(directory, manifest, info)
            shard = Shard(
                number,
                arrays,
                info.n_tokens,
                info.n_docs,
                int(bases[number]),
                manifest.tokenizer.vocab_size,
                manifest.separator_id,
            )
            sanity_check(directory / info.name, shard, manifest.separator_id)
            shards.append(shard)
    except (IndexFormatError, OSError) as err:
        raise IndexUnavailable(f"index {name!r}: {err}", name=name) from err
    return shards


def sanity_check(root: Path, shard: Shard, separator: int) -> None:
    """Cheap sampled checks of the arrays (a full check is ``verify_checksums``)."""
    n_positions = shard.tokens.shape[0]
    if shard.n_docs and shard.tokens[n_positions - 1] != separator:
        raise IndexFormatError(f"{root}: tokens.bin does not end with the separator")
    if shard.n_docs:
        sample = np.unique(np.linspace(0, shard.n_docs - 1, min(shard.n_docs, 1024)).astype(np.int64))
        ends = shard.doc_offsets[sample + 1]
        if np.any(ends <= shard.doc_offsets[sample]) or np.any(shard.tokens[ends - 1] != separator):
            raise IndexFormatError(f"{root}: doc_offsets.bin does not match the separators in tokens.bin")
    if shard.n_tokens:
        ranks = np.unique(np.linspace(0, shard.n_tokens - 1, min(shard.n_tokens, 256)).astype(np.int64))
        pos = shard.sa[ranks].astype(np.int64)
        if np.any(pos < 0) or np.any(pos >= n_positions) or np.any(shard.tokens[pos] == separator):
            raise IndexFormatError(f"{root}: suffix_array.bin holds positions outside the documents")
