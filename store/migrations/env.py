"""Alembic environment: async engines (aiosqlite, asyncpg) driven through ``run_sync``.

``store.schema`` hands in an open connection (``config.attributes["connection"]``); the ``alembic``
command line (``alembic.ini``) gets the URL from its ``sqlalchemy.url`` or from the settings.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from store.db import is_sqlite, make_engine
from store.models import Base

MIGRATION_LOCK = 0x636F646578  # an advisory lock key of our own ("codex")

config = context.config
target_metadata = Base.metadata
if config.config_file_name is not None:  # the alembic command line
    fileConfig(config.config_file_name)


def database_url() -> str:
    if url := config.get_main_option("sqlalchemy.url"):
        return url
    from config import get_settings

    return get_settings().database_url


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite alters most things by copying the table; batch mode writes migrations that way.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Workers and API replicas may upgrade at once: one migrates, the others then find
            # the database at head (the lock is held until the migration's transaction commits).
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()


async def run_migrations_async(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    url = database_url()
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        target_metadata=target_metadata,
        render_as_batch=is_sqlite(url),
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
elif (given := config.attributes.get("connection")) is not None:
    run_migrations(given)
else:
    asyncio.run(run_migrations_async(database_url()))
