"""Small helpers the tests share: processes, polling, and the fake codex's pidfile."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

__all__ = ["alive", "codex_pid", "wait_for"]


def alive(pid: int) -> bool:
    """True while ``pid`` is a running process (a zombie is dead, merely not reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


async def wait_for(predicate: Callable[[], object], within: float = 10.0) -> None:
    for _ in range(int(within / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def codex_pid(workspace: Path, within: float = 10.0) -> int:
    """The pid the fake codex wrote with ``@fake pidfile=codex.pid``, once it has."""
    pidfile = workspace / "codex.pid"
    await wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "", within)
    return int(pidfile.read_text())
