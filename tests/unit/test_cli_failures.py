"""Every ``taskgram`` command fails the same way: one line ``taskgram COMMAND: error: ...`` on stderr that
names the file or the option, no traceback, exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskgram.cli import main


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"taskgram {argv[0]}: error: ") and err.count("\n") == 1, err
    assert needle in err and "Traceback" not in err


def test_build_names_the_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _fails(capsys, ["build", str(tmp_path / "absent.jsonl"), "-o", str(tmp_path / "i"), "-q"], "absent.jsonl")


def test_verify_names_the_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _fails(capsys, ["verify", str(tmp_path)], "manifest.json")


def test_serve_names_the_setting(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKGRAM_INDEXES", raising=False)
    _fails(capsys, ["serve", "--name", "no-equals-sign"], "--name")


def test_eval_names_the_option(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["eval", "--index", str(tmp_path), "--tasks-dir", str(tmp_path), "--run-dir", str(tmp_path / "r")]
    _fails(capsys, [*argv, "--n", "11"], "--n 11")
    _fails(capsys, argv, "manifest.json")  # --index is not an index


def test_eval_names_the_task_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, build_small_index, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = build_small_index(["the cat sat on the mat"])
    argv = ["eval", "--index", str(index), "--tasks-dir", str(tmp_path / "no-tasks")]
    argv += ["--run-dir", str(tmp_path / "r"), "--tasks", "gsm8k", "--no-progress", "--no-figures"]
    _fails(capsys, argv, "no-tasks")
    assert (tmp_path / "r" / "report.json").is_file()  # the failure is recorded in the run too
