from __future__ import annotations

import os
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.workspace import Workspace, changes, checkpoint, resolve_workspace, restore
from config import Settings
from core.workspaces import create_workspace, repo_of
from tests.helpers.git import git


async def test_checkpoint_restore_and_changed_files(settings: Settings) -> None:
    ws = settings.workspaces_root / "ws"
    first = await create_workspace(settings, ws)
    # The git directory lives outside the workspace; the workspace has only a pointer to it.
    repo = repo_of(settings, ws)
    assert repo.git_dir.is_dir() and not repo.git_dir.is_relative_to(ws)
    assert (ws / ".git").read_text() == f"gitdir: {repo.git_dir}\n"

    (ws / "keep.txt").write_text("v1\n")
    (ws / "gone.txt").write_text("bye\n")
    cp = await checkpoint(Workspace(repo), settings, "two files")
    assert cp.parent == first and cp.commit != first
    assert sorted(cp.changed_files) == ["gone.txt", "keep.txt"]
    assert "2 files changed" in cp.diffstat

    same = await checkpoint(Workspace(repo), settings, "nothing changed")
    assert same.commit == cp.commit and same.changed_files == []

    (ws / "keep.txt").write_text("v2\n")
    (ws / "gone.txt").unlink()
    (ws / "new" / "deep").mkdir(parents=True)
    (ws / "new" / "deep" / "file.txt").write_text("x")
    (ws / "node_modules").mkdir()
    (ws / "node_modules" / "dep.js").write_text("kept")  # ignored: build litter, never committed
    later = await checkpoint(Workspace(repo), settings, "more")
    assert sorted((await changes(repo, cp.commit))[0]) == [
        "gone.txt",
        "keep.txt",
        "new/deep/file.txt",
    ]

    # A restore (a codex retry) undoes what changed since and keeps ignored files.
    await restore(repo, cp.commit)
    assert (ws / "keep.txt").read_text() == "v1\n"
    assert (ws / "gone.txt").exists()
    assert not (ws / "new").exists()
    assert (ws / "node_modules" / "dep.js").read_text() == "kept"
    assert (await changes(repo, cp.commit, later.commit))[0] == [
        "gone.txt",
        "keep.txt",
        "new/deep/file.txt",
    ]


async def test_hooks_never_run(settings: Settings, tmp_path: Path) -> None:
    ws = settings.workspaces_root / "ws"
    await create_workspace(settings, ws)
    hook = repo_of(settings, ws).git_dir / "hooks" / "pre-commit"
    marker = tmp_path / "hook-ran"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    os.chmod(hook, 0o755)
    (ws / "a.txt").write_text("a")
    await checkpoint(Workspace(repo_of(settings, ws)), settings, "with a hook present")
    assert not marker.exists()


async def test_an_old_workspace_has_its_git_directory_moved_out(settings: Settings) -> None:
    ws = settings.workspaces_root / "old"
    ws.mkdir(parents=True)
    (ws / "a.txt").write_text("a")
    await git(ws, "init", "-q", "-b", "main")  # the layout before git directories moved out
    await git(
        ws,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "old",
    )
    workspace = resolve_workspace(settings, str(ws))
    assert workspace.repo.git_dir.is_dir() and (ws / ".git").is_file()
    assert (await checkpoint(workspace, settings, "adopted")).changed_files == ["a.txt"]


async def test_workspace_outside_root_is_refused(settings: Settings, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    await create_workspace(settings, outside)
    nested = settings.workspaces_root / "a" / "b"
    await create_workspace(settings, nested)
    for path in (outside, settings.workspaces_root, nested):
        with pytest.raises(ApplicationError) as err:
            resolve_workspace(settings, str(path))
        assert err.value.non_retryable and err.value.type == "WorkspaceNotAllowed"


async def test_workspace_must_be_a_repository(settings: Settings) -> None:
    plain = settings.workspaces_root / "plain"
    plain.mkdir(parents=True)
    with pytest.raises(ApplicationError, match="has no repository"):
        resolve_workspace(settings, str(plain))
