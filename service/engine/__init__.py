"""The query engine: exact n-gram counts, document frequencies and co-occurrence, windowed (CNF) AND,
next-token distributions, n-gram and ∞-gram probabilities and document search over a taskgram index.

Framework-free (no FastAPI); every query method takes a batch. See :mod:`service.engine.query` for the
phrase syntax and the leading-space policy, :mod:`service.engine.docsets` for the co-occurrence design.
"""

from service.engine.errors import (
    BudgetExceeded,
    DocumentNotFound,
    EngineError,
    IndexUnavailable,
    QueryError,
    ShardsUnavailable,
)
from service.engine.index import Index, IndexSet
from service.engine.query import Phrase, PhraseSpec
from service.engine.results import (
    Document,
    DocumentHit,
    DocumentsResult,
    InfgramResult,
    InfgramToken,
    NextTokenDistribution,
    ProbResult,
    TokenProb,
)
from taskgram.api import COUNT_UNITS, SPACE_POLICIES, SpacePolicy

__all__ = [
    "COUNT_UNITS",
    "SPACE_POLICIES",
    "BudgetExceeded",
    "Document",
    "DocumentHit",
    "DocumentNotFound",
    "DocumentsResult",
    "EngineError",
    "Index",
    "IndexSet",
    "IndexUnavailable",
    "InfgramResult",
    "InfgramToken",
    "NextTokenDistribution",
    "Phrase",
    "PhraseSpec",
    "ProbResult",
    "QueryError",
    "ShardsUnavailable",
    "SpacePolicy",
    "TokenProb",
]
