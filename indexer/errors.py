"""The indexer's exceptions: one root, so that a caller (``taskgram build`` / ``verify``) catches one class.

::

    IndexerError
     ├── CorpusError         an input file cannot be read as a corpus ("FILE:LINE: what is wrong")
     ├── TokenizerError      a tokenizer cannot be loaded or used
     ├── BuildError          the build cannot proceed as configured (bad option, empty corpus, ...)
     ├── DocumentTooLarge    a document longer than a shard (the build names it in a BuildError)
     ├── RayBuildError       Ray cannot run the build as asked
     ├── IndexWriteError     the output folder cannot be written as asked
     ├── IndexFormatError    an index folder is missing, incomplete, corrupt or of another format
     └── ShardCheckError     a shard's arrays are inconsistent

Each subclass is defined next to the code that raises it; this module holds only the root.
"""

from __future__ import annotations

__all__ = ["IndexerError"]


class IndexerError(Exception):
    """Base of every exception the indexer raises on bad input, options or files. The message names the
    file (and line) or the option that is wrong."""
