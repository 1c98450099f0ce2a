"""Pipeline fixtures: a run served by an in-process worker with a scripted model."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from config import Settings
from devkit.agent_model import ScriptedAgentModel
from tests.helpers.pipeline import pipeline_client
from worker import build_worker
from workflows.pipeline import PipelineWorkflow
from workflows.types.pipeline import PipelineInput, PipelineOptions


@pytest.fixture
async def start(
    temporal_dev: WorkflowEnvironment,
    settings: Settings,
    task_queue: str,
    project_id: str,
    session_id: str,
) -> AsyncIterator[Callable[..., Awaitable[WorkflowHandle]]]:
    """start(model, **options) → a handle of a pipeline run (the session ``session_id`` of
    ``project_id``, working in the ``worktree`` fixture's directory) served by an in-process
    worker."""
    async with AsyncExitStack() as stack:

        async def _start(model: ScriptedAgentModel, **options) -> WorkflowHandle:
            client = await pipeline_client(temporal_dev, settings, model)
            await stack.enter_async_context(build_worker(client, settings, task_queue=task_queue))
            session = options.pop("session_id", session_id)
            return await client.start_workflow(
                PipelineWorkflow.run,
                PipelineInput(
                    session_id=session,
                    project_id=project_id,
                    user_request="Build a calculator module with tests.",
                    options=PipelineOptions(codex_heartbeat_s=2, **options),
                ),
                id=f"session-{session}",
                task_queue=task_queue,
            )

        yield _start
