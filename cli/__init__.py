"""The ``codexflow`` command: the services, runs through the API, one codex task, the database.

``app`` is the Typer app (``codexflow = "cli:app"``); ``python -m cli`` runs it too.
"""

from cli import db, runs, services, task  # noqa: F401  (each adds its commands to the app)
from cli.app import app

__all__ = ["app"]
