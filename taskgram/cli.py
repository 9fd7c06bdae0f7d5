"""The ``taskgram`` command. Each package registers its own subcommands; heavy imports happen inside the
handlers so that ``taskgram --help`` is instant."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from taskgram import __version__

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
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
