"""The API's Prometheus metrics: one registry per app (tests build many apps in one process).

- ``codexflow_api_requests_total{method, route, status}`` and
  ``codexflow_api_request_duration_seconds{method, route}``: the route is the template
  (``/api/sessions/{session_id}``), never the raw path, so ids cannot explode the series; requests no
  route matched are ``route="unmatched"``. SSE streams are counted but not timed (their duration is
  how long a client watched).
- ``codexflow_api_subscribers{kind="sse"|"websocket"}``: streams open now.
- ``codexflow_sessions{status}``: sessions by status, read from the database at scrape time, so the
  numbers are right across API restarts and however many workers there are.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.vocabulary import SessionStatus
from store.models import RunSession

__all__ = ["CONTENT_TYPE_LATEST", "ApiMetrics", "MetricsMiddleware"]

log = logging.getLogger("codexflow.api")

# A ``*_created`` timestamp series beside every counter and histogram doubles the series for little:
# Prometheus derives resets itself. (A process-wide switch of prometheus_client; only we use it.)
disable_created_metrics()

# Every status a session row takes, so a status with no sessions reads 0 rather than vanishing.
SESSION_STATUSES = tuple(SessionStatus)
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "codexflow_api_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "codexflow_api_request_duration_seconds",
            "HTTP request durations (SSE streams excluded), by method and route template",
            ["method", "route"],
            registry=self.registry,
        )
        self.subscribers = Gauge(
            "codexflow_api_subscribers",
            "open live streams: Server-Sent Events and WebSockets",
            ["kind"],
            registry=self.registry,
        )
        for kind in ("sse", "websocket"):
            self.subscribers.labels(kind)
        self.sessions = Gauge(
            "codexflow_sessions",
            "sessions by status (from the database, at scrape time)",
            ["status"],
            registry=self.registry,
        )

    async def render(self, sessions: async_sessionmaker[AsyncSession]) -> bytes:
        """The exposition text, with the sessions gauge refreshed from the database first."""
        try:
            async with sessions() as db:
                rows = (
                    await db.execute(
                        select(RunSession.status, func.count()).group_by(RunSession.status)
                    )
                ).all()
        except SQLAlchemyError as err:  # the rest of the metrics are still worth serving
            log.warning("metrics: could not count sessions: %s", type(err).__name__)
            self.sessions.clear()
        else:
            counts = dict.fromkeys(SESSION_STATUSES, 0) | {status: n for status, n in rows}
            self.sessions.clear()  # no await from here on: a concurrent scrape sees all or none
            for status, n in counts.items():
                self.sessions.labels(status).set(n)
        return generate_latest(self.registry)


def _route(scope: Scope) -> str:
    # FastAPI puts the matched route in the scope (the same dict all middlewares share).
    route = scope.get("route")
    return getattr(route, "path", None) or UNMATCHED


class MetricsMiddleware:
    """Pure ASGI (no buffering, streams untouched): counts and times requests, tracks streams."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            gauge = self.metrics.subscribers.labels("websocket")
            gauge.inc()
            try:
                await self.app(scope, receive, send)
            finally:
                gauge.dec()
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        response: dict[str, Any] = {"status": 500, "sse": False}  # 500: no response started

        async def send_observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                content_type = dict(message.get("headers") or []).get(b"content-type", b"")
                if content_type.startswith(b"text/event-stream"):
                    response["sse"] = True
                    self.metrics.subscribers.labels("sse").inc()
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            route = _route(scope)
            method = scope["method"] if scope["method"] in _METHODS else "other"
            if response["sse"]:
                self.metrics.subscribers.labels("sse").dec()
            else:
                self.metrics.duration.labels(method, route).observe(time.perf_counter() - started)
            self.metrics.requests.labels(method, route, str(response["status"])).inc()
