"""Sessions: pipeline runs of a project, started, watched, reviewed and cancelled on Temporal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import PlainTextResponse
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.workspace import GitError, git
from api.deps import DbDep, SettingsDep
from api.routes.projects import get_project_or_404
from api.schemas import (
    MAX_BIGINT,
    Cancelling,
    ConversationResponse,
    LiveStatus,
    ReviewAccepted,
    SessionCreate,
    SessionList,
    SessionResponse,
    SessionStarted,
)
from config import Settings
from store.models import Conversation, Project, RunSession, SessionEvent, new_id
from workflows.pipeline import PipelineWorkflow
from workflows.types import PipelineInput, PipelineOptions, Review

router = APIRouter(prefix="/api/sessions", tags=["Sessions"])

log = logging.getLogger("codexflow.api.sessions")

Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {404: {"description": "no such session"}}
UNAVAILABLE: Responses = {503: {"description": "Temporal or the database is unreachable"}}
CONFLICT: Responses = {409: {"description": "the run is not in a state that allows this"}}

TERMINAL = {"completed", "failed", "cancelled"}
QUERY_TIMEOUT_S = 5.0


async def get_session_or_404(db: DbDep, session_id: str) -> RunSession:
    row = await db.get(RunSession, session_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"session {session_id} not found")
    return row


def temporal_ui_url(settings: Settings, workflow_id: str) -> str:
    base = settings.temporal_ui_url.rstrip("/")
    return f"{base}/namespaces/{settings.temporal_namespace}/workflows/{workflow_id}"


async def temporal(request: Request) -> Client:
    client: Client = await request.app.state.temporal.get()  # TemporalUnavailable → 503
    return client


def pipeline_handle(client: Client, row: RunSession) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle(row.workflow_id)


def _response(
    row: RunSession, settings: Settings, live: LiveStatus | None = None
) -> SessionResponse:
    answer = SessionResponse.model_validate(row)
    answer.temporal_ui_url = temporal_ui_url(settings, row.workflow_id)
    answer.live = live
    return answer


def _is_commit(value: object) -> bool:
    return (
        isinstance(value, str)
        and 4 <= len(value) <= 64
        and all(c in "0123456789abcdef" for c in value)
    )


@contextlib.contextmanager
def _conflict_unless_running(session_id: str) -> Iterator[None]:
    """Temporal's answer for a run that has finished (or never existed) becomes a 409."""
    try:
        yield
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"session {session_id} is not running: {err.message}"
            ) from None
        raise


# --- create and start ----------------------------------------------------------------------------


@router.post(
    "/",
    response_model=SessionResponse,
    status_code=status.HTTP_201_CREATED,
    responses={404: {"description": "no such (active) project"}, **UNAVAILABLE},
)
async def create_session(
    body: SessionCreate, request: Request, db: DbDep, settings: SettingsDep
) -> SessionResponse:
    """Create a session (status pending); with ``start`` true, start its workflow as well."""
    await get_project_or_404(db, body.project_id)
    session_id = new_id()
    row = RunSession(
        id=session_id,
        project_id=body.project_id,
        workflow_id=f"session-{session_id}",
        title=body.title or body.user_request[:100],
        user_request=body.user_request,
        status="pending",
        options=body.options.model_dump(mode="json", exclude_unset=True) if body.options else {},
    )
    db.add(row)
    await db.commit()
    if body.start:
        await start_session(await temporal(request), db, settings, row)
    return _response(row, settings)


@router.post(
    "/{session_id}/start",
    response_model=SessionStarted,
    status_code=status.HTTP_202_ACCEPTED,
    responses={**NOT_FOUND, 409: {"description": "already started"}, **UNAVAILABLE},
)
async def start(
    session_id: str, request: Request, db: DbDep, settings: SettingsDep
) -> SessionStarted:
    """Start the session's PipelineWorkflow (its id is the session's ``workflow_id``)."""
    row = await get_session_or_404(db, session_id)
    await start_session(await temporal(request), db, settings, row)
    return SessionStarted(
        session_id=row.id,
        workflow_id=row.workflow_id,
        temporal_ui_url=temporal_ui_url(settings, row.workflow_id),
    )


