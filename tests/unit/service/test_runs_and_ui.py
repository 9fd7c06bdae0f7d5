"""The explorer's server side: ``/ui`` and its assets (shipped in the package, nothing fetched from
elsewhere) and ``/v1/runs`` (the evaluation runs given with ``--eval-run``, read-only, nothing outside
them served)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from service.ui import STATIC

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runs")
    done = root / "run-a"
    (done / "tables").mkdir(parents=True)
    (done / "figures").mkdir()
    report = {"config": {"tasks": ["gsm8k"], "n_values": [2]}, "models": {"m": "M"}, "ok": True, "errors": []}
    report["memorization"] = [{"task": "gsm8k", "n": 2, "pairs": 10, "spearman_rho": 0.5}]
    (done / "report.json").write_text(json.dumps(report))
    (done / "tables" / "performance.csv").write_text("task,n,examples\ngsm8k,2,7\n")
    (done / "figures" / "memorization-gamma.png").write_bytes(PNG)
    running = root / "run-b"
    running.mkdir()
    return done, running


@pytest.fixture(scope="module")
def api(sample_index: Path, runs: tuple[Path, Path]) -> Iterator[TestClient]:
    settings = Settings(
        indexes={"sample": sample_index}, eval_runs=list(runs), access_log=False, warmup=False
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def test_ui_page_and_assets_are_served_and_offline(api: TestClient) -> None:
    assert api.get("/ui", follow_redirects=False).status_code == 307
    page = api.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset in ("static/app.js", "static/app.css"):
        assert api.get("/ui/" + asset).status_code == 200
    for path in STATIC.iterdir():  # no CDN: no asset refers to another host
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(src|href)=\"https?://|url\(https?://|import .* from \"https?://", text), path
    assert "/ui" not in api.get("/openapi.json").json()["paths"]


def test_runs_list_and_report(api: TestClient, runs: tuple[Path, Path]) -> None:
    listed = api.get("/v1/runs").json()["runs"]
    assert listed == [
        {"name": "run-a", "has_report": True, "ok": True, "models": {"m": "M"}, "tasks": ["gsm8k"],
         "n_values": [2], "errors": 0},
        {"name": "run-b", "has_report": False},
    ]  # fmt: skip
    one = api.get("/v1/runs/run-a").json()
    assert one["report"]["memorization"][0]["pairs"] == 10
    assert one["performance_bins"] == [{"task": "gsm8k", "n": "2", "examples": "7"}]
    assert one["figures"] == ["memorization-gamma.png"]
    figure = api.get("/v1/runs/run-a/figures/memorization-gamma.png")
    assert (
        figure.status_code == 200 and figure.content == PNG and figure.headers["content-type"] == "image/png"
    )


@pytest.mark.parametrize(
    "path, detail",
    [
        ("/v1/runs/nope", "no evaluation run named 'nope'"),
        ("/v1/runs/run-b", "no report.json yet"),
        ("/v1/runs/run-a/figures/missing.png", "no figure"),
        ("/v1/runs/run-a/figures/..%2Freport.json", "Not Found"),  # no route: never the file
        ("/v1/runs/run-a/figures/report.json", "no figure"),
    ],
)
def test_runs_not_found_is_problem_json(api: TestClient, path: str, detail: str) -> None:
    answer = api.get(path)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert detail in answer.json()["detail"]


def test_eval_runs_setting_is_checked(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="is not a directory"):
        Settings(eval_runs=[tmp_path / "absent"])
    (tmp_path / "a" / "x").mkdir(parents=True)
    (tmp_path / "b" / "x").mkdir(parents=True)
    with pytest.raises(ValidationError, match="repeated"):
        Settings(eval_runs=[tmp_path / "a" / "x", tmp_path / "b" / "x"])
