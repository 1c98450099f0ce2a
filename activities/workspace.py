"""Project workspaces: a git repository per project, checkpoints, restores and what changed.

Every touch of workspace content goes through :mod:`core.confined`; git runs
through :class:`core.git.Repo`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from config import Settings
from core.git import Repo, UntrustedConfig
from core.workspaces import repo_of
from workflows.types.workspace import Checkpoint, CheckpointInput

__all__ = [
    "WorkspaceActivities",
    "changed_files",
    "refusing_untrusted_config",
    "checkpoint",
    "resolve_workspace",
    "restore",
]


async def checkpoint(repo: Repo, message: str, since: str | None = None) -> Checkpoint:
    """Commit everything in the workspace (a no-op when nothing changed); what changed is reported
    relative to ``since`` (default: the previous commit)."""
    before = since or (await repo.run("rev-parse", "HEAD")).strip()
    await repo.run("add", "-A")
    if (await repo.run("status", "--porcelain")).strip():
        await repo.run("commit", "-q", "-m", message)
    commit = (await repo.run("rev-parse", "HEAD")).strip()
    stat = (await repo.diff("--shortstat", before, commit)).strip() if commit != before else ""
    files = await _diff_names(repo, before, commit) if commit != before else []
    return Checkpoint(commit=commit, parent=before, diffstat=stat, changed_files=files)


async def restore(repo: Repo, commit: str) -> None:
    """Put the workspace back exactly at ``commit``: tracked files reset, untracked removed."""
    await repo.run("reset", "-q", "--hard", commit)
    await repo.run("clean", "-q", "-ffdx")


async def changed_files(repo: Repo, since: str) -> list[str]:
    """Files added, modified or deleted since commit ``since``, including uncommitted work."""
    # A throwaway index keeps the real one untouched while untracked files are included; its
    # own name, so an attempt killed midway leaves no lock in the next one's way.
    index = repo.git_dir / f"codexflow-scan-{uuid.uuid4().hex}.index"
    try:
        await repo.run("read-tree", since, index=index)
        await repo.run("add", "-A", index=index)
        out = await repo.diff("--cached", "--name-only", "--no-renames", since, index=index)
        return [line for line in out.splitlines() if line]
    finally:
        index.unlink(missing_ok=True)
        Path(f"{index}.lock").unlink(missing_ok=True)


async def _diff_names(repo: Repo, a: str, b: str) -> list[str]:
    out = await repo.diff("--name-only", "--no-renames", a, b)
    return [line for line in out.splitlines() if line]


class WorkspaceActivities:
    """Workspace operations as activities, confined to ``settings.workspaces_root``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @activity.defn(name="checkpoint_workspace")
    async def checkpoint(self, input: CheckpointInput) -> Checkpoint:
        repo = resolve_workspace(self.settings, input.workspace)
        with refusing_untrusted_config():
            return await checkpoint(repo, input.message, input.since)


@contextlib.contextmanager
def refusing_untrusted_config() -> Iterator[None]:
    """A repository whose config could run a program fails the activity for good: retrying
    would refuse again, and nothing of it was run."""
    try:
        yield
    except UntrustedConfig as err:
        raise ApplicationError(str(err), type="UntrustedRepository", non_retryable=True) from None


def resolve_workspace(settings: Settings, path: str) -> Repo:
    """The repository of the workspace at ``path``; a non-retryable error when it is not a
    codexflow workspace under the workspaces root."""
    root = settings.workspace_root()
    workspace = Path(path).resolve()
    if workspace.parent != root:
        raise ApplicationError(
            f"workspace {path!r} is not directly under CODEXFLOW_WORKSPACES_ROOT ({root}); "
            "create projects through codexflow",
            type="WorkspaceNotAllowed",
            non_retryable=True,
        )
    repo = repo_of(settings, workspace)
    if not repo.git_dir.is_dir() or not workspace.is_dir():
        raise ApplicationError(
            f"workspace {path!r} has no repository at {repo.git_dir}; create it with codexflow",
            type="WorkspaceNotAllowed",
            non_retryable=True,
        )
    return repo
