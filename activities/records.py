"""Record activities: the workflows' writes to the database, each idempotent.

Row ids are derived in the workflow (session id, ``role:iteration``, codex task id), and every event
that marks a change is appended in the same transaction as the change, only when the change is new.
A retried activity therefore finds its work done and writes nothing twice. The Recorder says
whether a write changed something, so the activities count sessions and stages for the metrics
once, not once per attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from temporalio import activity

from core.vocabulary import (
    FINISHED,
    CodexFinished,
    CodexStarted,
    CodexTaskState,
    EventKind,
    ProjectStatus,
    SessionStarted,
    SessionStatus,
    StageStarted,
    StageStatus,
)
from observability import metrics
from store.db import make_sessionmaker
from store.events import EventLog, NewEvent
from store.models import CodexTask, Conversation, Message, Project, RunSession, utcnow
from workflows.types.codex import CodexResult, CodexTaskInput
from workflows.types.records import (
    ConversationRecord,
    EventRecord,
    ProjectImported,
    SessionPatch,
    SessionStart,
)
from workflows.types.repository import Delivery

__all__ = ["Recorder", "RecordActivities"]


class Recorder:
    """Database writes shared by the record activities and the codex runner."""

    def __init__(self, engine: AsyncEngine, repos_root: Path | None = None) -> None:
        self.db = make_sessionmaker(engine)
        self.events = EventLog(engine)
        self.repos_root = repos_root  # where projects made here keep their central repository

    async def _append(self, db: AsyncSession, events: Sequence[NewEvent]) -> None:
        """Append in ``db``'s transaction, so the event exists exactly when the change does."""
        await self.events.append_on(await db.connection(), events)

    # --- sessions --------------------------------------------------------------------------------

    async def start_session(self, start: SessionStart) -> bool:
        """Open the session's row; True when this call started it (False: already started)."""
        started = False
        async with self.db.begin() as db:
            if await db.get(Project, start.project_id) is None:
                central = (self.repos_root or Path("repos")) / f"{start.project_id}.git"
                db.add(Project(id=start.project_id, name=start.project_id,
                               workspace_path=str(central)))  # fmt: skip
                await db.flush()
            row = await db.get(RunSession, start.session_id)
            if row is None:
                row = RunSession(
                    id=start.session_id,
                    project_id=start.project_id,
                    workflow_id=start.workflow_id,
                    title=start.user_request[:100],
                    user_request=start.user_request,
                    options=start.options,
                )
                db.add(row)
            if row.started_at is None:
                row.status, row.started_at = SessionStatus.RUNNING, utcnow()
                await db.flush()
                await self._append(
                    db, [_event(start.session_id, EventKind.SESSION_STARTED, SessionStarted())]
                )
                started = True
        return started

    async def agents_md_saved(self, session_id: str, content: str) -> None:
        """The session's AGENTS.md as the Planner saved it (no session row, e.g. a chat: none)."""
        async with self.db.begin() as db:
            await db.execute(
                update(RunSession)
                .where(RunSession.id == session_id)
                .values(agents_md_content=content)
            )

    async def patch_session(self, patch: SessionPatch) -> SessionStatus | None:
        """Apply ``patch``; the status it set when it changed the status, else None."""
        values: dict[str, Any] = {
            k: v
            for k, v in patch.model_dump(
                include={
                    "status",
                    "current_agent",
                    "agents_md_content",
                    "final_summary",
                    "outcome",
                    "error",
                    "usage",
                    "branch",
                    "base_commit",
                    "head_commit",
                    "worktree",
                    "host",
                }  # fmt: skip
            ).items()
            if v is not None
        }
        if patch.finished:
            values["completed_at"] = utcnow()
        async with self.db.begin() as db:
            row = await db.get(RunSession, patch.session_id, with_for_update=True)
            if row is None:
                raise LookupError(f"session {patch.session_id} has no row")
            changed = any(getattr(row, k) != v for k, v in values.items() if k != "completed_at")
            if row.status in FINISHED and patch.status not in (None, row.status):
                return None  # a finished session is never reopened by a late retry
            if not changed and not (patch.finished and row.completed_at is None):
                return None
            new_status = patch.status if patch.status not in (None, row.status) else None
            await db.execute(update(RunSession).where(RunSession.id == row.id).values(**values))
            if patch.event:
                await self._append(
                    db, [NewEvent(patch.session_id, patch.event, patch.event_payload)]
                )
        return new_status

    # --- projects and deliveries ------------------------------------------------------------------

    async def project_imported(self, imported: ProjectImported) -> bool:
        """Mark the project ready or failed; True when this call changed it."""
        async with self.db.begin() as db:
            row = await db.get(Project, imported.project_id, with_for_update=True)
            if row is None or row.status != ProjectStatus.IMPORTING:
                return False
            if imported.error is None:
                row.status, row.default_branch = (
                    ProjectStatus.READY,
                    imported.default_branch or "main",
                )
            else:
                row.status, row.error = ProjectStatus.FAILED, imported.error
            row.import_progress = None
        return True

    async def project_progress(self, project_id: str, progress: str) -> None:
        """git's progress on a project's import, shown with the project while it runs."""
        async with self.db.begin() as db:
            await db.execute(
                update(Project)
                .where(Project.id == project_id, Project.status == ProjectStatus.IMPORTING)
                .values(import_progress=progress[:255])
            )

    async def project_origin(self, project_id: str) -> str | None:
        async with self.db() as db:
            row = await db.get(Project, project_id)
        return (row.repository or {}).get("url") if row is not None else None

    async def project_default_branch(self, project_id: str) -> str | None:
        async with self.db() as db:
            row = await db.get(Project, project_id)
        return row.default_branch if row is not None else None

    async def session_delivered(self, session_id: str, delivery: Delivery) -> None:
        async with self.db.begin() as db:
            await db.execute(
                update(RunSession)
                .where(RunSession.id == session_id)
                .values(delivery=delivery.model_dump(mode="json"))
            )

    # --- conversations ---------------------------------------------------------------------------

    async def record_conversation(self, record: ConversationRecord) -> float | None:
        """Open or close a stage iteration; its duration in seconds when this call closed it."""
        async with self.db.begin() as db:
            row = await db.get(Conversation, record.id, with_for_update=True)
            started = StageStarted(stage=record.role, iteration=record.iteration)
            if row is None:
                db.add(Conversation(id=record.id, session_id=record.session_id,
                                    agent_type=record.role, iteration=record.iteration))  # fmt: skip
                await db.flush()
                await self._append(
                    db, [_event(record.session_id, EventKind.STAGE_STARTED, started)]
                )
                row = await db.get(Conversation, record.id)
                assert row is not None
            # Messages as they come (the input at the start, the rest at the end): a retry or
            # a later call adds only the ones not yet written.
            known = set(
                (
                    await db.scalars(select(Message.seq).where(Message.conversation_id == row.id))
                ).all()
            )
            for seq, message in enumerate(record.messages):
                if seq not in known:
                    db.add(Message(id=f"{row.id}:{seq}", conversation_id=row.id, seq=seq,
                                   role=message.role, content=message.content,
                                   message_metadata=message.metadata))  # fmt: skip
            await db.flush()
            if record.status is StageStatus.RUNNING or row.status == record.status:
                return None
            row.status, row.ended_at, row.report = record.status, utcnow(), record.report
            duration = (row.ended_at - row.started_at).total_seconds()
            payload = started.model_dump(mode="json") | record.event_payload
            if record.status is StageStatus.COMPLETED and payload.get("commit"):
                await db.execute(
                    update(RunSession)
                    .where(RunSession.id == record.session_id)
                    .values(head_commit=payload["commit"])
                )
            await self._append(
                db, [NewEvent(record.session_id, _STAGE_END[record.status], payload)]
            )
        return duration

    # --- codex tasks (called by the codex runner) -------------------------------------------------

    async def codex_started(
        self, task: CodexTaskInput, key: str, pid: int | None, attempt: int = 1
    ) -> int:
        """Record that an execution of the task started; its attempt number. ``key`` names the
        execution (workflow run, activity, Temporal's ``attempt``): the same key again is a
        repeated call and changes nothing; a new one is the next attempt, whichever host runs it
        (a task redone on another host after its own was lost counts on from there)."""
        async with self.db.begin() as db:
            row = await db.get(CodexTask, task.task_id, with_for_update=True)
            if row is None:
                row = CodexTask(id=task.task_id, session_id=task.session_id, agent_type=task.role,
                                prompt=task.prompt, working_directory=task.workspace, attempt=0)  # fmt: skip
                db.add(row)
            elif row.attempt_key == key:
                return row.attempt  # this attempt is already recorded (never reopened)
            row.status, row.attempt_key = CodexTaskState.RUNNING, key
            row.attempt = max(row.attempt + 1, attempt)
            row.process_id, row.working_directory = pid, task.workspace
            row.started_at = row.started_at or utcnow()
            await db.flush()
            started = CodexStarted(pid=pid)
            await self._append(
                db, [self.codex_event(task, row.attempt, EventKind.CODEX_STARTED, started)]
            )
            return row.attempt

    async def codex_finished(
        self,
        task: CodexTaskInput,
        attempt: int,
        status: CodexTaskState,
        result: CodexResult | None = None,
        error: str | None = None,
        stderr_tail: str | None = None,
        final: bool = True,
    ) -> None:
        async with self.db.begin() as db:
            row = await db.get(CodexTask, task.task_id, with_for_update=True)
            if row is None or (row.status == status and row.attempt == attempt):
                return
            row.status, row.attempt, row.completed_at = status, attempt, utcnow()
            row.stderr_tail = stderr_tail
            if result is not None:
                row.exit_code, row.thread_id = result.exit_code, result.thread_id
                row.final_message, row.output_files = result.final_message, result.changed_files
                row.usage = result.usage.model_dump()
            finished = CodexFinished(status=status, final=final, error=error)
            if result is not None:
                finished.exit_code, finished.changed_files = result.exit_code, result.changed_files
            await db.flush()
            await self._append(
                db, [self.codex_event(task, attempt, EventKind.CODEX_FINISHED, finished)]
            )

    @staticmethod
    def codex_event(
        task: CodexTaskInput, attempt: int, kind: EventKind, payload: BaseModel
    ) -> NewEvent:
        return _event(task.session_id or task.task_id, kind, payload, task.task_id, attempt)


