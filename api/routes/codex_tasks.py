"""Codex tasks: one codex run each, with its output events paged by id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy import select

from api.deps import DbDep
from api.schemas import MAX_BIGINT, CodexOutputEvent, CodexTaskResponse
from core.vocabulary import EventKind
from store.models import CodexTask, SessionEvent

router = APIRouter(prefix="/api/codex-tasks", tags=["Codex tasks"])


@router.get(
    "/{task_id}",
    response_model=CodexTaskResponse,
    responses={404: {"description": "no such codex task"}},
)
async def get_codex_task(
    task_id: str,
    db: DbDep,
    after_id: Annotated[
        int, Query(ge=0, le=MAX_BIGINT, description="events with a larger id only")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> CodexTaskResponse:
    """The task's row plus a page of its output (``codex.event`` and ``codex.stderr`` events);
    follow ``next_after_id``."""
    row = await db.get(CodexTask, task_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"codex task {task_id} not found")
    events = (
        await db.scalars(
            select(SessionEvent)
            .where(
                SessionEvent.session_id == (row.session_id or row.id),
                SessionEvent.codex_task_id == task_id,
                SessionEvent.kind.in_((EventKind.CODEX_EVENT, EventKind.CODEX_STDERR)),
                SessionEvent.id > after_id,
            )
            .order_by(SessionEvent.id)
            .limit(limit)
        )
    ).all()
    answer = CodexTaskResponse.model_validate(row)
    answer.output = [
        CodexOutputEvent(
            id=e.id, kind=e.kind, attempt=e.attempt, payload=e.payload, created_at=e.created_at
        )
        for e in events
    ]
    answer.next_after_id = events[-1].id if events else after_id
    return answer
