"""``taskgram trace``: the printed spans and --json equal the client's answer; failures exit 2 with a
message naming the file or field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clients import LocalClient
from taskgram.cli import main

TEXT = (
    "Python's support for detecting and collecting garbage which involves circular references is provided "
    "by the gc module."
)


def test_json_equals_the_client(sample_index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "--index", str(sample_index), TEXT, "--json", "--min-len", "2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    with LocalClient(sample_index) as client:
        (expected,) = client.trace([TEXT], min_len=2, docs_per_span=3, context=30)
    assert printed == expected.model_dump(mode="json")
    assert any(s["length"] >= 8 for s in printed["spans"])


def test_terminal_output_lists_every_span(
    sample_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "output.txt"
    source.write_text(TEXT, encoding="utf-8")
    assert main(["trace", "--index", str(sample_index), "--file", str(source), "--min-len", "2"]) == 0
    out = capsys.readouterr().out
    with LocalClient(sample_index) as client:
        (expected,) = client.trace([TEXT], min_len=2)
    assert f"{len(expected.spans)} spans over {expected.n_tokens} tokens" in out
    assert "sample-en.jsonl.zst:" in out  # documents named by input file and line


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--file", "/nonexistent/x.txt"], "/nonexistent/x.txt"),
        ([], "give the text"),
        (["some text", "--min-len", "0"], "min_len"),
        (["some text", "--boundary", "token", "--context", "-1"], "context"),
    ],
)
def test_failures_exit_2(
    sample_index: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["trace", "--index", str(sample_index), *argv]) == 2
    assert message in capsys.readouterr().err


def test_not_an_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "--index", str(tmp_path), "text"]) == 2
    assert "manifest.json: missing" in capsys.readouterr().err
