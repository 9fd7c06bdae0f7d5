"""Session fixtures shared by the whole suite.

* ``repo_root`` / ``shared_data``: paths (``shared_data`` skips the test when ``../shared/data`` is absent).
* ``pythia_tokenizer`` and ``sample_index`` come from the repository's root ``conftest.py`` (the doctests
  of the public API use them too).
* ``build_small_index(docs, **opts) -> Path``: builds an index of the given documents (strings, or dicts
  written as JSON lines, with their text under ``"text"`` unless ``text_field=`` says otherwise) into a
  fresh temporary folder; ``opts`` go to ``indexer.pipeline.build_index``.
* ``open_index(docs, shard_cut=(), dtype="uint16", **options) -> Index``: one per test module
  (:class:`tests.index_writer.IndexOpener`), an index of token-id documents written directly, each call in
  a fresh folder. Module-scoped, so hypothesis tests can take it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs {SHARED_DATA.resolve()} (shared data folder absent)")
    return SHARED_DATA.resolve()


@pytest.fixture(scope="module")
def open_index(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Any:
    from tests.index_writer import IndexOpener

    return IndexOpener(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]))


BuildSmallIndex = Callable[..., Path]


@pytest.fixture
def build_small_index(tmp_path_factory: pytest.TempPathFactory, pythia_tokenizer: Any) -> BuildSmallIndex:
    from indexer.pipeline import build_index

    def build(docs: Sequence[str] | Sequence[dict[str, Any]], **opts: Any) -> Path:
        root = tmp_path_factory.mktemp("small-index")
        corpus = root / "corpus.jsonl"
        field = opts.get("text_field", "text")
        with open(corpus, "w", encoding="utf-8") as f:
            for doc in docs:
                record = {field: doc} if isinstance(doc, str) else doc
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        opts.setdefault("tokenizer", pythia_tokenizer)
        opts.setdefault("progress", False)
        out = root / "index"
        build_index([corpus], out, **opts)
        return out

    return build
