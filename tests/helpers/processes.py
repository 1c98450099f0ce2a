"""Small helpers the tests share: processes, polling, and the fake codex's pidfile."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

__all__ = ["alive", "codex_pid", "host_pid", "wait_for"]


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
    """The host pid of the fake codex, from the pid it wrote with ``@fake pidfile=codex.pid``
    (inside its sandbox's PID namespace), once it has."""
    pidfile = workspace / "codex.pid"
    await wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "", within)
    return host_pid(int(pidfile.read_text()), workspace)


def host_pid(pid: int, workspace: Path) -> int:
    """The host pid of a process that saw itself as ``pid`` in the sandbox of a codex task in
    ``workspace`` (itself when codex runs without the outer sandbox). The process must be alive."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        nspid = next(
            (line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), []
        )
        if nspid and int(nspid[-1]) == pid and _runs_in(int(entry.name), workspace):
            return int(entry.name)
    raise AssertionError(f"no live process {pid} of a codex task in {workspace}")


def _runs_in(pid: int, workspace: Path) -> bool:
    """Whether ``pid`` or one of its ancestors has ``workspace`` on its command line."""
    while pid > 1:
        try:
            if str(workspace).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False
        pid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
    return False
