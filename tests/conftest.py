"""Real servers for the tests: a Temporal dev server, a time-skipping test server, tmp settings."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from activities.records import Recorder
from config import Settings
from core.repos import ProjectRepos
from core.workspaces import create_workspace
from devkit.postgres import throwaway_postgres
from devkit.processes import FAKE_CODEX, free_port, start_dev_server
from store.db import make_engine
from store.schema import upgrade
from tests.helpers.api import TOKEN, client_of
from worker import agents_plugin, build_worker, ensure_search_attributes

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")

BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
async def temporal_dev() -> AsyncIterator[WorkflowEnvironment]:
    """A real Temporal dev server (in-memory) for the whole session."""
    env = await start_dev_server()
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def time_skipping() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(BIN / "temporal-test-server"),
        plugins=[agents_plugin(Settings())],
    )
    # The test server has no start-up flag for custom search attributes: the worker's helper adds them.
    await ensure_search_attributes(env.client)
    yield env
    await env.shutdown()


_SQLITE_TEMPLATE: Path | None = None


def migrated_sqlite(directory: Path) -> Path:
    """A SQLite database at head in ``directory``: migrated once per run, then copied."""
    global _SQLITE_TEMPLATE
    if _SQLITE_TEMPLATE is None:
        template = Path(tempfile.mkdtemp(prefix="codexflow-db-")) / "template.db"
        # In a thread of its own: the tests' event loop may be running in this one.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, upgrade(f"sqlite+aiosqlite:///{template}")).result()
        _SQLITE_TEMPLATE = template
    target = directory / "codexflow.db"
    shutil.copyfile(_SQLITE_TEMPLATE, target)
    return target


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings confined to this test's tmp dir, driving the fake codex."""
    return Settings(
        workspaces_root=tmp_path / "workspaces",
        codex_home=tmp_path / "codex-home",
        database_url=f"sqlite+aiosqlite:///{migrated_sqlite(tmp_path)}",
        codex_bin=str(FAKE_CODEX),
        codex_kill_grace_s=1,
        codex_base_url=None,
        codex_api_key=None,
        openai_base_url=None,
        openai_api_key=None,
        api_token=None,
        # An address of the test's own where nothing listens (not localhost:7233, where a
        # developer's `codexflow up` may be running).
        temporal_address=f"127.0.0.1:{free_port()}",
    )


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    """The test settings with an API token (``tests.helpers.api.TOKEN``)."""
    return settings.model_copy(update={"api_token": SecretStr(TOKEN)})


@pytest.fixture
async def api(api_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An authenticated client of the real app (lifespan included), in process."""
    async with client_of(api_settings) as client:
        yield client


@pytest.fixture
async def project_id(settings: Settings) -> str:
    """A project (``p1``) with an empty central repository: what a pipeline or a chat runs on."""
    await ProjectRepos(settings).create("p1")
    return "p1"


@pytest.fixture
def session_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def worktree(settings: Settings, project_id: str, session_id: str) -> Path:
    """Where the session ``session_id`` of ``project_id`` works (made when the session starts)."""
    path = ProjectRepos(settings).worktree(project_id, session_id).work_tree
    assert path is not None
    return path


@pytest.fixture
async def workspace(settings: Settings) -> Path:
    """A standalone workspace (what ``codexflow task`` runs codex in)."""
    path = settings.workspaces_root / "project"
    await create_workspace(settings, path)
    return path


@pytest.fixture
async def recorder(settings: Settings) -> AsyncIterator[Recorder]:
    """The records writer on this test's database."""
    engine = make_engine(settings.database_url)
    yield Recorder(engine)
    await engine.dispose()


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def dev_worker(temporal_dev: WorkflowEnvironment, settings: Settings, task_queue: str):
    """An in-process worker on a fresh task queue of the dev server."""
    async with build_worker(temporal_dev.client, settings, task_queue=task_queue):
        yield temporal_dev.client


# --- records databases: the same tests on SQLite and PostgreSQL --------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """One throwaway PostgreSQL cluster per test session (started on first use): the URL of its
    ``postgres`` database. Tests get databases of their own from ``empty_database_url``."""
    with throwaway_postgres() as url:
        yield url


class PostgresDatabases:
    """Empty databases ``t_<random>`` on the session's cluster. CREATE DATABASE takes ~0.4 s (it
    copies template1 and checkpoints), so a database a test is done with is wiped back to empty
    (other connections ended, every schema dropped, ``public`` recreated) and handed to the next
    test; one that cannot be wiped is dropped instead."""

    def __init__(self, server_url: str) -> None:
        self.server = make_url(server_url)
        self.free: list[str] = []

    def url(self, name: str) -> str:
        return self.server.set(database=name).render_as_string(hide_password=False)

    def _dsn(self, name: str | None) -> str:
        url = self.server.set(drivername="postgresql", database=name)
        return url.render_as_string(hide_password=False)

    async def take(self) -> str:
        if self.free:
            return self.free.pop()
        name = f"t_{uuid.uuid4().hex[:16]}"
        admin = await asyncpg.connect(self._dsn(self.server.database))
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return name

    async def give_back(self, name: str) -> None:
        try:
            connection = await asyncpg.connect(self._dsn(name))
            try:
                await connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                for (schema_name,) in await connection.fetch(
                    "SELECT nspname FROM pg_namespace"
                    " WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'"
                ):
                    await connection.execute(f'DROP SCHEMA "{schema_name}" CASCADE')
                await connection.execute("CREATE SCHEMA public")
            finally:
                await connection.close()
        except (OSError, asyncpg.PostgresError):
            admin = await asyncpg.connect(self._dsn(self.server.database))
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()
        else:
            self.free.append(name)


@pytest.fixture(scope="session")
def postgres_databases(postgres_server: str) -> PostgresDatabases:
    return PostgresDatabases(postgres_server)


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a fresh, empty database (no tables at all): a tmp SQLite file, or a database
    of its own on ``postgres_server`` (see :class:`PostgresDatabases`)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    name = await databases.take()
    try:
        yield databases.url(name)
    finally:
        await databases.give_back(name)


@pytest.fixture
async def database_url(empty_database_url: str) -> str:
    """The URL of a fresh database migrated to head, once on SQLite and once on PostgreSQL."""
    await upgrade(empty_database_url)
    return empty_database_url


@pytest.fixture
async def db_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine (``store.db.make_engine``) on ``database_url``, disposed afterwards."""
    engine = make_engine(database_url)
    yield engine
    await engine.dispose()