async def start_session(
    client: Client, db: AsyncSession, settings: Settings, row: RunSession
) -> None:
    """Start the session's PipelineWorkflow (shared by POST /start and the WebSocket action)."""
    if row.status != "pending" or row.started_at is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"session {row.id} was already started")
    project = await db.get(Project, row.project_id)
    if project is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"project {row.project_id} not found")
    options = PipelineOptions.model_validate({"agent_model": settings.agent_model, **row.options})
    try:
        await client.start_workflow(
            PipelineWorkflow.run,
            PipelineInput(
                session_id=row.id,
                project_id=row.project_id,
                workspace=project.workspace_path,
                user_request=row.user_request,
                options=options,
            ),
            id=row.workflow_id,
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"session {row.id} was already started"
        ) from None
    # The workflow's record activities own the status from here on: only move it off pending.
    await db.execute(
        update(RunSession)
        .where(RunSession.id == row.id, RunSession.status == "pending")
        .values(status="queued")
    )
    await db.commit()
    await db.refresh(row)


# --- reading -------------------------------------------------------------------------------------


@router.get("/", response_model=SessionList)
async def list_sessions(
    db: DbDep,
    settings: SettingsDep,
    status_: Annotated[str | None, Query(alias="status", max_length=32)] = None,
    project_id: Annotated[str | None, Query(max_length=36)] = None,
    skip: Annotated[int, Query(ge=0, le=MAX_BIGINT)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> SessionList:
    query = select(RunSession)
    if status_ is not None:
        query = query.where(RunSession.status == status_)
    if project_id is not None:
        query = query.where(RunSession.project_id == project_id)
    total = await db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await db.scalars(query.order_by(RunSession.created_at.desc()).offset(skip).limit(limit))
    return SessionList(sessions=[_response(r, settings) for r in rows.all()], total=total)


@router.get(
    "/project/{project_id}",
    response_model=list[SessionResponse],
    responses={404: {"description": "no such project"}},
)
async def list_project_sessions(
    project_id: str,
    db: DbDep,
    settings: SettingsDep,
    skip: Annotated[int, Query(ge=0, le=MAX_BIGINT)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[SessionResponse]:
    """The seed's listing: a project's sessions, newest first."""
    await get_project_or_404(db, project_id, active_only=False)
    rows = await db.scalars(
        select(RunSession)
        .where(RunSession.project_id == project_id)
        .order_by(RunSession.created_at.desc())
        .offset(skip)
        .limit(limit)
    )
    return [_response(r, settings) for r in rows.all()]


@router.get("/{session_id}", response_model=SessionResponse, responses=NOT_FOUND)
async def get_session(
    session_id: str, request: Request, db: DbDep, settings: SettingsDep
) -> SessionResponse:
    """The session's row, with ``live`` (the workflow's status query) while it runs."""
    row = await get_session_or_404(db, session_id)
    live = None
    if row.status not in TERMINAL and row.status != "pending":
        live = await _live(request, row)
    return _response(row, settings, live)


async def _live(request: Request, row: RunSession) -> LiveStatus | None:
    try:
        client = await temporal(request)
        handle = pipeline_handle(client, row)
        status_ = await asyncio.wait_for(
            handle.query(PipelineWorkflow.status), timeout=QUERY_TIMEOUT_S
        )
    except Exception as err:  # the row alone is still a good answer
        log.info("no live status of %s: %s", row.workflow_id, err)
        return None
    return LiveStatus(
        state=status_.state,
        stage=status_.stage.value if status_.stage else None,
        iteration=status_.iteration,
        awaiting=status_.awaiting,
        codex_tasks=status_.codex_tasks,
        tokens_used=status_.tokens_used,
    )


@router.get(
    "/{session_id}/conversations",
    response_model=list[ConversationResponse],
    responses=NOT_FOUND,
)
async def list_conversations(session_id: str, db: DbDep) -> list[Conversation]:
    """Each stage iteration's conversation, oldest first, with its messages."""
    await get_session_or_404(db, session_id)
    rows = await db.scalars(
        select(Conversation)
        .where(Conversation.session_id == session_id)
        .options(selectinload(Conversation.messages))
        .order_by(Conversation.started_at, Conversation.id)
    )
    return list(rows.all())


# --- steering ------------------------------------------------------------------------------------


@router.post(
    "/{session_id}/review",
    response_model=ReviewAccepted,
    responses={**NOT_FOUND, **CONFLICT, **UNAVAILABLE},
)
async def review_session(
    session_id: str, body: Review, request: Request, db: DbDep
) -> ReviewAccepted:
    """Approve, request changes to, or reject the stage the run waits on (the ``review`` update)."""
    row = await get_session_or_404(db, session_id)
    if row.status == "pending":
        raise HTTPException(status.HTTP_409_CONFLICT, f"session {session_id} is not started")
    handle = pipeline_handle(await temporal(request), row)
    try:
        with _conflict_unless_running(session_id):
            await handle.execute_update(PipelineWorkflow.review, body)
    except WorkflowUpdateFailedError as err:
        reason = str(err.cause.message if hasattr(err.cause, "message") else err.cause)
        raise HTTPException(status.HTTP_409_CONFLICT, reason) from None
    return ReviewAccepted(stage=body.stage, decision=body.decision)


@router.post(
    "/{session_id}/cancel",
    response_model=Cancelling,
    status_code=status.HTTP_202_ACCEPTED,
    responses={**NOT_FOUND, **CONFLICT, **UNAVAILABLE},
)
async def cancel_session(session_id: str, request: Request, db: DbDep) -> Cancelling:
    """Ask the run to stop: running codex tasks are stopped and the session ends cancelled."""
    row = await get_session_or_404(db, session_id)
    if row.status == "pending" or row.status in TERMINAL:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"session {session_id} is {row.status}, not running"
        )
    handle = pipeline_handle(await temporal(request), row)
    with _conflict_unless_running(session_id):
        await handle.cancel()
    return Cancelling(session_id=session_id)


# --- the diff ------------------------------------------------------------------------------------


@router.get(
    "/{session_id}/diff",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/x-diff": {}}, "description": "a unified diff"},
        404: {"description": "no such session, or no finished stage (iteration) yet"},
    },
)
async def session_diff(
    session_id: str,
    db: DbDep,
    stage: Annotated[str | None, Query(max_length=32)] = None,
    iteration: Annotated[int | None, Query(ge=1)] = None,
) -> PlainTextResponse:
    """What the session changed in the workspace: all of it, a stage's iterations, or one."""
    row = await get_session_or_404(db, session_id)
    events = await db.scalars(
        select(SessionEvent)
        .where(SessionEvent.session_id == session_id, SessionEvent.kind == "stage.completed")
        .order_by(SessionEvent.id)
    )
    stages = [
        e.payload
        for e in events.all()
        if _is_commit(e.payload.get("commit"))
        and _is_commit(e.payload.get("parent"))
        and (stage is None or e.payload.get("stage") == stage)
        and (iteration is None or e.payload.get("iteration") == iteration)
    ]
    if not stages:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no finished stage matches")
    project = await db.get(Project, row.project_id)
    if project is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"project {row.project_id} not found")
    try:
        text = await git(
            Path(project.workspace_path), "diff", stages[0]["parent"], stages[-1]["commit"]
        )
    except (GitError, OSError) as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the diff is unavailable: {err}") from None
    return PlainTextResponse(text, media_type="text/x-diff")
