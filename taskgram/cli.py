"""The ``taskgram`` command. Each package registers its own subcommands; heavy imports happen inside the
handlers so that ``taskgram --help`` is instant.

Every command fails the same way (:mod:`taskgram.errors`): one line ``taskgram COMMAND: error: MESSAGE``
on stderr, naming the file or the option, and exit status 2. A subcommand lists the exception roots that
mean such a failure with ``set_defaults(failures=(...))``; :class:`~taskgram.errors.UsageError` always does.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import os
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from taskgram import __version__
from taskgram.errors import EXIT_INTERRUPTED, EXIT_USAGE, UsageError

# Modules that define ``register(subparsers)``; each adds its subcommands with ``set_defaults(handler=...)``.
COMMAND_MODULES = ("indexer.cli", "service.cli", "clients.trace_cli", "clients.eval.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskgram",
        description="Exact n-gram and document co-occurrence statistics over pretraining corpora.",
    )
    parser.add_argument("--version", action="version", version=f"taskgram {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue  # that part of taskgram is not installed
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``taskgram`` command.

    Parameters
    ----------
    argv
        The arguments after ``taskgram`` (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0 success, 1 the command found problems (``verify``, ``eval``), 2 bad input or
        options (one line on stderr names the file or the option), 130 interrupted.

    Raises
    ------
    SystemExit
        From argparse, for unknown options or ``--help`` (status 2 or 0).

    Examples
    --------
    Build an index of a small corpus, check it, and fail on a folder that is not an index:

    >>> import pathlib, tempfile
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> corpus = tmp / "cat.txt"  # a .txt file is one document
    >>> _ = corpus.write_text("the cat sat on the mat", encoding="utf-8")
    >>> main(["build", str(corpus), "--output", str(tmp / "index"), "--quiet"])
    0
    >>> main(["verify", str(tmp / "index"), "--quiet"])
    /...: OK (1 shard(s), full check)
    0
    >>> main(["verify", str(tmp / "nothing-here")])
    2
    >>> import shutil; shutil.rmtree(tmp)
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return EXIT_USAGE
    failures: tuple[type[BaseException], ...] = (UsageError, *getattr(args, "failures", ()))
    try:
        return int(args.handler(args) or 0)
    except failures as err:
        print(f"taskgram {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"taskgram {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def run() -> NoReturn:
    """The ``taskgram`` console command: :func:`main`, then the exit.

    The exit skips the interpreter's teardown when nothing is left to do: the exit handlers (``atexit``)
    have run, the standard streams are flushed and no other non-daemon thread is alive. The teardown only
    frees memory, object by object; after a build, numba's and LLVM's objects took 0.15 s of it."""
    status = main()
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if others:
        sys.exit(status)  # let the interpreter join them
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream: nothing can reach it
            stream.flush()
    os._exit(status)


if __name__ == "__main__":
    run()
