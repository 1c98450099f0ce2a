"""A session's records, written from its workflow: one method per event.

The session's row, its stage iterations (conversations) and its event log are written by the
idempotent record activities; each method here builds the event's typed payload and calls one.
The pipeline then reads as its diagram, and a retried activity writes nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.records import RecordActivities
    from core.vocabulary import (
        EventKind,
        Outcome,
        ReviewAwaited,
        ReviewIgnored,
        ReviewReason,
        ReviewReceived,
        Role,
        SessionEnded,
        SessionFinished,
        SessionMoved,
        SessionStatus,
        StageCompleted,
        StageEnded,
        StageStatus,
    )
    from workflows.types.pipeline import PipelineInput, PipelineUsage, StageRecord
    from workflows.types.records import (
        ConversationRecord,
        EventRecord,
        MessageRecord,
        SessionPatch,
        SessionStart,
    )
    from workflows.types.repository import Worktree
    from workflows.types.review import AwaitingReview, Review

__all__ = ["Journal"]

_TIMEOUT = timedelta(minutes=2)
_RETRY = RetryPolicy(maximum_attempts=5)


class Journal:
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id

    async def session_started(self, input: PipelineInput) -> None:
        await _record(
            RecordActivities.session_start,
            SessionStart(
                session_id=input.session_id,
                project_id=input.project_id,
                workflow_id=workflow.info().workflow_id,
                user_request=input.user_request,
                options=input.options.model_dump(mode="json"),
            ),
        )

    async def worktree_ready(self, worktree: Worktree) -> None:
        await self._patch(
            branch=worktree.branch,
            base_commit=worktree.base_commit,
            head_commit=worktree.head_commit,
            worktree=worktree.path,
            host=worktree.host,
        )

    async def worktree_moved(self, moved: SessionMoved, worktree: Worktree) -> None:
        await self._patch(
            moved, worktree=worktree.path, host=worktree.host, event=EventKind.SESSION_MOVED
        )

    async def stage_started(
        self, role: Role, iteration: int, messages: Sequence[MessageRecord]
    ) -> None:
        """The stage iteration opens with ``messages`` (its input) recorded."""
        await self._patch(status=SessionStatus.RUNNING, current_agent=role)
        await self._stage(role, iteration, StageStatus.RUNNING, messages=list(messages))

    async def stage_completed(
        self, record: StageRecord, report: dict[str, Any], messages: Sequence[MessageRecord]
    ) -> None:
        payload = StageCompleted(
            stage=record.stage,
            iteration=record.iteration,
            verdict=getattr(record.report, "verdict", None),
            summary=record.report.summary,
            codex_tasks=record.codex_tasks,
            changed_files=record.checkpoint.changed_files,
            commit=record.checkpoint.commit,
            parent=record.checkpoint.parent,
        )
        await self._stage(
            record.stage,
            record.iteration,
            StageStatus.COMPLETED,
            report=report,
            messages=list(messages),
            event_payload=payload.model_dump(mode="json"),
        )

    async def stage_ended(
        self,
        role: Role,
        iteration: int,
        status: StageStatus,
        error: str | None,
        messages: Sequence[MessageRecord],
    ) -> None:
        """The stage iteration failed or was cancelled, with what it said until then."""
        payload = StageEnded(stage=role, iteration=iteration, error=error)
        await self._stage(
            role,
            iteration,
            status,
            messages=list(messages),
            event_payload=payload.model_dump(mode="json"),
        )

    async def review_awaited(self, awaiting: AwaitingReview, tokens_used: int) -> None:
        kind = (
            EventKind.BUDGET_PAUSED
            if awaiting.reason is ReviewReason.BUDGET
            else EventKind.REVIEW_AWAITED
        )
        payload = ReviewAwaited(
            stage=awaiting.stage, reason=awaiting.reason, tokens_used=tokens_used
        )
        await self._patch(status=SessionStatus.WAITING_FOR_REVIEW, event=kind, payload=payload)

    async def review_received(self, review: Review) -> None:
        payload = ReviewReceived(
            stage=review.stage, decision=review.decision, feedback=review.feedback
        )
        await self._patch(
            status=SessionStatus.RUNNING, event=EventKind.REVIEW_RECEIVED, payload=payload
        )

    async def review_ignored(self, ignored: ReviewIgnored) -> None:
        await _record(
            RecordActivities.event,
            EventRecord(
                session_id=self.session_id,
                kind=EventKind.REVIEW_IGNORED,
                payload=ignored.model_dump(mode="json"),
            ),
        )

    async def session_finished(
        self,
        outcome: Outcome,
        summary: str,
        agents_md: str | None,
        usage: PipelineUsage,
        codex_tasks: int,
        undelivered: str | None = None,
    ) -> None:
        await self._patch(
            status=SessionStatus.COMPLETED,
            outcome=outcome,
            error=undelivered,
            final_summary=summary,
            agents_md_content=agents_md,
            usage=usage.model_dump(mode="json"),
            finished=True,
            event=EventKind.SESSION_FINISHED,
            payload=SessionFinished(
                outcome=outcome, codex_tasks=codex_tasks, tokens_used=usage.total
            ),
        )

    async def session_ended(self, status: SessionStatus, error: str | None) -> None:
        """The session failed or was cancelled."""
        kind = (
            EventKind.SESSION_CANCELLED
            if status is SessionStatus.CANCELLED
            else EventKind.SESSION_FAILED
        )
        await self._patch(
            status=status, error=error, finished=True, event=kind, payload=SessionEnded(error=error)
        )

    # --- mechanics -----------------------------------------------------------------------------

    async def _patch(self, payload: Any = None, **changes: Any) -> None:
        if payload is not None:
            changes["event_payload"] = payload.model_dump(mode="json")
        await _record(RecordActivities.session, SessionPatch(session_id=self.session_id, **changes))

    async def _stage(self, role: Role, iteration: int, status: StageStatus, **fields: Any) -> None:
        await _record(
            RecordActivities.conversation,
            ConversationRecord(
                session_id=self.session_id, role=role, iteration=iteration, status=status, **fields
            ),
        )


async def _record(activity: Any, arg: Any) -> None:
    await workflow.execute_activity_method(
        activity, arg, start_to_close_timeout=_TIMEOUT, retry_policy=_RETRY
    )
