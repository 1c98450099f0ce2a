"""Sessions outlive their host: two workers with their own identities and disks stand for two
machines sharing only the central repositories, the database and Temporal."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from activities.records import Recorder
from config import Settings
from core.repos import ProjectRepos, branch_of
from devkit.brain import count_by_role
from devkit.processes import host_settings, spawn_worker
from devkit.responses_server import ScriptedResponsesServer
from store.db import make_engine
from store.models import CodexTask, RunSession
from store.temporal import connect
from tests.helpers.pipeline import SlowBuilderCodex
from tests.helpers.processes import alive, codex_pid, wait_for
from tests.helpers.temporal import temporal_address
from workflows.pipeline import PipelineWorkflow
from workflows.types.pipeline import PipelineInput, PipelineOptions, PipelineResult


@pytest.mark.slow
async def test_a_session_carries_on_when_its_host_is_lost(
    temporal_dev: WorkflowEnvironment,
    settings: Settings,
    task_queue: str,
    project_id: str,
    session_id: str,
    tmp_path: Path,
) -> None:
    with ScriptedResponsesServer(
        SlowBuilderCodex(
            "\n@fake append=attempts.txt:an attempt\\n\n@fake pidfile=codex.pid\n@fake sleep=4"
        )
    ) as llm:
        shared = settings.model_copy(
            update={
                "temporal_address": temporal_address(temporal_dev),
                "task_queue": task_queue,
                "openai_base_url": llm.base_url,
            }
        )
        a, b = host_settings(shared, "host-a", tmp_path), host_settings(shared, "host-b", tmp_path)
        worker_a = spawn_worker(a, log=tmp_path / "host-a.log")
        worker_b = None
        try:
            handle = await (await connect(shared)).start_workflow(
                PipelineWorkflow.run,
                PipelineInput(
                    session_id=session_id,
                    project_id=project_id,
                    user_request="Build a calculator module with tests.",
                    options=PipelineOptions(codex_heartbeat_s=2, host_lost_after_s=5),
                ),
                id=f"session-{session_id}",
                task_queue=task_queue,
            )
            on_a = ProjectRepos(a).worktree(project_id, session_id).work_tree
            assert on_a is not None
            pid = await codex_pid(on_a, within=60)  # the Builder's codex task runs on A
            worker_b = spawn_worker(b, log=tmp_path / "host-b.log")
            await asyncio.sleep(2)  # B is polling
            lost = time.time()
            os.killpg(worker_a.pid, signal.SIGKILL)  # host A goes down, its disk with it
            worker_a.wait()
            await wait_for(lambda: not alive(pid), within=5)
            result: PipelineResult = await asyncio.wait_for(handle.result(), timeout=180)
            status = await handle.query(PipelineWorkflow.status)
        finally:
            for worker in (worker_a, worker_b):
                if worker is not None and worker.poll() is None:
                    worker.terminate()
                    worker.wait(timeout=30)

    assert result.outcome == "approved"
    assert [r.stage.value for r in result.stages] == ["planner", "builder", "qa_qc", "prod_ready"]
    # Every model turn was asked once: the finished ones were not asked again on B.
    bodies = [json.dumps(r, sort_keys=True) for r in llm.requests]
    assert len(bodies) == len(set(bodies))
    assert count_by_role(llm.requests) == {"planner": 2, "builder": 3, "qa_qc": 2, "prod_ready": 2}

    # The branch holds one attempt's edits per codex task of the Builder: the half-done one on
    # A was redone on B, not stacked onto it.
    repos, branch = ProjectRepos(shared), branch_of(session_id)
    builder_tasks = result.stages[1].codex_tasks
    attempts = (await repos.read(project_id, branch, "attempts.txt")).decode()
    assert builder_tasks >= 1 and attempts == "an attempt\n" * builder_tasks
    assert "def divide" in (await repos.read(project_id, branch, "calc.py")).decode()
    assert result.worktree is not None and result.worktree.host == "host-b"
    on_b = Path(result.worktree.path)
    assert on_b.is_relative_to(b.workspaces_root) and (on_b / "attempts.txt").exists()

    # The move is in the session's log, its row, its status (and so the Web UI's details).
    [moved] = status.moves
    assert (moved.from_host, moved.to_host) == ("host-a", "host-b")
    engine = make_engine(shared.database_url)
    try:
        recorder = Recorder(engine)
        events = await recorder.events.read(session_id, limit=10_000)
        [event] = [e for e in events if e.kind == "session.moved"]
        assert event.payload["from_host"] == "host-a" and event.payload["to_host"] == "host-b"
        print(f"\ntaken over {event.created_at.timestamp() - lost:.1f} s after host A was lost")
        kinds = [e.kind for e in events]
        assert kinds.count("session.finished") == 1 and kinds.count("stage.completed") == 4
        # The interrupted codex task: started on A (attempt 1), again on B (attempt 2), once done.
        assert kinds.count("codex.started") == 5 and kinds.count("codex.finished") == 4
        async with recorder.db() as db:
            row = await db.get(RunSession, session_id)
            assert row is not None and row.host == "host-b" and row.worktree == str(on_b)
            redone = [t for t in (await db.scalars(select(CodexTask))).all() if t.attempt > 1]
            assert [(t.agent_type, t.attempt, t.status) for t in redone] == [
                ("builder", 2, "completed")
            ]
            assert redone[0].working_directory == str(on_b)
    finally:
        await engine.dispose()
