"""The ``codexflow`` Typer app; each module of this package adds its commands to it."""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(
    help="codexflow: durable multi-agent software delivery on Temporal.", no_args_is_help=True
)
