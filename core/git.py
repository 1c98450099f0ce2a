"""The one entry point for running git, shared by the worker and the API.

Git runs with hooks disabled and without the machine's global configuration, so a workspace
can't run code on commit.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

__all__ = ["GitError", "create_workspace", "git"]

_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "codexflow",
    "GIT_AUTHOR_EMAIL": "codexflow@localhost",
    "GIT_COMMITTER_NAME": "codexflow",
    "GIT_COMMITTER_EMAIL": "codexflow@localhost",
}


class GitError(RuntimeError):
    """A git command failed."""


async def git(workspace: Path, *args: str, index: Path | None = None) -> str:
    """Run ``git ARGS`` in ``workspace``; its stdout, or GitError with its stderr."""
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


_EXCLUDED = ("__pycache__/", "*.pyc", ".pytest_cache/", ".mypy_cache/", "node_modules/", ".venv/")


async def create_workspace(path: Path) -> str:
    """Make ``path`` a git repository with an initial commit; return that commit's id."""
    path.mkdir(parents=True, exist_ok=True)
    if not (path / ".git").exists():
        await git(path, "init", "-q", "-b", "main")
        # Build litter stays out of checkpoints without touching the project's own .gitignore.
        (path / ".git" / "info" / "exclude").write_text("\n".join(_EXCLUDED) + "\n")
        await git(path, "commit", "-q", "--allow-empty", "-m", "codexflow: workspace created")
    return (await git(path, "rev-parse", "HEAD")).strip()
