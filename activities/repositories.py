"""Repository activities: importing a project's repository, a session's worktree, delivery.

Importing is a clone into the central repository (heartbeating its progress, so a worker that dies
midway is noticed and the clone redone elsewhere); a worktree is made on this host from the central
repository; a delivery pushes a session's branch from the central repository to the project's
origin. Credentials for remotes come from the worker's settings, through git's environment only,
and are masked in any error.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.records import Recorder
from activities.workspace import refusing_untrusted_config, resolve_workspace
from config import Settings
from core.git import GitError, Repo, UntrustedConfig, git_env, overrides
from core.remotes import Remote, RemoteNotAllowed, parse_remote, redact_secrets, remote_env
from core.repos import ProjectRepos, branch_of
from workflows.types.repository import (
    Delivery,
    ImportInput,
    ImportResult,
    PushInput,
    Worktree,
    WorktreeInput,
)

__all__ = ["RepositoryActivities", "review_url"]

_PROGRESS = re.compile(rb"([A-Za-z ]+):\s+(\d+)%")


class RepositoryActivities:
    def __init__(self, settings: Settings, recorder: Recorder, host_queue: str) -> None:
        self.settings = settings
        self.recorder = recorder
        self.repos = ProjectRepos(settings)
        self.host_queue = host_queue  # this machine's task queue, where its worktrees are used

    @activity.defn(name="import_repository")
    async def import_repository(self, input: ImportInput) -> ImportResult:
        """Clone the repository into the project's central one (done once: a retry after it
        landed finds it there)."""
        central = self.repos.central(input.project_id)
        if not (central.git_dir / "HEAD").exists():
            try:
                remote = parse_remote(input.repository.url, self.settings)
            except RemoteNotAllowed as err:
                raise ApplicationError(
                    str(err), type="RemoteNotAllowed", non_retryable=True
                ) from None
            await self._clone(remote, input, central.git_dir)
        branch = await self.repos.default_branch(input.project_id)
        head = await self.repos.resolve(input.project_id, branch)
        return ImportResult(default_branch=branch, head_commit=head)

    async def _clone(self, remote: Remote, input: ImportInput, target: Path) -> None:
        spec = input.repository
        # --no-local: a local repository is cloned as a remote one is (packed, no hard links
        # into it, and --depth honoured).
        args = ["clone", "--bare", "--no-local", "--progress"]
        args.append("--no-tags" if spec.depth else "--tags")
        if spec.ref:
            args += ["--branch", spec.ref]
        if spec.depth:
            args += ["--depth", str(spec.depth)]
        if spec.partial:
            args += ["--filter=blob:none"]
        target.parent.mkdir(parents=True, exist_ok=True)
        # Cloned beside its place and moved in whole: a clone cut short leaves nothing behind
        # (what a worker killed midway left is removed by the next attempt).
        for leftover in target.parent.glob(f".importing-{target.name}-*"):
            await asyncio.to_thread(shutil.rmtree, leftover, True)
        staging = target.parent / f".importing-{target.name}-{uuid.uuid4().hex[:8]}"
        env = git_env(remote_env(remote, self.settings))
        try:
            await self._run_clone(input.project_id, [*args, "--", remote.url, str(staging)], env)
            await asyncio.to_thread(staging.rename, target)
        finally:
            if staging.exists():
                await asyncio.to_thread(shutil.rmtree, staging, True)

    async def _run_clone(self, project_id: str, args: list[str], env: dict[str, str]) -> None:
        """``git clone`` (through git's own overrides), heartbeating its progress and showing
        it with the project (at most once a second)."""
        proc = await asyncio.create_subprocess_exec(
            "git", *overrides(), *args,
            env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        assert proc.stderr is not None
        tail: list[bytes] = []
        shown, loop = "", asyncio.get_running_loop()
        next_shown = loop.time()
        try:
            async with asyncio.timeout(self.settings.clone_timeout_s):
                while chunk := await proc.stderr.read(4096):
                    tail = (tail + [chunk])[-8:]
                    activity.heartbeat()
                    if not (match := list(_PROGRESS.finditer(chunk))):
                        continue
                    stage, percent = match[-1].groups()
                    progress = f"{stage.decode().strip()} {int(percent)}%"
                    if progress != shown and loop.time() >= next_shown:
                        await self.recorder.project_progress(project_id, progress)
                        shown, next_shown = progress, loop.time() + 1
                await proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0:
            message = b"".join(tail).decode(errors="replace").strip().splitlines()
            reason = redact_secrets(message[-1] if message else "git clone failed", self.settings)
            # A URL that does not answer will not answer better on the next attempt.
            raise ApplicationError(
                f"the clone failed: {reason}", type="CloneFailed", non_retryable=True
            )

    @activity.defn(name="prepare_worktree")
    async def prepare_worktree(self, input: WorktreeInput) -> Worktree:
        """The worktree ``input.name`` on this host, on branch codexflow/<name> (made from
        ``base_ref`` the first time, else at the branch's last checkpoint), and the task queue
        that reaches it here."""
        project = input.project_id
        try:
            await self.repos.ensure_central(project)
            branch = await self.repos.default_branch(project)
            base = await self.repos.resolve(project, input.base_ref or branch)
        except UntrustedConfig as err:
            raise ApplicationError(
                str(err), type="UntrustedRepository", non_retryable=True
            ) from None
        except GitError:
            raise ApplicationError(
                f"project {project} has no ref {input.base_ref or 'HEAD'!r} to start from",
                type="NoSuchRef",
                non_retryable=True,
            ) from None
        with refusing_untrusted_config():
            worktree, head = await self.repos.add_worktree(project, input.name, base)
        assert worktree.work_tree is not None
        # The branch's start: where it left the base (its own history may be longer by now).
        start = (await self.repos.local(project).run("merge-base", head, base)).strip() or base
        return Worktree(
            path=str(worktree.work_tree), branch=branch_of(input.name), base_commit=start,
            head_commit=head, host=self.settings.worker_host, task_queue=self.host_queue,
        )  # fmt: skip

    @activity.defn(name="remove_worktree")
    async def remove_worktree(self, input: WorktreeInput) -> None:
        await self.repos.remove_worktree(input.project_id, input.name)

    @activity.defn(name="push_branch")
    async def push_branch(self, input: PushInput) -> Delivery:
        """Push the session's branch from the central repository to the project's origin;
        pushing the same commit again changes nothing."""
        origin = await self.recorder.project_origin(input.project_id)
        if origin is None:
            raise ApplicationError(
                "the project has no origin to push to (it was not imported from a repository)",
                type="NoOrigin",
                non_retryable=True,
            )
        try:
            remote = parse_remote(origin, self.settings)
        except RemoteNotAllowed as err:
            raise ApplicationError(str(err), type="RemoteNotAllowed", non_retryable=True) from None
        central = self.repos.central(input.project_id)
        commit = await self.repos.resolve(input.project_id, input.branch)
        target = input.remote_branch or input.branch
        pusher = Repo(central.git_dir, env=remote_env(remote, self.settings))
        try:
            await pusher.run(
                "push", "--porcelain", "--", remote.url, f"{commit}:refs/heads/{target}"
            )
        except GitError as err:
            reason = redact_secrets(str(err), self.settings)
            raise ApplicationError(f"the push failed: {reason}", type="PushFailed") from None
        base = await self.recorder.project_default_branch(input.project_id)
        delivery = Delivery(
            remote=_public(origin), branch=target, commit=commit,
            review_url=review_url(origin, base, target),
        )  # fmt: skip
        await self.recorder.session_delivered(input.session_id, delivery)
        return delivery

    @activity.defn(name="repository_overview")
    async def repository_overview(self, workspace: str) -> str:
        """What the Planner is shown first: the top of the tree, languages, the test command."""
        repo = resolve_workspace(self.settings, workspace).repo
        files = (
            await repo.run("ls-files", "-z", "--cached", "--others", "--exclude-standard")
        ).split("\0")
        return overview([f for f in files if f])


def overview(files: list[str]) -> str:
    """A short account of a repository from its file list."""
    if not files:
        return "The repository is empty."
    top: dict[str, int] = {}
    languages: dict[str, int] = {}
    for path in files:
        head, _, rest = path.partition("/")
        key = f"{head}/" if rest else head
        top[key] = top.get(key, 0) + 1
        suffix = Path(path).suffix.lower()
        if language := _LANGUAGES.get(suffix):
            languages[language] = languages.get(language, 0) + 1
    listed = sorted(top.items())[:40]
    lines = [f"{len(files)} files. Top level:"]
    lines += [
        f"  {name}" + (f" ({count} files)" if name.endswith("/") else "") for name, count in listed
    ]
    if len(top) > len(listed):
        lines.append(f"  … {len(top) - len(listed)} more entries (list_files shows them)")
    if languages:
        ranked = sorted(languages.items(), key=lambda item: -item[1])
        lines.append("Languages: " + ", ".join(f"{name} ({n} files)" for name, n in ranked[:6]))
    names = set(files)
    if test := _test_command(names):
        lines.append(f"Tests: probably `{test}`")
    return "\n".join(lines)


_LANGUAGES = {
    ".py": "Python", ".js": "JavaScript", ".ts": "TypeScript", ".tsx": "TypeScript",
    ".go": "Go", ".rs": "Rust", ".java": "Java", ".kt": "Kotlin", ".rb": "Ruby",
    ".c": "C", ".h": "C", ".cc": "C++", ".cpp": "C++", ".cs": "C#", ".php": "PHP",
    ".swift": "Swift", ".sh": "shell", ".md": "Markdown",
}  # fmt: skip


def _test_command(names: set[str]) -> str | None:
    if "pyproject.toml" in names or "setup.py" in names or "pytest.ini" in names:
        return "python -m pytest"
    if "package.json" in names:
        return "npm test"
    if "go.mod" in names:
        return "go test ./..."
    if "Cargo.toml" in names:
        return "cargo test"
    if "Makefile" in names:
        return "make test"
    if any(Path(name).name.startswith("test_") and name.endswith(".py") for name in names):
        return "python -m unittest"
    return None


def _public(url: str) -> str:
    """A remote as it may be shown: no user name, no password."""
    if "://" in url:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return parts._replace(netloc=netloc).geturl()
    return url


def review_url(origin: str, base: str | None, branch: str) -> str | None:
    """The page that opens a pull (merge) request of ``branch``, for GitHub and GitLab remotes."""
    match = re.match(
        r"^(?:https://|ssh://git@|git@)(github\.com|gitlab\.com)[/:](.+?)(?:\.git)?/?$", origin
    )
    if not match:
        return None
    host, path = match.groups()
    if host == "github.com":
        return (
            f"https://github.com/{path}/compare/{quote(base or 'main')}...{quote(branch)}?expand=1"
        )
    return (
        f"https://gitlab.com/{path}/-/merge_requests/new"
        f"?merge_request%5Bsource_branch%5D={quote(branch, safe='')}"
    )
