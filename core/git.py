"""The one entry point for running git, shared by the worker and the API.

A work tree is written by codex, and so by whatever model steers it; git itself must never run
what a repository configures. So, for every command:

- the git directory is given explicitly (``GIT_DIR`` / ``GIT_WORK_TREE``) and lives outside the
  work tree: a ``.git`` file or directory inside it is never followed, and codex (whose sandbox
  shows it at most read-only) cannot write git's config;
- only the repository's own config file is read (system and global config are off), and it is
  audited: a key outside the short list git needs to store objects, refs and remotes — any filter,
  textconv, external diff, fsmonitor, include, credential helper, ssh or proxy command — makes the
  command refuse with :class:`UntrustedConfig` before anything runs;
- ``-c`` overrides switch off the settings that run programs (hooks, fsmonitor, pager, editor,
  askpass, credential helpers) and allow only the transports codexflow uses (``ext::`` and
  ``fd::`` never); diffs run with ``--no-ext-diff --no-textconv``;
- the environment is minimal: no secrets, no terminal prompt, a fixed identity.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["GitError", "Repo", "UntrustedConfig", "audit", "git_env", "overrides"]

_IDENTITY = {
    "GIT_AUTHOR_NAME": "codexflow",
    "GIT_AUTHOR_EMAIL": "codexflow@localhost",
    "GIT_COMMITTER_NAME": "codexflow",
    "GIT_COMMITTER_EMAIL": "codexflow@localhost",
}

# Settings that could run a program, forced off for every command (command-line config wins).
_OVERRIDES = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.pager=cat",
    "core.editor=:",
    "core.askPass=",
    "core.attributesFile=/dev/null",
    "core.excludesFile=/dev/null",
    "credential.helper=",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "protocol.allow=never",
    "protocol.file.allow=always",
    "protocol.https.allow=always",
    "protocol.http.allow=always",
    "protocol.ssh.allow=always",
    "protocol.git.allow=always",
)

# What a repository's own config may hold: how objects, refs and remotes are stored. Anything else
# (filter.*, diff.*.textconv, core.fsmonitor, include.*, credential.*, core.sshCommand, ...) is
# refused rather than reasoned about.
_ALLOWED_KEYS = re.compile(
    r"""^(
      core\.(repositoryformatversion|filemode|bare|logallrefupdates|ignorecase|precomposeunicode
            |symlinks|worktree|sharedrepository|autocrlf|eol|safecrlf|compression|bigfilethreshold
            |untrackedcache)
    | extensions\.[a-z]+
    | remote\.[^\n]+\.(url|pushurl|fetch|promisor|partialclonefilter|tagopt|prune|mirror)
    | branch\.[^\n]+\.(remote|merge)
    | (gc|pack|index|fetch|feature|maintenance)\.[a-z.]+
    | init\.defaultbranch | user\.(name|email) | uploadpack\.(allowfilter|allowanysha1inwant)
    | receive\.denycurrentbranch
    )$""",
    re.VERBOSE,
)


class GitError(RuntimeError):
    """A git command failed."""


class UntrustedConfig(GitError):
    """A repository's config sets something that could run a program: nothing was run."""


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment git runs with (nothing inherited, so no secret leaks to it)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/nonexistent",
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_PAGER": "cat",
        "GIT_EDITOR": ":",
        **_IDENTITY,
        **(extra or {}),
    }


@dataclass(frozen=True)
class Repo:
    """A repository codexflow owns: its git directory and, for a checkout, its work tree."""

    git_dir: Path
    work_tree: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # e.g. credentials for one fetch

    async def run(
        self,
        *args: str,
        index: Path | None = None,
        stdin: bytes | None = None,
        ok: tuple[int, ...] = (0,),
    ) -> str:
        out = await self.run_bytes(*args, index=index, stdin=stdin, ok=ok)
        return out.decode(errors="replace")

    async def run_bytes(
        self,
        *args: str,
        index: Path | None = None,
        stdin: bytes | None = None,
        ok: tuple[int, ...] = (0,),
    ) -> bytes:
        """``git ARGS``'s stdout; GitError with its stderr when it exits with a code not in
        ``ok``."""
        await asyncio.to_thread(audit, self.git_dir)
        extra = {"GIT_DIR": str(self.git_dir), **self.env}
        if self.work_tree is not None:
            extra["GIT_WORK_TREE"] = str(self.work_tree)
        if index is not None:
            extra["GIT_INDEX_FILE"] = str(index)
        cwd = self.work_tree if self.work_tree is not None else self.git_dir
        return await _run(args, git_env(extra), cwd, stdin, ok)

    async def diff(self, *args: str, index: Path | None = None) -> str:
        """``git diff`` with no external diff or textconv program, whatever the attributes say."""
        return await self.run("diff", "--no-ext-diff", "--no-textconv", *args, index=index)


def overrides() -> list[str]:
    """The ``-c`` arguments every git command of codexflow's starts with."""
    return [arg for setting in _OVERRIDES for arg in ("-c", setting)]


async def _run(
    args: tuple[str, ...],
    env: dict[str, str],
    cwd: Path,
    stdin: bytes | None = None,
    ok: tuple[int, ...] = (0,),
) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        "git",
        *overrides(),
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin)
    if proc.returncode not in ok:
        raise GitError(f"git {' '.join(args)} failed: {err.decode(errors='replace').strip()}")
    return out


# --- the config audit ----------------------------------------------------------------------------

_audited: dict[Path, tuple[int, int, int]] = {}  # config file → (inode, size, mtime) found clean


def audit(git_dir: Path) -> None:
    """Refuse a repository whose config files hold anything outside the allowed keys.

    Each file is read once per change (its inode, size and modification time are remembered).
    """
    for path in _config_files(git_dir):
        try:
            info = path.stat()
        except FileNotFoundError:
            continue
        stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
        if _audited.get(path) == stamp:
            continue
        for key in _config_keys(path):
            if not _ALLOWED_KEYS.match(key):
                raise UntrustedConfig(
                    f"{path} sets {key!r}, which codexflow does not allow in a repository's "
                    "config (it could run a program); remove it with `git config --file "
                    f"{path} --unset-all {key}`"
                )
        _audited[path] = stamp


def _config_files(git_dir: Path) -> list[Path]:
    files = [git_dir / "config", git_dir / "config.worktree"]
    commondir = git_dir / "commondir"  # a worktree's admin dir points at its repository
    if commondir.is_file():
        common = (git_dir / commondir.read_text().strip()).resolve()
        files.append(common / "config")
    return files


def _config_keys(path: Path) -> list[str]:
    """The keys of one config file, lowercased, read by git itself without following includes."""
    result = subprocess.run(
        ["git", "config", "--file", str(path), "--no-includes", "--list", "-z"],
        env=git_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip()
        raise UntrustedConfig(f"{path} cannot be read as git config: {message}")
    entries = [entry for entry in result.stdout.split(b"\0") if entry]
    return [entry.split(b"\n", 1)[0].decode(errors="replace").lower() for entry in entries]
