"""Workspaces: where a worktree's repository is, commits of what changed in it, and restores.

A workspace is either a session's (or chat's) worktree, ``<workspaces root>/projects/<project>/
<name>``, or a standalone one of ``codexflow task``, ``<workspaces root>/<name>``. Its repository is
found from that path alone, never from a ``.git`` inside it (which codex could rewrite). Every touch
of workspace content goes through :mod:`core.confined`; git runs through :class:`core.git.Repo`.

Commits are cheap on big trees: the worktree keeps its own index, so ``git add -A`` rehashes only
what changed, and the tree is committed with plumbing (``write-tree``, ``commit-tree``, a
compare-and-swap ``update-ref``); what changed is a comparison of two trees.
"""

from __future__ import annotations

import asyncio
import contextlib
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from config import Settings
from core.confined import ConfinedDir, PathNotAllowed
from core.git import GitError, Repo, UntrustedConfig
from core.repos import ProjectRepos
from core.workspaces import repo_of
from workflows.types.workspace import Checkpoint, CheckpointInput

__all__ = [
    "WorkspaceActivities",
    "Workspace",
    "changes",
    "checkpoint",
    "commit_all",
    "refusing_untrusted_config",
    "resolve_workspace",
    "restore",
]


@dataclass(frozen=True)
class Workspace:
    """A workspace's repository, and, for a project's worktree, which project and worktree."""

    repo: Repo
    project_id: str | None = None
    name: str | None = None

    @property
    def path(self) -> Path:
        assert self.repo.work_tree is not None
        return self.repo.work_tree


async def commit_all(repo: Repo, message: str, *paths: str) -> tuple[str, str]:
    """Commit everything in the worktree (or only ``paths``) onto HEAD if anything changed:
    (HEAD before, HEAD after), the same commit twice when nothing changed."""
    add = ("add", "-A", "--", *paths) if paths else ("add", "-A")
    try:
        await repo.run(*add)
    except GitError as err:
        # A tracked file replaced by what git cannot hold (a FIFO, a socket: codex can make
        # them) fails every `add`: such paths are committed as deleted instead.
        if _NOT_A_FILE not in str(err) or repo.work_tree is None:
            raise
        odd = await asyncio.to_thread(_special_files, repo.work_tree, await _tracked(repo))
        await repo.run("update-index", "--force-remove", "--", *odd)
        await repo.run(*add)
    head, head_tree = (await repo.run("rev-parse", "HEAD", "HEAD^{tree}")).split()
    tree = (await repo.run("write-tree")).strip()
    if tree == head_tree:
        return head, head
    commit = (await repo.run("commit-tree", tree, "-p", head, "-m", message)).strip()
    await repo.run("update-ref", "-m", message, "HEAD", commit, head)
    return head, commit


_NOT_A_FILE = "can only add regular files, symbolic links or git-directories"


async def _tracked(repo: Repo) -> list[str]:
    return [name for name in (await repo.run("ls-files", "-z")).split("\0") if name]


def _special_files(root: Path, names: list[str]) -> list[str]:
    """Of ``names``, those that are neither a file, a link nor a directory (looked at without
    following a link)."""
    files = ConfinedDir(root)
    odd = []
    for name in names:
        with contextlib.suppress(PathNotAllowed):
            found = files.lstat(name)
            if found is not None and not (
                stat.S_ISREG(found.st_mode)
                or stat.S_ISLNK(found.st_mode)
                or stat.S_ISDIR(found.st_mode)
            ):
                odd.append(name)
    return odd


async def checkpoint(
    workspace: Workspace, settings: Settings, message: str, since: str | None = None
) -> Checkpoint:
    """Commit the workspace (a no-op when nothing changed) and publish a project worktree's
    branch; what changed is reported relative to ``since`` (default: the previous commit)."""
    repo = workspace.repo
    head, commit = await commit_all(repo, message)
    if workspace.project_id and workspace.name:
        await ProjectRepos(settings).publish(workspace.project_id, workspace.name, commit)
    before = since or head
    if commit == before:
        return Checkpoint(commit=commit, parent=before)
    files, stat = await changes(repo, before, commit)
    return Checkpoint(commit=commit, parent=before, diffstat=stat, changed_files=files)


async def restore(repo: Repo, commit: str) -> None:
    """Put the worktree back at ``commit``: tracked files reset, new files removed, ignored
    files (``node_modules/``, ``.venv/``) kept."""
    await repo.run("reset", "-q", "--hard", commit)
    await repo.run("clean", "-q", "-fd")


async def changes(repo: Repo, since: str, until: str = "HEAD") -> tuple[list[str], str]:
    """Files added, modified or deleted between two commits, and git's one-line summary of it
    ("2 files changed, 3 insertions(+)"): one comparison of two trees, nothing rehashed."""
    out = await repo.run("diff-tree", "-r", "--numstat", "--no-renames", "-z", since, until)
    files, added, deleted = [], 0, 0
    for record in out.split("\0"):
        if not record:
            continue
        plus, minus, path = record.split("\t", 2)
        files.append(path)
        added += int(plus) if plus.isdigit() else 0  # "-" for a binary file
        deleted += int(minus) if minus.isdigit() else 0
    if not files:
        return [], ""
    stat = f"{len(files)} file{'s' if len(files) > 1 else ''} changed"
    if added:
        stat += f", {added} insertion{'s' if added > 1 else ''}(+)"
    if deleted:
        stat += f", {deleted} deletion{'s' if deleted > 1 else ''}(-)"
    return files, stat


@contextlib.contextmanager
def refusing_untrusted_config() -> Iterator[None]:
    """A repository whose config could run a program fails the activity for good: retrying
    would refuse again, and nothing of it was run."""
    try:
        yield
    except UntrustedConfig as err:
        raise ApplicationError(str(err), type="UntrustedRepository", non_retryable=True) from None


class WorkspaceActivities:
    """Workspace operations as activities, confined to ``settings.workspaces_root``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @activity.defn(name="checkpoint_workspace")
    async def checkpoint(self, input: CheckpointInput) -> Checkpoint:
        workspace = resolve_workspace(self.settings, input.workspace)
        with refusing_untrusted_config():
            return await checkpoint(workspace, self.settings, input.message, input.since)


def resolve_workspace(settings: Settings, path: str) -> Workspace:
    """The workspace at ``path`` (a project's worktree or a standalone workspace); a
    non-retryable error when it is not one of codexflow's."""
    root = settings.workspace_root()
    given = Path(path).resolve()
    parts = given.relative_to(root).parts if given.is_relative_to(root) else ()
    if len(parts) == 3 and parts[0] == "projects" and not parts[2].startswith("."):
        project_id, name = parts[1], parts[2]
        workspace = Workspace(ProjectRepos(settings).worktree(project_id, name), project_id, name)
    elif len(parts) == 1 and parts[0] != "projects":
        workspace = Workspace(repo_of(settings, given))
    else:
        raise ApplicationError(
            f"workspace {path!r} is not one of codexflow's under CODEXFLOW_WORKSPACES_ROOT "
            f"({root}): a project's worktree, or a workspace directly under it",
            type="WorkspaceNotAllowed",
            non_retryable=True,
        )
    if not (workspace.repo.git_dir / "HEAD").is_file() or not given.is_dir():
        raise ApplicationError(
            f"workspace {path!r} has no repository at {workspace.repo.git_dir}; "
            "create it with codexflow",
            type="WorkspaceNotAllowed",
            non_retryable=True,
        )
    return workspace
