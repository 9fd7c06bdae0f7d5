"""Session fixtures shared by the whole suite.

* ``repo_root`` / ``shared_data``: paths (``shared_data`` skips the test when ``../shared/data`` is absent).
* ``pythia_tokenizer``: the builtin tokenizer, loaded once.
* ``sample_index``: an index of the embedded corpus ``data/sample-en.jsonl.zst`` (350 documents, about
  600k tokens), built once per session into a temporary folder. Treat it as read-only.
* ``build_small_index(docs, **opts) -> Path``: builds an index of the given documents (strings, or dicts
  written as JSON lines, with their text under ``"text"`` unless ``text_field=`` says otherwise) into a
  fresh temporary folder; ``opts`` go to ``indexer.pipeline.build_index``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CORPUS = REPO_ROOT / "data" / "sample-en.jsonl.zst"
SHARED_DATA = REPO_ROOT / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs {SHARED_DATA.resolve()} (shared data folder absent)")
    return SHARED_DATA.resolve()


@pytest.fixture(scope="session")
def pythia_tokenizer() -> Any:
    from indexer.tokenize import load_tokenizer

    return load_tokenizer("pythia")


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory: pytest.TempPathFactory, pythia_tokenizer: Any) -> Path:
    from indexer.pipeline import build_index

    out = tmp_path_factory.mktemp("sample-index") / "index"
    build_index([SAMPLE_CORPUS], out, tokenizer=pythia_tokenizer, progress=False)
    return out


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
