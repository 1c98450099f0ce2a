"""Projects' repositories: the central one, this host's clone of it, and the worktrees of sessions.

::

    <repos root>/<project>.git                          central, bare: the default branch, where
                                                        uploads land, and one branch per session
    <workspaces root>/projects/<project>/.repo.git      this host's clone: bare, its objects
                                                        borrowed from the central one
    <workspaces root>/projects/<project>/<name>/        a worktree of it on branch codexflow/<name>
                                                        (a session's, a chat's)

Everything runs through ``core.git.Repo``: explicit git directories, an audited config, no
program of the repository's. Worktrees keep their own index, so git's work per codex task is one
stat-cached scan of the tree, whatever its size. The API writes to the central repository with
plumbing commands and compare-and-swap ref updates, so it needs no checkout and two writers never
lose each other's commits.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

from config import Settings
from core.git import GitError, Repo
from core.workspaces import repo_of

__all__ = [
    "BRANCH_PREFIX",
    "ProjectRepos",
    "TreeEntry",
    "branch_of",
]

BRANCH_PREFIX = "codexflow/"
LOCAL_REPO = ".repo.git"
_ZERO = "0" * 40
# Build litter stays out of checkpoints without touching the project's own .gitignore.
_EXCLUDED = ("__pycache__/", "*.pyc", ".pytest_cache/", ".mypy_cache/", "node_modules/", ".venv/")
# Fast status and add over big trees: a smaller index and the untracked-files cache.
_LOCAL_CONFIG = (("index.version", "4"), ("core.untrackedCache", "true"))


async def _promisor(central: Repo) -> tuple[tuple[str, str], ...]:
    """For a partial clone, the settings that let this host's clone fetch missing file contents
    straight from the origin, as the central repository does."""
    try:
        remote = (await central.run("config", "--get", "extensions.partialclone")).strip()
    except GitError:
        return ()
    settings = [("core.repositoryFormatVersion", "1"), ("extensions.partialClone", remote)]
    for key in ("url", "promisor", "partialclonefilter"):
        value = (await central.run("config", "--get", f"remote.{remote}.{key}")).strip()
        settings.append((f"remote.{remote}.{key}", value))
    return tuple(settings)


_WRITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Path, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _writing(git_dir: Path) -> asyncio.Lock:
    """One writer at a time per repository in this event loop (the ref's compare-and-swap keeps
    writers in other processes apart)."""
    locks = _WRITERS.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(git_dir, asyncio.Lock())


def branch_of(name: str) -> str:
    """The branch a worktree named ``name`` works on (a session id, ``chat-<role>``)."""
    return f"{BRANCH_PREFIX}{name}"


@dataclass(frozen=True)
class TreeEntry:
    path: str
    is_dir: bool
    size: int | None
    mode: str  # git's: 100644, 100755, 120000 (a link), 040000 (a directory)


class ProjectRepos:
    """The repositories of every project on this host, laid out as the module says."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # --- where things are --------------------------------------------------------------------

    def central(self, project_id: str) -> Repo:
        return Repo(self.settings.repos_path() / f"{project_id}.git")

    def project_dir(self, project_id: str) -> Path:
        return self.settings.workspace_root() / "projects" / project_id

    def local(self, project_id: str) -> Repo:
        """This host's clone. Its objects are the central repository's: git reads and writes
        them there, so a commit is published by moving a ref, with nothing to copy."""
        objects = {"GIT_OBJECT_DIRECTORY": str(self.central(project_id).git_dir / "objects")}
        return Repo(self.project_dir(project_id) / LOCAL_REPO, env=objects)

    def worktree(self, project_id: str, name: str) -> Repo:
        """A worktree's repository: its admin directory in the local clone, and its files."""
        local = self.local(project_id)
        return Repo(
            local.git_dir / "worktrees" / name, self.project_dir(project_id) / name, local.env
        )

    # --- the central repository --------------------------------------------------------------

    async def create(self, project_id: str, default_branch: str = "main") -> str:
        """A new, empty central repository with one commit on ``default_branch``; its commit."""
        central = self.central(project_id)
        central.git_dir.mkdir(parents=True)
        await central.run("init", "-q", "--bare", "-b", default_branch)
        tree = (await central.run("mktree", stdin=b"")).strip()
        commit = (
            await central.run("commit-tree", tree, "-m", "codexflow: project created")
        ).strip()
        await central.run("update-ref", f"refs/heads/{default_branch}", commit, _ZERO)
        return commit

    async def ensure_central(self, project_id: str) -> Repo:
        """The central repository; a project from before repositories were central (a checkout at
        ``<workspaces root>/<project>``) has its history fetched into a new one first."""
        central = self.central(project_id)
        legacy = self.settings.workspace_root() / project_id
        if not (central.git_dir / "HEAD").exists() and (legacy / ".git").exists():
            source = repo_of(self.settings, legacy)
            branch = (await source.run("symbolic-ref", "--short", "HEAD")).strip()
            central.git_dir.mkdir(parents=True, exist_ok=True)
            await central.run("init", "-q", "--bare", "-b", branch)
            await central.run(
                "fetch", "-q", "--no-tags", str(source.git_dir), "+refs/heads/*:refs/heads/*"
            )
        return central

    async def default_branch(self, project_id: str) -> str:
        head = await self.central(project_id).run("symbolic-ref", "--short", "HEAD")
        return head.strip()

    async def resolve(self, project_id: str, ref: str) -> str:
        """The commit ``ref`` (a branch, tag or commit of the central repository) names."""
        if ref.startswith("-"):
            raise GitError(f"not a ref: {ref!r}")
        out = await self.central(project_id).run(
            "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"
        )
        return out.strip()

    async def commit_files(
        self,
        project_id: str,
        branch: str,
        message: str,
        *,
        add: dict[str, Path] | None = None,
        remove: tuple[str, ...] = (),
        directory: Path | None = None,
    ) -> str:
        """Commit onto ``branch`` of the central repository without a checkout: files (``add``:
        repository path → a file holding its bytes), removals, or a whole ``directory`` added
        over the branch's tree. Another writer's commit in between is never lost: the ref moves
        only from the commit this one was built on, else it is built again. Returns the commit."""
        central = self.central(project_id)
        blobs = {
            path: (await central.run("hash-object", "-w", "--no-filters", str(source))).strip()
            for path, source in (add or {}).items()
        }
        async with _writing(central.git_dir):
            return await self._commit(central, branch, message, blobs, remove, directory)

    async def _commit(
        self,
        central: Repo,
        branch: str,
        message: str,
        blobs: dict[str, str],
        remove: tuple[str, ...],
        directory: Path | None,
    ) -> str:
        for _ in range(50):
            parent = (await central.run("rev-parse", f"refs/heads/{branch}")).strip()
            with tempfile.TemporaryDirectory(prefix="codexflow-index-") as tmp:
                index = Path(tmp) / "index"
                await central.run("read-tree", parent, index=index)
                if directory is not None:
                    await Repo(central.git_dir, directory).run("add", "-A", "--", ".", index=index)
                for path, blob in blobs.items():
                    await central.run(
                        "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", index=index
                    )
                if remove:  # mode 0 removes an entry (--force-remove wants a work tree)
                    gone = "".join(f"0 {_ZERO}\t{path}\n" for path in remove)
                    await central.run(
                        "update-index", "--index-info", stdin=gone.encode(), index=index
                    )
                tree = (await central.run("write-tree", index=index)).strip()
            if tree == (await central.run("rev-parse", f"{parent}^{{tree}}")).strip():
                return parent  # nothing changed: no empty commit
            commit = (await central.run("commit-tree", tree, "-p", parent, "-m", message)).strip()
            try:
                await central.run("update-ref", f"refs/heads/{branch}", commit, parent)
            except GitError:
                # Another process moved the branch meanwhile: build on its new tip.
                await asyncio.sleep(random.uniform(0.01, 0.1))
                continue
            return commit
        raise GitError(f"{branch} kept moving: could not commit {message!r}")

    async def tree(self, project_id: str, ref: str) -> list[TreeEntry]:
        """Every entry of ``ref``'s tree, depth first by name."""
        out = await self.central(project_id).run("ls-tree", "-r", "-t", "-l", "-z", ref)
        entries = []
        for record in out.split("\0"):
            if not record:
                continue
            meta, path = record.split("\t", 1)
            mode, kind, _, size = meta.split()
            entries.append(
                TreeEntry(path, kind == "tree", int(size) if size.isdigit() else None, mode)
            )
        return entries

    async def entry(self, project_id: str, ref: str, path: str) -> TreeEntry | None:
        """One path of ``ref``'s tree (None when it has none)."""
        out = await self.central(project_id).run("ls-tree", "-l", "-z", ref, "--", path)
        record = out.split("\0")[0]
        if not record:
            return None
        meta, found = record.split("\t", 1)
        mode, kind, _, size = meta.split()
        return TreeEntry(found, kind == "tree", int(size) if size.isdigit() else None, mode)

    async def read(self, project_id: str, ref: str, path: str) -> bytes:
        return await self.central(project_id).run_bytes("cat-file", "blob", f"{ref}:{path}")

    # --- this host's clone and its worktrees ---------------------------------------------------

    async def ensure_local(self, project_id: str) -> Repo:
        """This host's clone, made on first use; its branches are those of its worktrees."""
        local, central = self.local(project_id), self.central(project_id)
        if not (local.git_dir / "HEAD").exists():
            local.git_dir.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=local.git_dir.parent) as tmp:
                made = Repo(Path(tmp) / LOCAL_REPO)
                made.git_dir.mkdir()
                await made.run("init", "-q", "--bare")
                # Objects live in the central repository (``local`` points git there; the
                # alternate is for plain git, codex's `git status` say): none is copied.
                (made.git_dir / "objects" / "info" / "alternates").write_text(
                    f"{central.git_dir / 'objects'}\n"
                )
                (made.git_dir / "info").mkdir(exist_ok=True)
                (made.git_dir / "info" / "exclude").write_text("\n".join(_EXCLUDED) + "\n")
                for key, value in _LOCAL_CONFIG + await _promisor(central):
                    await made.run("config", key, value)
                shutil.move(made.git_dir, local.git_dir)
        return local

    async def add_worktree(self, project_id: str, name: str, base: str) -> tuple[Repo, str]:
        """The worktree ``name`` on branch ``codexflow/<name>``, at the branch's last commit in
        the central repository (its last checkpoint: what a half-done task left is undone), or
        at commit ``base`` for a new branch. Made where missing (a new session, a host taking a
        session over, after a prune). Returns it and the commit it stands on."""
        await self.ensure_local(project_id)
        worktree = self.worktree(project_id, name)
        assert worktree.work_tree is not None
        branch = branch_of(name)
        local, central = self.local(project_id), self.central(project_id)
        if (worktree.git_dir / "HEAD").exists() and worktree.work_tree.is_dir():
            if await self._has_branch(central, branch):
                last = (await central.run("rev-parse", f"refs/heads/{branch}")).strip()
                await worktree.run("reset", "-q", "--hard", last)
                await worktree.run("clean", "-q", "-fd")  # ignored files stay
            return worktree, (await worktree.run("rev-parse", "HEAD")).strip()
        await local.run("worktree", "prune")  # a directory removed by hand leaves its entry
        # The central repository's objects are the clone's own (alternates): pointing the branch
        # at a commit is all a fetch would do, without touching branches other worktrees hold.
        if await self._has_branch(central, branch):
            base = (await central.run("rev-parse", f"refs/heads/{branch}")).strip()
        else:
            await self.publish(project_id, name, base)  # the branch exists from its start
        await local.run("branch", "-f", "--", branch, base)
        if worktree.work_tree.exists():
            shutil.rmtree(worktree.work_tree)  # half made by an attempt that died
        # Files written by one process per core: most of a big checkout is the kernel's work.
        await local.run(
            "-c", "checkout.workers=0", "worktree", "add", "-q", str(worktree.work_tree), branch
        )
        head = (await worktree.run("rev-parse", "HEAD")).strip()
        return worktree, head

    async def remove_worktree(self, project_id: str, name: str) -> None:
        """The worktree's files and admin directory go; its branch stays (in both repositories)."""
        worktree = self.worktree(project_id, name)
        assert worktree.work_tree is not None
        if worktree.work_tree.exists():
            await asyncio.to_thread(shutil.rmtree, worktree.work_tree)
        if (self.local(project_id).git_dir / "HEAD").exists():
            await self.local(project_id).run("worktree", "prune")

    async def publish(self, project_id: str, name: str, commit: str) -> None:
        """The worktree's branch at ``commit`` in the central repository too (its objects are
        there already): the branch then exists off this host."""
        await self.central(project_id).run("update-ref", f"refs/heads/{branch_of(name)}", commit)

    @staticmethod
    async def _has_branch(repo: Repo, branch: str) -> bool:
        try:
            await repo.run("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
        except GitError:
            return False
        return True
