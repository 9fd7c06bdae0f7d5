"""Print what pyproject.toml asks pip to install, one requirement per line, for the dependency layer of
the images (built before the sources are copied, so that it is rebuilt only when pyproject.toml changes):

    python requirements.py pyproject.toml [EXTRA ...]    build-system requires, dependencies, extras

Standard library only: it runs in the build stage before anything is installed (Python 3.11's tomllib, or
the tomli that pip vendors on Python 3.10).
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    from pip._vendor import tomli as tomllib  # type: ignore[no-redef]


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    optional = project["project"].get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in optional]
    if unknown:
        raise SystemExit(f"{pyproject}: no optional-dependencies {unknown} (has {sorted(optional)})")
    lines = list(project["build-system"]["requires"]) + list(project["project"]["dependencies"])
    for extra in extras:
        lines += optional[extra]
    return lines


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    print("\n".join(requirements(Path(sys.argv[1]), sys.argv[2:])))
