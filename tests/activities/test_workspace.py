from __future__ import annotations

import os
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.workspace import changed_files, checkpoint, resolve_workspace, restore
from config import Settings
from core.git import create_workspace, git
from core.paths import PathNotAllowed, confine


@pytest.mark.parametrize(
    "bad", ["../x", "a/../../x", "/etc/passwd", "~/x", "", "a\x00b", "..\\x", "a/../../../etc"]
)
def test_confine_rejects_escapes(tmp_path: Path, bad: str) -> None:
    with pytest.raises(PathNotAllowed):
        confine(tmp_path, bad)


def test_confine_rejects_symlink_escape(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(PathNotAllowed):
        confine(root, "link/secret.txt")


def test_confine_accepts_paths_inside(tmp_path: Path) -> None:
    assert confine(tmp_path, "src/app.py") == tmp_path.resolve() / "src" / "app.py"
    assert confine(tmp_path, "./a/./b") == tmp_path.resolve() / "a" / "b"
    assert confine(tmp_path, ".") == tmp_path.resolve()


async def test_checkpoint_restore_and_changed_files(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    first = await create_workspace(ws)
    assert (ws / ".git").is_dir()

    (ws / "keep.txt").write_text("v1\n")
    (ws / "gone.txt").write_text("bye\n")
    cp = await checkpoint(ws, "two files")
    assert cp.parent == first and cp.commit != first
    assert sorted(cp.changed_files) == ["gone.txt", "keep.txt"]
    assert "2 files changed" in cp.diffstat

    same = await checkpoint(ws, "nothing changed")
    assert same.commit == cp.commit and same.changed_files == []

    (ws / "keep.txt").write_text("v2\n")
    (ws / "gone.txt").unlink()
    (ws / "new" / "deep").mkdir(parents=True)
    (ws / "new" / "deep" / "file.txt").write_text("x")
    assert sorted(await changed_files(ws, cp.commit)) == [
        "gone.txt",
        "keep.txt",
        "new/deep/file.txt",
    ]
    # Scanning must not touch the real index.
    assert "new/deep/file.txt" not in await git(ws, "diff", "--cached", "--name-only")

    await restore(ws, cp.commit)
    assert (ws / "keep.txt").read_text() == "v1\n"
    assert (ws / "gone.txt").exists()
    assert not (ws / "new").exists()
    assert await changed_files(ws, cp.commit) == []


async def test_hooks_never_run(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    await create_workspace(ws)
    hook = ws / ".git" / "hooks" / "pre-commit"
    marker = tmp_path / "hook-ran"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    os.chmod(hook, 0o755)
    (ws / "a.txt").write_text("a")
    await checkpoint(ws, "with a hook present")
    assert not marker.exists()


async def test_workspace_outside_root_is_refused(settings: Settings, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    await create_workspace(outside)
    for path in (outside, settings.workspaces_root, settings.workspaces_root / ".." / "elsewhere"):
        with pytest.raises(ApplicationError) as err:
            resolve_workspace(settings, str(path))
        assert err.value.non_retryable and err.value.type == "WorkspaceNotAllowed"


async def test_workspace_must_be_a_repository(settings: Settings) -> None:
    plain = settings.workspaces_root / "plain"
    plain.mkdir(parents=True)
    with pytest.raises(ApplicationError, match="not a git repository"):
        resolve_workspace(settings, str(plain))
