"""Content hashes of model files, so that stage caches are keyed on the weights a stage used, not on a
model's name: a model directory or GGUF file replaced in place gives a new key and the stage reruns.

A file's sha256 is remembered for the process under (path, size, mtime), so a run hashes each file once.
Hashing reads every byte: about a second per GB on a local disk.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of one file's bytes (remembered per path, size and modification time)."""
    p = Path(path)
    st = p.stat()
    memo_key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if memo_key not in _MEMO:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _MEMO[memo_key] = h.hexdigest()
    return _MEMO[memo_key]


def tree_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 over the relative names and sha256 of every regular file under ``path`` (or of the file
    itself), in sorted order; hidden files and ``__pycache__`` are skipped."""
    root = Path(path)
    if root.is_file():
        return file_sha256(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such file or directory")
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts) or not p.is_file():
            continue
        h.update(f"{rel.as_posix()}\t{file_sha256(p)}\n".encode())
    return h.hexdigest()


def fingerprint(name: str, path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """``{"name", "path", "sha256"}`` of a model at ``path``; ``sha256`` is None when there are no local
    files to hash (a hub name that is not downloaded): the key then names the model only, and the report
    says so through the missing hash."""
    if path is None:
        return {"name": name, "path": None, "sha256": None}
    return {"name": name, "path": str(Path(path).resolve()), "sha256": tree_sha256(path)}
