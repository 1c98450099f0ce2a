"""Live session events as Server-Sent Events, resumable with ``Last-Event-ID``."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, status
from fastapi.responses import StreamingResponse

from api.deps import StateDep
from api.streams import event_json, follow_batches, resolve_target
from store.events import Event

__all__ = ["KEEPALIVE_S", "router"]

router = APIRouter(prefix="/api/sessions", tags=["Events"])

KEEPALIVE_S = 15.0
"""Seconds without an event after which the SSE stream sends a ``: keepalive`` comment."""


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
    state: StateDep,
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
    async with state.db() as db:
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

    if not state.streams.take():
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"{state.streams.limit} streams are open (CODEXFLOW_MAX_STREAMS); try again later",
            headers={"Retry-After": "5"},
        )

    async def body() -> AsyncIterator[str]:
        try:
            async with contextlib.aclosing(
                follow_batches(state.hub, target, start, keepalive=KEEPALIVE_S)
            ) as batches:
                async for batch in batches:
                    if batch is None:
                        yield ": keepalive\n\n"
                    else:  # each event's frame is made once for all its subscribers
                        yield "".join(state.frames.get(event.id, _sse, event) for event in batch)
        finally:
            state.streams.give_back()

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
