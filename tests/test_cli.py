"""The codexflow command, run as a real subprocess against the test dev server and a worker process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from cli.stack import reachable
from config import Settings, settings_env
from devkit.processes import free_port, spawn_worker
from tests.helpers.api import serving
from tests.helpers.temporal import temporal_address


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
    assert (
        outside.returncode == 2 and "not directly under CODEXFLOW_WORKSPACES_ROOT" in outside.stderr
    )
    empty = codexflow(settings, "task", "  ", "--workspace", "x")
    assert empty.returncode == 2 and "prompt is empty" in empty.stderr
    sandbox = codexflow(settings, "task", "go", "--workspace", "x", "--sandbox", "yolo")
    assert sandbox.returncode == 2 and "unknown sandbox" in sandbox.stderr
    assert not (settings.workspaces_root / "x").exists()


async def test_api_without_a_token_binds_loopback_only(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXFLOW_")}
    server = subprocess.Popen(  # noqa: ASYNC220 - a server for the test's lifetime
        [sys.executable, "-m", "cli", "api", "--host", "0.0.0.0", "--port", str(port)],
        env={**env, **settings_env(settings), "COLUMNS": "400"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        health = None
        async with httpx.AsyncClient(timeout=20) as client:
            for _ in range(300):
                try:
                    health = await client.get(f"http://127.0.0.1:{port}/api/health")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=20)
    assert health is not None, stderr
    assert health.status_code == 200 and health.json()["database"]["ok"]
    assert "binding 127.0.0.1 only instead of 0.0.0.0" in stderr


def test_server_serves_the_ui_on_its_own_port_behind_a_public_url(tmp_path: Path) -> None:
    """Behind a proxy the UI URL has no port (https://…): --ui-port says where to serve it."""
    temporal_port, ui_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXFLOW_")}
    env |= {
        "CODEXFLOW_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "CODEXFLOW_TEMPORAL_UI_URL": "https://temporal.example.com",
    }
    command = [sys.executable, "-m", "cli", "server", "--db-file", str(tmp_path / "t.db")]
    server = subprocess.Popen(
        [*command, "--ui-port", str(ui_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (
            reachable(f"127.0.0.1:{ui_port}") and reachable(env["CODEXFLOW_TEMPORAL_ADDRESS"])
        ):
            assert server.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
    assert (tmp_path / "t.db").exists()


async def test_a_wrong_token_is_reported_as_refused(api_settings: Settings) -> None:
    """The API runs with a token; the CLI sent another one (or none): it says which."""
    async with serving(api_settings) as url:
        wrong = api_settings.model_copy(
            update={"api_url": url, "api_token": SecretStr("not-the-server-token-0123")}
        )
        refused = await asyncio.to_thread(codexflow, wrong, "sessions")
        assert refused.returncode == 1 and "the API refused the token" in refused.stderr
        none = await asyncio.to_thread(
            codexflow,
            api_settings.model_copy(update={"api_url": url, "api_token": None}),
            "sessions",
        )
        assert none.returncode == 1 and "set CODEXFLOW_API_TOKEN" in none.stderr


async def test_task_goes_to_the_queue_the_running_stack_serves(
    temporal_dev: WorkflowEnvironment, settings: Settings, task_queue: str, tmp_path: Path
) -> None:
    """As under `codexflow up --offline`, whose worker serves a queue of its own: the API says
    which, and the task is queued there rather than waiting forever on the configured one."""
    served = settings.model_copy(
        update={"temporal_address": temporal_address(temporal_dev), "task_queue": task_queue}
    )
    worker = spawn_worker(served, log=tmp_path / "worker.log")
    try:
        async with serving(served) as url:
            elsewhere = served.model_copy(
                update={"task_queue": "nobody-serves-this", "api_url": url}
            )
            done = await asyncio.to_thread(
                codexflow, elsewhere, "task", "Write it.\n@fake write=a.md:a\\n", "--workspace", "q"
            )
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    assert done.returncode == 0, done.stderr
    assert (served.workspaces_root / "q" / "a.md").read_text() == "a\n"
