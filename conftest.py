"""Fixtures shared by the test suite (``tests/``) and the doctests of the public API (``make test`` runs
``--doctest-modules`` on the modules listed in ``pyproject.toml``'s ``testpaths``).

* ``pythia_tokenizer``: the builtin tokenizer, loaded once.
* ``sample_index``: an index of the embedded corpus ``data/sample-en.jsonl.zst`` (350 documents, about
  600k tokens), built once per session into a temporary folder. Treat it as read-only.
* In a doctest: ``index_dir`` (the sample index, as a string) and ``server_url`` (a taskgram server on
  127.0.0.1 serving it as ``sample``, started once for the doctests that use it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SAMPLE_CORPUS = Path(__file__).resolve().parent / "data" / "sample-en.jsonl.zst"


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


@pytest.fixture(scope="session")
def sample_server(sample_index: Path) -> Iterator[str]:
    """A taskgram server on 127.0.0.1 (random port) serving the sample index as ``sample``."""
    from service.settings import Settings
    from tests.serving import serve_in_thread

    with serve_in_thread(Settings(indexes={"sample": sample_index}, access_log=False)) as url:
        yield url


@pytest.fixture(autouse=True)
def _doctest_fixtures(request: pytest.FixtureRequest) -> None:
    """Give the doctests of the public API a real index (``index_dir``) and, where they use one, a real
    server (``server_url``)."""
    if type(request.node).__name__ != "DoctestItem":
        return
    namespace = request.getfixturevalue("doctest_namespace")
    namespace["index_dir"] = str(request.getfixturevalue("sample_index"))
    if "server_url" in request.node.dtest.docstring:  # type: ignore[attr-defined]
        namespace["server_url"] = request.getfixturevalue("sample_server")
