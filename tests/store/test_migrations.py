"""Migrations on SQLite and PostgreSQL alike: up from empty, down to base, and the schema check."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, make_url

from config import Settings
from store import schema
from store.db import make_engine
from store.models import Base

TABLES = {
    "projects",
    "stored_payloads",
    "stored_payload_refs",
    "project_files",
    "sessions",
    "conversations",
    "messages",
    "codex_tasks",
    "session_events",
}


async def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_upgrade_from_empty_then_downgrade_to_base(empty_database_url: str) -> None:
    url = empty_database_url
    assert await table_names(url) == set()
    assert await schema.current_revision(url) is None

    await schema.upgrade(url)
    assert await table_names(url) == TABLES | {"alembic_version"}
    assert await schema.current_revision(url) == schema.head_revision()

    await schema.downgrade(url, "base")
    assert await table_names(url) == {"alembic_version"}
    assert await schema.current_revision(url) is None

    await schema.upgrade(url)  # and up again: the downgrade left nothing behind
    assert await schema.current_revision(url) == schema.head_revision()


async def test_head_matches_the_models(db_engine) -> None:
    """Every table, column, type, index and constraint of store/models.py is in the migrations."""

    def differences(connection: Connection) -> list:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with db_engine.connect() as connection:
        assert await connection.run_sync(differences) == []


async def test_session_event_ids_are_64_bit_and_autoincrement(db_engine) -> None:
    async with db_engine.connect() as connection:
        columns = await connection.run_sync(
            lambda c: {col["name"]: col for col in inspect(c).get_columns("session_events")}
        )
    id_type = str(columns["id"]["type"]).upper()
    if db_engine.dialect.name == "postgresql":
        assert id_type == "BIGINT"
        assert "nextval" in str(columns["id"]["default"])  # BIGSERIAL
    else:
        assert id_type == "INTEGER"  # the rowid alias: 64-bit, AUTOINCREMENT in the DDL
        async with db_engine.connect() as connection:
            ddl = await connection.scalar(
                text("SELECT sql FROM sqlite_master WHERE name = 'session_events'")
            )
        assert "PRIMARY KEY AUTOINCREMENT" in ddl


async def test_ensure_current_refuses_an_empty_database_then_upgrades(
    empty_database_url: str,
) -> None:
    url, head = empty_database_url, schema.head_revision()
    with pytest.raises(schema.SchemaOutOfDate) as raised:
        await schema.ensure_current(url)
    message = str(raised.value)
    assert f"database at {schema.redact(url)} is at revision base" in message
    assert f"code needs {head}: run `codexflow db upgrade`" in message
    assert await table_names(url) == set()  # refusing changed nothing

    await schema.ensure_current(url, upgrade=True)
    assert await schema.current_revision(url) == head
    await schema.ensure_current(url)  # now it passes


async def test_ensure_current_refuses_an_old_database(empty_database_url: str) -> None:
    url, head = empty_database_url, schema.head_revision()
    await schema.upgrade(url)
    await schema.downgrade(url, "-1")  # one revision behind the code
    behind = await schema.current_revision(url)
    assert behind != head
    with pytest.raises(schema.SchemaOutOfDate, match="run `codexflow db upgrade`"):
        await schema.ensure_current(url)
    await schema.ensure_current(url, upgrade=True)
    assert await schema.current_revision(url) == head


async def test_concurrent_upgrades_in_one_process(empty_database_url: str) -> None:
    """Alembic's module globals allow one command at a time: the API and a worker sharing a
    process (or a loop) must not trip over each other's start-up upgrade."""
    url = empty_database_url
    await asyncio.gather(*(schema.ensure_current(url, upgrade=True) for _ in range(4)))
    assert await schema.current_revision(url) == schema.head_revision()


async def test_ensure_current_refuses_a_revision_it_does_not_know(database_url: str) -> None:
    engine = make_engine(database_url)
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed'"))
    await engine.dispose()
    for upgrade in (False, True):  # upgrading cannot help either
        with pytest.raises(schema.SchemaOutOfDate, match="f00dfeed.*unknown to this code"):
            await schema.ensure_current(database_url, upgrade=upgrade)


async def test_check_schema_reads_the_settings(empty_database_url: str) -> None:
    settings = Settings(database_url=empty_database_url)
    with pytest.raises(schema.SchemaOutOfDate):
        await schema.check_schema(settings)
    await schema.check_schema(settings, upgrade=True)
    await schema.check_schema(settings)


async def test_passwords_are_never_shown(empty_database_url: str) -> None:
    url = make_url(empty_database_url)
    if url.get_backend_name() == "postgresql":
        # The throwaway cluster trusts local connections, so any password gets in.
        secret = url.set(password="s3cret-pw").render_as_string(hide_password=False)
    else:
        secret = "postgresql+asyncpg://codexflow:s3cret-pw@db.invalid/records"
    assert "s3cret-pw" not in schema.redact(secret)
    error = schema.SchemaOutOfDate(secret, None, "0001", "run `codexflow db upgrade`")
    assert "s3cret-pw" not in str(error) and "***" in str(error)
    if url.get_backend_name() == "postgresql":
        with pytest.raises(schema.SchemaOutOfDate) as raised:
            await schema.ensure_current(secret)
        assert "s3cret-pw" not in str(raised.value)


def test_migrations_ship_with_the_package() -> None:
    versions = schema.MIGRATIONS_DIR / "versions"
    assert (schema.MIGRATIONS_DIR / "env.py").is_file()
    assert (versions / "__init__.py").is_file()  # a package, so setuptools installs it
    assert schema.MIGRATIONS_DIR.parent == Path(schema.__file__).parent
    assert schema.head_revision() is not None


def test_cli_db_upgrade_then_current(tmp_path: Path) -> None:
    codexflow = Path(sys.executable).parent / "codexflow"
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "CODEXFLOW_DATABASE_URL": url}

    def run(*args: str) -> str:
        done = subprocess.run(
            [str(codexflow), "db", *args], env=env, cwd=tmp_path, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    head = schema.head_revision()
    assert f"base (no schema) → {head}" in run("upgrade")
    assert f"is at revision {head} (up to date)" in run("current")
