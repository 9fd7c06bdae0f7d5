"""The shape of the house, checked from the source: what ``pip install taskgram`` (no extras) must be able
to import, what the clients may import, and that the modules import each other without circles.

A fresh virtual environment per test run would be slow; instead the imports are read with ``ast``
(:mod:`tools.import_graph`) and compared with the dependencies ``pyproject.toml`` declares.
"""

from __future__ import annotations

import ast
import re
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
import tomllib

from tools.import_graph import ROOT, cycles, graph, modules

FIRST_PARTY = {"taskgram", "indexer", "service", "clients", "tests", "tools"}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


@cache
def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _closure(names: set[str]) -> set[str]:
    """The distributions ``names`` install, their requirements included (extras' requirements not)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for req in requires:
            if "extra ==" in req or "extra==" in req:
                continue
            todo.append(_name(req))
    return seen


@cache
def _base() -> set[str]:
    return _closure({_name(r) for r in _pyproject()["project"]["dependencies"]})


@cache
def _extra(name: str) -> set[str]:
    return _closure({_name(r) for r in _pyproject()["project"]["optional-dependencies"][name]})


@cache
def _distributions() -> dict[str, list[str]]:
    return {k: [d.lower().replace("_", "-") for d in v] for k, v in metadata.packages_distributions().items()}


def _third_party(path: Path, *, module_level_only: bool) -> dict[str, int]:
    """Top-level names of the third-party modules ``path`` imports -> first line. ``module_level_only``:
    only imports that run when the module is imported (not inside a function, not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes: list[ast.AST] = []
    if module_level_only:
        for stmt in tree.body:
            if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test):
                continue
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(stmt, ast.ClassDef):  # class bodies run at import; their methods do not
                nodes += [n for n in stmt.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
                continue
            nodes.append(stmt)
    else:
        nodes = [tree]
    found: dict[str, int] = {}
    for root in nodes:
        for node in ast.walk(root):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in FIRST_PARTY or top == "__future__":
                    continue
                found.setdefault(top, node.lineno)  # type: ignore[attr-defined]
    return found


def _dists(top: str) -> set[str]:
    return set(_distributions().get(top, [top.lower().replace("_", "-")]))


def _base_modules() -> dict[str, Path]:
    return {name: path for name, path in modules().items() if not name.startswith("clients.eval")}


def test_the_extras_hold_what_only_eval_and_bench_use() -> None:
    base = {_name(r) for r in _pyproject()["project"]["dependencies"]}
    assert not base & {"scipy", "matplotlib", "psutil"}
    extras = _pyproject()["project"]["optional-dependencies"]
    assert {"scipy", "matplotlib"} <= {_name(r) for r in extras["eval"]}
    assert "psutil" in {_name(r) for r in extras["bench"]}


@pytest.mark.parametrize("name", sorted(_base_modules()))
def test_base_modules_need_only_the_base_install(name: str) -> None:
    """The indexer, the service and the clients import, at import time, only what ``pip install
    taskgram`` installs; an optional package (an extra's) is imported inside the function that needs it."""
    path = _base_modules()[name]
    wrong = {
        f"{path.relative_to(ROOT)}:{line}: {top}"
        for top, line in _third_party(path, module_level_only=True).items()
        if not _dists(top) & _base()
    }
    assert not wrong, "imported at import time but not a base dependency: " + ", ".join(sorted(wrong))
    extras = set().union(*(_extra(e) for e in _pyproject()["project"]["optional-dependencies"] if e != "dev"))
    undeclared = {
        f"{path.relative_to(ROOT)}:{line}: {top}"
        for top, line in _third_party(path, module_level_only=False).items()
        if not _dists(top) & (_base() | extras)
    }
    assert not undeclared, "imported but declared nowhere: " + ", ".join(sorted(undeclared))


def test_evaluation_modules_load_with_the_base_install() -> None:
    """``taskgram --help`` imports ``clients.eval.cli``; every evaluation module defers its extras' imports
    (torch, scipy, matplotlib, ...) to the functions that use them."""
    wrong = []
    for name, path in modules().items():
        if name.startswith("clients.eval"):
            for top, line in _third_party(path, module_level_only=True).items():
                if not _dists(top) & _base():
                    wrong.append(f"{path.relative_to(ROOT)}:{line}: {top}")
    assert not wrong


def test_extras_packages_are_imported_only_where_their_extra_is_meant() -> None:
    where = {"scipy": "clients/eval/", "matplotlib": "clients/eval/", "psutil": "bench/"}
    wrong = []
    for path in sorted(ROOT.glob("*/**/*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith((".", "tests/")) or "/." in rel:
            continue
        for top, line in _third_party(path, module_level_only=False).items():
            if top in where and not rel.startswith(where[top]):
                wrong.append(f"{rel}:{line}: {top}")
    assert not wrong


def test_clients_import_neither_the_web_framework_nor_the_service() -> None:
    """The clients talk to the service through transports; only the in-process transport
    (``clients.local``) imports the engine, and nothing imports FastAPI or the service's web layer."""
    edges = graph()
    wrong = []
    for name, targets in edges.items():
        if not name.startswith("clients"):
            continue
        for target in targets:
            in_process = name == "clients.local" and target.startswith("service.engine")
            if target.startswith("service") and not in_process:
                wrong.append(f"{name} -> {target}")
        path = modules()[name]
        for top, line in _third_party(path, module_level_only=False).items():
            if top in {"fastapi", "starlette", "uvicorn"}:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {top}")
    assert not wrong


def test_the_service_never_imports_build_or_client_code() -> None:
    allowed_indexer = {"indexer.format", "indexer.manifest", "indexer.tokenize", "indexer.errors"}
    wrong = [
        f"{name} -> {target}"
        for name, targets in graph().items()
        if name.startswith("service")
        for target in targets
        if target.startswith("clients") or (target.startswith("indexer") and target not in allowed_indexer)
    ]
    assert not wrong


def test_no_import_circles() -> None:
    edges = {s: {t for t in ts if not s.startswith(t + ".")} for s, ts in graph().items()}
    assert cycles(edges) == []


def test_the_command_line_parser_does_not_load_the_http_client():
    """Every ``taskgram`` command builds the whole parser; ``clients`` loads httpx and pydantic models only
    when a client is used (``taskgram build`` started 0.15 s sooner)."""
    import subprocess

    code = (
        "import sys, taskgram.cli as c; c.build_parser(); import clients; "
        "assert 'httpx' not in sys.modules and 'clients.client' not in sys.modules, sorted(sys.modules); "
        "from clients import Client, TraceSpan; assert Client.__module__ == 'clients.client'; "
        "assert all(getattr(clients, name) is not None for name in clients.__all__)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_a_build_reaches_its_sort_without_pydantic():
    """The parser, the build pipeline and the sort's kernels do without pydantic: the manifest's models
    (``indexer.manifest``) are first imported by the shard writer's thread while the suffix array is
    sorted (0.08 s of the start-up of ``taskgram build``)."""
    import subprocess

    code = (
        "import sys, taskgram.cli as c; c.build_parser(); "
        "import indexer.pipeline, indexer.writer, indexer.shardwork, indexer.kernels; "
        "assert 'pydantic' not in sys.modules, [m for m in sys.modules if 'pydantic' in m or 'manifest' in m]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
