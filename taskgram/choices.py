"""The values that the API's and the commands' options may take, each defined once.

:mod:`taskgram.api` re-exports them with its pydantic shapes; the commands' parsers import them from here,
so that building a parser does not import pydantic.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["BOUNDARIES", "COUNT_UNITS", "SPACE_POLICIES", "Boundary", "CountUnit", "SpacePolicy"]

#: how text becomes tokens: a space prepended unless the text starts with whitespace, as given, or both
SpacePolicy = Literal["auto", "exact", "both"]
SPACE_POLICIES: tuple[str, ...] = get_args(SpacePolicy)
#: which matches count: every match of the tokens, or only those that neither start nor end inside a word
Boundary = Literal["token", "word"]
BOUNDARIES: tuple[str, ...] = get_args(Boundary)
#: what a co-occurrence counts: documents containing every phrase, or occurrences of the first phrase
CountUnit = Literal["documents", "occurrences"]
COUNT_UNITS: tuple[str, ...] = get_args(CountUnit)
