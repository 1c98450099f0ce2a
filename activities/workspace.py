"""Project workspaces: a git repository per project, checkpoints, restores and what changed.

Every path that comes from a user or a model goes through :func:`core.paths.confine`; git runs
through :func:`core.git.git`.
"""

from __future__ import annotations

from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from config import Settings
from core.git import git
from core.paths import is_within
from workflows.types.workspace import Checkpoint, CheckpointInput

__all__ = [
    "WorkspaceActivities",
    "changed_files",
    "checkpoint",
    "resolve_workspace",
    "restore",
]


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
