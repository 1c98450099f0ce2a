"""The repository activities on real git: an import's retry and progress, worktrees rebuilt from
the central repository, refusals at the worker too."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.records import Recorder
from activities.repositories import RepositoryActivities, review_url
from activities.workspace import checkpoint, resolve_workspace
from config import Settings
from core.repos import ProjectRepos
from store.models import Project
from tests.helpers.git_server import bare_repository, run_git
from workflows.types.repository import ImportInput, RepositorySpec, WorktreeInput


@pytest.fixture
def local_settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(update={"local_repos": [tmp_path / "origins"]})


async def importing(recorder: Recorder, project_id: str) -> None:
    async with recorder.db() as db:
        db.add(Project(id=project_id, name="p", workspace_path=project_id, status="importing"))
        await db.commit()


async def test_an_import_retried_after_a_crash_clears_what_the_dead_attempt_left(
    local_settings: Settings, recorder: Recorder, tmp_path: Path
) -> None:
    files = {f"src/m{n}.py": f"x = {n}\n" * 200 for n in range(300)}
    head = bare_repository(tmp_path / "origins" / "calc.git", files)
    await importing(recorder, "p7")
    repos = ProjectRepos(local_settings)
    leftover = repos.central("p7").git_dir.with_name(".importing-p7.git-dead1234")
    (leftover / "objects").mkdir(parents=True)  # a clone cut short by a killed worker

    beats: list[object] = []
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=2)
    env.on_heartbeat = lambda *details: beats.append(details)
    spec = ImportInput(
        project_id="p7", repository=RepositorySpec(url=str(tmp_path / "origins" / "calc.git"))
    )
    result = await env.run(
        RepositoryActivities(local_settings, recorder, "q@here").import_repository, spec
    )

    assert result.default_branch == "main" and result.head_commit == head
    assert not leftover.exists() and beats
    async with recorder.db() as db:
        row = await db.get(Project, "p7")
        assert row is not None and re.fullmatch(r"[A-Za-z ]+ \d+%", row.import_progress or "")
    # Packed, like a clone from a remote, and no hard link into the origin.
    assert run_git("--git-dir", str(repos.central("p7").git_dir), "count-objects", "-v").count(
        "packs: 1"
    )
    # Done once: an attempt after it landed finds it there.
    again = await env.run(
        RepositoryActivities(local_settings, recorder, "q@here").import_repository, spec
    )
    assert again == result


@pytest.mark.parametrize("url", ["ext::sh -c id", "/etc", "--upload-pack=id"])
async def test_the_worker_refuses_a_location_whatever_started_it(
    local_settings: Settings, recorder: Recorder, url: str
) -> None:
    spec = ImportInput(project_id="p8", repository=RepositorySpec(url=url))
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(
            RepositoryActivities(local_settings, recorder, "q@here").import_repository, spec
        )
    assert refused.value.type == "RemoteNotAllowed" and refused.value.non_retryable
    assert not ProjectRepos(local_settings).central("p8").git_dir.exists()


async def test_a_lost_worktree_is_rebuilt_from_its_branch(
    settings: Settings, recorder: Recorder, project_id: str
) -> None:
    """A host that lost a session's worktree (a new disk, another host) makes it again from the
    branch's last commit in the central repository, not from the base."""
    activities, env = RepositoryActivities(settings, recorder, "q@here"), ActivityEnvironment()
    made = await env.run(
        activities.prepare_worktree, WorktreeInput(project_id=project_id, name="s1")
    )
    assert made.base_commit == made.head_commit and made.branch == "codexflow/s1"
    workspace = resolve_workspace(settings, made.path)
    (workspace.path / "work.txt").write_text("an hour of codex\n")
    done = await checkpoint(workspace, settings, "work")
    assert await env.run(
        activities.prepare_worktree, WorktreeInput(project_id=project_id, name="s1")
    ) == (made.model_copy(update={"head_commit": done.commit}))  # the same worktree, as it is

    await activities.remove_worktree(WorktreeInput(project_id=project_id, name="s1"))
    assert not Path(made.path).exists()
    again = await env.run(
        activities.prepare_worktree, WorktreeInput(project_id=project_id, name="s1")
    )
    assert again.head_commit == done.commit and again.base_commit == made.base_commit
    assert (Path(again.path) / "work.txt").read_text() == "an hour of codex\n"

    # A session from another base ref starts its own branch there.
    repos = ProjectRepos(settings)
    other = await env.run(
        activities.prepare_worktree,
        WorktreeInput(project_id=project_id, name="s2", base_ref="codexflow/s1"),
    )
    assert other.base_commit == done.commit and other.branch == "codexflow/s2"
    assert await repos.resolve(project_id, "codexflow/s2") == done.commit
    with pytest.raises(ApplicationError) as missing:
        await env.run(
            activities.prepare_worktree,
            WorktreeInput(project_id=project_id, name="s3", base_ref="no-such-branch"),
        )
    assert missing.value.type == "NoSuchRef" and missing.value.non_retryable


def test_review_links_for_github_and_gitlab() -> None:
    assert review_url("https://github.com/octo/calc.git", "main", "codexflow/s1") == (
        "https://github.com/octo/calc/compare/main...codexflow/s1?expand=1"
    )
    assert review_url("git@gitlab.com:group/calc.git", "main", "codexflow/s1") == (
        "https://gitlab.com/group/calc/-/merge_requests/new"
        "?merge_request%5Bsource_branch%5D=codexflow%2Fs1"
    )
    assert review_url("/srv/git/calc.git", "main", "codexflow/s1") is None
