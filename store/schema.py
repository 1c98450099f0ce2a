"""The records schema's version: Alembic migrations run on the async URL, and the refusal to run
on a database the code does not match.

Migrations live in ``store/migrations`` (shipped with the package) and are driven here with a
programmatic Alembic config, so no ``alembic.ini`` is needed at run time. URLs are shown with their
password hidden.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from weakref import WeakKeyDictionary

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, make_url

from store.db import is_sqlite, make_engine

if TYPE_CHECKING:
    from config import Settings

__all__ = [
    "MIGRATIONS_DIR",
    "SchemaOutOfDate",
    "alembic_config",
    "check_schema",
    "current_revision",
    "downgrade",
    "ensure_current",
    "head_revision",
    "redact",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

T = TypeVar("T")


class SchemaOutOfDate(RuntimeError):
    """The database is not at the revision this code needs."""

    def __init__(self, url: str, current: str | None, head: str | None, hint: str) -> None:
        self.url, self.current, self.head = redact(url), current, head
        super().__init__(
            f"database at {self.url} is at revision {current or 'base (no schema)'}, "
            f"code needs {head}: {hint}"
        )


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    return make_url(url).render_as_string(hide_password=True)


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for ``store/migrations``; ``connection`` is what env.py migrates."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The revision this code needs."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def _with_connection(url: str, fn: Callable[[Connection], T]) -> T:
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(fn)
    finally:
        await engine.dispose()


# Alembic keeps the running migration in module globals (``alembic.context``, ``alembic.op``), so
# one process runs one command at a time: an asyncio lock per event loop, then a process-wide one
# for other threads (taken only by the loop's lock holder, so it never blocks its own loop's).
# Other processes on PostgreSQL wait on an advisory lock in env.py.
_loop_locks: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = WeakKeyDictionary()
_process_lock = threading.Lock()


async def _alembic_command(url: str, run: Callable[[Config], object]) -> None:
    loop = asyncio.get_running_loop()
    loop_lock = _loop_locks.setdefault(loop, asyncio.Lock())
    async with loop_lock:
        with _process_lock:
            await _with_connection(url, lambda c: run(alembic_config(c)))


async def _upgrade(url: str, revision: str) -> None:
    await _alembic_command(url, lambda config: command.upgrade(config, revision))


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``."""
    await _upgrade(url, revision)


async def downgrade(url: str, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``base``: no tables left)."""
    await _alembic_command(url, lambda config: command.downgrade(config, revision))


def _missing_sqlite_file(url: str) -> bool:
    database = make_url(url).database
    return (
        is_sqlite(url)
        and bool(database)
        and database != ":memory:"
        and not Path(str(database)).exists()
    )


async def current_revision(url: str) -> str | None:
    """The database's revision; None for an empty database (a missing SQLite file is not made)."""
    if _missing_sqlite_file(url):
        return None
    return await _with_connection(
        url, lambda c: MigrationContext.configure(c).get_current_revision()
    )


async def ensure_current(url: str, upgrade: bool = False) -> None:
    """Return if the database is at the code's revision; else upgrade it when ``upgrade`` is set,
    or raise :class:`SchemaOutOfDate`. A database at a revision the code does not know (newer code
    migrated it) always raises: upgrading cannot help and downgrading is not for us to decide."""
    head, current = head_revision(), await current_revision(url)
    if current == head:
        return
    if current is not None and not _known(current):
        raise SchemaOutOfDate(
            url, current, head, "that revision is unknown to this code (did newer code migrate it?)"
        )
    if not upgrade:
        raise SchemaOutOfDate(url, current, head, "run `codexflow db upgrade`")
    await _upgrade(url, "head")


def _known(revision: str) -> bool:
    script = ScriptDirectory.from_config(alembic_config())
    return any(known.revision == revision for known in script.walk_revisions())


async def check_schema(settings: Settings, upgrade: bool = False) -> None:
    """The start-up check of the worker and the API: refuse an out-of-date records database."""
    await ensure_current(settings.database_url, upgrade=upgrade)
