"""``taskgram serve`` argument handling: index naming, settings from arguments over the environment."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from service.cli import register, settings_from_args
from taskgram.errors import UsageError


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["serve", *argv])


def test_index_names_and_defaults(tmp_path: Path) -> None:
    a, b = tmp_path / "alpha", tmp_path / "beta"
    a.mkdir()
    b.mkdir()
    settings = settings_from_args(parse([str(a), "--name", f"other={b}"]))
    assert settings.indexes == {"alpha": a.resolve(), "other": b.resolve()}
    assert settings.host == "127.0.0.1" and settings.port == 8000 and settings.workers == 1
    assert settings.api_keys == [] and settings.cors_origins == []
    assert settings.gc_tuning is True  # the serving process owns its interpreter
    assert settings_from_args(parse([str(a), "--no-gc-tuning"])).gc_tuning is False


def test_arguments_override_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKGRAM_INDEXES", json.dumps({"env": str(tmp_path)}))
    monkeypatch.setenv("TASKGRAM_MAX_BATCH", "10")
    monkeypatch.setenv("TASKGRAM_PORT", "9000")
    settings = settings_from_args(parse(["--port", "9100", "--api-key", "k" * 20, "--time-budget", "2.5"]))
    assert settings.indexes == {"env": tmp_path.resolve()}
    assert settings.port == 9100 and settings.max_batch == 10
    assert settings.api_keys == ["k" * 20] and settings.time_budget_s == 2.5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no index given"),
        (["--name", "missing-equals"], "NAME=DIR"),
        (["--name", "../x=/tmp"], "invalid settings"),
        (["/nonexistent/index-dir"], "not a directory"),
        (["--api-key", "short", "/tmp"], "at least 16"),
    ],
)
def test_bad_arguments_exit_with_the_reason(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TASKGRAM_INDEXES", raising=False)
    with pytest.raises(UsageError) as info:
        settings_from_args(parse(argv))
    assert message in str(info.value)


def test_same_folder_name_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a" / "idx").mkdir(parents=True)
    (tmp_path / "b" / "idx").mkdir(parents=True)
    with pytest.raises(UsageError, match="--name"):
        settings_from_args(parse([str(tmp_path / "a" / "idx"), str(tmp_path / "b" / "idx")]))
