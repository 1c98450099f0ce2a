"""Sessions: pipeline runs of a project, started, watched, reviewed and cancelled on Temporal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import FileResponse, PlainTextResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload
from starlette.background import BackgroundTask
from temporalio.client import WorkflowFailureError

from api.deps import (
    DbDep,
    SessionDep,
    SettingsDep,
    StateDep,
    TemporalDep,
    project_or_404,
    session_or_404,
)
from api.schemas import (
    MAX_BIGINT,
    Cancelling,
    ConversationResponse,
    LiveStatus,
    PushRequest,
    ReviewAccepted,
    SessionCreate,
    SessionList,
    SessionResponse,
    SessionStarted,
)
from api.services import (
    conflict_unless_running,
    new_session_row,
    send_review,
    start_session,
)
from config import Settings
from core.errors import innermost_reason
from core.git import GitError, UntrustedConfig
from core.repos import ProjectRepos
from core.vocabulary import (
    FINISHED,
    EventKind,
    SessionStatus,
    temporal_ui_url,
)
from store.models import Conversation, RunSession, SessionEvent, new_id
from workflows.types.calls import DELIVERY_WORKFLOW, PIPELINE_STATUS
from workflows.types.pipeline import PipelineStatus
from workflows.types.repository import Delivery, PushInput
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
    row = await new_session_row(db, body, new_id())
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
async def get_session(session_id: str, state: StateDep) -> Response:
    """The session's row, with ``live`` (the workflow's status query) while it runs. Clients
    poll this: one answer per session is made at a time and shared for half a second (up to a
    second while the next is made)."""

    async def answer() -> bytes:
        async with state.db() as db:  # closed before Temporal is asked
            row = await session_or_404(db, session_id)
        live = None
        if row.status not in FINISHED and row.status != SessionStatus.PENDING:
            live = await _live(state, row)
        return _response(row, state.settings, live).model_dump_json().encode()

    # Shared as its JSON: the clients polling a session cost the API no serialising each.
    body: bytes = await state.answers.get(session_id, answer)
    return Response(body, media_type="application/json")


async def _live(state: StateDep, row: RunSession) -> LiveStatus | None:
    try:
        client = await state.temporal.get()
        handle = client.get_workflow_handle(row.workflow_id)
        async with asyncio.timeout(QUERY_TIMEOUT_S):
            status_ = await handle.query(PIPELINE_STATUS, result_type=PipelineStatus)
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
    state.answers.forget(row.id)  # the reviewer's next read says the run goes on
    return ReviewAccepted(stage=body.stage, decision=body.decision)


@router.post(
    "/{session_id}/cancel",
    response_model=Cancelling,
    status_code=status.HTTP_202_ACCEPTED,
    responses={**NOT_FOUND, **CONFLICT, **UNAVAILABLE},
)
async def cancel_session(row: SessionDep, client: TemporalDep, state: StateDep) -> Cancelling:
    """Ask the run to stop: running codex tasks are stopped and the session ends cancelled."""
    if row.status == SessionStatus.PENDING or row.status in FINISHED:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"session {row.id} is {row.status}, not running"
        )
    with conflict_unless_running(row.id):
        await client.get_workflow_handle(row.workflow_id).cancel()
    state.answers.forget(row.id)
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
    with _from_the_repository("diff"):
        central = ProjectRepos(settings).central(row.project_id)
        text = await central.diff(stages[0]["parent"], stages[-1]["commit"])
    return PlainTextResponse(text, media_type="text/x-diff")


# --- delivery ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _from_the_repository(what: str) -> Iterator[None]:
    """git's refusals and failures as HTTP answers: 409 for a config it refuses, 404 else."""
    try:
        yield
    except UntrustedConfig as err:
        raise HTTPException(status.HTTP_409_CONFLICT, f"the {what} is refused: {err}") from None
    except (GitError, OSError) as err:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"the {what} is unavailable: {err}"
        ) from None


def _branch_or_409(row: RunSession) -> tuple[str, str]:
    if not (row.branch and row.base_commit):
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"session {row.id} has no branch yet (it has not started)"
        )
    return row.branch, row.base_commit


@router.get(
    "/{session_id}/patch",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {}}, "description": "an mbox: `git am` it on base_commit"},
        **NOT_FOUND,
        **CONFLICT,
    },
)
async def session_patch(row: SessionDep, settings: SettingsDep) -> PlainTextResponse:
    """The session's commits as a ``git format-patch`` mbox that ``git am`` applies on its
    ``base_commit``."""
    branch, base = _branch_or_409(row)
    with _from_the_repository("patch"):
        central = ProjectRepos(settings).central(row.project_id)
        text = await central.run(
            "format-patch", "--stdout", "--no-ext-diff", "--no-textconv", f"{base}..{branch}"
        )
    return PlainTextResponse(text, media_type="text/plain")


@router.get(
    "/{session_id}/bundle",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "a git bundle"},
        **NOT_FOUND,
        **CONFLICT,
    },
)
async def session_bundle(row: SessionDep, settings: SettingsDep) -> FileResponse:
    """A git bundle of the session's branch: ``git clone session.bundle`` gives its history.
    Streamed from a temporary file, removed once sent."""
    branch, _ = _branch_or_409(row)
    tmp = Path(tempfile.mkdtemp(prefix="codexflow-bundle-"))
    bundle = tmp / "session.bundle"
    try:
        with _from_the_repository("bundle"):
            central = ProjectRepos(settings).central(row.project_id)
            await central.run("bundle", "create", "-q", str(bundle), f"refs/heads/{branch}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FileResponse(
        bundle,
        media_type="application/octet-stream",
        filename=f"{branch.replace('/', '-')}.bundle",
        background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True),
    )


@router.post(
    "/{session_id}/push",
    response_model=Delivery,
    responses={**NOT_FOUND, **CONFLICT, **UNAVAILABLE, 502: {"description": "the push failed"}},
)
async def push_session(
    row: SessionDep,
    state: StateDep,
    body: PushRequest | None = None,
) -> Delivery:
    """Push the session's branch to the project's origin (again: nothing changes if it is there
    already); the result is recorded with the session."""
    branch, _ = _branch_or_409(row)
    client = await state.temporal.get()
    try:
        return await client.execute_workflow(
            DELIVERY_WORKFLOW,
            PushInput(
                project_id=row.project_id,
                session_id=row.id,
                branch=branch,
                remote_branch=body.remote_branch if body else None,
            ),
            id=f"deliver-{row.id}-{new_id()[:8]}",
            task_queue=state.settings.task_queue,
            result_type=Delivery,
        )
    except WorkflowFailureError as err:
        reason = innermost_reason(err)
        code = status.HTTP_409_CONFLICT if "no origin" in reason else status.HTTP_502_BAD_GATEWAY
        raise HTTPException(code, reason) from None
