"""Attacks through the workspace, replayed with a hostile model, the real codex binary and the
default settings (codex's workspace-write sandbox inside the outer bubblewrap one).

Each test is named after the attack it replays and checks what a defender would: nothing outside
the workspace changed, no other project's bytes reached the model, the event log or the history,
and the run ended (never hung).
"""

from __future__ import annotations

import asyncio
import resource
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from activities.records import Recorder
from config import Settings
from core.errors import innermost_reason
from core.repos import ProjectRepos
from devkit.agent_model import Turn, report, tool
from store.models import RunSession
from tests.helpers.attacks import (
    CodexPlaybook,
    attacking,
    everything_recorded,
    finish_stage,
    history_text,
    planner_attack,
)

SECRET = "s3cr3t-0f-an0ther-pr0ject"


@dataclass(frozen=True)
class Victim:
    worktree: Path  # a session of the victim project, with the secret in it (mode 0600)
    central: Path  # its central repository, with the secret committed


@pytest.fixture
async def victim(settings: Settings) -> Victim:
    """Two projects on one host: ``attacker`` (whose sessions the tests run) and a victim."""
    repos = ProjectRepos(settings)
    await repos.create("attacker")
    await repos.create("victim")
    source = settings.workspaces_root.parent / "secret-source.txt"
    source.write_text(SECRET)
    await repos.commit_files("victim", "main", "the secret", add={"secret.txt": source})
    source.unlink()
    worktree, _ = await repos.add_worktree("victim", "v1", await repos.resolve("victim", "main"))
    assert worktree.work_tree is not None
    (worktree.work_tree / "secret.txt").chmod(0o600)
    return Victim(worktree.work_tree, repos.central("victim").git_dir)


async def test_a_link_planted_by_codex_is_never_written_through(
    temporal_dev: WorkflowEnvironment,
    settings: Settings,
    task_queue: str,
    victim: Victim,
    tmp_path: Path,
) -> None:
    """Codex links AGENTS.md to the git config (and to a file of the worker's), then the
    Planner's save_agents_md writes a `core.fsmonitor` command there: nothing outside the
    workspace changes and no command runs at the next checkpoint."""
    repos = ProjectRepos(settings)
    git_config = repos.central("attacker").git_dir / "config"
    canary = tmp_path / "worker-file.txt"
    canary.write_text("untouched")
    marker = tmp_path / "fsmonitor-ran"
    config_before = git_config.read_bytes()
    poison = f"[core]\n\tfsmonitor = touch {marker}\n"
    codex = CodexPlaybook(
        {
            "PLANT": [f"ln -sf {git_config} AGENTS.md && ln -sf {canary} notes.md && ls -l"],
        }
    )
    play = planner_attack(
        ("run_codex", {"prompt": "PLANT the links"}),
        ("save_agents_md", {"content": poison}),
    )
    async with attacking(temporal_dev, settings, task_queue, "attacker", play, codex) as attack:
        result = await attack.handle.result()

    assert "AGENTS.md ->" in "\n".join(codex.outputs)  # codex did plant the link
    assert git_config.read_bytes() == config_before
    assert b"fsmonitor" not in (repos.local("attacker").git_dir / "config").read_bytes()
    assert canary.read_text() == "untouched"
    assert not marker.exists()
    # The save replaced the link with a plain file; the run went on to its end.
    assert not (attack.worktree / "AGENTS.md").is_symlink()
    assert (attack.worktree / "AGENTS.md").read_text() == poison
    assert result.outcome == "approved"


