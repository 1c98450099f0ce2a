"""The API's front gate: every request is checked before anything reads its body.

In order, for HTTP requests:

1. **Host** — with no token configured the API serves only the loopback names in
   ``CODEXFLOW_ALLOWED_HOSTS`` (a page on another site that rebinds its DNS to 127.0.0.1 gets 400).
2. **Origin** — with no token, a request that changes something and carries an ``Origin`` header
   must come from one of those hosts or from ``CODEXFLOW_CORS_ORIGINS`` (403 otherwise: a
   cross-site form cannot upload a file).
3. **Token** — every ``/api/`` route but ``/api/health``, and ``/metrics``, need the bearer token
   (``?token=`` too, on the event streams, which browsers open without headers): 401 before the
   body is read. The Temporal UI's codec endpoint (``/api/codec/<key>/``) has a key derived from
   the token in its path instead (``api/routes/codec.py``).
4. **Body size** — the declared ``Content-Length``, then the bytes as they stream, against one
   limit per route (uploads ``CODEXFLOW_MAX_UPLOAD_BYTES``, everything else
   ``CODEXFLOW_MAX_REQUEST_BYTES``): 413 without reading past it.
5. **Load** — at most ``CODEXFLOW_MAX_CONCURRENT_REQUESTS`` requests in progress (event streams
   are counted by ``CODEXFLOW_MAX_STREAMS`` instead): beyond, 503 with ``Retry-After`` at once,
   rather than a queue that makes every answer late.

WebSocket handshakes get the Host and Origin checks here (refused with 403) and authenticate in
their handlers, which can close with a code a browser sees.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import HTTPException, status
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config import Settings

__all__ = ["OVERLOADED", "BodyTooLarge", "Guard"]

_PUBLIC_API = frozenset({"/api/health"})
_CODEC = "/api/codec/"
_QUERY_TOKEN_PATHS = re.compile(r"^/api/sessions/[^/]+/events$")
_STREAM_PATHS = re.compile(r"^/api/(sessions|codex-tasks)/[^/]+/(events|stream)$")
OVERLOADED = (503, "the API is at capacity; try again shortly", {"retry-after": "1"})
_UPLOAD_PATHS = ("/api/files/upload/", "/api/projects")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Multipart framing around an upload's bytes (boundaries, headers, the path field).
_MULTIPART_SLACK = 64 * 1024


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"the request body exceeds the limit of {limit} bytes",
        )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _hostname(value: str) -> str:
    """The host of a ``Host`` header (``example.com:8000``, ``[::1]:8000``) or of an origin URL."""
    if "://" in value:
        return (urlsplit(value).hostname or "").lower()
    if value.startswith("["):
        return value[1 : value.find("]")].lower()
    return value.rsplit(":", 1)[0].lower() if value.count(":") == 1 else value.lower()


class Guard:
    """Pure ASGI middleware (it must run before FastAPI parses the body)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        token = settings.api_token
        self.token = token.get_secret_value().encode() if token else None
        self.hosts = {host.lower().strip("[]") for host in settings.allowed_hosts}
        self.origins = {
            o.rstrip("/") for o in [*settings.cors_origins, settings.temporal_ui_origin]
        }
        self.in_progress = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            if problem := self._host_or_origin(scope, websocket=True):
                await send({"type": "websocket.close", "code": 1008, "reason": problem[1]})
                return
        elif scope["type"] == "http":
            if problem := self._host_or_origin(scope) or self._token(scope) or self._size(scope):
                await _answer(send, *problem)
                return
            receive = self._counting(scope, receive)
            if not _STREAM_PATHS.match(scope["path"]):
                if self.in_progress >= self.settings.max_concurrent_requests:
                    await _answer(send, *OVERLOADED)
                    return
                self.in_progress += 1
                try:
                    await self.app(scope, receive, send)
                finally:
                    self.in_progress -= 1
                return
        await self.app(scope, receive, send)

    # --- the checks: each None when the request passes, else (status, message, headers) ----------

    def _host_or_origin(
        self, scope: Scope, websocket: bool = False
    ) -> tuple[int, str, dict[str, str]] | None:
        if self.token is not None:
            return None  # behind a proxy, under any name; the token protects it
        host = _hostname(_header(scope, b"host") or "")
        if host not in self.hosts:
            return 400, f"host {host!r} is not served (CODEXFLOW_ALLOWED_HOSTS)", {}
        origin = _header(scope, b"origin")
        changes = websocket or scope["method"] not in _SAFE_METHODS
        if changes and origin and origin != "null":
            if origin.rstrip("/") not in self.origins and _hostname(origin) not in self.hosts:
                return 403, f"origin {origin!r} is not allowed (CODEXFLOW_CORS_ORIGINS)", {}
        elif changes and origin == "null":
            return 403, "requests from an opaque origin are not allowed", {}
        return None

    def _token(self, scope: Scope) -> tuple[int, str, dict[str, str]] | None:
        path: str = scope["path"]
        needs = (
            path.startswith("/api/") and path not in _PUBLIC_API and not path.startswith(_CODEC)
        ) or path == "/metrics"
        if self.token is None or not needs or scope["method"] == "OPTIONS":
            return None
        presented = None
        authorization = _header(scope, b"authorization") or ""
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            presented = credentials.strip()
        elif _QUERY_TOKEN_PATHS.match(path):
            query = scope.get("query_string", b"").decode("latin-1")
            presented = next((v for k, v in parse_qsl(query) if k == "token"), None)
        if presented is not None and hmac.compare_digest(presented.encode(), self.token):
            return None
        return 401, "missing or invalid bearer token", {"www-authenticate": "Bearer"}

    def _limit(self, scope: Scope) -> int:
        if scope["path"].startswith(_UPLOAD_PATHS):
            return self.settings.max_upload_bytes + _MULTIPART_SLACK
        return self.settings.max_request_bytes

    def _size(self, scope: Scope) -> tuple[int, str, dict[str, str]] | None:
        declared = _header(scope, b"content-length")
        if declared is None:
            return None
        limit = self._limit(scope)
        if not declared.isdigit():
            return 400, "Content-Length must be a number of bytes", {}
        if int(declared) > limit:
            return 413, f"the request body exceeds the limit of {limit} bytes", {}
        return None

    def _counting(self, scope: Scope, receive: Receive) -> Receive:
        """``receive`` that raises BodyTooLarge (a 413) once the body passes its limit."""
        limit = self._limit(scope)
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        return counted


async def _answer(
    send: Callable[[Message], Awaitable[None]], code: int, detail: str, headers: dict[str, Any]
) -> None:
    """The refusal, with the connection closed: the client may still be sending a body we
    will not read."""
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw.append((b"connection", b"close"))
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": code, "headers": raw})
    await send({"type": "http.response.body", "body": body})
