"""Pipeline runs in tests: a client whose agents play a scripted model, waiting for a review."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from temporalio.client import Client, WorkflowHandle
from temporalio.openai_agents.testing import TestModelProvider
from temporalio.testing import WorkflowEnvironment

from config import Settings
from tests.helpers.temporal import temporal_address
from worker import agents_plugin
from workflows.pipeline import PipelineWorkflow

__all__ = ["Start", "pipeline_client", "wait_for_review"]

Start = Callable[..., Awaitable[WorkflowHandle]]


async def pipeline_client(env: WorkflowEnvironment, settings: Settings, model) -> Client:
    return await Client.connect(
        temporal_address(env), plugins=[agents_plugin(settings, provider=TestModelProvider(model))]
    )


async def wait_for_review(handle: WorkflowHandle, stage: str) -> None:
    for _ in range(400):
        status = await handle.query(PipelineWorkflow.status)
        if status.awaiting and status.awaiting.stage == stage:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never waited for a review of {stage}")
