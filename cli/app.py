"""The ``codexflow`` Typer app; each module of this package adds its commands to it."""

from __future__ import annotations

import typer
from pydantic import ValidationError

from config import get_settings

__all__ = ["app"]

app = typer.Typer(
    help="codexflow: durable multi-agent software delivery on Temporal.", no_args_is_help=True
)


@app.callback()
def _settings_are_valid() -> None:
    """Every command reads the settings first: a bad one is one clear line, not a traceback."""
    try:
        get_settings()
    except ValidationError as err:
        for problem in err.errors():
            where = ".".join(str(part) for part in problem["loc"]) or "settings"
            typer.secho(f"error: {where}: {problem['msg']}", fg="red", err=True)
        raise typer.Exit(2) from None
