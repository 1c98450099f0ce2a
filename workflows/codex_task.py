"""CodexTaskWorkflow: one durable codex task — checkpoint, run codex, checkpoint."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.codex import CodexRunner
    from activities.workspace import WorkspaceActivities
    from core.errors import innermost_reason
    from core.vocabulary import CodexTaskState, Role
    from workflows.prompts import codex_result_for_model
    from workflows.types.codex import (
        CodexResult,
        CodexTaskInput,
        CodexTaskOutcome,
        CodexTaskRequest,
        CodexTaskStatus,
    )
    from workflows.types.workspace import Checkpoint, CheckpointInput
    from workflows.worktree import host_lost

__all__ = ["CodexTaskWorkflow", "codex_for_agent", "run_codex"]

# Beyond codex's own timeout (enforced by the activity), the slack Temporal allows before it gives up.
_DEFAULT_CODEX_TIMEOUT = timedelta(hours=2)
_SLACK = timedelta(minutes=2)
_GIT_TIMEOUT = timedelta(minutes=2)
_GIT_RETRY = RetryPolicy(maximum_attempts=5)


async def run_codex(
    request: CodexTaskRequest,
    task_id: str,
    base_commit: str | None,
    session_id: str | None = None,
    role: Role | None = None,
    **options: Any,
) -> CodexResult:
    """The codex activity with timeouts, heartbeats and retries taken from the caller's request
    (``options``: more ``execute_activity`` options, e.g. the worktree's host queue)."""
    timeout = timedelta(seconds=request.timeout_s) if request.timeout_s else _DEFAULT_CODEX_TIMEOUT
    return await workflow.execute_activity_method(
        CodexRunner.run,
        CodexTaskInput(
            **request.model_dump(),
            task_id=task_id,
            base_commit=base_commit,
            session_id=session_id,
            role=role,
        ),
        start_to_close_timeout=timeout + _SLACK,
        heartbeat_timeout=timedelta(seconds=request.heartbeat_timeout_s),
        retry_policy=RetryPolicy(
            initial_interval=timedelta(seconds=1),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(minutes=1),
            maximum_attempts=request.max_attempts,
        ),
        # Wait for codex to be stopped before the workflow reports itself cancelled.
        cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        **options,
    )


async def codex_for_agent(
    request: CodexTaskRequest,
    task_id: str,
    session_id: str | None = None,
    role: Role | None = None,
    **options: Any,
) -> tuple[str, CodexResult | None]:
    """An agent's run_codex call: the text the model sees, and codex's result (None if it failed).

    A codex failure that survived its retries becomes text the model can act on; cancellation,
    and a host that was lost (the worktree moves, the task is run again), pass.
    """
    try:
        result = await run_codex(request, task_id, None, session_id, role, **options)
    except ActivityError as err:
        if is_cancelled_exception(err) or host_lost(err):
            raise
        return f"codex failed after retries: {innermost_reason(err)}", None
    return codex_result_for_model(result), result


@workflow.defn
class CodexTaskWorkflow:
    def __init__(self) -> None:
        self._status = CodexTaskStatus(task_id=workflow.info().workflow_id)

    @workflow.run
    async def run(self, request: CodexTaskRequest) -> CodexTaskOutcome:
        before = await self._checkpoint(request.workspace, "codexflow: before codex task")
        self._status.base_commit = before.commit
        self._status.state = CodexTaskState.RUNNING
        try:
            result = await run_codex(request, self._status.task_id, before.commit)
        except (asyncio.CancelledError, ActivityError) as err:
            if is_cancelled_exception(err):
                self._status.state = CodexTaskState.CANCELLED
                raise
            self._status.state = CodexTaskState.FAILED
            self._status.error = (
                str(err.cause or err) if isinstance(err, ActivityError) else str(err)
            )
            raise ApplicationError(f"codex task failed: {self._status.error}") from err
        self._status.result = result
        # codex's changes are committed by the codex activity; this reports them all.
        after = await self._checkpoint(
            request.workspace, "codexflow: after codex task", since=before.commit
        )
        self._status.checkpoint = after
        self._status.state = CodexTaskState.COMPLETED
        return CodexTaskOutcome(result=result, before=before, after=after)

    @workflow.query
    def status(self) -> CodexTaskStatus:
        return self._status

    async def _checkpoint(
        self, workspace: str, message: str, since: str | None = None
    ) -> Checkpoint:
        return await workflow.execute_activity_method(
            WorkspaceActivities.checkpoint,
            CheckpointInput(
                workspace=workspace, message=f"{message} {self._status.task_id}", since=since
            ),
            start_to_close_timeout=_GIT_TIMEOUT,
            retry_policy=_GIT_RETRY,
        )
