"""The codex runner against the fake codex: events, heartbeats, cancel, timeout, failures."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import signal
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.codex import CodexRunner, codex_command
from activities.records import Recorder
from activities.workspace import Workspace, checkpoint
from config import Settings
from core.codex_cli import codex_env
from core.workspaces import repo_of
from tests.helpers.processes import alive, host_pid, wait_for
from workflows.types.codex import CodexResult, CodexTaskInput


def task(workspace: Path, *directives: str, **kw) -> CodexTaskInput:
    prompt = "Do the thing.\n" + "\n".join(f"@fake {d}" for d in directives)
    return CodexTaskInput(task_id="t1", workspace=str(workspace), prompt=prompt, **kw)


async def codex_events(recorder: Recorder, task_id: str = "t1") -> list[dict]:
    """What codex printed for a task, from the event log."""
    events = await recorder.events.read(task_id, limit=10_000)
    return [event.payload for event in events if event.kind == "codex.event"]


async def test_runs_codex_and_reports_compact_result(
    settings: Settings, recorder: Recorder, workspace: Path
) -> None:
    runner = CodexRunner(settings, recorder)
    result: CodexResult = await ActivityEnvironment().run(
        runner.run,
        task(
            workspace,
            "events=3",
            "write=src/app.py:print('hi')\\n",
            "tokens=120,30",
            "message=All done.",
        ),
    )
    assert result.success and result.exit_code == 0
    assert result.final_message == "All done."
    assert result.changed_files == ["src/app.py"]
    assert (workspace / "src" / "app.py").read_text() == "print('hi')\n"
    assert result.usage.input_tokens == 120 and result.usage.output_tokens == 30
    assert result.thread_id and result.duration_s > 0
    assert "src/app.py" in result.output_tail

    # The full output is in the event log, in the order codex printed it.
    lines = await codex_events(recorder)
    kinds = [line["type"] for line in lines]
    assert kinds[0] == "thread.started" and kinds[-1] == "turn.completed"
    assert result.events == len(lines)
    commands = [
        line["item"]["command"]
        for line in lines
        if line["type"] == "item.completed" and line["item"]["type"] == "command_execution"
    ]
    assert len(commands) == 3


async def test_heartbeats_carry_progress(
    settings: Settings, recorder: Recorder, workspace: Path
) -> None:
    beats: list = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details[0])
    await env.run(CodexRunner(settings, recorder).run, task(workspace, "delay=0.25", "events=6"))
    assert len(beats) >= 3
    assert all(b["base_commit"] for b in beats)
    counts = [b["events"] for b in beats]
    assert counts == sorted(counts) and counts[-1] > 0
    assert any(b["pid"] for b in beats)


async def test_garbage_lines_are_tolerated(
    settings: Settings, recorder: Recorder, workspace: Path
) -> None:
    result = await ActivityEnvironment().run(
        CodexRunner(settings, recorder).run, task(workspace, "garbage")
    )
    assert result.success
    assert any(line["type"] == "garbage" for line in await codex_events(recorder))


async def test_nonzero_exit_is_a_failure_carrying_codex_error(
    settings: Settings, recorder: Recorder, workspace: Path
) -> None:
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(
            CodexRunner(settings, recorder).run,
            task(workspace, "error=model refused the request", "exit=3"),
        )
    assert err.value.type == "CodexFailed" and not err.value.non_retryable
    assert "model refused the request" in str(err.value) and "exit 3" in str(err.value)
    details = err.value.details[0]
    assert details["exit_code"] == 3 and details["success"] is False
    # What codex wrote to stderr is in the task's log too, line by line (terminals show it).
    events = await recorder.events.read("t1", limit=10_000)
    stderr = [e.payload["line"] for e in events if e.kind == "codex.stderr"]
    assert "model refused the request" in stderr


async def test_cancel_ends_the_process_group(
    settings: Settings, recorder: Recorder, workspace: Path
) -> None:
    env = ActivityEnvironment()
    beats: list = []
    env.on_heartbeat = lambda *d: beats.append(d[0])
    run = asyncio.create_task(
        env.run(CodexRunner(settings, recorder).run, task(workspace, "child", "hang"))
    )
    found = None
    for _ in range(200):
        if found := re.search(r"child_pid=(\d+)", json.dumps(await codex_events(recorder))):
            break
        await asyncio.sleep(0.05)
    assert found
    child = host_pid(int(found.group(1)), workspace)
    codex_pid = next(b["pid"] for b in reversed(beats) if b["pid"])
    assert alive(child) and alive(codex_pid)

    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await wait_for(lambda: not alive(codex_pid) and not alive(child), within=5)


async def test_sigkill_after_grace_when_codex_ignores_sigterm(
    settings: Settings, recorder: Recorder, workspace: Path
) -> None:
    settings = settings.model_copy(update={"codex_kill_grace_s": 0.5})
    env = ActivityEnvironment()
    beats: list = []
    env.on_heartbeat = lambda *d: beats.append(d[0])
    run = asyncio.create_task(
        env.run(CodexRunner(settings, recorder).run, task(workspace, "ignore_term", "hang"))
    )
    await wait_for(lambda: any(b["pid"] for b in beats))
    await asyncio.sleep(0.3)  # let the fake install its SIGTERM handler
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    pid = next(b["pid"] for b in beats if b["pid"])
    assert not alive(pid)


async def test_timeout_stops_codex(settings: Settings, recorder: Recorder, workspace: Path) -> None:
    env = ActivityEnvironment()
    beats: list = []
    env.on_heartbeat = lambda *d: beats.append(d[0])
    with pytest.raises(ApplicationError) as err:
        await env.run(CodexRunner(settings, recorder).run, task(workspace, "hang", timeout_s=1))
    assert err.value.type == "CodexTimeout"
    pid = next(b["pid"] for b in beats if b["pid"])
    assert not alive(pid)


async def test_retry_restores_the_starting_checkpoint(
    settings: Settings, recorder: Recorder, workspace: Path
) -> None:
    (workspace / "log.txt").write_text("base\n")
    (workspace / ".gitignore").write_text("build/\n")
    base = (await checkpoint(Workspace(repo_of(settings, workspace)), settings, "base")).commit
    # Ignored files a build or an install made (and that took minutes to make).
    for ignored in ("build/out.bin", "node_modules/dep/index.js", ".venv/bin/python"):
        (workspace / ignored).parent.mkdir(parents=True, exist_ok=True)
        (workspace / ignored).write_text("expensive")
    # What a crashed first attempt left behind: a half-done edit and a stray file.
    (workspace / "log.txt").write_text("base\nfirst attempt\n")
    (workspace / "stray.txt").write_text("half done")
    (workspace / "src").mkdir()
    (workspace / "src" / "stray.py").write_text("half done")

    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=2, heartbeat_details=[{"base_commit": base}])
    result = await env.run(
        CodexRunner(settings, recorder).run, task(workspace, "append=log.txt:second\\n")
    )
    assert (workspace / "log.txt").read_text() == "base\nsecond\n"
    assert not (workspace / "stray.txt").exists() and not (workspace / "src").exists()
    assert result.attempt == 2 and result.changed_files == ["log.txt"]
    for ignored in ("build/out.bin", "node_modules/dep/index.js", ".venv/bin/python"):
        assert (workspace / ignored).read_text() == "expensive", ignored


@pytest.mark.parametrize(
    ("change", "error_type"),
    [
        ({"codex_bin": "/nonexistent/codex"}, "CodexNotInstalled"),
        ({"prompt": "   "}, "InvalidInput"),
        ({"workspace": "/tmp"}, "WorkspaceNotAllowed"),
    ],
)
async def test_configuration_errors_are_not_retryable(
    settings: Settings, recorder: Recorder, workspace: Path, change: dict, error_type: str
) -> None:
    settings = settings.model_copy(update={k: v for k, v in change.items() if k == "codex_bin"})
    request = task(workspace).model_copy(
        update={k: v for k, v in change.items() if k != "codex_bin"}
    )
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(CodexRunner(settings, recorder).run, request)
    assert err.value.type == error_type and err.value.non_retryable
    assert "CODEXFLOW_" in str(err.value) or error_type != "CodexNotInstalled"


def test_environment_is_scrubbed(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-agents-secret")
    monkeypatch.setenv("CODEXFLOW_API_TOKEN", "api-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    env = codex_env(settings)
    assert not {"OPENAI_API_KEY", "CODEXFLOW_API_TOKEN", "AWS_SECRET_ACCESS_KEY"} & env.keys()
    assert env["CODEX_HOME"] == str(settings.codex_home.resolve())
    assert "sk-agents-secret" not in json.dumps(env)


def test_command_line_uses_custom_provider_and_sandbox(settings: Settings, workspace: Path) -> None:
    from pydantic import SecretStr

    settings = settings.model_copy(
        update={"codex_base_url": "http://127.0.0.1:9/v1", "codex_api_key": SecretStr("k")}
    )
    cmd = codex_command(
        settings, Path("/bin/codex"), task(workspace), workspace, Path("/tmp/o"), "workspace-write"
    )
    assert cmd[1:3] == ["exec", "--json"]
    assert cmd[cmd.index("-s") + 1] == "workspace-write"
    assert any('base_url="http://127.0.0.1:9/v1"' in part for part in cmd)
    assert cmd[-2] == "--" and cmd[-1].startswith("Do the thing.")
    assert codex_env(settings)["CODEXFLOW_PROVIDER_API_KEY"] == "k"
    assert signal.SIGTERM  # the runner signals groups; nothing else to assert on the command line
    assert os.sep in cmd[0]
