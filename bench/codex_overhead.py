"""What durability costs per codex task: the fake codex run directly vs through CodexTaskWorkflow.

    .venv/bin/python bench/codex_overhead.py [-n 20]

Both halves run in this process against the same fake codex, so the difference is Temporal
(start, two git checkpoints, the activity, heartbeats, result) and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities.codex import codex_command  # noqa: E402
from config import Settings  # noqa: E402
from core.codex_cli import codex_env, find_codex_binary  # noqa: E402
from core.git import create_workspace  # noqa: E402
from devkit.processes import scratch_settings, start_dev_server  # noqa: E402
from worker import build_worker  # noqa: E402
from workflows.codex_task import CodexTaskWorkflow  # noqa: E402
from workflows.types.codex import (
    CodexTaskInput,
    CodexTaskRequest,  # noqa: E402
)

PROMPT = "Benchmark task.\n@fake write=out.txt:hello\\n\n@fake events=5"


async def direct(settings: Settings, workspace: Path, n: int) -> list[float]:
    binary = find_codex_binary(settings)
    times = []
    for i in range(n):
        task = CodexTaskInput(task_id=f"direct-{i}", workspace=str(workspace), prompt=PROMPT)
        cmd = codex_command(settings, binary, task, workspace, workspace.parent / "last.txt")
        start = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            *cmd, cwd=workspace, env=codex_env(settings), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        await proc.communicate()
        times.append(time.perf_counter() - start)
    return times


async def durable(env: WorkflowEnvironment, settings: Settings, workspace: Path, n: int):
    times = []
    async with build_worker(env.client, settings, task_queue="bench"):
        for _ in range(n):
            start = time.perf_counter()
            await env.client.execute_workflow(
                CodexTaskWorkflow.run,
                CodexTaskRequest(workspace=str(workspace), prompt=PROMPT),
                id=f"bench-{uuid.uuid4()}",
                task_queue="bench",
            )
            times.append(time.perf_counter() - start)
    return times


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = await scratch_settings(Path(tmp))
        workspace = settings.workspaces_root / "bench"
        await create_workspace(workspace)
        env = await start_dev_server()
        try:
            base = await direct(settings, workspace, n)
            wf = await durable(env, settings, workspace, n)
        finally:
            await env.shutdown()
    b, w = statistics.median(base) * 1000, statistics.median(wf) * 1000
    print(f"codex task overhead, fake codex, n={n} each (medians)")
    print(f"  direct subprocess        {b:8.1f} ms")
    print(f"  CodexTaskWorkflow        {w:8.1f} ms")
    print(f"  overhead per task        {w - b:8.1f} ms   ratio {w / b:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=20)
    asyncio.run(main(parser.parse_args().n))
