"""What isolation and durability cost per codex task.

    .venv/bin/python bench/codex_overhead.py [-n 20]

Three runs of the same fake codex task, in this process: the subprocess alone; the subprocess in
codexflow's outer sandbox (bubblewrap: namespaces, mounts, a private /tmp, the project's codex
home); and the whole CodexTaskWorkflow (Temporal, two git checkpoints, the activity with its
sandbox, heartbeats, the result). Then the real codex binary (one scripted command, then its
answer) alone and in the sandbox, which is what a real task pays.
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
from activities.sandbox import task_box  # noqa: E402
from config import Settings  # noqa: E402
from core.codex_cli import codex_env, find_codex_binary  # noqa: E402
from core.workspaces import create_workspace, repo_of  # noqa: E402
from devkit.processes import scratch_settings, start_dev_server  # noqa: E402
from devkit.responses_server import Message, ScriptedResponsesServer, ToolCall, Turn  # noqa: E402
from worker import build_worker  # noqa: E402
from workflows.codex_task import CodexTaskWorkflow  # noqa: E402
from workflows.types.codex import CodexTaskInput, CodexTaskRequest  # noqa: E402

# The same python3 for the fake codex in and out of the sandbox (which shows only /usr's).
_SAME_PATH = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
PROMPT = "Benchmark task.\n@fake write=out.txt:hello\\n\n@fake events=5"


async def direct(settings: Settings, workspace: Path, n: int, isolated: bool) -> list[float]:
    """The codex subprocess alone, in or out of the outer sandbox (its private tmp and codex home
    are made for every task, as the runner does)."""
    settings = settings.model_copy(update={"codex_isolation": "bwrap" if isolated else "none"})
    binary = find_codex_binary(settings)
    git_dir = repo_of(settings, workspace).git_dir
    times = []
    for i in range(n):
        task = CodexTaskInput(task_id=f"direct-{i}", workspace=str(workspace), prompt=PROMPT)
        start = time.perf_counter()
        with task_box(settings, workspace, (git_dir,), workspace.name) as box:
            last = box.inside_tmp / "last.txt"
            cmd = codex_command(settings, binary, task, workspace, last, settings.codex_sandbox)
            proc = await asyncio.create_subprocess_exec(
                *box.wrap(settings, binary, cmd), cwd=workspace,
                env=box.env(codex_env(settings) | _SAME_PATH), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )  # fmt: skip
            out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
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


def _real_codex(settings: Settings, server: ScriptedResponsesServer) -> Settings:
    return settings.model_copy(
        update={"codex_bin": None, "codex_base_url": server.base_url, "codex_model": "gpt-5.5"}
    )


async def main(n: int) -> None:
    # Not under /tmp: codex refuses to set up its own sandbox with its home under TMPDIR.
    with tempfile.TemporaryDirectory(dir=Path.cwd() / ".codexflow") as tmp:
        settings = await scratch_settings(Path(tmp))
        workspace = settings.workspaces_root / "bench"
        await create_workspace(settings, workspace)
        env = await start_dev_server()
        base: list[float] = []
        boxed: list[float] = []
        try:
            for _ in range(n):  # interleaved, so that both see the same machine
                base += await direct(settings, workspace, 1, isolated=False)
                boxed += await direct(settings, workspace, 1, isolated=True)
            wf = await durable(env, settings, workspace, n)
        finally:
            await env.shutdown()
        turns: list[Turn] = [
            ToolCall("exec_command", {"cmd": "echo hi", "login": False}),
            Message("Done."),
        ]
        real_base: list[float] = []
        real_boxed: list[float] = []
        for _ in range(max(3, n // 2)):
            for isolated, times in ((False, real_base), (True, real_boxed)):
                with ScriptedResponsesServer(list(turns)) as server:
                    times += await direct(_real_codex(settings, server), workspace, 1, isolated)
    b, s, w = (statistics.median(t) * 1000 for t in (base, boxed, wf))
    rb, rs = (statistics.median(t) * 1000 for t in (real_base, real_boxed))
    print(f"codex task overhead, fake codex, n={n} each (medians)")
    print(f"  direct subprocess             {b:8.1f} ms")
    print(f"  in the outer sandbox (bwrap)  {s:8.1f} ms   +{s - b:.1f} ms, ratio {s / b:.2f}x")
    print(f"  CodexTaskWorkflow             {w:8.1f} ms   +{w - b:.1f} ms, ratio {w / b:.2f}x")
    print(f"real codex binary, one scripted command, n={len(real_base)} each (medians)")
    print(f"  direct subprocess             {rb:8.1f} ms")
    print(f"  in the outer sandbox (bwrap)  {rs:8.1f} ms   +{rs - rb:.1f} ms, ratio {rs / rb:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=20)
    asyncio.run(main(parser.parse_args().n))
