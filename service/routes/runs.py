"""Evaluation runs: the ``taskgram eval`` run directories the server was configured with
(``--eval-run DIR`` / ``TASKGRAM_EVAL_RUNS``), read-only, for the ``/ui`` explorer: each run's report
(memorization table, errors, configuration), its performance bins (``tables/performance.csv``) and its
figures (``figures/*.png``). Nothing outside those directories is ever read."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from starlette.responses import FileResponse, Response

from service.deps import ServiceState, StateDep
from service.errors import NotFound
from service.routes._common import json_response

router = APIRouter(tags=["evaluation runs"])

_FIGURE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.png$")


def _runs(state: ServiceState) -> dict[str, Path]:
    return {d.name: d for d in state.settings.eval_runs}


def _run_dir(state: ServiceState, name: str) -> Path:
    runs = _runs(state)
    if name not in runs:
        raise NotFound(f"no evaluation run named {name!r}; GET /v1/runs lists them")
    return runs[name]


def _report(directory: Path) -> dict[str, Any] | None:
    path = directory / "report.json"
    if not path.is_file():
        return None
    try:
        report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise NotFound(f"run {directory.name!r}: report.json cannot be read: {err}") from err
    return report


@router.get("/runs", summary="The evaluation runs this server shows")
def runs(state: StateDep) -> Response:
    out = []
    for name, directory in _runs(state).items():
        report = _report(directory)
        entry: dict[str, Any] = {"name": name, "has_report": report is not None}
        if report is not None:
            config = report.get("config", {})
            entry.update(
                ok=report.get("ok"),
                models=report.get("models", {}),
                tasks=config.get("tasks", []),
                n_values=config.get("n_values", []),
                errors=len(report.get("errors", [])),
            )
        out.append(entry)
    return json_response({"runs": out})


@router.get("/runs/{name}", summary="One evaluation run: report, performance bins, figures")
def run(name: Annotated[str, PathParam(max_length=200)], state: StateDep) -> Response:
    directory = _run_dir(state, name)
    report = _report(directory)
    if report is None:
        raise NotFound(f"run {name!r} has no report.json yet (still running, or it failed early)")
    bins: list[dict[str, str]] = []
    perf = directory / "tables" / "performance.csv"
    if perf.is_file():
        with perf.open(encoding="utf-8", newline="") as f:
            bins = list(csv.DictReader(f))
    figures_dir = directory / "figures"
    figures = sorted(p.name for p in figures_dir.glob("*.png")) if figures_dir.is_dir() else []
    return json_response({"name": name, "report": report, "performance_bins": bins, "figures": figures})


@router.get("/runs/{name}/figures/{figure}", summary="One figure of an evaluation run (PNG)")
def figure(
    name: Annotated[str, PathParam(max_length=200)],
    figure: Annotated[str, PathParam(max_length=210)],
    state: StateDep,
) -> Response:
    directory = _run_dir(state, name)
    path = directory / "figures" / figure
    if not _FIGURE.match(figure) or not path.is_file():
        raise NotFound(f"run {name!r} has no figure {figure!r}")
    return FileResponse(path, media_type="image/png")
