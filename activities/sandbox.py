"""The outer sandbox of a codex task: a bubblewrap namespace that shows codex only what its
project needs.

Codex's own sandbox (``-s workspace-write``) stops the commands it runs from writing outside the
workspace or opening sockets, but not from *reading*: another project's files, the databases,
every project's transcripts, the worker's environment through ``/proc``. So each task runs in a
mount, PID, IPC and UTS namespace of its own (and a user namespace, so root inside is nobody
outside) that holds:

- the system's directories read-only (``/usr``, ``/etc`` with its secrets masked, ``/lib``…),
  plus any ``CODEXFLOW_CODEX_READ_ONLY_PATHS``;
- its own workspace, read-write, and the project's git data read-only (at their own paths);
- a private ``/tmp`` (also its ``HOME`` and ``TMPDIR``), removed when the task ends;
- its project's own codex home at ``/codex-home`` (the operator's credentials copied in);
- the codex binary.

Codex's sandbox still works inside it. The network is shared: codex must reach its model.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from temporalio.exceptions import ApplicationError

from config import Settings

__all__ = ["INSIDE_CODEX_HOME", "TaskBox", "codex_home_of", "task_box"]

INSIDE_CODEX_HOME = "/codex-home"
_CREDENTIALS = ("auth.json",)  # what `codex login` leaves in the operator's codex home
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_OPTIONAL_DIRS = ("/run/systemd/resolve",)  # where /etc/resolv.conf may point


def codex_home_of(settings: Settings, project: str) -> Path:
    """A project's own codex home (its transcripts, its copy of the credentials)."""
    return settings.codex_home.resolve() / "projects" / project


@dataclass(frozen=True)
class TaskBox:
    """Where one codex task runs, and how codex's paths look from inside."""

    workspace: Path
    git_paths: tuple[Path, ...]  # shown read-only: codex's `git status` works, its writes fail
    codex_home: Path  # on the host
    tmp: Path  # on the host: the task's private /tmp
    isolated: bool

    @property
    def inside_tmp(self) -> Path:
        return Path("/tmp") if self.isolated else self.tmp

    @property
    def inside_codex_home(self) -> Path:
        return Path(INSIDE_CODEX_HOME) if self.isolated else self.codex_home

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` (codex's environment) with its home, tmp and codex home for this task."""
        tmp = str(self.inside_tmp)
        return {**base, "HOME": tmp, "TMPDIR": tmp, "CODEX_HOME": str(self.inside_codex_home)}

    def wrap(self, settings: Settings, binary: Path, command: list[str]) -> list[str]:
        """``command`` (codex exec …) as the sandbox runs it."""
        if not self.isolated:
            return command
        bwrap = shutil.which(settings.bwrap_bin)
        if bwrap is None:
            raise ApplicationError(
                f"bubblewrap ({settings.bwrap_bin}) is not installed: `apt-get install "
                "bubblewrap`, or set CODEXFLOW_CODEX_ISOLATION=none to run codex without the "
                "outer sandbox (then codex can read every project on this host)",
                type="SandboxUnavailable",
                non_retryable=True,
            )
        args = [bwrap, "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
        args += ["--unshare-cgroup-try", "--die-with-parent", "--ro-bind", "/usr", "/usr"]
        for path in _SYSTEM_DIRS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        args += ["--ro-bind", "/etc", "/etc"]
        for hidden in settings.codex_hidden_paths:
            if hidden.is_dir():
                args += ["--tmpfs", str(hidden)]
            elif hidden.exists():
                args += ["--ro-bind", os.devnull, str(hidden)]
        for extra in [*_OPTIONAL_DIRS, *map(str, settings.codex_read_only_paths)]:
            args += ["--ro-bind-try", extra, extra]
        args += ["--dev", "/dev", "--proc", "/proc", "--bind", str(self.tmp), "/tmp"]
        args += ["--bind", str(self.workspace), str(self.workspace)]
        for shown in self.git_paths:
            args += ["--ro-bind", str(shown), str(shown)]
        args += ["--bind", str(self.codex_home), INSIDE_CODEX_HOME]
        # The native binary's package (bin/ beside its bundled resources), or the file alone.
        package = binary.parent.parent if binary.parent.name == "bin" else binary
        args += ["--ro-bind", str(package), str(package), "--chdir", str(self.workspace), "--"]
        return [*args, *command]


@contextlib.contextmanager
def task_box(
    settings: Settings, workspace: Path, git_paths: tuple[Path, ...], project: str
) -> Iterator[TaskBox]:
    """The sandbox of one task: its private tmp made (and removed afterwards), the codex home of
    its ``project`` ready with the operator's credentials."""
    home = codex_home_of(settings, project)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    _copy_credentials(settings.codex_home.resolve(), home)
    with tempfile.TemporaryDirectory(prefix="codexflow-task-") as tmp:
        yield TaskBox(
            workspace=workspace,
            git_paths=git_paths,
            codex_home=home,
            tmp=Path(tmp),
            isolated=settings.codex_isolation == "bwrap",
        )


def _copy_credentials(source: Path, home: Path) -> None:
    """The operator's login, copied (not linked: a link would lead out of the sandbox)."""
    for name in _CREDENTIALS:
        src, dst = source / name, home / name
        if not src.is_file() or src.is_symlink():
            continue
        if not dst.exists() or src.stat().st_mtime_ns > dst.stat().st_mtime_ns:
            shutil.copy2(src, dst)
            dst.chmod(0o600)
