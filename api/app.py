"""The FastAPI application: ``create_app(settings)``; ``codexflow api`` serves it with uvicorn."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request, Response, status
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.requests import HTTPConnection
from temporalio.service import RPCError, RPCStatusCode

from api.console import review_console
from api.deps import require_token, require_token_or_query
from api.docs import offline_docs
from api.guard import OVERLOADED, Guard
from api.openapi import openapi_for
from api.routes import (
    agents,
    codec,
    codex_tasks,
    events,
    files,
    health,
    projects,
    sessions,
    ws,
)
from api.slashes import BothSlashes
from api.state import (
    ApiState,
    StreamSlots,
    TemporalConnector,
    TemporalUnavailable,
    session_answers,
)
from config import Settings, get_settings
from observability.api_metrics import CONTENT_TYPE_LATEST, ApiMetrics, MetricsMiddleware
from observability.logs import bind_log_ids
from store.db import make_engine, make_sessionmaker
from store.events import EventLog
from store.payloads import DatabasePayloads
from store.schema import check_schema

__all__ = ["create_app"]

log = logging.getLogger("codexflow.api")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await check_schema(settings)
        engine = make_engine(settings.database_url, **settings.db_pool())
        events = EventLog(engine)
        answers, hub = session_answers(events)
        app.state.api = ApiState(
            settings=settings,
            db=make_sessionmaker(engine),
            temporal=TemporalConnector(settings),
            events=events,
            hub=hub,
            answers=answers,
            streams=StreamSlots(settings.max_streams),
            payloads=DatabasePayloads(settings.database_url),
        )
        try:
            yield
        finally:
            await app.state.api.payloads.close()
            await engine.dispose()

    app = FastAPI(
        title="codexflow",
        summary="Durable multi-agent software delivery: Planner → Builder → QA → ProdReady on Temporal",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(_tag_logs)],
        redirect_slashes=False,  # BothSlashes instead
        # Operation ids as generated clients name their calls: create_project, not
        # create_project_api_projects_post (route names are unique: a test holds them so).
        generate_unique_id_function=lambda route: route.name,
        docs_url=None,  # served by api/docs.py, from the package: no CDN
        redoc_url=None,
    )
    offline_docs(app)
    review_console(app)
    app.openapi = lambda: openapi_for(app)  # type: ignore[method-assign]
    app.add_middleware(
        CORSMiddleware,
        allow_origins=[*settings.cors_origins, settings.temporal_ui_origin],
        allow_methods=["*"],
        allow_headers=["*"],
    )
    app.add_middleware(BothSlashes, router=app.router)
    # Before anything reads a body: host, origin, token and size (see api/guard.py).
    app.add_middleware(Guard, settings=settings)
    # Outermost (added last): it sees every answer, CORS preflights and errors included.
    app.state.metrics = ApiMetrics()
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(require_token)])
    async def metrics(request: Request) -> Response:
        """Prometheus metrics (text format); the bearer token when one is configured."""
        body = await request.app.state.metrics.render(request.app.state.api.db)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    app.include_router(health.router)
    app.include_router(codec.router)  # the key in its path stands for the token
    for router in (projects.router, files.router, sessions.router, codex_tasks.router):
        app.include_router(router, dependencies=[Depends(require_token)])
    app.include_router(agents.router, dependencies=[Depends(require_token)])
    # EventSource and WebSocket clients cannot send headers: these take ?token= as well.
    app.include_router(events.router, dependencies=[Depends(require_token_or_query)])
    app.include_router(ws.router)  # authenticates in the handlers (close code 4401)
    _error_handlers(app)
    return app


async def _tag_logs(connection: HTTPConnection) -> None:
    """Lines logged while handling a request about a session carry its id (JSON logs)."""
    if session_id := connection.path_params.get("session_id"):
        bind_log_ids(session_id=session_id)


def _error_handlers(app: FastAPI) -> None:
    """Unreachable dependencies answer 503 with a message, never a 500 with a stack trace."""

    @app.exception_handler(PoolTimeout)
    async def pool_exhausted(request: Request, err: Exception) -> JSONResponse:
        log.warning("no database connection for %s within the pool timeout", request.url.path)
        status_code, message, headers = OVERLOADED
        return JSONResponse({"detail": message}, status_code=status_code, headers=headers)

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    async def database_down(request: Request, err: Exception) -> JSONResponse:
        log.warning("database error on %s: %s", request.url.path, type(err).__name__)
        return JSONResponse(
            {"detail": "the database is unavailable; try again shortly"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )

    @app.exception_handler(RPCError)
    async def temporal_error(request: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, RPCError)
        if err.status == RPCStatusCode.NOT_FOUND:
            return JSONResponse({"detail": err.message}, status_code=status.HTTP_404_NOT_FOUND)
        return JSONResponse(
            {"detail": f"Temporal is unavailable: {err.message}"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )

    @app.exception_handler(TemporalUnavailable)
    async def temporal_unavailable(request: Request, err: Exception) -> JSONResponse:
        return JSONResponse(
            {"detail": f"Temporal is unavailable: {err}"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )

    @app.exception_handler(TimeoutError)
    async def temporal_timeout(request: Request, err: Exception) -> JSONResponse:
        return JSONResponse(
            {"detail": "Temporal did not answer in time"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
