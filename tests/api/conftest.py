"""Fixtures of the API tests that run sessions: the API's settings on the test dev server, and an
in-process worker with a scripted model on its queue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from config import Settings
from devkit.agent_model import ScriptedAgentModel, pipeline_script
from tests.helpers.pipeline import pipeline_client
from tests.helpers.sessions import Serve
from tests.helpers.temporal import temporal_address
from worker import build_worker


@pytest.fixture
def app_settings(
    api_settings: Settings, temporal_dev: WorkflowEnvironment, task_queue: str
) -> Settings:
    """The API's settings, pointing at the test dev server and this test's task queue."""
    return api_settings.model_copy(
        update={"temporal_address": temporal_address(temporal_dev), "task_queue": task_queue}
    )


@pytest.fixture
async def serve(temporal_dev: WorkflowEnvironment, app_settings: Settings) -> AsyncIterator[Serve]:
    """serve(**pipeline_script kwargs): an in-process worker (scripted model) on the API's queue."""
    async with AsyncExitStack() as stack:

        async def _serve(**script: Any) -> None:
            model = ScriptedAgentModel(pipeline_script(**script))
            client = await pipeline_client(temporal_dev, app_settings, model)
            await stack.enter_async_context(
                build_worker(client, app_settings, task_queue=app_settings.task_queue)
            )

        yield _serve
