"""Standalone workspaces (``codexflow task``): a directory of files and a git directory of its own.

A standalone workspace ``<workspaces root>/<name>`` holds the files and nothing of git's but a
``.git`` file pointing at its git directory ``<repos root>/tasks/<name>.git``, which lies outside
every workspace: codex never writes it, and git is always told where it is (``core.git.Repo``),
never left to find it through the workspace. (Projects keep their history in a central
repository and work in worktrees of it: ``core.repos``.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

from config import Settings
from core.git import Repo

__all__ = ["create_workspace", "git_dir_of", "repo_of"]

# Build litter stays out of checkpoints without touching the project's own .gitignore.
_EXCLUDED = ("__pycache__/", "*.pyc", ".pytest_cache/", ".mypy_cache/", "node_modules/", ".venv/")


def git_dir_of(settings: Settings, workspace: Path) -> Path:
    return settings.repos_path() / "tasks" / f"{workspace.name}.git"


def repo_of(settings: Settings, workspace: Path) -> Repo:
    """The workspace's repository; an old workspace whose ``.git`` is a directory inside it has
    that directory moved out first (its config is audited on first use like any other)."""
    git_dir = git_dir_of(settings, workspace)
    inner = workspace / ".git"
    if not git_dir.exists() and inner.is_dir() and not inner.is_symlink():
        git_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(inner, git_dir)
        inner.write_text(f"gitdir: {git_dir}\n")
    return Repo(git_dir, workspace)


async def create_workspace(settings: Settings, workspace: Path) -> str:
    """Make ``workspace`` a repository with an initial commit (if it is not one); its commit."""
    repo = repo_of(settings, workspace)
    workspace.mkdir(parents=True, exist_ok=True)
    if not repo.git_dir.exists():
        repo.git_dir.parent.mkdir(parents=True, exist_ok=True)
        await repo.run("init", "-q", "-b", "main")
        (repo.git_dir / "info").mkdir(exist_ok=True)
        (repo.git_dir / "info" / "exclude").write_text("\n".join(_EXCLUDED) + "\n")
        # Codex's tools find the repository through this file; codexflow's git never does.
        (workspace / ".git").write_text(f"gitdir: {repo.git_dir}\n")
        await repo.run("commit", "-q", "--allow-empty", "-m", "codexflow: workspace created")
    return (await repo.run("rev-parse", "HEAD")).strip()
