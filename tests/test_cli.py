"""The codexflow command, run as a real subprocess against the test dev server and a worker process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from config import Settings
from devkit.processes import settings_env, spawn_worker
from tests.conftest import temporal_address


def codexflow(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXFLOW_")}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env={**env, **settings_env(settings), "COLUMNS": "400", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_task_runs_codex_and_prints_result(
    temporal_dev: WorkflowEnvironment, settings: Settings, task_queue: str, tmp_path: Path
) -> None:
    settings = settings.model_copy(
        update={"temporal_address": temporal_address(temporal_dev), "task_queue": task_queue}
    )
    worker = spawn_worker(settings, log=tmp_path / "worker.log")
    try:
        done = await asyncio.to_thread(
            codexflow,
            settings,
            "task",
            "Write it.\n@fake write=notes.md:# Notes\\n",
            "--workspace",
            "cli-demo",
        )
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    assert done.returncode == 0, done.stderr
    assert "changed: notes.md" in done.stdout
    assert "/namespaces/default/workflows/codex-task-" in done.stdout
    assert (settings.workspaces_root / "cli-demo" / "notes.md").read_text() == "# Notes\n"


def test_task_rejects_bad_input(settings: Settings, tmp_path: Path) -> None:
    outside = codexflow(settings, "task", "do it", "--workspace", str(tmp_path))
    assert outside.returncode == 2 and "outside CODEXFLOW_WORKSPACES_ROOT" in outside.stderr
    empty = codexflow(settings, "task", "  ", "--workspace", "x")
    assert empty.returncode == 2 and "prompt is empty" in empty.stderr
    sandbox = codexflow(settings, "task", "go", "--workspace", "x", "--sandbox", "yolo")
    assert sandbox.returncode == 2 and "unknown sandbox" in sandbox.stderr
    assert not (settings.workspaces_root / "x").exists()
