"""Real servers for the tests: a Temporal dev server, a time-skipping test server, tmp settings."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from activities.workspace import create_workspace
from config import Settings
from devkit.processes import FAKE_CODEX
from worker import agents_plugin, build_worker
from workflows.search_attributes import ALL as SEARCH_ATTRIBUTES

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")

BIN = Path(sys.executable).parent


SEARCH_ATTRIBUTE_ARGS = [
    arg for key in SEARCH_ATTRIBUTES for arg in ("--search-attribute", f"{key.name}=Keyword")
]


@pytest.fixture(scope="session")
async def temporal_dev() -> AsyncIterator[WorkflowEnvironment]:
    """A real Temporal dev server (in-memory) for the whole session."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        dev_server_database_filename=None,
        ui=False,
        plugins=[agents_plugin(Settings())],
        dev_server_extra_args=SEARCH_ATTRIBUTE_ARGS,
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def time_skipping() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(BIN / "temporal-test-server"),
        plugins=[agents_plugin(Settings())],
    )
    # The test server has no start-up flag for custom search attributes; register them here.
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in SEARCH_ATTRIBUTES
            },
        )
    )
    yield env
    await env.shutdown()


def temporal_address(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings confined to this test's tmp dir, driving the fake codex."""
    return Settings(
        workspaces_root=tmp_path / "workspaces",
        codex_home=tmp_path / "codex-home",
        codex_output_dir=tmp_path / "codex-output",
        codex_bin=str(FAKE_CODEX),
        codex_kill_grace_s=1,
        codex_base_url=None,
        codex_api_key=None,
        openai_base_url=None,
        openai_api_key=None,
        api_token=None,
    )


@pytest.fixture
async def workspace(settings: Settings) -> Path:
    path = settings.workspaces_root / "project"
    await create_workspace(path)
    return path


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def dev_worker(temporal_dev: WorkflowEnvironment, settings: Settings, task_queue: str):
    """An in-process worker on a fresh task queue of the dev server."""
    async with build_worker(temporal_dev.client, settings, task_queue=task_queue):
        yield temporal_dev.client
