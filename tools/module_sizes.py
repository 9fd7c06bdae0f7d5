"""The modules of taskgram's packages at a git revision, with their line counts.

    python tools/module_sizes.py [REV]          # one line per module (default: the working tree)
    python tools/module_sizes.py REV --compare REV2   # the modules of both, added / removed / changed

Reads ``git ls-tree`` and ``git cat-file`` of the repository this file lives in (or the files on disk when
no revision is given); runs nothing of the code. A module is a ``.py`` file under one of the packages of
:mod:`tools.import_graph` (``taskgram``, ``indexer``, ``service``, ``clients``); lines are newline
characters, as ``wc -l`` counts them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("taskgram", "indexer", "service", "clients")


def _git(*args: str) -> bytes:
    proc = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(f"module_sizes: git {' '.join(args)}: {proc.stderr.decode().strip()}")
    return proc.stdout


def sizes(rev: str | None) -> dict[str, int]:
    """Module file path -> line count, at ``rev`` (None: the working tree)."""
    out: dict[str, int] = {}
    if rev is None:
        for package in PACKAGES:
            for path in sorted((ROOT / package).rglob("*.py")):
                out[str(path.relative_to(ROOT))] = path.read_bytes().count(b"\n")
        return out
    listing = _git("ls-tree", "-r", "--format=%(objectname) %(path)", rev, "--", *PACKAGES)
    for line in listing.decode().splitlines():
        obj, _, path = line.partition(" ")
        if path.endswith(".py"):
            out[path] = _git("cat-file", "blob", obj).count(b"\n")
    return dict(sorted(out.items()))


def _total(table: dict[str, int]) -> str:
    return f"{len(table)} modules, {sum(table.values()):,} lines"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rev", nargs="?", help="git revision (default: the working tree)")
    ap.add_argument("--compare", metavar="REV2", help="list the changes from REV to REV2 (a revision)")
    args = ap.parse_args(argv)
    before = sizes(args.rev)
    if args.compare is None:
        for path, n in before.items():
            print(f"{n:6d}  {path}")
        print(f"{args.rev or 'working tree'}: {_total(before)}")
        return 0
    after = sizes(args.compare)
    for path in sorted(set(before) | set(after)):
        a, b = before.get(path), after.get(path)
        if a is None:
            print(f"  added   {b:6d}  {path}")
        elif b is None:
            print(f"  removed {a:6d}  {path}")
        elif a != b:
            print(f"  {b - a:+6d} {b:6d}  {path}")
    print(f"{args.rev}: {_total(before)}")
    print(f"{args.compare}: {_total(after)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
