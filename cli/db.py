"""``codexflow db``: the records database's migrations (Alembic)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Annotated, Any

import typer

from cli.app import app
from config import get_settings

db_app = typer.Typer(
    help="The records database (CODEXFLOW_DATABASE_URL): Alembic migrations.", no_args_is_help=True
)
app.add_typer(db_app, name="db")


def _revision_name(revision: str | None) -> str:
    return revision or "base (no schema)"


def _run_db(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a db command; a bad revision or an unreachable database is an error line, not a trace."""
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    try:
        asyncio.run(coroutine)
    except (CommandError, SQLAlchemyError, OSError) as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from None


async def _migrate(direction: str, revision: str) -> None:
    from store import schema

    url = get_settings().database_url
    before = await schema.current_revision(url)
    migrate = schema.upgrade if direction == "upgrade" else schema.downgrade
    await migrate(url, revision)
    after = await schema.current_revision(url)
    change = (
        f"{_revision_name(before)} → {_revision_name(after)}"
        if before != after
        else f"already at {_revision_name(after)}"
    )
    typer.echo(f"database at {schema.redact(url)}: {change}")


async def _show_current() -> None:
    from store import schema

    url = get_settings().database_url
    current, head = await schema.current_revision(url), schema.head_revision()
    state = "up to date" if current == head else f"code needs {head}: run `codexflow db upgrade`"
    typer.echo(
        f"database at {schema.redact(url)} is at revision {_revision_name(current)} ({state})"
    )


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="target revision")] = "head",
) -> None:
    """Migrate the records database up (to the code's revision by default)."""
    _run_db(_migrate("upgrade", revision))


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="target revision; base removes every table")],
) -> None:
    """Migrate the records database down to REVISION."""
    _run_db(_migrate("downgrade", revision))


@db_app.command("current")
def db_current() -> None:
    """Show the records database's revision and the one the code needs."""
    _run_db(_show_current())
