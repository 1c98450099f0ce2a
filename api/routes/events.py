"""Live session events as Server-Sent Events, resumable with ``Last-Event-ID``.

Also the pieces the WebSocket handlers share: which log a session or codex task id is followed in,
an event's JSON form, and the bearer-or-``?token=`` check (browsers' EventSource and WebSocket
cannot send an ``Authorization`` header).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import SettingsDep, token_matches
from store.events import SESSION_END_KINDS, Event, EventHub
from store.models import CodexTask, RunSession

__all__ = [
    "KEEPALIVE_S",
    "SESSION_END_KINDS",
    "StreamTarget",
    "event_json",
    "follow_target",
    "require_token_or_query",
    "resolve_target",
    "router",
]

router = APIRouter(prefix="/api/sessions", tags=["Events"])

KEEPALIVE_S = 15.0
"""Seconds without an event after which the SSE stream sends a ``: keepalive`` comment."""

CODEX_END_KIND = "codex.finished"

_bearer = HTTPBearer(auto_error=False)


async def require_token_or_query(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    token: Annotated[
        str | None, Query(description="the API token, for clients that cannot send headers")
    ] = None,
) -> None:
    """The bearer token from the ``Authorization`` header or, failing that, ``?token=``."""
    presented = credentials.credentials if credentials else token
    if not token_matches(settings, presented):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


@dataclass(frozen=True)
class StreamTarget:
    """Where a stream's events live: ``log_key`` in the event log, optionally one codex task's."""

    log_key: str
    codex_task_id: str | None = None

    def wants(self, event: Event) -> bool:
        return self.codex_task_id is None or event.codex_task_id == self.codex_task_id

    def is_end(self, event: Event) -> bool:
        if event.kind in SESSION_END_KINDS:
            return True
        return self.codex_task_id is not None and event.kind == CODEX_END_KIND


async def resolve_target(db: AsyncSession, stream_id: str) -> StreamTarget | None:
    """A session's whole log, or one codex task's events (a standalone task logs under its id)."""
    if await db.get(RunSession, stream_id) is not None:
        return StreamTarget(stream_id)
    task = await db.get(CodexTask, stream_id)
    if task is not None:
        return StreamTarget(task.session_id or task.id, codex_task_id=task.id)
    return None


def event_json(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "kind": event.kind,
        "payload": event.payload,
        "codex_task_id": event.codex_task_id,
        "attempt": event.attempt,
        "created_at": event.created_at.isoformat(),
    }


async def follow_target(
    hub: EventHub,
    target: StreamTarget,
    after_id: int = 0,
    *,
    keepalive: float | None = None,
) -> AsyncGenerator[Event | None, None]:
    """The target's events after ``after_id`` up to and including its end event.

    With ``keepalive``, yields ``None`` whenever that many seconds pass without an event. The log is
    read by a task of its own feeding a small queue, so a timeout never interrupts a read.
    """
    queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=100)

    async def pump() -> None:
        async with contextlib.aclosing(hub.subscribe(target.log_key, after_id)) as events:
            async for event in events:
                if target.wants(event):
                    await queue.put(event)

    task = asyncio.create_task(pump(), name=f"follow-{target.log_key}")
    getter: asyncio.Future[Event] | None = None
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait(
                {getter, task}, timeout=keepalive, return_when="FIRST_COMPLETED"
            )
            if getter not in done:
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getter
                if task in done:
                    task.result()  # raise the follower's error
                    return
                yield None
                continue
            event = getter.result()
            yield event
            if target.is_end(event):
                return
    finally:
        for pending in (task, getter):
            if pending is not None and not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pending


def _sse(event: Event) -> str:
    data = json.dumps(event_json(event), separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n"


@router.get(
    "/{session_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "the event stream"},
        404: {"description": "no such session or codex task"},
    },
)
async def session_events(
    session_id: str,
    request: Request,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    after_id: Annotated[int, Query(ge=0, description="resume after this event id")] = 0,
) -> StreamingResponse:
    """The session's events as Server-Sent Events, from the start or after ``Last-Event-ID``.

    Each event is ``id: <id>``, ``event: <kind>``, ``data: <json>``; a ``: keepalive`` comment
    comes every ~15 s of silence. The stream ends after ``session.finished``, ``session.failed``
    or ``session.cancelled`` (for a codex task id: after its ``codex.finished``). Browsers'
    EventSource can authenticate with ``?token=``.
    """
    # A session of its own, closed at once: the stream must not hold a connection for its life.
    async with request.app.state.sessions() as db:
        target = await resolve_target(db, session_id)
    if target is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"session {session_id} not found")
    start = after_id
    if last_event_id:
        try:
            start = max(start, int(last_event_id))
        except ValueError:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, "Last-Event-ID must be an event id"
            ) from None
    hub: EventHub = request.app.state.hub

    async def body() -> AsyncIterator[str]:
        async with contextlib.aclosing(
            follow_target(hub, target, start, keepalive=KEEPALIVE_S)
        ) as events:
            async for event in events:
                yield ": keepalive\n\n" if event is None else _sse(event)

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
