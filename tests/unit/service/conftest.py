"""Fixtures of the engine tests: indexes written directly from token arrays (:mod:`tests.index_writer`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.index_writer import write_index


@pytest.fixture
def index_writer(tmp_path: Path):
    """``make(docs, **opts) -> Path``: a fresh id-only index in tmp_path (see :func:`write_index`)."""
    counter = iter(range(1_000_000))

    def make(docs: Sequence[Sequence[int]], **opts: Any) -> Path:
        return write_index(tmp_path / f"index-{next(counter)}", docs, **opts)

    return make
