"""git never runs what a repository configures: not in the worker's checkpoints, not in the API's
diff, whatever the repository's config or attributes say, and it runs with no secret to leak."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import update
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.workspace import WorkspaceActivities
from config import Settings
from core.git import UntrustedConfig, audit, git_env
from core.repos import ProjectRepos
from core.vocabulary import EventKind
from core.workspaces import repo_of
from store.db import make_engine, make_sessionmaker
from store.events import EventLog, NewEvent
from store.models import RunSession
from workflows.types.workspace import CheckpointInput

PROGRAM_SETTINGS = [
    "core.fsmonitor={run}",
    "diff.external={run}",
    "diff.evil.textconv={run}",
    "diff.evil.command={run}",
    "filter.evil.clean={run}",
    "filter.evil.smudge={run}",
    "filter.evil.process={run}",
    "merge.evil.driver={run}",
    "core.sshCommand={run}",
    "core.pager={run}",
    "core.editor={run}",
    "credential.helper=!{run}",
    "credential.https://example.com.helper=!{run}",
    "include.path=/tmp/elsewhere.gitconfig",
    "includeIf.gitdir:/.path=/tmp/elsewhere.gitconfig",
    "remote.origin.uploadpack={run}",
    "core.hooksPath=/tmp/hooks",
    "gpg.program={run}",
]


def _poison(git_dir: Path, setting: str, marker: Path) -> None:
    key, value = setting.format(run=f"touch {marker}").split("=", 1)
    section, _, rest = key.partition(".")
    subsection, _, name = rest.rpartition(".")
    header = f'[{section} "{subsection}"]' if subsection else f"[{section}]"
    with (git_dir / "config").open("a") as config:
        config.write(f"{header}\n\t{name} = {value}\n")


@pytest.mark.parametrize("setting", PROGRAM_SETTINGS)
async def test_a_checkpoint_refuses_a_repository_config_that_could_run_a_program(
    settings: Settings, workspace: Path, tmp_path: Path, setting: str
) -> None:
    marker = tmp_path / "ran"
    git_dir = repo_of(settings, workspace).git_dir
    (workspace / ".gitattributes").write_text("* diff=evil filter=evil merge=evil\n")
    (workspace / "a.txt").write_text("a")
    _poison(git_dir, setting, marker)
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(
            WorkspaceActivities(settings).checkpoint,
            CheckpointInput(workspace=str(workspace), message="m"),
        )
    assert refused.value.type == "UntrustedRepository" and refused.value.non_retryable
    assert setting.split("=")[0].lower() in str(refused.value).lower()
    assert not marker.exists()


async def test_attributes_alone_run_nothing(
    settings: Settings, workspace: Path, tmp_path: Path
) -> None:
    """Codex may write .gitattributes naming drivers; with no driver in the config, none runs."""
    (workspace / ".gitattributes").write_text("* diff=evil filter=evil merge=evil\n")
    (workspace / "a.txt").write_text("a")
    checkpoint = await ActivityEnvironment().run(
        WorkspaceActivities(settings).checkpoint,
        CheckpointInput(workspace=str(workspace), message="m"),
    )
    assert sorted(checkpoint.changed_files) == [".gitattributes", "a.txt"]


async def test_the_api_refuses_a_poisoned_repository_and_runs_no_textconv(
    api: httpx.AsyncClient, api_settings: Settings, tmp_path: Path
) -> None:
    """The diff, patch and bundle of a session whose central repository's config names a
    program are refused (409) without running it; with no such config, attributes run nothing."""
    project = (await api.post("/api/projects/", json={"name": "p"})).json()
    repos = ProjectRepos(api_settings)
    parent = await repos.resolve(project["id"], "main")
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / ".gitattributes").write_text("* diff=evil\n")
    (staged / "a.txt").write_text("hello\n")
    commit = await repos.commit_files(project["id"], "main", "stage", directory=staged)
    session = (
        await api.post("/api/sessions/", json={"project_id": project["id"], "user_request": "r"})
    ).json()
    engine = make_engine(api_settings.database_url)
    payload = {"stage": "builder", "iteration": 1, "commit": commit, "parent": parent}
    await EventLog(engine).append([NewEvent(session["id"], EventKind.STAGE_COMPLETED, payload)])
    async with make_sessionmaker(engine)() as db:
        await db.execute(
            update(RunSession)
            .where(RunSession.id == session["id"])
            .values(branch="main", base_commit=parent)
        )
        await db.commit()
    await engine.dispose()

    sid = session["id"]
    clean = await api.get(f"/api/sessions/{sid}/diff")
    assert clean.status_code == 200 and "+hello" in clean.text
    assert "+hello" in (await api.get(f"/api/sessions/{sid}/patch")).text

    marker = tmp_path / "textconv-ran"
    _poison(repos.central(project["id"]).git_dir, "diff.evil.textconv={run}", marker)
    for what in ("diff", "patch", "bundle"):
        refused = await api.get(f"/api/sessions/{sid}/{what}")
        assert refused.status_code == 409 and "diff.evil.textconv" in refused.text, what
    assert not marker.exists()


def test_git_runs_with_no_secret_of_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "CODEXFLOW_API_TOKEN", "AWS_SECRET_ACCESS_KEY", "GIT_DIR"):
        monkeypatch.setenv(name, "secret-value-1234567890")
    env = git_env()
    assert "secret-value-1234567890" not in env.values()
    assert env["GIT_CONFIG_GLOBAL"] == "/dev/null" and env["GIT_CONFIG_NOSYSTEM"] == "1"


def test_the_audit_reads_a_changed_config_again(settings: Settings, tmp_path: Path) -> None:
    git_dir = tmp_path / "r.git"
    git_dir.mkdir()
    (git_dir / "config").write_text("[core]\n\tbare = true\n")
    audit(git_dir)
    (git_dir / "config").write_text("[core]\n\tbare = true\n\tfsmonitor = x\n")
    with pytest.raises(UntrustedConfig, match="core.fsmonitor"):
        audit(git_dir)