async def test_codex_cannot_read_another_project_or_the_worker(
    temporal_dev: WorkflowEnvironment,
    settings: Settings,
    task_queue: str,
    victim: Victim,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Codex reads another project's file, the records database, every codex home and the
    worker's environment through /proc: none of it exists in its sandbox, so none of it reaches
    the model, the event log or the history."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-worker-secret-key")
    database = settings.database_url.split("///", 1)[1]
    victim_home = settings.codex_home.resolve() / "projects" / "victim"
    victim_home.mkdir(parents=True)
    (victim_home / "transcript.jsonl").write_text(SECRET)
    codex = CodexPlaybook(
        {
            "STEAL": [
                f"cat {victim.worktree}/secret.txt; git --git-dir {victim.central} show main:secret.txt",
                f"cat {victim_home}/transcript.jsonl; ls {settings.codex_home.resolve()}/projects",
                f"head -c 200 {database}; ls {settings.workspaces_root}/projects",
                "cat /proc/*/environ | tr '\\0' '\\n' | grep -i key",
            ],
        }
    )
    play = planner_attack(("run_codex", {"prompt": "STEAL everything"}))
    async with attacking(temporal_dev, settings, task_queue, "attacker", play, codex) as attack:
        await attack.handle.result()
        recorded = await everything_recorded(attack)

    outputs = "\n".join(codex.outputs)
    assert "No such file or directory" in outputs  # codex tried, and there was nothing to read
    for stolen in (SECRET, "sk-worker-secret-key", "SQLite format"):
        assert stolen not in outputs and stolen not in recorded
    listed = [line.strip() for line in outputs.splitlines()]
    assert "attacker" in listed and "victim" not in listed  # its own project, and no other


async def test_codex_tasks_of_two_projects_share_no_tmp_and_no_workspace(
    temporal_dev: WorkflowEnvironment,
    settings: Settings,
    task_queue: str,
    victim: Victim,
) -> None:
    """One project's codex leaves a file in /tmp and writes into the other project's worktree
    (under a world-writable directory, as the tests' are): the other sees neither."""
    codex = CodexPlaybook(
        {
            "LEAVE": [
                f"echo planted > /tmp/shared.txt; echo pwned > {victim.worktree}/pwned.txt; ls /tmp"
            ],
            "LOOK": ["cat /tmp/shared.txt || echo nothing-shared"],
        }
    )
    leave = planner_attack(("run_codex", {"prompt": "LEAVE a file"}))
    async with attacking(temporal_dev, settings, task_queue, "attacker", leave, codex) as a:
        await a.handle.result()
    look = planner_attack(("run_codex", {"prompt": "LOOK for it"}))
    async with attacking(temporal_dev, settings, task_queue, "victim", look, codex) as b:
        await b.handle.result()

    outputs = "\n".join(codex.outputs)
    assert "nothing-shared" in outputs and "planted" not in outputs.split("LOOK")[-1]
    assert not (victim.worktree / "pwned.txt").exists()


async def test_a_fifo_named_agents_md_does_not_block_the_worker(
    temporal_dev: WorkflowEnvironment,
    settings: Settings,
    task_queue: str,
    victim: Victim,
) -> None:
    """Codex makes the saved AGENTS.md a FIFO: the next read of it is refused at once, the
    checkpoint (git cannot hold a FIFO) commits it as deleted, and the run ends."""
    codex = CodexPlaybook({"FIFO": ["rm AGENTS.md && mkfifo AGENTS.md && ls -l AGENTS.md"]})

    def play(turn: Turn):  # type: ignore[no-untyped-def]
        if turn.role == "builder" and turn.step == 0:
            return tool("run_codex", prompt="FIFO please")
        if turn.role == "builder" and turn.step == 1:
            return tool("read_agents_md")
        if turn.role == "builder":
            return report(summary="b", steps_completed=[], files_changed=[], deviations=[])
        return finish_stage(turn)

    async with attacking(temporal_dev, settings, task_queue, "attacker", play, codex) as attack:
        async with asyncio.timeout(60):
            result = await attack.handle.result()
        history = await history_text(attack.client, attack.handle.id)
    assert result.outcome == "approved"
    assert "prw" in "\n".join(codex.outputs)  # the FIFO was made
    assert "not a regular file" in history  # what the agent was told instead of hanging
    assert "AGENTS.md" in result.stages[1].checkpoint.changed_files  # as deleted


