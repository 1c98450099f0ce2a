"""The pipeline survives a worker killed -9 mid-stage, replays recorded histories, and times out
reviews on the time-skipping server."""

from __future__ import annotations

import asyncio
import json
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowHistory
from temporalio.openai_agents.testing import TestModelProvider
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from activities.records import Recorder
from config import Settings
from core.repos import ProjectRepos
from core.vocabulary import stage_workflow_id
from devkit.agent_model import ScriptedAgentModel, pipeline_script
from devkit.brain import count_by_role
from devkit.processes import scratch_settings, spawn_worker, start_dev_server
from devkit.responses_server import ScriptedResponsesServer
from store.db import make_engine
from store.models import CodexTask, Conversation, Message
from store.temporal import connect
from tests.helpers.pipeline import SlowBuilderCodex, wait_for_review
from tests.helpers.processes import alive, codex_pid, wait_for
from tests.helpers.temporal import temporal_address
from worker import agents_plugin, build_worker
from workflows.pipeline import PipelineWorkflow
from workflows.stage import StageWorkflow
from workflows.types.pipeline import PipelineInput, PipelineOptions, PipelineResult

HISTORY = Path(__file__).parent / "histories" / "pipeline_full.json"


def pipeline_input(session_id: str | None = None, **options: Any) -> PipelineInput:
    return PipelineInput(
        session_id=session_id or uuid.uuid4().hex[:8],
        project_id="p1",
        user_request="Build a calculator module with tests.",
        options=PipelineOptions(codex_heartbeat_s=2, **options),
    )


@pytest.mark.slow
@pytest.mark.parametrize("background", [False, True], ids=["waiting", "started-without-waiting"])
async def test_worker_killed_mid_stage_repeats_no_finished_model_turn(
    background: bool,
    temporal_dev: WorkflowEnvironment,
    settings: Settings,
    task_queue: str,
    project_id: str,
    session_id: str,
    worktree: Path,
    tmp_path,
) -> None:
    with ScriptedResponsesServer(
        SlowBuilderCodex("\n@fake pidfile=codex.pid\n@fake sleep=3", background=background)
    ) as llm:
        settings = settings.model_copy(
            update={
                "temporal_address": temporal_address(temporal_dev),
                "task_queue": task_queue,
                "openai_base_url": llm.base_url,
            }
        )
        first = spawn_worker(settings, log=tmp_path / "worker1.log")
        try:
            data = pipeline_input(session_id)
            handle = await (await connect(settings)).start_workflow(
                PipelineWorkflow.run, data, id=f"session-{data.session_id}", task_queue=task_queue
            )
            pid = await codex_pid(worktree, within=60)
            await codex_attempt_recorded(settings, data.session_id)
            first.send_signal(signal.SIGKILL)
            first.wait()
            await wait_for(lambda: not alive(pid), within=5)
        finally:
            first.kill()
        requests_before_restart = len(llm.requests)

        second = spawn_worker(settings, log=tmp_path / "worker2.log")
        try:
            result: PipelineResult = await asyncio.wait_for(handle.result(), timeout=120)
        finally:
            second.terminate()
            second.wait(timeout=30)

    assert result.outcome == "approved"
    assert [r.stage.value for r in result.stages] == ["planner", "builder", "qa_qc", "prod_ready"]
    bodies = [json.dumps(r, sort_keys=True) for r in llm.requests]
    # Every model turn was asked exactly once: nothing finished before the crash was asked again.
    assert len(bodies) == len(set(bodies))
    # Started without waiting, the Builder also checks its first task and waits for its last:
    # the task it was in when the worker died ran on, under the new worker.
    builder = 5 if background else 3
    assert count_by_role(llm.requests) == {
        "planner": 2,
        "builder": builder,
        "qa_qc": 2,
        "prod_ready": 2,
    }
    assert 0 < requests_before_restart < len(llm.requests)
    assert "def divide" in (worktree / "calc.py").read_text()

    # The trail has no duplicated rows or events despite the crash.
    engine = make_engine(settings.database_url)
    try:
        recorder = Recorder(engine)
        async with recorder.db() as db:
            conversations = (await db.scalars(select(Conversation))).all()
            assert sorted(c.agent_type for c in conversations) == sorted(
                ["planner", "builder", "qa_qc", "prod_ready"]
            )
            messages = (await db.scalars(select(Message))).all()
            assert len({(m.conversation_id, m.seq) for m in messages}) == len(messages)
            assert len((await db.scalars(select(CodexTask))).all()) == 4
        kinds = [e.kind for e in await recorder.events.read(data.session_id, limit=10_000)]
        assert kinds.count("session.started") == kinds.count("session.finished") == 1
        assert kinds.count("stage.started") == kinds.count("stage.completed") == 4
        # The interrupted codex task started twice (two attempts) and finished once.
        assert kinds.count("codex.started") == 5 and kinds.count("codex.finished") == 4
    finally:
        await engine.dispose()


