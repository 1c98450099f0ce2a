"""Sessions: pipeline runs of a project, started, watched, reviewed and cancelled on Temporal."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import PlainTextResponse
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from api.deps import (
    DbDep,
    SessionDep,
    SettingsDep,
    StateDep,
    TemporalDep,
    project_or_404,
)
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
from api.services import conflict_unless_running, send_review, start_session
from config import Settings
from core.git import GitError, UntrustedConfig
from core.vocabulary import (
    FINISHED,
    EventKind,
    SessionStatus,
    session_workflow_id,
    temporal_ui_url,
)
from core.workspaces import repo_of
from store.models import Conversation, Project, RunSession, SessionEvent, new_id
from workflows.pipeline import PipelineWorkflow
from workflows.types.review import Review

router = APIRouter(prefix="/api/sessions", tags=["Sessions"])

log = logging.getLogger("codexflow.api.sessions")

Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {404: {"description": "no such session"}}
UNAVAILABLE: Responses = {503: {"description": "Temporal or the database is unreachable"}}
CONFLICT: Responses = {409: {"description": "the run is not in a state that allows this"}}

QUERY_TIMEOUT_S = 5.0


def ui_link(settings: Settings, workflow_id: str) -> str:
    return temporal_ui_url(settings.temporal_ui_url, settings.temporal_namespace, workflow_id)


def _response(
    row: RunSession, settings: Settings, live: LiveStatus | None = None
) -> SessionResponse:
    answer = SessionResponse.model_validate(row)
    answer.temporal_ui_url = ui_link(settings, row.workflow_id)
    answer.live = live
    return answer


def _is_commit(value: object) -> bool:
    return (
        isinstance(value, str)
        and 4 <= len(value) <= 64
        and all(c in "0123456789abcdef" for c in value)
    )


# --- create and start ----------------------------------------------------------------------------


@router.post(
    "/",
    response_model=SessionResponse,
    status_code=status.HTTP_201_CREATED,
    responses={404: {"description": "no such (active) project"}, **UNAVAILABLE},
)
async def create_session(body: SessionCreate, db: DbDep, state: StateDep) -> SessionResponse:
    """Create a session (status pending); with ``start`` true, start its workflow as well."""
    if body.options is not None:
        try:  # a run may tighten the operator's sandbox, never loosen it
            state.settings.sandbox_for(body.options.codex_sandbox)
        except ValueError as err:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err)) from None
    await project_or_404(db, body.project_id)
    session_id = new_id()
    row = RunSession(
        id=session_id,
        project_id=body.project_id,
        workflow_id=session_workflow_id(session_id),
        title=body.title or body.user_request[:100],
        user_request=body.user_request,
        status=SessionStatus.PENDING,
        options=body.options.model_dump(mode="json", exclude_unset=True) if body.options else {},
    )
    db.add(row)
    await db.commit()
    if body.start:
        await start_session(state, db, row)
    return _response(row, state.settings)


@router.post(
    "/{session_id}/start",
    response_model=SessionStarted,
    status_code=status.HTTP_202_ACCEPTED,
    responses={**NOT_FOUND, 409: {"description": "already started"}, **UNAVAILABLE},
)
async def start(row: SessionDep, db: DbDep, state: StateDep) -> SessionStarted:
    """Start the session's PipelineWorkflow (its id is the session's ``workflow_id``)."""
    await start_session(state, db, row)
    return SessionStarted(
        session_id=row.id,
        workflow_id=row.workflow_id,
        temporal_ui_url=ui_link(state.settings, row.workflow_id),
    )


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
    await project_or_404(db, project_id, active_only=False)
    rows = await db.scalars(
        select(RunSession)
        .where(RunSession.project_id == project_id)
        .order_by(RunSession.created_at.desc())
        .offset(skip)
        .limit(limit)
    )
    return [_response(r, settings) for r in rows.all()]


@router.get("/{session_id}", response_model=SessionResponse, responses=NOT_FOUND)
async def get_session(row: SessionDep, state: StateDep) -> SessionResponse:
    """The session's row, with ``live`` (the workflow's status query) while it runs."""
    live = None
    if row.status not in FINISHED and row.status != SessionStatus.PENDING:
        live = await _live(state, row)
    return _response(row, state.settings, live)


async def _live(state: StateDep, row: RunSession) -> LiveStatus | None:
    try:
        client = await state.temporal.get()
        handle = client.get_workflow_handle(row.workflow_id)
        async with asyncio.timeout(QUERY_TIMEOUT_S):
            status_ = await handle.query(PipelineWorkflow.status)
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
async def list_conversations(row: SessionDep, db: DbDep) -> list[Conversation]:
    """Each stage iteration's conversation, oldest first, with its messages."""
    rows = await db.scalars(
        select(Conversation)
        .where(Conversation.session_id == row.id)
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
async def review_session(body: Review, row: SessionDep, state: StateDep) -> ReviewAccepted:
    """Approve, request changes to, or reject the stage the run waits on (the ``review`` update)."""
    # Temporal is reached only once the body is valid: a bad review is a 422 whatever else holds.
    await send_review(await state.temporal.get(), row, body)
    return ReviewAccepted(stage=body.stage, decision=body.decision)


@router.post(
    "/{session_id}/cancel",
    response_model=Cancelling,
    status_code=status.HTTP_202_ACCEPTED,
    responses={**NOT_FOUND, **CONFLICT, **UNAVAILABLE},
)
async def cancel_session(row: SessionDep, client: TemporalDep) -> Cancelling:
    """Ask the run to stop: running codex tasks are stopped and the session ends cancelled."""
    if row.status == SessionStatus.PENDING or row.status in FINISHED:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"session {row.id} is {row.status}, not running"
        )
    with conflict_unless_running(row.id):
        await client.get_workflow_handle(row.workflow_id).cancel()
    return Cancelling(session_id=row.id)


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
    row: SessionDep,
    db: DbDep,
    settings: SettingsDep,
    stage: Annotated[str | None, Query(max_length=32)] = None,
    iteration: Annotated[int | None, Query(ge=1)] = None,
) -> PlainTextResponse:
    """What the session changed in the workspace: all of it, a stage's iterations, or one."""
    events = await db.scalars(
        select(SessionEvent)
        .where(SessionEvent.session_id == row.id, SessionEvent.kind == EventKind.STAGE_COMPLETED)
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
        repo = repo_of(settings, Path(project.workspace_path))
        text = await repo.diff(stages[0]["parent"], stages[-1]["commit"])
    except UntrustedConfig as err:
        raise HTTPException(status.HTTP_409_CONFLICT, f"the diff is refused: {err}") from None
    except (GitError, OSError) as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the diff is unavailable: {err}") from None
    return PlainTextResponse(text, media_type="text/x-diff")