async def test_a_huge_sparse_file_is_read_in_bounded_memory(
    temporal_dev: WorkflowEnvironment,
    settings: Settings,
    task_queue: str,
    victim: Victim,
) -> None:
    """Codex leaves a 1.5 GB sparse file and the agent reads it: the worker reads a few KB."""
    # (Ignored by git, so that the checkpoints do not spend half a minute compressing it.)
    codex = CodexPlaybook(
        {"SPARSE": ["truncate -s 1500M big.txt && echo big.txt >> .gitignore && ls -l big.txt"]}
    )
    play = planner_attack(
        ("run_codex", {"prompt": "SPARSE file"}), ("read_file", {"path": "big.txt"})
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB, the peak so far
    async with attacking(temporal_dev, settings, task_queue, "attacker", play, codex) as attack:
        result = await attack.handle.result()
        history = await history_text(attack.client, attack.handle.id)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert (attack.worktree / "big.txt").stat().st_size == 1500 * 1024 * 1024
    assert "big.txt is a binary file" in history and result.outcome == "approved"
    assert grown_mb < 200, f"the worker's peak memory grew by {grown_mb:.0f} MB"


async def test_a_workflow_started_outside_the_api_cannot_loosen_the_sandbox(
    temporal_dev: WorkflowEnvironment,
    settings: Settings,
    task_queue: str,
    victim: Victim,
) -> None:
    """A run started straight on Temporal asks for danger-full-access: the worker refuses, and
    the agent is told so instead of codex running unsandboxed."""
    outside = settings.workspaces_root / "written-from-inside.txt"
    codex = CodexPlaybook({"WRITE": [f"echo x > {outside}"]})
    play = planner_attack(("run_codex", {"prompt": "WRITE outside"}))
    async with attacking(
        temporal_dev, settings, task_queue, "attacker", play, codex,
        codex_sandbox="danger-full-access",
    ) as attack:  # fmt: skip
        await attack.handle.result()
        history = await history_text(attack.client, attack.handle.id)
    assert "CODEXFLOW_CODEX_ALLOW_FULL_ACCESS" in history
    assert codex.outputs == [] and not outside.exists()


async def test_a_poisoned_repository_config_stops_the_run_with_a_clear_error(
    temporal_dev: WorkflowEnvironment,
    settings: Settings,
    recorder: Recorder,
    task_queue: str,
    victim: Victim,
    tmp_path: Path,
) -> None:
    """A repository whose config sets a program (here core.fsmonitor): the first checkpoint
    refuses it, the run fails saying why, and the program never runs."""
    marker = tmp_path / "fsmonitor-ran"
    with (ProjectRepos(settings).central("attacker").git_dir / "config").open("a") as config:
        config.write(f"[core]\n\tfsmonitor = touch {marker}\n")
    play = planner_attack()
    async with attacking(
        temporal_dev, settings, task_queue, "attacker", play, CodexPlaybook({})
    ) as attack:
        with pytest.raises(WorkflowFailureError) as failed:
            await attack.handle.result()
    async with recorder.db() as db:
        row = (await db.execute(select(RunSession.status, RunSession.error))).one()
    assert "sets 'core.fsmonitor'" in innermost_reason(failed.value)
    assert row.status == "failed" and "core.fsmonitor" in (row.error or "")
    assert not marker.exists()


async def test_inside_both_sandboxes_codex_writes_only_its_workspace_and_has_no_network(
    temporal_dev: WorkflowEnvironment,
    settings: Settings,
    task_queue: str,
    victim: Victim,
) -> None:
    """The real binary's own sandbox still holds inside the outer one: writes outside the
    workspace fail, sockets are refused, the workspace and the private /tmp are writable."""
    beside = settings.workspaces_root / "beside.txt"
    probe = (
        "python3 -c \"import socket; socket.create_connection(('127.0.0.1', 9), 1)\" 2>&1 | tail -1"
    )
    codex = CodexPlaybook(
        {
            "PROBE": [
                f"echo x > {beside} 2>&1; echo wrote-beside=$?",
                "echo y > /etc/codexflow-probe 2>&1; echo wrote-etc=$?",
                probe,
                "echo z > inside.txt && echo t > /tmp/t.txt && echo wrote-inside",
            ]
        }
    )
    play = planner_attack(("run_codex", {"prompt": "PROBE the sandbox"}))
    async with attacking(temporal_dev, settings, task_queue, "attacker", play, codex) as attack:
        await attack.handle.result()
    outputs = "\n".join(codex.outputs)
    # (Beside the workspace lies, inside the sandbox, only the task's private /tmp when the
    # workspaces are under /tmp, as here: the host's directory is never reached.)
    assert "wrote-etc=1" in outputs and "Read-only file system" in outputs
    assert "PermissionError" in outputs or "Operation not permitted" in outputs
    assert "wrote-inside" in outputs and (attack.worktree / "inside.txt").read_text() == "z\n"
    assert not beside.exists() and not Path("/etc/codexflow-probe").exists()
