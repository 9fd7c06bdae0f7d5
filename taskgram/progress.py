"""Progress bars of the long commands (``taskgram build``, ``verify``, ``eval``): tqdm, on stderr.

A bar that is switched off is still a bar (tqdm's ``disable=True``): callers update it and use it as a
context manager without checking whether progress is shown.
"""

from __future__ import annotations

from typing import Any

__all__ = ["progress_bar"]


def progress_bar(*, enabled: bool = True, **options: Any) -> Any:
    """A ``tqdm`` bar (``options`` go to tqdm: ``total``, ``desc``, ``unit``, ...), redrawn at most twice
    a second and fitted to the terminal; does nothing when ``enabled`` is false."""
    from tqdm import tqdm

    options.setdefault("dynamic_ncols", True)
    options.setdefault("mininterval", 0.5)
    return tqdm(disable=not enabled, **options)
