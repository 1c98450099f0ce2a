"""The services: the Temporal dev server, a worker, the API, and ``up`` (all of them)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from cli.app import app
from cli.client import ApiClient
from cli.stack import StackError, dev_server_command
from config import STATE_DIR, Settings, get_settings

SHUTDOWN_GRACE_S = 2  # seconds open streams get when the API stops


@app.command()
def server(
    db_file: Annotated[Path, typer.Option(help="SQLite file that keeps every workflow")] = STATE_DIR
    / "temporal.db",
    headless: Annotated[bool, typer.Option(help="no Web UI")] = False,
    ui_port: Annotated[
        int | None,
        typer.Option(
            min=1, max=65535, help="Web UI port (default: the port of CODEXFLOW_TEMPORAL_UI_URL)"
        ),
    ] = None,
) -> None:
    """Run the Temporal dev server (SQLite persistence, Web UI, codexflow's search attributes)."""
    settings = get_settings()
    db_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        command = dev_server_command(settings, db_file, headless, ui_port)
    except StackError as err:
        raise typer.BadParameter(str(err)) from None
    typer.echo(f"Temporal on {settings.temporal_address}, Web UI {settings.temporal_ui_url}")
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(command, check=False)


@app.command()
def worker(
    upgrade_db: Annotated[bool, typer.Option(help="migrate the database first if needed")] = False,
) -> None:
    """Run a worker (workflows, agents and codex activities) until Ctrl-C."""
    import worker as worker_module

    worker_module.run(upgrade=upgrade_db)


@app.command()
def api(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    upgrade_db: Annotated[bool, typer.Option(help="migrate the database first if needed")] = False,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs)."""
    import uvicorn

    from api.app import create_app
    from observability.logs import configure_logging
    from store.schema import SchemaOutOfDate, check_schema

    settings = get_settings()
    if settings.api_token is None and host not in ("127.0.0.1", "localhost", "::1"):
        typer.secho(
            f"no CODEXFLOW_API_TOKEN: binding 127.0.0.1 only instead of {host}; "
            "set a token to serve other hosts",
            fg="yellow",
            err=True,
        )
        host = "127.0.0.1"
    try:
        asyncio.run(check_schema(settings, upgrade=upgrade_db))
    except SchemaOutOfDate as err:
        raise typer.BadParameter(f"{err} (or pass --upgrade-db)") from None
    typer.echo(f"codexflow API on http://{host}:{port} (docs: http://{host}:{port}/docs)")
    configure_logging(settings)
    # log_config=None: uvicorn's own loggers go through ours (text or JSON). On shutdown, open
    # streams (SSE, WebSockets) get a moment, then are closed: their clients reconnect.
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )


@app.command()
def up(
    offline: Annotated[
        bool, typer.Option(help="a scripted model plays the agents and codex: no account needed")
    ] = False,
) -> None:
    """Start everything on the embedded defaults: the Temporal dev server (SQLite file, Web UI),
    database migrations, the worker and the API (at CODEXFLOW_API_URL); Ctrl-C stops it all.
    Unfinished runs resume when it starts again."""
    from cli.stack import OFFLINE_NOTICE, Stack

    settings = get_settings()
    try:
        with Stack(settings, offline=offline) as stack:
            s = stack.settings
            mode = "offline: a scripted model plays the agents and codex" if offline else "live"
            typer.secho(f"codexflow is up ({mode})", bold=True)
            if offline:
                typer.secho(OFFLINE_NOTICE, fg="yellow")
            typer.echo(f"  API          {s.api_url}")
            typer.echo(f"  OpenAPI docs {s.api_url}/docs")
            typer.echo(f"  Temporal UI  {s.temporal_ui_url}")
            typer.echo(f"  logs         {stack.logs}/")
            typer.echo('Try: codexflow run "Build a calculator module with tests" --project calc')
            typer.echo("Ctrl-C stops everything.")
            for warning in readiness(s):
                typer.secho(f"warning: {warning}", fg="yellow", err=True)
            stack.wait()
            typer.echo("stopping…")
    except StackError as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("stopped while starting")
    typer.echo("stopped")


def readiness(settings: Settings) -> list[str]:
    """What would make every run fail in live mode: no model for the agents, codex not logged in."""
    warnings = []
    if not settings.openai_api_key and not settings.openai_base_url:
        warnings.append(
            "the agents have no model: set OPENAI_API_KEY (or CODEXFLOW_OPENAI_BASE_URL), "
            "or try `codexflow up --offline`"
        )
    with ApiClient(settings) as api:
        codex = api.request("GET", "/api/health")["codex"]
    if not codex["ok"]:  # its detail says what to do (for a login, the exact command)
        warnings.append(f"codex is not ready: {codex.get('detail')}")
    return warnings
