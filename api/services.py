"""What the HTTP routes and the WebSocket handlers both do: start a session, review it, chat.

Each raises HTTPException with the status the caller should see (the WebSocket handlers turn it
into an ``error`` message).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import HTTPException, status
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import project_or_404
from api.schemas import SessionCreate
from api.state import ApiState
from core.archives import ArchiveRefused, unpack
from core.repos import ProjectRepos
from core.vocabulary import (
    ProjectStatus,
    Role,
    SessionStatus,
    chat_workflow_id,
    session_workflow_id,
)
from store.models import Project, RunSession
from workflows.types.calls import CHAT_SEND, CHAT_WORKFLOW, PIPELINE_REVIEW, PIPELINE_WORKFLOW
from workflows.types.chat import ChatInput, ChatMessage, ChatReply
from workflows.types.pipeline import PipelineInput, PipelineOptions
from workflows.types.review import AwaitingReview, Review

__all__ = [
    "Received",
    "UploadTooLarge",
    "conflict_unless_running",
    "project_ready_or_409",
    "received_upload",
    "role_or_404",
    "send_chat",
    "send_review",
    "start_session",
    "unpack_onto_default_branch",
]

CHUNK_BYTES = 1024 * 1024


class UploadTooLarge(ValueError):
    pass


@dataclass(frozen=True)
class Received:
    """An upload in a private temporary file (the caller removes it), its size and sha256."""

    path: Path
    size: int
    sha256: str


async def received_upload(upload: UploadFile, limit: int) -> Received:
    """The upload copied to a private temporary file, counted and hashed as it goes:
    UploadTooLarge as soon as it passes ``limit`` (nothing more is read)."""
    fd, name = tempfile.mkstemp(prefix="codexflow-upload-")
    path, digest, size = Path(name), hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await upload.read(CHUNK_BYTES):
                size += len(chunk)
                if size > limit:
                    raise UploadTooLarge(
                        f"the upload exceeds the limit of {limit} bytes (CODEXFLOW_MAX_UPLOAD_BYTES)"
                    )
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Received(path, size, digest.hexdigest())


async def unpack_onto_default_branch(
    state: ApiState, project: Project, archive: Path
) -> tuple[int, str]:
    """Unpack an archive and commit its files onto the project's default branch (added over
    what is there); the number of files and the commit. 422 for an archive that is refused."""
    settings = state.settings
    with tempfile.TemporaryDirectory(prefix="codexflow-archive-") as tmp:
        try:
            files = await asyncio.to_thread(
                unpack, archive, Path(tmp),
                max_bytes=settings.max_archive_bytes, max_entries=settings.max_archive_entries,
            )  # fmt: skip
        except ArchiveRefused as err:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"archive refused: {err}"
            ) from None
        commit = await ProjectRepos(settings).commit_files(
            project.id, project.default_branch or "main", "codexflow: archive unpacked",
            directory=Path(tmp),
        )  # fmt: skip
    return files, commit


def project_ready_or_409(project: Project) -> None:
    """Sessions and uploads need the project's repository: 409 while it is imported, or if the
    import failed."""
    if project.status == ProjectStatus.IMPORTING:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"project {project.id} is still importing its repository"
        )
    if project.status == ProjectStatus.FAILED:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"project {project.id} failed to import: {project.error}"
        )


log = logging.getLogger("codexflow.api")


async def new_session_row(db: AsyncSession, body: SessionCreate, session_id: str) -> RunSession:
    """A session (pending) of a ready project; 404/409 otherwise."""
    project_ready_or_409(await project_or_404(db, body.project_id))
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
    return row


async def start_session(state: ApiState, db: AsyncSession, row: RunSession) -> None:
    """Start the session's PipelineWorkflow (its id is the row's ``workflow_id``); 409 if it was
    started already."""
    if row.status != SessionStatus.PENDING or row.started_at is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"session {row.id} was already started")
    project = await project_or_404(db, row.project_id, active_only=False)
    project_ready_or_409(project)
    settings = state.settings
    options = PipelineOptions.model_validate({"agent_model": settings.agent_model, **row.options})
    await db.commit()  # no database connection held across the Temporal call
    client = await state.temporal.get()
    try:
        await client.start_workflow(
            PIPELINE_WORKFLOW,
            PipelineInput(
                session_id=row.id,
                project_id=row.project_id,
                user_request=row.user_request,
                options=options,
                session_url=f"{settings.api_url.rstrip('/')}/api/sessions/{row.id}",
                project_name=project.name,
            ),
            id=row.workflow_id,
            task_queue=settings.task_queue,
            # What the Web UI's list and the run's page say it is.
            static_summary=f"{project.name}: {row.user_request.splitlines()[0]}"[:200],
            static_details=_static_details(project, row, options),
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"session {row.id} was already started"
        ) from None
    # The workflow's record activities own the status from here on: only move it off pending.
    await db.execute(
        update(RunSession)
        .where(RunSession.id == row.id, RunSession.status == SessionStatus.PENDING)
        .values(status=SessionStatus.QUEUED)
    )
    await db.commit()
    await db.refresh(row)
    state.answers.forget(row.id)


def _static_details(project: Project, row: RunSession, options: PipelineOptions) -> str:
    gates = ", ".join(f"`{g.value}`" for g in options.gates) or "none"
    return "\n".join(
        [
            f"**{project.name}** (`{project.id}`) · session `{row.id}`",
            f"gates: {gates} · base: `{options.base_ref or 'default branch'}`"
            f" · delivery: {options.deliver}"
            + (f" · budget: {options.token_budget} tokens" if options.token_budget else ""),
            "",
            row.user_request[:2000],
        ]
    )


@contextlib.contextmanager
def conflict_unless_running(session_id: str) -> Iterator[None]:
    """Temporal's answer for a run that has finished (or never existed) becomes a 409."""
    try:
        yield
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"session {session_id} is not running: {err.message}"
            ) from None
        raise


