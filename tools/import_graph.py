"""The import graph of taskgram's own modules, and its circles.

    python tools/import_graph.py            # one line per module: its first-party imports
    python tools/import_graph.py --cycles   # only the circles (strongly connected components); exit 1 if any
    python tools/import_graph.py --dot      # Graphviz

Reads the source (``ast``), runs nothing. Every import counts, also one inside a function or under
``if TYPE_CHECKING:`` (a lazy or type-only import still ties the two modules together). An import of a
module's own package (``a.b`` -> ``a``) is how Python imports work and is left out.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("taskgram", "indexer", "service", "clients")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = ROOT) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(path, root)] = path
    return found


def imports_of(name: str, path: Path, known: Iterable[str]) -> set[str]:
    """First-party modules ``name`` imports (``from a.b import c`` counts ``a.b.c`` when that is a module)."""
    known = set(known)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    # importing a.b.c also imports package a.b: only the deepest module is kept as the edge
    return {
        t for t in out if not any(o != t and o.startswith(t + ".") for o in out) or t not in _packages(known)
    }


def _packages(known: set[str]) -> set[str]:
    return {k.rpartition(".")[0] for k in known if "." in k}


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    mods = modules(root)
    return {name: imports_of(name, path, mods) for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _is_package_edge(source: str, target: str) -> bool:
    """``a.b`` -> ``a`` (a module's own package ``__init__``) is how Python imports work, not a design
    choice; such edges are left out of the circles."""
    return source.startswith(target + ".")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", action="store_true")
    parser.add_argument("--dot", action="store_true")
    args = parser.parse_args(argv)
    edges = {s: {t for t in ts if not _is_package_edge(s, t)} for s, ts in graph().items()}
    found = cycles(edges)
    if args.dot:
        print("digraph taskgram {")
        for source in sorted(edges):
            for target in sorted(edges[source]):
                print(f'  "{source}" -> "{target}";')
        print("}")
    elif args.cycles:
        for component in found:
            print(" <-> ".join(component))
        print(f"{len(found)} circle(s) among {len(edges)} modules")
    else:
        for source in sorted(edges):
            print(f"{source}: {', '.join(sorted(edges[source])) or '-'}")
        print(f"# {len(edges)} modules, {sum(map(len, edges.values()))} imports, {len(found)} circle(s)")
    return 1 if found and args.cycles else 0


if __name__ == "__main__":
    sys.exit(main())
