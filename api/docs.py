"""``/docs`` (Swagger UI) and ``/redoc`` with their assets served by the API itself: FastAPI's own
pages load them from a CDN and are blank without the internet. The assets are the ones the
``fastapi-offline`` package ships."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["offline_docs"]

ASSETS = Path(fastapi_offline.__file__).parent / "static"
_AT = "/docs/assets"


def offline_docs(app: FastAPI) -> None:
    app.mount(_AT, StaticFiles(directory=ASSETS), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} — API",
            swagger_js_url=f"{_AT}/swagger-ui-bundle.js",
            swagger_css_url=f"{_AT}/swagger-ui.css",
            swagger_favicon_url=f"{_AT}/favicon.png",
            oauth2_redirect_url=redirect_url,
        )

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} — API",
            redoc_js_url=f"{_AT}/redoc.standalone.js",
            redoc_favicon_url=f"{_AT}/favicon.png",
            with_google_fonts=False,
        )
