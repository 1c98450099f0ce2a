"""Looking into a workspace's repository from a test, as a developer would with `git -C`."""

from __future__ import annotations

import asyncio
from pathlib import Path

__all__ = ["git"]


async def git(workspace: Path, *args: str) -> str:
    """``git -C WORKSPACE ARGS`` (through the workspace's ``.git`` file); its stdout."""
    proc = await asyncio.create_subprocess_exec(
        "git", "-C", str(workspace), *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()