async def send_review(client: Client, row: RunSession, review: Review) -> AwaitingReview:
    """The run's ``review`` update: 409 with the validator's reason when it is not awaited."""
    if row.status == SessionStatus.PENDING:
        raise HTTPException(status.HTTP_409_CONFLICT, f"session {row.id} is not started")
    handle = client.get_workflow_handle(row.workflow_id)
    try:
        with conflict_unless_running(row.id):
            return await handle.execute_update(PIPELINE_REVIEW, review, result_type=AwaitingReview)
    except WorkflowUpdateFailedError as err:
        reason = str(err.cause.message if hasattr(err.cause, "message") else err.cause)
        raise HTTPException(status.HTTP_409_CONFLICT, reason) from None


def role_or_404(agent_role: str) -> Role:
    try:
        return Role(agent_role)
    except ValueError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"agent {agent_role!r} not found") from None


async def send_chat(state: ApiState, project_id: str, agent_role: str, message: str) -> ChatReply:
    """Send ``message`` to the project's chat with ``agent_role``, starting the chat if needed.

    404 for an unknown project or role, 409 when the chat refuses the message, 502 when the turn
    fails.
    """
    role = role_or_404(agent_role)
    async with state.db() as db:
        project_ready_or_409(await project_or_404(db, project_id))
    settings = state.settings
    client = await state.temporal.get()

    async def attempt() -> ChatReply:
        start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            CHAT_WORKFLOW,
            ChatInput(
                project_id=project_id,
                role=role,
                agent_model=settings.agent_model,
            ),
            id=chat_workflow_id(project_id, role),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            task_queue=settings.task_queue,
        )
        return await client.execute_update_with_start_workflow(
            CHAT_SEND,
            ChatMessage(message=message),
            start_workflow_operation=start,
            result_type=ChatReply,
        )

    for tries in (1, 2):
        try:
            return await attempt()
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            reason = str(cause) if cause is not None else str(err)
            if isinstance(cause, ApplicationError) and cause.type == "ChatTurnFailed":
                raise HTTPException(status.HTTP_502_BAD_GATEWAY, reason) from None
            if tries == 1 and "continuing as new" in reason:
                log.info(
                    "chat %s is continuing as new; sending again",
                    chat_workflow_id(project_id, role),
                )
                await asyncio.sleep(0.5)  # let the new run start
                continue
            raise HTTPException(status.HTTP_409_CONFLICT, reason) from None
    raise AssertionError("unreachable")  # pragma: no cover
