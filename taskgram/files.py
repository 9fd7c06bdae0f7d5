"""Writing result files so that a reader never sees half of one: write ``NAME.tmp``, fsync it, rename it
over ``NAME`` (atomic on POSIX), fsync the folder. Used for the index manifest and build records
(:mod:`indexer.format`) and for the tables and reports of an evaluation run (:mod:`clients.eval`).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["fsync_dir", "write_csv_atomic", "write_json_atomic"]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or a new file in the folder ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(
    path: str | os.PathLike[str], write: Callable[[IO[str]], None], newline: str | None
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline=newline) as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def write_json_atomic(path: str | os.PathLike[str], payload: Any, *, indent: int = 2) -> Path:
    """Write ``payload`` as JSON (UTF-8, not ASCII-escaped, a final newline) to ``path``, atomically.
    Returns the path."""

    def write(f: IO[str]) -> None:
        json.dump(payload, f, indent=indent, ensure_ascii=False)
        f.write("\n")

    return _write_atomic(path, write, newline=None)


def write_csv_atomic(
    path: str | os.PathLike[str], header: Sequence[str], rows: Iterable[Sequence[Any]]
) -> Path:
    """Write a CSV table (a header row, then ``rows``) to ``path``, atomically. Returns the path."""

    def write(f: IO[str]) -> None:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)

    return _write_atomic(path, write, newline="")
