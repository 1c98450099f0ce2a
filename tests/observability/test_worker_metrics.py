"""The worker's Prometheus endpoint after real runs: a real dev server, a worker whose runtime serves
metrics, the scripted agents' model and the fake codex; scraped over HTTP like Prometheus does."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.openai_agents.testing import TestModelProvider
from temporalio.testing import WorkflowEnvironment

from config import Settings
from core.repos import ProjectRepos
from devkit.agent_model import ScriptedAgentModel, Turn, pipeline_script
from devkit.processes import free_port
from observability.metrics import worker_runtime
from store.temporal import connect
from tests.helpers.prometheus import Scrape
from tests.helpers.temporal import temporal_address
from worker import agents_plugin, build_worker
from workflows.pipeline import PipelineWorkflow
from workflows.types.pipeline import PipelineInput, PipelineOptions

STAGES = ("planner", "builder", "qa_qc", "prod_ready")
happy = pipeline_script()


def script(turn: Turn):
    """The happy pipeline, except: "EXPLODE" requests fail at the builder's model call, and "HANG"
    requests give the builder a codex task that never ends."""
    if "EXPLODE" in turn.text and turn.role == "builder":
        raise ApplicationError("model exploded", non_retryable=True)
    if "HANG" in turn.text and turn.role == "builder" and turn.step == 0:
        return pipeline_script(codex_prompt="@fake hang")(turn)
    return happy(turn)


class Run:
    def __init__(self, client: Client, settings: Settings, task_queue: str, port: int) -> None:
        self.client, self.settings, self.task_queue = client, settings, task_queue
        self.url = f"http://127.0.0.1:{port}/metrics"

    async def start(self, request: str) -> WorkflowHandle:
        session = uuid.uuid4().hex[:8]
        await ProjectRepos(self.settings).create(session)
        return await self.client.start_workflow(
            PipelineWorkflow.run,
            PipelineInput(
                session_id=session,
                project_id=session,
                user_request=request,
                options=PipelineOptions(codex_heartbeat_s=2),
            ),
            id=f"session-{session}",
            task_queue=self.task_queue,
        )

    async def scrape(self) -> Scrape:
        async with httpx.AsyncClient() as http:
            response = await http.get(self.url)
        response.raise_for_status()
        return Scrape(response.text)

    async def scrape_until(self, ok: Callable[[Scrape], bool], within: float = 20) -> Scrape:
        for _ in range(int(within / 0.1)):
            if ok(scrape := await self.scrape()):
                return scrape
            await asyncio.sleep(0.1)
        raise AssertionError(f"the metrics never got there:\n{scrape.text}")


@pytest.fixture
async def run(
    temporal_dev: WorkflowEnvironment, settings: Settings, task_queue: str
) -> AsyncIterator[Run]:
    """A worker as ``worker.main`` builds it (its runtime serving Prometheus on a free port)."""
    port = free_port()
    settings = settings.model_copy(
        update={
            "temporal_address": temporal_address(temporal_dev),
            "worker_metrics_address": f"127.0.0.1:{port}",
        }
    )
    model = ScriptedAgentModel(script, tokens=(100, 20))
    plugin = agents_plugin(settings, provider=TestModelProvider(model))
    client = await connect(settings, plugins=[plugin], runtime=worker_runtime(settings))
    async with build_worker(client, settings, task_queue=task_queue):
        yield Run(client, settings, task_queue, port)


async def test_a_run_completed_failed_and_cancelled_shows_in_the_worker_metrics(run: Run) -> None:
    # 1. A whole run: sessions, stages, codex, model calls and the SDK's own metrics.
    result = await (await run.start("Build a calculator module with tests.")).result()
    assert result.outcome == "approved"
    m = await run.scrape_until(lambda m: m.value("codexflow_sessions_finished_total") >= 1)
    assert m.value("codexflow_sessions_started_total") == 1
    assert m.value("codexflow_sessions_finished_total", status="completed", outcome="approved") == 1
    for stage in STAGES:
        assert (
            m.value("codexflow_stage_duration_seconds_count", stage=stage, status="completed") == 1
        ), stage
    assert m.value("codexflow_codex_task_duration_seconds_count") == result.codex_tasks == 3
    assert m.value("codexflow_codex_exits_total", exit_code="0", outcome="completed") == 3
    assert m.value("codexflow_codex_active_processes") == 0
    calls = m.value("codexflow_model_calls_total", model="gpt-5.5", outcome="ok")
    assert calls > 0
    assert m.value("codexflow_model_tokens_total", kind="input") == 100 * calls
    assert m.value("codexflow_model_tokens_total", kind="output") == 20 * calls
    # The SDK's metrics on the same endpoint, labelled like ours.
    assert m.value("temporal_workflow_completed", workflow_type="PipelineWorkflow") == 1
    assert m.value("temporal_activity_execution_latency_count", activity_type="run_codex_task") == 3
    assert m.label_values("codexflow_model_calls_total", "task_queue") == {run.task_queue}

    # 2. A run whose builder's model call fails for good.
    with pytest.raises(WorkflowFailureError):
        await (await run.start("EXPLODE, please.")).result()
    m = await run.scrape_until(lambda m: m.value("codexflow_sessions_finished_total") >= 2)
    assert m.value("codexflow_sessions_finished_total", status="failed", outcome="none") == 1
    assert m.value("codexflow_stage_duration_seconds_count", stage="builder", status="failed") == 1
    assert m.value("codexflow_model_calls_total", outcome="error") == 1
    assert m.value("temporal_workflow_failed", workflow_type="PipelineWorkflow") == 1

    # 3. A run cancelled while codex runs: the process is active, then reaped and counted.
    handle = await run.start("HANG, please.")
    await run.scrape_until(lambda m: m.value("codexflow_codex_active_processes") == 1, within=60)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    m = await run.scrape_until(lambda m: m.value("codexflow_sessions_finished_total") >= 3)
    assert m.value("codexflow_sessions_finished_total", status="cancelled") == 1
    assert m.value("codexflow_codex_exits_total", outcome="cancelled") == 1
    assert m.value("codexflow_codex_active_processes") == 0
    assert m.value("codexflow_sessions_started_total") == 3
    assert m.value("temporal_workflow_canceled", workflow_type="PipelineWorkflow") == 1


async def test_a_taken_metrics_address_is_a_clear_error(settings: Settings) -> None:
    port = free_port()
    first = worker_runtime(
        settings.model_copy(update={"worker_metrics_address": f"127.0.0.1:{port}"})
    )
    with pytest.raises(ValueError, match="Address already in use"):
        worker_runtime(settings.model_copy(update={"worker_metrics_address": f"127.0.0.1:{port}"}))
    del first


def test_worker_main_refuses_a_bad_metrics_address(tmp_path: Path) -> None:
    """``worker.main`` stops with the variable's name rather than a traceback."""
    import worker

    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", worker_metrics_address="nonsense"
    )
    with pytest.raises(SystemExit, match="CODEXFLOW_WORKER_METRICS_ADDRESS=nonsense"):
        asyncio.run(worker.main(settings, upgrade=True))
