"""Project workspaces: a git repository per project, checkpoints, restores and path confinement.

Every path that comes from a user or a model goes through :func:`confine`. Git runs with hooks
disabled and without the machine's global configuration, so a workspace can't run code on commit.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path, PurePosixPath

from temporalio import activity
from temporalio.exceptions import ApplicationError

from config import Settings
from workflows.types import Checkpoint, CheckpointInput, RestoreInput

__all__ = [
    "GitError",
    "PathNotAllowed",
    "WorkspaceActivities",
    "changed_files",
    "checkpoint",
    "confine",
    "create_workspace",
    "restore",
]

_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "codexflow",
    "GIT_AUTHOR_EMAIL": "codexflow@localhost",
    "GIT_COMMITTER_NAME": "codexflow",
    "GIT_COMMITTER_EMAIL": "codexflow@localhost",
}


_EXCLUDED = ("__pycache__/", "*.pyc", ".pytest_cache/", ".mypy_cache/", "node_modules/", ".venv/")


class PathNotAllowed(ValueError):
    """A user- or model-supplied path that would leave its workspace."""


class GitError(RuntimeError):
    """A git command failed."""


def confine(root: Path, relative: str) -> Path:
    """Resolve ``relative`` inside ``root``; refuse absolute paths, ``..`` and escaping symlinks."""
    if not relative or "\x00" in relative:
        raise PathNotAllowed("empty path or NUL byte")
    pure = PurePosixPath(relative.replace("\\", "/"))
    if pure.is_absolute() or relative.startswith("~"):
        raise PathNotAllowed(f"absolute paths are not allowed: {relative!r}")
    if ".." in pure.parts:
        raise PathNotAllowed(f"'..' is not allowed in paths: {relative!r}")
    base = root.resolve()
    # resolve() follows symlinks, so a link pointing outside the workspace is caught here.
    target = (base / pure).resolve()
    if target != base and base not in target.parents:
        raise PathNotAllowed(f"path escapes the workspace: {relative!r}")
    return target


def is_within(root: Path, path: Path) -> bool:
    base, target = root.resolve(), path.resolve()
    return target == base or base in target.parents


async def git(workspace: Path, *args: str, index: Path | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        "git",
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "commit.gpgsign=false",
        *args,
        cwd=workspace,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **_GIT_ENV, **({"GIT_INDEX_FILE": str(index)} if index else {})},
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed: {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")


async def create_workspace(path: Path) -> str:
    """Make ``path`` a git repository with an initial commit; return that commit's id."""
    path.mkdir(parents=True, exist_ok=True)
    if not (path / ".git").exists():
        await git(path, "init", "-q", "-b", "main")
        # Build litter stays out of checkpoints without touching the project's own .gitignore.
        (path / ".git" / "info" / "exclude").write_text("\n".join(_EXCLUDED) + "\n")
        await git(path, "commit", "-q", "--allow-empty", "-m", "codexflow: workspace created")
    return (await git(path, "rev-parse", "HEAD")).strip()


async def checkpoint(path: Path, message: str, since: str | None = None) -> Checkpoint:
    """Commit everything in the workspace (a no-op when nothing changed); what changed is reported
    relative to ``since`` (default: the previous commit)."""
    before = since or (await git(path, "rev-parse", "HEAD")).strip()
    await git(path, "add", "-A")
    if (await git(path, "status", "--porcelain")).strip():
        await git(path, "commit", "-q", "-m", message)
    commit = (await git(path, "rev-parse", "HEAD")).strip()
    stat = (
        (await git(path, "diff", "--shortstat", before, commit)).strip() if commit != before else ""
    )
    files = await _diff_names(path, before, commit) if commit != before else []
    return Checkpoint(commit=commit, parent=before, diffstat=stat, changed_files=files)


async def restore(path: Path, commit: str) -> None:
    """Put the workspace back exactly at ``commit``: tracked files reset, untracked removed."""
    await git(path, "reset", "-q", "--hard", commit)
    await git(path, "clean", "-q", "-ffdx")


async def changed_files(path: Path, since: str) -> list[str]:
    """Files added, modified or deleted since commit ``since``, including uncommitted work."""
    # A throwaway index keeps the real one untouched while untracked files are included.
    index = path / ".git" / "codexflow-scan.index"
    try:
        await git(path, "read-tree", since, index=index)
        await git(path, "add", "-A", index=index)
        out = await git(path, "diff", "--cached", "--name-only", "--no-renames", since, index=index)
        return [line for line in out.splitlines() if line]
    finally:
        index.unlink(missing_ok=True)


async def _diff_names(path: Path, a: str, b: str) -> list[str]:
    out = await git(path, "diff", "--name-only", "--no-renames", a, b)
    return [line for line in out.splitlines() if line]


class WorkspaceActivities:
    """Workspace operations as activities, confined to ``settings.workspaces_root``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def workspace(self, path: str) -> Path:
        """The workspace at ``path``, or a non-retryable error when it is not a codexflow workspace."""
        return resolve_workspace(self.settings, path)

    @activity.defn(name="checkpoint_workspace")
    async def checkpoint(self, input: CheckpointInput) -> Checkpoint:
        return await checkpoint(self.workspace(input.workspace), input.message, input.since)

    @activity.defn(name="restore_workspace")
    async def restore(self, input: RestoreInput) -> None:
        await restore(self.workspace(input.workspace), input.commit)


def resolve_workspace(settings: Settings, path: str) -> Path:
    root = settings.workspace_root()
    workspace = Path(path).resolve()
    if not is_within(root, workspace) or workspace == root:
        raise ApplicationError(
            f"workspace {path!r} is outside CODEXFLOW_WORKSPACES_ROOT ({root}); "
            "create projects through codexflow or move the workspace under that root",
            type="WorkspaceNotAllowed",
            non_retryable=True,
        )
    if not (workspace / ".git").is_dir():
        raise ApplicationError(
            f"workspace {path!r} is not a git repository; create it with codexflow first",
            type="WorkspaceNotAllowed",
            non_retryable=True,
        )
    return workspace
