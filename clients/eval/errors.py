"""The evaluation's exceptions: one root, defined here together, raised where the work happens.

::

    EvalError                   base: ``taskgram eval`` reports any of these as one line and exits 2
     ├── TaskDataError          a task file is missing or does not follow its schema (file and line); a
     │                          ValueError too
     ├── CountingError          a count query failed or answered something malformed
     ├── InconsistentCounts     C(pair) > C(s^x): the backend's counts contradict each other
     ├── InfgramError           an ∞-gram query failed or answered something malformed
     ├── EmbeddingError         the semantic-filter embedder could not be loaded or failed
     ├── ModelError             a language model could not be loaded or a forward pass failed
     ├── MetricError            a performance metric could not be computed
     └── StageError             a stage of the pipeline failed (the message names the stage, task and n)

A failed query is never turned into a zero count: these propagate to the pipeline, which stops.
"""

from __future__ import annotations

__all__ = [
    "CountingError",
    "EmbeddingError",
    "EvalError",
    "InconsistentCounts",
    "InfgramError",
    "MetricError",
    "ModelError",
    "StageError",
    "TaskDataError",
]


class EvalError(RuntimeError):
    """Base of every exception of the evaluation."""


class TaskDataError(EvalError, ValueError):
    """A task file is missing, unreadable or does not follow its schema (message names file and line)."""


class CountingError(EvalError):
    """A count query failed or answered something malformed; the run must stop, not record a zero."""


class InconsistentCounts(EvalError):
    """C(pair) > C(s^x): the backend's counts contradict each other."""


class InfgramError(EvalError):
    """An ∞-gram query failed or answered something malformed."""


class EmbeddingError(EvalError):
    """The embedder could not be loaded or failed on a batch."""


class ModelError(EvalError):
    """A model could not be loaded or a forward pass failed."""


class MetricError(EvalError):
    """A performance metric could not be computed (missing package, model that does not load)."""


class StageError(EvalError):
    """A stage failed; the message says which and why."""
