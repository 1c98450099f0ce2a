"""The review console, served by the API at ``/``: one page of plain JavaScript (``console.js``)
over the API's own routes, no build step and no CDN. The API's routes stay under ``/api``,
``/ws`` and ``/docs``."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["review_console"]

STATIC = Path(__file__).parent / "static"


def review_console(app: FastAPI) -> None:
    app.mount("/console", StaticFiles(directory=STATIC), name="console")

    @app.get("/", include_in_schema=False)
    async def console() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})
