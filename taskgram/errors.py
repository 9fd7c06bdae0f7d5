"""How a ``taskgram`` command fails: one way for every command.

A handler raises :class:`UsageError` (or an exception of the roots it registered with
``set_defaults(failures=...)``, e.g. ``IndexerError``); :func:`taskgram.cli.main` prints one line,
``taskgram COMMAND: error: MESSAGE`` (the message names the file and line or the option), and exits
with :data:`EXIT_USAGE`, never with a traceback.
"""

from __future__ import annotations

__all__ = ["EXIT_INTERRUPTED", "EXIT_OK", "EXIT_PROBLEMS", "EXIT_USAGE", "UsageError"]

EXIT_OK = 0
#: the command ran and found problems (``verify``: a damaged index; ``eval``: a stage recorded errors)
EXIT_PROBLEMS = 1
#: bad input, options or files: one line on stderr naming the file or field
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A command's input or options are wrong; the message names the file (and line) or the option."""
