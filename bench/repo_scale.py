"""What git costs codexflow on real-size repositories.

    .venv/bin/python bench/repo_scale.py [-n 10] [--sizes 1000,10000,50000] [--no-real]

For generated repositories of 1k, 10k and 50k files (100 files a directory, ~300 bytes each) and
one real tree (this venv's site-packages, committed as a repository), in this process:

- import: the clone into the project's central repository (``import_repository``, from a local
  path) and the session's worktree made from it (``prepare_worktree``);
- per codex task: the git work the codex activity does around codex (its base commit, then the
  commit of what codex changed, published to the central repository, and what changed), when codex
  changed 1 file and when it changed 100;
- checkpoint: a stage's checkpoint when nothing changed since (what the pipeline pays after a stage);
- baseline: the way before worktrees, in the same process: a fresh temporary index that rehashes
  the whole tree to find what changed.

Medians of ``-n`` runs; the ratio is the baseline's median over the per-task one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio.testing import ActivityEnvironment  # noqa: E402

from activities.records import Recorder  # noqa: E402
from activities.repositories import RepositoryActivities  # noqa: E402
from activities.workspace import checkpoint, resolve_workspace  # noqa: E402
from config import Settings  # noqa: E402
from core.git import Repo  # noqa: E402
from devkit.processes import scratch_settings  # noqa: E402
from store.db import make_engine  # noqa: E402
from workflows.types.repository import ImportInput, RepositorySpec, WorktreeInput  # noqa: E402

_GIT_ENV = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


def generated(target: Path, files: int) -> None:
    """``files`` source files, 100 a directory."""
    for n in range(files):
        directory = target / f"pkg{n // 100:04}"
        if n % 100 == 0:
            directory.mkdir(parents=True)
        (directory / f"module_{n:06}.py").write_text(
            f'"""Module {n}."""\n\n\ndef f_{n}(x):\n    return x + {n}\n' + "# padding\n" * 20
        )


def site_packages(target: Path) -> None:
    """This venv's site-packages, without its byte code."""
    source = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    shutil.copytree(
        source / "site-packages",
        target,
        symlinks=True,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )


def origin_of(tree: Path, origin: Path) -> int:
    """``tree`` committed as the bare repository ``origin``; its number of files."""

    def git(*args: str, cwd: Path = tree) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, env=_GIT_ENV, check=True, capture_output=True, text=True
        ).stdout

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "initial")
    git("clone", "-q", "--bare", str(tree), str(origin), cwd=tree.parent)
    shutil.rmtree(tree)
    return len(git("ls-tree", "-r", "--name-only", "HEAD", cwd=origin).splitlines())


async def timed(work: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await work()
    return (time.perf_counter() - start) * 1000


async def scenario(name: str, make: Callable[[Path], None], root: Path, n: int) -> dict:
    settings: Settings = await scratch_settings(root / name)
    settings = settings.model_copy(update={"local_repos": [root]})
    tree, origin = root / f"{name}-tree", root / f"{name}-origin.git"
    make(tree)
    files = origin_of(tree, origin)
    engine = make_engine(settings.database_url)
    repos = RepositoryActivities(settings, Recorder(engine), "bench@here")
    env = ActivityEnvironment()
    spec = ImportInput(project_id=name, repository=RepositorySpec(url=str(origin)))
    clone_ms = await timed(lambda: env.run(repos.import_repository, spec))
    worktree_input = WorktreeInput(project_id=name, name="s1")
    start = time.perf_counter()
    made = await env.run(repos.prepare_worktree, worktree_input)
    worktree_ms = (time.perf_counter() - start) * 1000
    workspace = resolve_workspace(settings, made.path)
    path = workspace.path
    sources = sorted(p for p in path.rglob("*.py") if ".git" not in p.parts)

    async def task(changed: int, round_: int) -> float:
        """codex's edit (not timed), then the git work of the activity around it."""
        base = (await workspace.repo.run("rev-parse", "HEAD")).strip()
        for source in sources[:changed]:
            with source.open("a") as out:
                out.write(f"# edit {round_}\n")
        start = time.perf_counter()
        await workspace.repo.run("rev-parse", "HEAD")  # the activity's base commit
        done = await checkpoint(workspace, settings, f"codex task {round_}", since=base)
        elapsed = (time.perf_counter() - start) * 1000
        assert len(done.changed_files) == changed, done
        return elapsed

    await task(1, -1)  # a first task warms the stat cache, as a session's first task does
    one = [await task(1, i) for i in range(n)]
    hundred = [await task(min(100, len(sources)), i + n) for i in range(n)]
    idle = [
        await timed(lambda: checkpoint(workspace, settings, "stage", since=None)) for _ in range(n)
    ]
    baseline = [
        await timed(lambda: rehash_all(workspace.repo, path)) for _ in range(max(3, n // 3))
    ]
    await engine.dispose()
    shutil.rmtree(root / name, ignore_errors=True)
    shutil.rmtree(origin, ignore_errors=True)
    return {
        "name": name,
        "files": files,
        "clone_ms": clone_ms,
        "worktree_ms": worktree_ms,
        "task1_ms": statistics.median(one),
        "task100_ms": statistics.median(hundred),
        "idle_ms": statistics.median(idle),
        "baseline_ms": statistics.median(baseline),
    }


async def rehash_all(repo: Repo, path: Path) -> None:
    """The old way: a temporary index, every file hashed again, a tree written and compared."""
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index"
        await Repo(repo.git_dir, path).run("add", "-A", index=index)
        tree = (await repo.run("write-tree", index=index)).strip()
        await repo.run("diff-tree", "-r", "--name-only", "HEAD", tree)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=10, help="runs of each measure")
    parser.add_argument("--sizes", default="1000,10000,50000", help="generated repositories")
    parser.add_argument("--no-real", action="store_true", help="skip the site-packages tree")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="codexflow-bench-") as tmp:
        root = Path(tmp)
        for size in [int(s) for s in args.sizes.split(",") if s]:
            rows.append(await scenario(f"gen{size}", partial(generated, files=size), root, args.n))
        if not args.no_real:
            rows.append(await scenario("site-packages", site_packages, root, args.n))
    print(f"git per codex task and checkpoint, medians of {args.n} (ms)")
    header = (
        f"{'repository':<14}{'files':>7}{'clone':>9}{'worktree':>10}{'task, 1 file':>14}"
        f"{'task, 100':>11}{'checkpoint':>12}{'baseline':>10}{'ratio':>7}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['name']:<14}{r['files']:>7}{r['clone_ms']:>9.0f}{r['worktree_ms']:>10.0f}"
            f"{r['task1_ms']:>14.1f}{r['task100_ms']:>11.1f}{r['idle_ms']:>12.1f}"
            f"{r['baseline_ms']:>10.0f}{r['baseline_ms'] / r['task1_ms']:>6.1f}x"
        )


if __name__ == "__main__":
    asyncio.run(main())
