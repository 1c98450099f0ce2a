"""CodexTaskWorkflow on a real Temporal dev server: completion, cancel, and a worker killed -9."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment

from config import Settings
from devkit.processes import spawn_worker
from store.temporal import connect
from tests.helpers.git import git
from tests.helpers.processes import alive, codex_pid, wait_for
from tests.helpers.temporal import temporal_address
from workflows.codex_task import CodexTaskWorkflow
from workflows.types.codex import CodexTaskOutcome, CodexTaskRequest


def request(workspace: Path, *directives: str, **kw) -> CodexTaskRequest:
    prompt = "Task.\n" + "\n".join(f"@fake {d}" for d in directives)
    return CodexTaskRequest(workspace=str(workspace), prompt=prompt, **kw)


async def test_completes_with_checkpoints(dev_worker, task_queue: str, workspace: Path) -> None:
    handle = await dev_worker.start_workflow(
        CodexTaskWorkflow.run,
        request(workspace, "write=hello.py:print('hello')\\n"),
        id=f"codex-{uuid.uuid4()}",
        task_queue=task_queue,
    )
    outcome: CodexTaskOutcome = await handle.result()
    assert outcome.result.success and outcome.result.changed_files == ["hello.py"]
    assert (
        outcome.after.changed_files == ["hello.py"]
        and outcome.after.parent == outcome.before.commit
    )
    assert (await git(workspace, "rev-parse", "HEAD")).strip() == outcome.after.commit
    assert (await git(workspace, "status", "--porcelain")).strip() == ""
    status = await handle.query(CodexTaskWorkflow.status)
    assert status.state == "completed" and status.result and status.result.thread_id


async def test_failure_after_retries_carries_codex_error(
    dev_worker, task_queue: str, workspace: Path
) -> None:
    handle = await dev_worker.start_workflow(
        CodexTaskWorkflow.run,
        request(workspace, "error=quota exceeded", "exit=1", max_attempts=2),
        id=f"codex-{uuid.uuid4()}",
        task_queue=task_queue,
    )
    with pytest.raises(WorkflowFailureError) as err:
        await handle.result()
    assert "quota exceeded" in str(err.value.cause)
    status = await handle.query(CodexTaskWorkflow.status)
    assert status.state == "failed" and "quota exceeded" in (status.error or "")


async def test_cancel_reaches_codex(dev_worker, task_queue: str, workspace: Path) -> None:
    handle = await dev_worker.start_workflow(
        CodexTaskWorkflow.run,
        request(workspace, "pidfile=codex.pid", "hang", heartbeat_timeout_s=2),
        id=f"codex-{uuid.uuid4()}",
        task_queue=task_queue,
    )
    pid = await codex_pid(workspace)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as err:
        await handle.result()
    assert isinstance(err.value.cause, CancelledError)
    # The workflow waited for the activity to stop codex before reporting itself cancelled.
    assert not alive(pid)
    assert (await handle.query(CodexTaskWorkflow.status)).state == "cancelled"


@pytest.mark.slow
async def test_worker_killed_mid_task_resumes_without_stacking_edits(
    temporal_dev: WorkflowEnvironment,
    settings: Settings,
    task_queue: str,
    workspace: Path,
    tmp_path,
) -> None:
    settings = settings.model_copy(
        update={"temporal_address": temporal_address(temporal_dev), "task_queue": task_queue}
    )
    first = spawn_worker(settings, log=tmp_path / "worker1.log")
    try:
        handle = await (await connect(settings)).start_workflow(
            CodexTaskWorkflow.run,
            request(
                workspace,
                "pidfile=codex.pid",
                "append=log.txt:one line\\n",
                "sleep=3",
                heartbeat_timeout_s=2,
            ),  # fmt: skip
            id=f"codex-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        log = workspace / "log.txt"
        await wait_for(lambda: log.exists(), within=30)
        first_codex = await codex_pid(workspace)
        first.send_signal(signal.SIGKILL)
        first.wait()
        # The dead worker's codex goes with it (parent-death signal), before anything restarts.
        await wait_for(lambda: not alive(first_codex), within=5)
    finally:
        first.kill()

    second = spawn_worker(settings, log=tmp_path / "worker2.log")
    try:
        outcome: CodexTaskOutcome = await asyncio.wait_for(handle.result(), timeout=60)
    finally:
        second.terminate()
        second.wait(timeout=20)
    assert outcome.result.success and outcome.result.attempt == 2
    assert (workspace / "log.txt").read_text() == "one line\n"
    history = await handle.fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    # One codex activity, retried by Temporal; never scheduled a second time by the workflow.
    assert scheduled.count("run_codex_task") == 1
