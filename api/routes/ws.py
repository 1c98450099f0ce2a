"""WebSockets: a session's live events and actions, and one codex task's output as a terminal.

Authentication: the API token as ``?token=`` or an ``Authorization: Bearer`` header. Without a
valid one the socket is accepted only to be closed at once with code 4401 (a code browsers can
see; a refused handshake shows them only 1006), before anything is read or streamed.

``/ws/session/{session_id}`` speaks the seed's messages. Every socket on a session is sent, as
the run goes, ``{"type": "workflow_progress", "stage", "message"}`` (a stage started or finished,
a review awaited, a move) and ``{"type": "workflow_complete", "result"}`` at its end. It takes
JSON messages ``{"action": ...}``:

- ``ping`` → ``{"type": "pong"}``
- ``start_workflow`` → starts the session's pipeline as ``POST /api/sessions/{id}/start`` does;
  with ``project_id`` and ``user_request`` (and ``options``) for a session id not yet known, as
  the seed's clients send it, the session is made first; ``{"type": "workflow_started", ...}``
- ``subscribe_codex`` (``task_id`` optional, ``after_id`` optional) → each line of codex's
  output as the seed's ``{"type": "codex_output", "task_id", "line"}`` and, richer, every event
  of the session (or of the one codex task) as ``{"type": "event", id, kind, payload, ...}``,
  then ``{"type": "complete"}`` after the end event. Streams run in background tasks: the
  socket keeps answering other actions.
- ``chat`` (``agent_role``, ``message``, ``project_id``) → ``{"type": "agent_message", ...}``
- anything else → ``{"type": "error", "message": ...}``

``/ws/terminal/{task_id}`` sends each line of the codex task's output as ``{"type": "output",
"stream": "stdout" | "stderr", "line", "event": <payload>}``, through its retries, and ``{"type": "complete"}`` when its last
attempt ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, HTTPException, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from starlette.websockets import WebSocketState

from api.deps import token_matches
from api.schemas import SessionCreate
from api.services import new_session_row, send_chat, start_session
from api.state import api_state
from api.streams import StreamTarget, event_json, follow_target, resolve_target
from core.vocabulary import EventKind
from store.events import Event
from store.models import CodexTask, RunSession

__all__ = ["router"]

log = logging.getLogger("codexflow.api")

router = APIRouter(prefix="/ws", tags=["WebSockets"])

_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,35}")  # a session row's id
UNAUTHORIZED = 4401
NOT_FOUND = 4404
TRY_AGAIN_LATER = 1013


def _presented_token(websocket: WebSocket) -> str | None:
    header = websocket.headers.get("authorization")
    if header:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and credentials:
            return credentials.strip()
    return websocket.query_params.get("token")


@contextlib.asynccontextmanager
async def _admitted(websocket: WebSocket) -> AsyncIterator[bool]:
    """Accept the socket; close it at once (and yield False) with 4401 without a valid token, or
    1013 (try again later) when every stream slot is taken."""
    state = api_state(websocket)
    authorized = token_matches(state.settings, _presented_token(websocket))
    await websocket.accept()
    if not authorized:
        await websocket.close(code=UNAUTHORIZED, reason="missing or invalid token")
        yield False
        return
    if not state.streams.take():
        await websocket.close(code=TRY_AGAIN_LATER, reason="too many streams are open")
        yield False
        return
    try:
        yield True
    finally:
        state.streams.give_back()


class _Socket:
    """One connection: sends serialized by a lock, background tasks cancelled at the end."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()
        self.streams: dict[str, asyncio.Task[None]] = {}

    async def send(self, message: dict[str, Any]) -> None:
        async with self.lock:
            if self.websocket.application_state == WebSocketState.CONNECTED:
                await self.websocket.send_json(message)

    def spawn(self, work: Callable[[], Awaitable[None]], name: str) -> asyncio.Task[None]:
        async def run() -> None:
            try:
                await work()
            except (WebSocketDisconnect, RuntimeError) as err:
                log.debug("websocket task %s ended: %r", name, err)
            except HTTPException as err:
                with contextlib.suppress(Exception):
                    await self.send(
                        {"type": "error", "message": err.detail, "status": err.status_code}
                    )
            except Exception as err:
                log.exception("websocket task %s failed", name)
                with contextlib.suppress(Exception):
                    await self.send({"type": "error", "message": f"{type(err).__name__}: {err}"})

        task = asyncio.create_task(run(), name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


@router.websocket("/session/{session_id}")
async def session_socket(websocket: WebSocket, session_id: str) -> None:
    async with _admitted(websocket) as admitted:
        if admitted:
            await _serve_session(websocket, session_id)


async def _serve_session(websocket: WebSocket, session_id: str) -> None:
    if not _SESSION_ID.fullmatch(session_id):
        await websocket.close(code=NOT_FOUND, reason=f"session {session_id!r} not found")
        return
    state = api_state(websocket)
    sock = _Socket(websocket)
    after_id = await state.events.last_id(session_id)
    sock.spawn(lambda: _progress(sock, session_id, after_id), f"progress-{session_id}")
    try:
        while True:
            try:
                data = await websocket.receive_json()
            except WebSocketDisconnect:
                return
            except ValueError:
                await sock.send({"type": "error", "message": "messages must be JSON objects"})
                continue
            if not isinstance(data, dict):
                await sock.send({"type": "error", "message": "messages must be JSON objects"})
                continue
            await _dispatch(sock, session_id, data)
    finally:
        await sock.close()


async def _dispatch(sock: _Socket, session_id: str, data: dict[str, Any]) -> None:
    action = data.get("action")
    state = api_state(sock.websocket)
    if action == "ping":
        await sock.send({"type": "pong"})
    elif action == "subscribe_codex":
        await _subscribe(sock, session_id, data)
    elif action == "start_workflow":
        sock.spawn(lambda: _start_workflow(sock, session_id, data), f"start-{session_id}")
    elif action == "chat":
        project_id, role, message = (
            data.get("project_id"),
            data.get("agent_role"),
            data.get("message"),
        )
        if not (isinstance(project_id, str) and isinstance(role, str) and isinstance(message, str)):
            await sock.send(
                {"type": "error", "message": "chat needs project_id, agent_role and message"}
            )
            return

        async def chat() -> None:
            reply = await send_chat(state, project_id, role, message)
            await sock.send(
                {
                    "type": "agent_message",
                    "agent_role": reply.role.value,
                    "content": reply.response,
                    "turn": reply.turn,
                }
            )

        sock.spawn(chat, f"chat-{project_id}-{role}")
    else:
        await sock.send({"type": "error", "message": f"unknown action {action!r}"})


async def _subscribe(sock: _Socket, session_id: str, data: dict[str, Any]) -> None:
    task_id = data.get("task_id")
    after_id = data.get("after_id", 0)
    if task_id is not None and not isinstance(task_id, str):
        await sock.send({"type": "error", "message": "task_id must be a string"})
        return
    if not isinstance(after_id, int) or after_id < 0:
        await sock.send({"type": "error", "message": "after_id must be a non-negative integer"})
        return
    target = StreamTarget(session_id, codex_task_id=task_id)
    key = task_id or ""
    running = sock.streams.get(key)
    if running is not None and not running.done():
        await sock.send({"type": "subscribed", "task_id": task_id, "already": True})
        return
    hub = api_state(sock.websocket).hub

    async def stream() -> None:
        async with contextlib.aclosing(follow_target(hub, target, after_id)) as followed:
            async for event in followed:
                assert event is not None  # no keepalive asked for
                if (line := _line(event)) is not None:
                    await sock.send(
                        {"type": "codex_output", "task_id": event.codex_task_id, "line": line}
                    )
                await sock.send({"type": "event", **event_json(event)})
        await sock.send({"type": "complete", "task_id": task_id})

    await sock.send({"type": "subscribed", "task_id": task_id})
    sock.streams[key] = sock.spawn(stream, f"events-{session_id}-{key}")


async def _start_workflow(sock: _Socket, session_id: str, data: dict[str, Any]) -> None:
    # The same path as POST /api/sessions/ (when the seed's client names a new session) and
    # POST /api/sessions/{id}/start.
    state = api_state(sock.websocket)
    async with state.db() as db:
        row = await db.get(RunSession, session_id)
        if row is None:
            if "project_id" not in data or "user_request" not in data:
                raise HTTPException(404, f"session {session_id} not found")
            try:
                body = SessionCreate.model_validate(
                    {k: data[k] for k in ("project_id", "user_request", "options") if k in data}
                )
            except ValidationError as err:
                raise HTTPException(422, f"start_workflow: {err}") from None
            row = await new_session_row(db, body, session_id)
        await start_session(state, db, row)
        await sock.send(
            {"type": "workflow_started", "session_id": row.id, "workflow_id": row.workflow_id}
        )


async def _progress(sock: _Socket, session_id: str, after_id: int) -> None:
    """The seed's ``workflow_progress`` and ``workflow_complete`` messages, from the session's log
    (every socket on the session gets them, through the hub's one follower of it)."""
    hub = api_state(sock.websocket).hub
    target = StreamTarget(session_id)
    async with contextlib.aclosing(follow_target(hub, target, after_id)) as followed:
        async for event in followed:
            if event is not None and (message := _seed_message(event)) is not None:
                await sock.send(message)


def _seed_message(event: Event) -> dict[str, Any] | None:
    p = event.payload
    match event.kind:
        case EventKind.STAGE_STARTED:
            return _progressed(p["stage"], f"{p['stage']} started (iteration {p['iteration']})")
        case EventKind.STAGE_COMPLETED:
            verdict = f"{p['verdict']}: " if p.get("verdict") else ""
            return _progressed(
                p["stage"], f"{p['stage']} finished — {verdict}{p.get('summary', '')}"
            )
        case EventKind.STAGE_FAILED | EventKind.STAGE_CANCELLED:
            return _progressed(
                p["stage"], f"{p['stage']} {event.kind.split('.')[1]}: {p.get('error')}"
            )
        case EventKind.REVIEW_AWAITED | EventKind.BUDGET_PAUSED:
            return _progressed(p["stage"], f"waiting for a review of {p['stage']}")
        case EventKind.SESSION_MOVED:
            return _progressed(None, f"host {p['from_host']} lost: carrying on on {p['to_host']}")
        case EventKind.SESSION_FINISHED:
            return {"type": "workflow_complete", "result": {"status": "completed", **p}}
        case EventKind.SESSION_FAILED | EventKind.SESSION_CANCELLED:
            status = event.kind.split(".")[1]
            return {"type": "workflow_complete", "result": {"status": status, **p}}
    return None


def _progressed(stage: str | None, message: str) -> dict[str, Any]:
    return {"type": "workflow_progress", "stage": stage, "message": message}


def _line(event: Event) -> str | None:
    """A codex output event as the line codex printed: its JSONL on stdout, or a stderr line;
    None for other events."""
    if event.kind == EventKind.CODEX_EVENT:
        return json.dumps(event.payload, ensure_ascii=False)
    if event.kind == EventKind.CODEX_STDERR:
        return str(event.payload.get("line", ""))
    return None


@router.websocket("/terminal/{task_id}")
async def terminal_socket(websocket: WebSocket, task_id: str) -> None:
    async with _admitted(websocket) as admitted:
        if admitted:
            await _serve_terminal(websocket, task_id)


async def _serve_terminal(websocket: WebSocket, task_id: str) -> None:
    state = api_state(websocket)
    async with state.db() as db:
        task = await db.get(CodexTask, task_id)
        target = await resolve_target(db, task_id) if task is not None else None
    if target is None or target.codex_task_id is None:
        await websocket.close(code=NOT_FOUND, reason=f"codex task {task_id} not found")
        return
    sock = _Socket(websocket)

    async def stream() -> None:
        async with contextlib.aclosing(follow_target(state.hub, target)) as followed:
            async for event in followed:
                if event is None:
                    continue
                if (line := _line(event)) is not None:
                    stream_name = "stderr" if event.kind == EventKind.CODEX_STDERR else "stdout"
                    await sock.send(
                        {
                            "type": "output",
                            "stream": stream_name,
                            "line": line,
                            "event": event.payload,
                            "id": event.id,
                        }
                    )
                elif target.is_end(event):
                    await sock.send(
                        {"type": "complete", "status": event.payload.get("status"), "id": event.id}
                    )
        async with sock.lock:
            await websocket.close()

    streaming = sock.spawn(stream, f"terminal-{task_id}")
    try:
        # Read (and ignore) messages so that a disconnect is noticed and ends the stream.
        while not streaming.done():
            receiving = asyncio.ensure_future(websocket.receive())
            done, _ = await asyncio.wait(
                {receiving, streaming}, return_when=asyncio.FIRST_COMPLETED
            )
            if receiving not in done:
                receiving.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await receiving
                break
            if receiving.result()["type"] == "websocket.disconnect":
                break
    finally:
        await sock.close()
