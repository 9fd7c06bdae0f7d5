"""The web explorer at ``/ui``: plain HTML, CSS and JavaScript shipped in the package (no CDN, no build
step), served by the same FastAPI app. It calls the ``/v1`` API from the browser with the user's API key
(entered once, kept in the browser's local storage, sent as a bearer token) and shows problem+json
messages as they come. Pages: indexes (manifest summaries), phrase search, co-occurrence, trace and
evaluation runs (``--eval-run``).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import FileResponse, RedirectResponse, Response

STATIC = Path(__file__).resolve().parent / "static"


def install_ui(app: FastAPI) -> None:
    """Serve the explorer: ``/ui/`` (the page), ``/ui/static/*`` (its assets); ``/ui`` redirects."""

    @app.get("/ui", include_in_schema=False)
    def ui_redirect() -> Response:
        return RedirectResponse("/ui/", status_code=307)

    @app.get("/ui/", include_in_schema=False)
    def ui_page() -> Response:
        return FileResponse(
            STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"}
        )

    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