def _event(
    log_key: str,
    kind: EventKind,
    payload: BaseModel,
    codex_task_id: str | None = None,
    attempt: int | None = None,
) -> NewEvent:
    return NewEvent(log_key, kind, payload.model_dump(mode="json"), codex_task_id, attempt)


_STAGE_END = {
    StageStatus.COMPLETED: EventKind.STAGE_COMPLETED,
    StageStatus.FAILED: EventKind.STAGE_FAILED,
    StageStatus.CANCELLED: EventKind.STAGE_CANCELLED,
}


class RecordActivities:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    # Metrics are counted after the transaction committed, and only for a change this call made.

    @activity.defn(name="record_session_start")
    async def session_start(self, start: SessionStart) -> None:
        if await self.recorder.start_session(start):
            metrics.session_started()
            activity.logger.info("session %s started", start.session_id)

    @activity.defn(name="record_session")
    async def session(self, patch: SessionPatch) -> None:
        status = await self.recorder.patch_session(patch)
        if status is not None and status in FINISHED:
            metrics.session_finished(status, patch.outcome)
            activity.logger.info(
                "session %s %s%s",
                patch.session_id,
                status,
                f": {patch.outcome}" if patch.outcome else "",
            )

    @activity.defn(name="record_event")
    async def event(self, event: EventRecord) -> None:
        """An event that changes nothing in the session's row (at least once: a retry after a
        commit whose answer was lost writes it again)."""
        await self.recorder.events.append([NewEvent(event.session_id, event.kind, event.payload)])

    @activity.defn(name="record_project_import")
    async def project_import(self, imported: ProjectImported) -> None:
        if await self.recorder.project_imported(imported):
            activity.logger.info(
                "project %s imported: %s", imported.project_id, imported.error or "ready"
            )

    @activity.defn(name="record_conversation")
    async def conversation(self, record: ConversationRecord) -> None:
        seconds = await self.recorder.record_conversation(record)
        if seconds is not None:
            metrics.stage_finished(record.role, record.status, seconds)
