"""The codex runner driving the real codex binary against the devkit scripted Responses server."""

from __future__ import annotations

from pathlib import Path

from temporalio.testing import ActivityEnvironment

from activities.codex import CodexRunner
from activities.records import Recorder
from config import Settings
from devkit.responses_server import Message, Patch, ScriptedResponsesServer, ToolCall, Turn
from workflows.types.codex import CodexTaskInput

PATCH = "*** Begin Patch\n*** Add File: src/util.py\n+def double(x):\n+    return 2 * x\n*** End Patch\n"


def real_codex(settings: Settings, server: ScriptedResponsesServer) -> Settings:
    return settings.model_copy(
        update={"codex_bin": None, "codex_base_url": server.base_url, "codex_model": "gpt-5.5"}
    )


async def test_real_codex_exec_command_and_apply_patch(
    settings: Settings, recorder: Recorder, workspace: Path
) -> None:
    script: list[Turn] = [
        ToolCall("exec_command", {"cmd": "printf 'hello\\n' > hello.txt", "login": False}),
        Patch(PATCH),
        Message("Created hello.txt and src/util.py."),
    ]
    with ScriptedResponsesServer(script, usage=(150, 25)) as server:
        runner = CodexRunner(real_codex(settings, server), recorder)
        result = await ActivityEnvironment().run(
            runner.run,
            CodexTaskInput(task_id="real-1", workspace=str(workspace), prompt="Create the files."),
        )
    assert result.success and result.exit_code == 0
    assert (workspace / "hello.txt").read_text() == "hello\n"
    assert "def double" in (workspace / "src" / "util.py").read_text()
    assert sorted(result.changed_files) == ["hello.txt", "src/util.py"]
    assert result.final_message == "Created hello.txt and src/util.py."
    # Three model requests in one turn, each reporting 150 in / 25 out.
    assert result.usage.input_tokens == 450 and result.usage.output_tokens == 75
    assert result.thread_id
    # codex saw the prompt, and none of the worker's secrets reached its requests.
    assert "Create the files." in str(server.requests[0]["input"])


async def test_real_codex_sees_no_secrets(
    settings: Settings, recorder: Recorder, workspace: Path, monkeypatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-leak-this")
    script: list[Turn] = [
        ToolCall("exec_command", {"cmd": "env > env.txt", "login": False}),
        Message("ok"),
    ]
    with ScriptedResponsesServer(script) as server:
        runner = CodexRunner(real_codex(settings, server), recorder)
        await ActivityEnvironment().run(
            runner.run,
            CodexTaskInput(task_id="real-2", workspace=str(workspace), prompt="Dump env."),
        )
    env_dump = (workspace / "env.txt").read_text()
    assert "PATH=" in env_dump
    assert "sk-never-leak-this" not in env_dump
    assert "CODEXFLOW_PROVIDER_API_KEY" not in env_dump
