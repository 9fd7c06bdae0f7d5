"""The query engine: exact n-gram counts, document frequencies and co-occurrence, windowed (CNF) AND,
next-token distributions, n-gram and ∞-gram probabilities and document search over a taskgram index.

Framework-free (no FastAPI); every query method takes a batch. See :mod:`service.engine.query` for the
phrase syntax and the leading-space policy, :mod:`service.engine.docsets` for the co-occurrence design.
"""

from service.engine.errors import (
    BudgetExceeded,
    EngineError,
    IndexUnavailable,
    QueryError,
    ShardsUnavailable,
)
from service.engine.index import Index, IndexSet
from service.engine.query import SPACE_POLICIES, Phrase, PhraseSpec, SpacePolicy
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

__all__ = [
    "SPACE_POLICIES",
    "BudgetExceeded",
    "Document",
    "DocumentHit",
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