async def codex_attempt_recorded(settings: Settings, session_id: str) -> None:
    """Until the running codex attempt is on record (it is, moments after codex starts)."""
    engine = make_engine(settings.database_url)
    try:
        events = Recorder(engine).events
        for _ in range(100):
            kinds = [e.kind for e in await events.read(session_id, limit=10_000)]
            if "codex.started" in kinds:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the codex attempt was never recorded")
    finally:
        await engine.dispose()


async def test_recorded_history_replays(settings: Settings) -> None:
    """Guards determinism: a full run recorded earlier (the session's workflow and each of its
    stages') must replay against today's code."""
    recorded = json.loads(HISTORY.read_text())
    assert len(recorded) == 1 + 6  # the session; planner, builder, QA (failed), builder, QA, ...
    replayer = Replayer(
        workflows=[PipelineWorkflow, StageWorkflow], plugins=[agents_plugin(settings)]
    )

    async def histories() -> AsyncIterator[WorkflowHistory]:
        for wid, history in recorded.items():
            yield WorkflowHistory.from_json(wid, history)

    results = await replayer.replay_workflows(histories(), raise_on_replay_failure=True)
    assert results.replay_failures == {}


async def test_review_timeout_fails_or_approves(
    time_skipping: WorkflowEnvironment, settings: Settings, task_queue: str, project_id: str
) -> None:
    model = ScriptedAgentModel(pipeline_script())
    client = await Client.connect(
        temporal_address(time_skipping),
        plugins=[agents_plugin(settings, provider=TestModelProvider(model))],
    )
    async with build_worker(client, settings, task_queue=task_queue):
        # This client lacks the environment's auto time-skipping, so the test skips time itself.
        async def run_past_review_timeout(**options: Any) -> WorkflowHandle:
            data = pipeline_input(gates=["planner"], review_timeout_s=24 * 3600, **options)
            handle = await client.start_workflow(
                PipelineWorkflow.run, data, id=f"session-{data.session_id}", task_queue=task_queue
            )
            await wait_for_review(handle, "planner")
            await time_skipping.sleep(timedelta(hours=25))
            return handle

        failing = await run_past_review_timeout()
        with pytest.raises(WorkflowFailureError) as err:
            await failing.result()
        assert "no review of planner within 86400s" in str(err.value.cause)

        approving = await run_past_review_timeout(on_review_timeout="approve")
        result = await approving.result()
        assert (
            result.outcome == "approved" and result.stages[0].feedback == "approved after timeout"
        )


async def record_history() -> None:
    """Regenerate the committed history: python -m tests.workflows.test_pipeline_durability"""
    with tempfile.TemporaryDirectory() as tmp:
        settings = await scratch_settings(Path(tmp))
        await ProjectRepos(settings).create("p1")
        env = await start_dev_server()
        try:
            model = ScriptedAgentModel(pipeline_script(qa_failures=1))
            client = await Client.connect(
                temporal_address(env),
                plugins=[agents_plugin(settings, provider=TestModelProvider(model))],
            )
            async with build_worker(client, settings, task_queue="record"):
                data = pipeline_input(
                    "recorded", gates=["qa_qc"], review_timeout_s=1, on_review_timeout="approve"
                )
                handle = await client.start_workflow(
                    PipelineWorkflow.run, data, id="session-recorded", task_queue="record"
                )
                result = await handle.result()
                ids = [handle.id] + [
                    stage_workflow_id("recorded", r.stage, r.iteration) for r in result.stages
                ]
                recorded = {
                    wid: json.loads(
                        (await client.get_workflow_handle(wid).fetch_history()).to_json()
                    )
                    for wid in ids
                }
            HISTORY.parent.mkdir(exist_ok=True)
            HISTORY.write_text(json.dumps(recorded))
        finally:
            await env.shutdown()


if __name__ == "__main__":
    asyncio.run(record_history())
