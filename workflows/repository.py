"""Repositories from workflows: importing a project's, and delivering a session's branch.

``ImportProjectWorkflow`` clones a project's repository (durable: the clone heartbeats and is
redone elsewhere if its worker dies) and marks the project ready or failed. ``DeliveryWorkflow``
pushes a finished session's branch on request (``push_branch``, which the pipeline calls too).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.records import RecordActivities
    from activities.repositories import RepositoryActivities
    from core.errors import innermost_reason
    from workflows.types.records import ProjectImported
    from workflows.types.repository import (
        Delivery,
        ImportInput,
        ImportResult,
        PushInput,
    )

__all__ = [
    "DeliveryWorkflow",
    "ImportProjectWorkflow",
    "push_branch",
]

_GIT_TIMEOUT = timedelta(minutes=30)  # a push of a big repository takes a while
_RETRY = RetryPolicy(maximum_attempts=5)
_HEARTBEAT = timedelta(seconds=30)


async def push_branch(input: PushInput) -> Delivery:
    return await workflow.execute_activity_method(
        RepositoryActivities.push_branch,
        input,
        start_to_close_timeout=_GIT_TIMEOUT,
        retry_policy=_RETRY,
    )


@workflow.defn
class ImportProjectWorkflow:
    """Clone a project's repository into its central one, then mark the project ready (or failed,
    with the reason)."""

    @workflow.run
    async def run(self, input: ImportInput) -> ImportResult | None:
        try:
            result = await workflow.execute_activity_method(
                RepositoryActivities.import_repository,
                input,
                start_to_close_timeout=timedelta(hours=6),
                heartbeat_timeout=_HEARTBEAT,
                retry_policy=_RETRY,
            )
        except ActivityError as err:
            await self._record(
                ProjectImported(project_id=input.project_id, error=innermost_reason(err))
            )
            return None
        await self._record(
            ProjectImported(project_id=input.project_id, default_branch=result.default_branch)
        )
        return result

    async def _record(self, imported: ProjectImported) -> None:
        await workflow.execute_activity_method(
            RecordActivities.project_import,
            imported,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=_RETRY,
        )


@workflow.defn
class DeliveryWorkflow:
    """Push one session's branch to its project's origin (``POST /api/sessions/{id}/push``)."""

    @workflow.run
    async def run(self, input: PushInput) -> Delivery:
        return await push_branch(input)
