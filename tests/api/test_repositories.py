"""Real repositories in, reviewed branches out: imports over HTTPS (with a token) and from local
paths, a worktree and a branch per session, and delivery as a push, a patch and a bundle.

The remotes are real: bare repositories on disk, and git's http-backend behind TLS and Basic
authentication (``tests.helpers.git_server``). The agents are scripted; codex is the fake one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from agents import ModelResponse
from pydantic import SecretStr
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from config import Settings
from core.repos import ProjectRepos
from devkit.agent_model import ScriptedAgentModel, Turn, pipeline_script, tool
from store.db import make_engine
from store.models import SessionEvent
from tests.helpers.api import client_of
from tests.helpers.archives import tar_gz
from tests.helpers.attacks import history_text
from tests.helpers.git_server import GitHttpsServer, bare_repository, git_https_server, run_git
from tests.helpers.pipeline import pipeline_client
from tests.helpers.temporal import temporal_address
from worker import build_worker

GIT_TOKEN = "ghp_not-a-real-token-but-a-secret-1234"
BIG = [f"value_{n} = {n}" for n in range(1, 5000)] + ["def needle(): return 42"]
ORIGIN_FILES = {
    "README.md": "# calc\n",
    "pkg/big.py": "\n".join(BIG) + "\n",
    "pyproject.toml": "[project]\nname = 'calc'\n",
    ".gitignore": "dist/\n",
}
_HAPPY = pipeline_script()


def play(turn: Turn) -> ModelResponse:
    """The happy pipeline; the Planner first reads the end of pkg/big.py and searches for a
    symbol, and the Builder writes the file its request names ("Write alpha.py")."""
    if turn.role == "planner":
        if turn.step == 0:
            return tool("read_file", path="pkg/big.py", start_line=4996)
        if turn.step == 1:
            return tool("search", pattern=r"def needle\(")
        return _HAPPY(dataclasses.replace(turn, step=turn.step - 2))
    if turn.role == "builder" and turn.step == 0:
        name = re.search(r"Write (\w+\.py)", turn.text)
        target = name[1] if name else "calc.py"
        return tool("run_codex", prompt=f"builder #{turn.iteration}\n@fake write={target}:x = 1\\n")
    return _HAPPY(turn)


@pytest.fixture
def origins(tmp_path: Path) -> Path:
    """Where the remotes are (the operator's CODEXFLOW_LOCAL_REPOS, and the HTTPS server's)."""
    path = tmp_path / "origins"
    path.mkdir()
    return path


@pytest.fixture
def app_settings(
    api_settings: Settings, temporal_dev: WorkflowEnvironment, task_queue: str, origins: Path
) -> Settings:
    return api_settings.model_copy(
        update={
            "temporal_address": temporal_address(temporal_dev),
            "task_queue": task_queue,
            "local_repos": [origins],
            "git_https_token": SecretStr(GIT_TOKEN),
        }
    )


@dataclasses.dataclass
class Stack:
    api: httpx.AsyncClient
    settings: Settings
    env: WorkflowEnvironment


@asynccontextmanager
async def stack_of(env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[Stack]:
    """The API and an in-process worker (scripted agents) on ``settings``."""
    client = await pipeline_client(env, settings, ScriptedAgentModel(play))
    async with (
        build_worker(client, settings, task_queue=settings.task_queue),
        client_of(settings) as api,
    ):
        yield Stack(api, settings, env)


@pytest.fixture
async def stack(temporal_dev: WorkflowEnvironment, app_settings: Settings) -> AsyncIterator[Stack]:
    async with stack_of(temporal_dev, app_settings) as made:
        yield made


async def poll(api: httpx.AsyncClient, url: str, key: str, values: tuple[str, ...]) -> dict:
    """GET ``url`` until its ``key`` is one of ``values`` (within a minute)."""
    async with asyncio.timeout(60):
        while True:
            last = (await api.get(url)).json()
            if last.get(key) in values:
                return dict(last)
            await asyncio.sleep(0.2)


async def import_project(api: httpx.AsyncClient, url: str, **repository: Any) -> dict:
    created = await api.post(
        "/api/projects/", json={"name": "calc", "repository": {"url": url, **repository}}
    )
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "importing"
    return await poll(api, f"/api/projects/{created.json()['id']}", "status", ("ready", "failed"))


async def run_session(api: httpx.AsyncClient, project_id: str, request: str, **options: Any) -> str:
    created = await api.post(
        "/api/sessions/",
        json={
            "project_id": project_id,
            "user_request": request,
            "options": {"codex_heartbeat_s": 2, **options},
            "start": True,
        },
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def files_at(git_dir: Path, ref: str) -> set[str]:
    return set(run_git("--git-dir", str(git_dir), "ls-tree", "-r", "--name-only", ref).split())


def tree_of(git_dir: Path, ref: str) -> str:
    return run_git("--git-dir", str(git_dir), "rev-parse", f"{ref}^{{tree}}").strip()


async def test_a_private_repository_in_two_reviewed_branches_out(
    temporal_dev: WorkflowEnvironment,
    app_settings: Settings,
    origins: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    origin_head = bare_repository(origins / "calc.git", ORIGIN_FILES)
    origin = origins / "calc.git"
    with git_https_server(origins, "x-access-token", GIT_TOKEN) as server:
        settings = app_settings.model_copy(update={"git_ssl_ca_file": server.ca_file})
        async with stack_of(temporal_dev, settings) as stack:
            await deliver_two_branches(stack, server, origin, origin_head, tmp_path, caplog)


async def deliver_two_branches(
    stack: Stack,
    server: GitHttpsServer,
    origin: Path,
    origin_head: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"{server.url}/calc.git"
    project = await import_project(stack.api, url)
    assert project["status"] == "ready", project
    assert project["default_branch"] == "main" and project["repository"]["url"] == url
    pid = project["id"]
    central = ProjectRepos(stack.settings).central(pid).git_dir
    assert run_git("--git-dir", str(central), "rev-parse", "main").strip() == origin_head

    # Two sessions at once, each approved and pushed to the origin.
    alpha, beta = await asyncio.gather(
        run_session(stack.api, pid, "Write alpha.py", deliver="push"),
        run_session(stack.api, pid, "Write beta.py", deliver="push"),
    )
    done = [
        await poll(stack.api, f"/api/sessions/{sid}", "status", ("completed", "failed"))
        for sid in (alpha, beta)
    ]
    assert [s["outcome"] for s in done] == ["approved", "approved"], done

    # Each branch holds its own change and nothing of the other's.
    for session, mine, theirs in ((done[0], "alpha.py", "beta.py"), (done[1], "beta.py", "alpha.py")):  # fmt: skip
        sid = session["id"]
        assert session["branch"] == f"codexflow/{sid}"
        assert session["base_commit"] == origin_head
        files = files_at(central, session["branch"])
        assert mine in files and theirs not in files and "AGENTS.md" in files
        assert (
            session["head_commit"]
            == run_git("--git-dir", str(central), "rev-parse", session["branch"]).strip()
        )
        # Pushed: the origin has the branch at the session's last commit; its worktree went.
        delivery = session["delivery"]
        assert delivery["remote"] == url and delivery["branch"] == session["branch"]
        assert delivery["commit"] == session["head_commit"]
        assert (
            run_git("--git-dir", str(origin), "rev-parse", session["branch"]).strip()
            == (session["head_commit"])
        )
        assert not Path(session["worktree"]).exists()
    assert files_at(origin, "main") == set(ORIGIN_FILES)  # the default branch is untouched

    # Pushed again under another name, on request.
    again = await stack.api.post(
        f"/api/sessions/{alpha}/push", json={"remote_branch": "review/alpha"}
    )
    assert again.status_code == 200, again.text
    assert again.json()["branch"] == "review/alpha"
    assert tree_of(origin, "review/alpha") == tree_of(central, f"codexflow/{alpha}")
    assert server.authorizations and all(server.authorizations[1:])

    # The patch applies with `git am` on a fresh clone at base_commit, to the very same tree.
    patch = await stack.api.get(f"/api/sessions/{alpha}/patch")
    assert patch.status_code == 200 and "Subject: [PATCH" in patch.text
    fresh = tmp_path / "fresh"
    run_git("clone", "-q", str(origin), str(fresh))
    run_git("checkout", "-q", "--detach", done[0]["base_commit"], cwd=fresh)
    run_git("am", "-q", cwd=fresh, stdin=patch.content)
    assert tree_of(fresh / ".git", "HEAD") == tree_of(central, f"codexflow/{alpha}")

    # The bundle clones into the branch's history.
    bundle = await stack.api.get(f"/api/sessions/{beta}/bundle")
    assert bundle.status_code == 200
    (tmp_path / "beta.bundle").write_bytes(bundle.content)
    cloned = tmp_path / "from-bundle"
    run_git("clone", "-q", "-b", f"codexflow/{beta}", str(tmp_path / "beta.bundle"), str(cloned))
    assert (cloned / "beta.py").read_text() == "x = 1\n"
    assert tree_of(cloned / ".git", "HEAD") == tree_of(central, f"codexflow/{beta}")

    # The Planner saw an overview, read the end of the 5,000-line file and found the symbol.
    conversations = (await stack.api.get(f"/api/sessions/{alpha}/conversations")).json()
    planner = next(c for c in conversations if c["agent_type"] == "planner")
    said = [m["content"] for m in planner["messages"]]
    assert "pkg/ (1 files)" in said[0] and "Tests: probably `python -m pytest`" in said[0]
    assert any("  5000  def needle(): return 42" in text for text in said)
    assert any("[pkg/big.py: lines 4996-5000 of 5000]" in text for text in said)
    assert any("pkg/big.py:5000:def needle(): return 42" in text for text in said)

    # The token was used, and appears in no answer, event, log line or workflow history.
    engine = make_engine(stack.settings.database_url)
    async with engine.connect() as conn:
        events = json.dumps((await conn.scalars(select(SessionEvent.payload))).all())
    await engine.dispose()
    answers = [(await stack.api.get(f"/api/projects/{pid}")).text]
    answers += [(await stack.api.get(f"/api/sessions/{sid}")).text for sid in (alpha, beta)]
    histories = [
        await history_text(stack.env.client, wid)
        for wid in (f"import-{pid}", f"session-{alpha}", f"session-{beta}")
    ]
    for text in (events, caplog.text, *answers, *histories):
        assert GIT_TOKEN not in text


async def test_local_imports_by_path_and_file_url(stack: Stack, origins: Path) -> None:
    head = bare_repository(origins / "calc.git", ORIGIN_FILES)
    run_git("--git-dir", str(origins / "calc.git"), "branch", "release", "main")
    by_path = await import_project(stack.api, str(origins / "calc.git"))
    by_url = await import_project(stack.api, f"file://{origins / 'calc.git'}", ref="release")
    shallow = await import_project(
        stack.api, f"file://{origins / 'calc.git'}", depth=1, partial=True
    )
    for project in (by_path, by_url, shallow):
        assert project["status"] == "ready" and project["import_progress"] is None, project
        central = ProjectRepos(stack.settings).central(project["id"]).git_dir
        assert files_at(central, project["default_branch"]) == set(ORIGIN_FILES)
        assert run_git("--git-dir", str(central), "rev-parse", "HEAD").strip() == head
    assert by_url["default_branch"] == "release"
    tree = (await stack.api.get(f"/api/files/tree/{shallow['id']}")).json()
    assert {e["path"] for e in tree["entries"]} >= {"README.md", "pkg/big.py"}


async def test_a_failed_import_fails_the_project_and_refuses_sessions(
    stack: Stack, origins: Path
) -> None:
    (origins / "not-a-repo").mkdir()
    project = await import_project(stack.api, str(origins / "not-a-repo"))
    assert project["status"] == "failed" and "the clone failed" in project["error"]
    session = await stack.api.post(
        "/api/sessions/", json={"project_id": project["id"], "user_request": "r"}
    )
    assert session.status_code == 409 and "failed to import" in session.json()["detail"]
    upload = await stack.api.post(
        f"/api/files/upload/{project['id']}", files={"file": ("a.txt", b"a")}
    )
    assert upload.status_code == 409


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("/etc", "not under a directory of CODEXFLOW_LOCAL_REPOS"),
        ("file:///etc", "not under a directory of CODEXFLOW_LOCAL_REPOS"),
        ("{origins}/../../etc", "not under a directory of CODEXFLOW_LOCAL_REPOS"),
        ("ext::sh -c touch% /tmp/pwned", "spaces"),
        ("ext::sh%20-c%20id", "transport helpers"),
        ("fd::7", "transport helpers"),
        ("--upload-pack=touch /tmp/pwned", "may not start with '-'"),
        ("-u/tmp/x", "may not start with '-'"),
        ("ssh://-oProxyCommand=touch%20pwned/x", "not a host name"),
        ("git@-oProxyCommand=x:repo", "not a repository URL"),
        ("git://example.com/x.git", "git:// is not allowed"),
        ("http://example.com/x.git", "http:// is not allowed"),
        ("https://user:hunter2@example.com/x.git", "not in the URL"),
        ("relative/path", "not a repository URL"),
    ],
)
async def test_refused_locations_are_422_and_create_nothing(
    app_settings: Settings, origins: Path, url: str, reason: str
) -> None:
    async with client_of(app_settings) as api:
        answer = await api.post(
            "/api/projects/",
            json={"name": "x", "repository": {"url": url.format(origins=origins)}},
        )
        assert answer.status_code == 422, answer.text
        assert reason in answer.json()["detail"]
        assert "hunter2" not in answer.text
        assert (await api.get("/api/projects/")).json()["total"] == 0
    repos = app_settings.repos_path()
    assert not repos.exists() or not any(repos.iterdir())


async def test_local_paths_are_refused_unless_the_operator_allows_them(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    bare_repository(tmp_path / "calc.git", {"a.txt": "a"})
    answer = await api.post(
        "/api/projects/", json={"name": "x", "repository": {"url": str(tmp_path / "calc.git")}}
    )
    assert answer.status_code == 422 and "CODEXFLOW_LOCAL_REPOS" in answer.json()["detail"]


async def test_a_project_seeded_from_an_archive(api: httpx.AsyncClient) -> None:
    archive = tar_gz({"calc-1.0/README.md": b"# calc\n", "calc-1.0/calc.py": b"x = 1\n"})
    created = await api.post(
        "/api/projects/",
        data={"name": "calc", "description": "from a tarball"},
        files={"archive": ("calc-1.0.tar.gz", archive, "application/gzip")},
    )
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "ready"
    tree = (await api.get(f"/api/files/tree/{created.json()['id']}")).json()
    assert [e["path"] for e in tree["entries"]] == ["README.md", "calc.py"]
