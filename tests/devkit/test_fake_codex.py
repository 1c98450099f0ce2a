"""The fake codex executable behaves like `codex exec --json` and obeys its @fake directives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.processes import alive

FAKE_CODEX = Path(__file__).resolve().parents[2] / "devkit" / "fake_codex.py"


def fake_codex(
    workspace: Path, prompt: str, *flags: str, output: Path | None = None
) -> subprocess.CompletedProcess[str]:
    command = [str(FAKE_CODEX), "exec", "--json", "--skip-git-repo-check", "-C", str(workspace)]
    if output is not None:
        command += ["-o", str(output)]
    return subprocess.run(
        [*command, *flags, prompt],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=10,
    )


def events_of(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def completed_items(events: list[dict[str, Any]], item_type: str) -> list[dict[str, Any]]:
    items = [e["item"] for e in events if e["type"] == "item.completed"]
    return [item for item in items if item["type"] == item_type]


def start(workspace: Path, prompt: str) -> subprocess.Popen[str]:
    """Start the fake in its own session and wait until it has begun its turn."""
    command = [str(FAKE_CODEX), "exec", "--json", "--skip-git-repo-check", "-C", str(workspace)]
    process = subprocess.Popen(
        [*command, prompt],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    assert json.loads(process.stdout.readline())["type"] == "thread.started"
    return process


def wait_dead(pid: int, timeout: float = 3) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not alive(pid)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


def test_default_run_looks_like_the_real_one(workspace: Path, tmp_path: Path) -> None:
    output = tmp_path / "last.txt"
    result = fake_codex(workspace, "Build the thing.", "-s", "workspace-write", output=output)

    assert result.returncode == 0, result.stderr
    events = events_of(result.stdout)
    assert [e["type"] for e in events] == [
        "thread.started",
        "turn.started",
        "item.completed",
        "turn.completed",
    ]
    uuid.UUID(events[0]["thread_id"])
    assert events[2]["item"] == {"id": "item_0", "type": "agent_message", "text": "Done."}
    usage = events[3]["usage"]
    assert {
        "input_tokens",
        "cached_input_tokens",
        "output_tokens",
        "reasoning_output_tokens",
    } <= set(usage)
    assert output.read_text() == "Done."


def test_message_tokens_and_pidfile(workspace: Path) -> None:
    prompt = "Go.\n@fake message=All\\ngood\n@fake tokens=7,3\n@fake pidfile=run/codex.pid"
    (workspace / "run").mkdir()
    result = fake_codex(workspace, prompt)

    events = events_of(result.stdout)
    assert completed_items(events, "agent_message")[0]["text"] == "All\ngood"
    usage = events[-1]["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (7, 3)
    assert int((workspace / "run/codex.pid").read_text()) > 0


def test_file_directives(workspace: Path) -> None:
    (workspace / "old.txt").write_text("old")
    prompt = "\n".join(
        [
            "@fake write=src/app.py:print('hi')\\n",
            "@fake append=src/app.py:print('bye')\\n",
            "@fake delete=old.txt",
        ]
    )
    result = fake_codex(workspace, prompt)

    assert result.returncode == 0
    assert (workspace / "src/app.py").read_text() == "print('hi')\nprint('bye')\n"
    assert not (workspace / "old.txt").exists()
    changes = completed_items(events_of(result.stdout), "file_change")
    assert [c["changes"][0]["kind"] for c in changes] == ["add", "update", "delete"]
    assert changes[0]["changes"][0]["path"] == str(workspace / "src/app.py")
    assert {c["status"] for c in changes} == {"completed"}


def test_cmd_directive_runs_in_the_workspace(workspace: Path) -> None:
    result = fake_codex(workspace, "@fake cmd=pwd; echo made > made.txt\n@fake cmd=exit 3")

    started = [e for e in events_of(result.stdout) if e["type"] == "item.started"]
    assert started[0]["item"]["status"] == "in_progress"
    ok, failed = completed_items(events_of(result.stdout), "command_execution")
    assert ok["aggregated_output"] == f"{workspace}\n"
    assert (ok["exit_code"], ok["status"]) == (0, "completed")
    assert (failed["exit_code"], failed["status"]) == (3, "failed")
    assert (workspace / "made.txt").read_text() == "made\n"


def test_events_and_delay(workspace: Path) -> None:
    started = time.monotonic()
    result = fake_codex(workspace, "@fake events=5\n@fake delay=0.01")

    assert len(completed_items(events_of(result.stdout), "command_execution")) == 5
    assert time.monotonic() - started >= 14 * 0.01  # 14 events, each followed by a pause


@pytest.mark.parametrize(
    ("prompt", "code", "message"),
    [
        ("@fake error=model exploded", 1, "model exploded"),
        ("@fake exit=3\n@fake error=quota", 3, "quota"),
        ("@fake exit=4", 4, "fake codex failure"),
    ],
)
def test_failure(workspace: Path, tmp_path: Path, prompt: str, code: int, message: str) -> None:
    output = tmp_path / "last.txt"
    result = fake_codex(workspace, prompt, output=output)

    assert result.returncode == code
    events = events_of(result.stdout)
    assert events[-2:] == [
        {"type": "error", "message": message},
        {"type": "turn.failed", "error": {"message": message}},
    ]
    assert message in result.stderr
    assert output.read_text() == ""  # like the real one: an empty last message


def test_garbage(workspace: Path) -> None:
    result = fake_codex(workspace, "@fake garbage")

    parsed, junk = [], []
    for line in result.stdout.splitlines():
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            junk.append(line)
    assert junk
    known = {"thread.started", "turn.started", "item.completed", "turn.completed"}
    assert {e["type"] for e in parsed} - known  # an event type nobody knows
    assert parsed[-1]["type"] == "turn.completed"


def test_version_login_and_bad_command_lines(workspace: Path) -> None:
    version = subprocess.run([str(FAKE_CODEX), "--version"], capture_output=True, text=True)
    assert version.stdout.strip() == "codex-cli 0.169.0 (fake)"
    login = subprocess.run([str(FAKE_CODEX), "login", "status"], capture_output=True, text=True)
    assert login.returncode == 0 and "API key" in login.stdout

    unknown_flag = fake_codex(workspace, "hi", "--frobnicate")
    assert unknown_flag.returncode == 2 and "--frobnicate" in unknown_flag.stderr
    unknown_directive = fake_codex(workspace, "@fake teleport")
    assert unknown_directive.returncode == 2 and "teleport" in unknown_directive.stderr


def test_refuses_a_non_git_workspace_without_the_flag(workspace: Path) -> None:
    def without_the_flag() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(FAKE_CODEX), "exec", "--json", "-C", str(workspace), "hi"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )

    result = without_the_flag()
    assert result.returncode == 1 and "skip-git-repo-check" in result.stderr

    # An empty .git directory above it (a developer's stray one) does not make it a repository.
    (workspace.parent / ".git").mkdir(exist_ok=True)
    again = without_the_flag()
    assert again.returncode == 1 and "skip-git-repo-check" in again.stderr


def test_hang_ends_on_sigterm(workspace: Path) -> None:
    process = start(workspace, "@fake hang")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=3) == -signal.SIGTERM


def test_ignore_term_needs_sigkill(workspace: Path) -> None:
    process = start(workspace, "@fake ignore_term\n@fake hang")
    process.send_signal(signal.SIGTERM)
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(timeout=0.3)
    process.kill()
    assert process.wait(timeout=3) == -signal.SIGKILL


def test_child_is_reported_and_dies_with_its_process_group(workspace: Path) -> None:
    process = start(workspace, "@fake child\n@fake hang")
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(3)]  # turn.started, item.started/completed
    output = json.loads(lines[-1])["item"]["aggregated_output"]
    child_pid = int(output.strip().removeprefix("child_pid="))
    try:
        assert alive(child_pid)
        assert os.getpgid(child_pid) == process.pid  # in the fake's own group
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=3)
    assert wait_dead(child_pid)
