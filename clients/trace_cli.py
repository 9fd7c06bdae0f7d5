"""``taskgram trace``: which spans of a text occur verbatim in the corpus, shown in the terminal.

    taskgram trace --index DIR  [--file F | TEXT] [--json] [--min-len N] [--max-count N] ...
    taskgram trace --server URL [--index-name NAME] [--file F | TEXT] ...

The text is printed with every traced span highlighted (colour by count: red = once, orange = a few
times, yellow = more), then a table of the spans with their counts and first documents. ``--json``
prints the full answer of ``POST /v1/trace`` instead. A server's bearer key comes from
``$TASKGRAM_API_KEY`` (never from the command line). Failures print one line naming the file or field
and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "trace",
        help="highlight the spans of a text that occur verbatim in the corpus",
        description="Trace a text (a model's output) over an index: maximal spans found verbatim in the "
        "corpus, with exact counts and documents (OLMoTrace's method, exact across shards).",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--index", type=Path, metavar="DIR", help="index directory (in-process)")
    where.add_argument("--server", metavar="URL", help="taskgram service URL (key from $TASKGRAM_API_KEY)")
    p.add_argument("--index-name", default=None, help="index on the server (default: its only one)")
    p.add_argument("text", nargs="?", help="the text to trace (or --file)")
    p.add_argument("--file", type=Path, help="read the text from this file ('-' = standard input)")
    p.add_argument("--min-len", type=int, default=1, help="shortest span in tokens (default 1)")
    p.add_argument(
        "--max-count", type=int, default=10, help="keep spans found at most this often (0 = no limit)"
    )
    p.add_argument("--boundary", choices=["word", "token"], default="word", help="span edges (default word)")
    p.add_argument("--rank", choices=["length", "unigram_logprob"], default="length")
    p.add_argument("--max-spans", type=int, default=None, help="keep only the best-ranked spans")
    p.add_argument("--docs-per-span", type=int, default=3, help="documents shown per span (default 3)")
    p.add_argument("--context", type=int, default=30, help="snippet tokens on each side (default 30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.set_defaults(handler=run_trace)


def _fail(message: str) -> int:
    print(f"taskgram trace: {message}", file=sys.stderr)
    return 2


def _read_text(args: argparse.Namespace) -> str:
    if args.file is not None and args.text is not None:
        raise ValueError("give the text or --file, not both")
    if args.file is not None:
        if str(args.file) == "-":
            return sys.stdin.read()
        try:
            return args.file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"{args.file}: {err}") from err
    if args.text is None:
        raise ValueError("give the text to trace, or --file F")
    return str(args.text)


def colour(count: int) -> str:
    """The highlight of a span found ``count`` times (the same scale as the web explorer)."""
    if count <= 1:
        return "bold white on red3"
    if count <= 10:
        return "black on dark_orange"
    return "black on yellow3"


def run_trace(args: argparse.Namespace) -> int:
    from clients import Client, LocalClient, TaskgramError

    try:
        text = _read_text(args)
    except ValueError as err:
        return _fail(str(err))
    if not text.strip():
        return _fail("the text is empty")
    client: Any
    try:
        if args.index is not None:
            if not (args.index / "manifest.json").is_file():
                return _fail(f"{args.index / 'manifest.json'}: missing; is {args.index} a taskgram index?")
            client = LocalClient(args.index)
        else:
            client = Client(
                args.server, index=args.index_name, api_key=os.environ.get("TASKGRAM_API_KEY") or None
            )
        with client:
            (result,) = client.trace(
                [text],
                min_len=args.min_len,
                max_count=args.max_count or None,
                boundary=args.boundary,
                rank=args.rank,
                max_spans=args.max_spans,
                docs_per_span=args.docs_per_span,
                context=args.context,
                seed=args.seed,
            )
    except TaskgramError as err:  # the in-process transport maps the engine's errors to these too
        return _fail(str(err))
    if args.json:
        print(json.dumps(result.model_dump(), ensure_ascii=False, indent=2))
        return 0
    show(result)
    return 0


def show(result: Any) -> None:
    """Print the text with its spans highlighted, then the span table (rich)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    body = Text(result.text or " ".join(map(str, result.token_ids)))
    for span in sorted(result.spans, key=lambda s: -s.count):  # rarer spans painted last (on top)
        if span.char_start is not None and span.char_end is not None:
            body.stylize(colour(span.count), span.char_start, span.char_end)
    console.print(body)
    console.print(
        f"\n{len(result.spans)} spans over {result.n_tokens} tokens: span density "
        f"{result.span_density:.3f} spans/token, coverage {result.coverage:.1%}, longest {result.longest} "
        "tokens",
        highlight=False,
    )
    if not result.spans:
        return
    table = Table(show_header=True, header_style="bold")
    for name in ("rank", "tokens", "count", "span", "documents"):
        table.add_column(name, overflow="fold")
    for span in result.spans:
        docs = ", ".join(_doc_label(d) for d in span.documents)
        shown = (
            span.text
            if span.text is not None
            else " ".join(map(str, result.token_ids[span.start : span.end]))
        )
        table.add_row(
            str(span.rank), str(span.length), str(span.count), Text(shown, style=colour(span.count)), docs
        )
    console.print(table)


def _doc_label(doc: Any) -> str:
    meta = doc.metadata
    where = ""
    if "source" in meta:
        where = f" {meta['source']}" + (f":{meta['line']}" if "line" in meta else "")
    return f"#{doc.doc_id}{where}"
