"""The ``codexflow`` command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from apiclient import ApiClient, ApiError
from config import STATE_DIR, Sandbox, Settings, get_settings
from stack import StackError, dev_server_command
from workflows.types import Decision

app = typer.Typer(
    help="codexflow: durable multi-agent software delivery on Temporal.", no_args_is_help=True
)


def ui_link(settings: Settings, workflow_id: str) -> str:
    return f"{settings.temporal_ui_url}/namespaces/{settings.temporal_namespace}/workflows/{workflow_id}"


# --- the services ------------------------------------------------------------------------------


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
    # log_config=None: uvicorn's own loggers go through ours (text or JSON).
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None)


@app.command()
def up(
    offline: Annotated[
        bool, typer.Option(help="a scripted model plays the agents and codex: no account needed")
    ] = False,
) -> None:
    """Start everything on the embedded defaults: the Temporal dev server (SQLite file, Web UI),
    database migrations, the worker and the API (at CODEXFLOW_API_URL); Ctrl-C stops it all.
    Unfinished runs resume when it starts again."""
    from stack import Stack

    settings = get_settings()
    try:
        with Stack(settings, offline=offline) as stack:
            s = stack.settings
            mode = "offline: a scripted model plays the agents and codex" if offline else "live"
            typer.secho(f"codexflow is up ({mode})", bold=True)
            typer.echo(f"  API          {s.api_url}")
            typer.echo(f"  OpenAPI docs {s.api_url}/docs")
            typer.echo(f"  Temporal UI  {s.temporal_ui_url}")
            typer.echo(f"  logs         {stack.logs}/")
            typer.echo('Try: codexflow run "Build a calculator module with tests" --project calc')
            typer.echo("Ctrl-C stops everything.")
            for warning in _readiness(s):
                typer.secho(f"warning: {warning}", fg="yellow", err=True)
            stack.wait()
            typer.echo("stopping…")
    except StackError as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("stopped while starting")
    typer.echo("stopped")


def _readiness(settings: Settings) -> list[str]:
    """What would make every run fail in live mode: no model for the agents, codex not logged in."""
    warnings = []
    if not settings.openai_api_key and not settings.openai_base_url:
        warnings.append(
            "the agents have no model: set OPENAI_API_KEY (or CODEXFLOW_OPENAI_BASE_URL), "
            "or try `codexflow up --offline`"
        )
    with ApiClient(settings) as api:
        codex = api.request("GET", "/api/health")["codex"]
    if not codex["ok"]:
        warnings.append(f"codex is not ready: {codex.get('detail')}")
    return warnings


# --- one codex task ----------------------------------------------------------------------------


def resolve_task_workspace(settings: Settings, workspace: str) -> Path:
    """A path, or a bare name under CODEXFLOW_WORKSPACES_ROOT; it must lie under that root."""
    root = settings.workspace_root()
    given = Path(workspace).expanduser()
    path = given if given.is_absolute() or given.exists() else root / given
    path = path.resolve()
    if root not in path.parents:
        raise typer.BadParameter(
            f"{workspace} is outside CODEXFLOW_WORKSPACES_ROOT ({root}); give a name or a path under it",
            param_hint="--workspace",
        )
    return path


async def _run_task(
    settings: Settings, prompt: str, workspace: Path, wait: bool, **options: Any
) -> int:
    from activities.workspace import create_workspace
    from worker import connect
    from workflows.codex_task import CodexTaskWorkflow
    from workflows.types import CodexTaskRequest

    request = CodexTaskRequest(workspace=str(workspace), prompt=prompt, **options)
    await create_workspace(workspace)
    client = await connect(settings)
    workflow_id = f"codex-task-{uuid.uuid4().hex[:12]}"
    handle = await client.start_workflow(
        CodexTaskWorkflow.run, request, id=workflow_id, task_queue=settings.task_queue
    )
    typer.echo(f"started {workflow_id} in {workspace}")
    typer.echo(f"Temporal UI: {ui_link(settings, workflow_id)}")
    if not wait:
        return 0
    return await follow_codex_task(client, handle, settings)


async def follow_codex_task(client: Client, handle: WorkflowHandle, settings: Settings) -> int:
    """Show progress until the task ends; print its result. Returns a process exit code."""
    from workflows.codex_task import CodexTaskWorkflow

    result_task = asyncio.ensure_future(handle.result())
    shown = ""
    while not result_task.done():
        line = await _progress_line(client, handle, CodexTaskWorkflow)
        if line and line != shown:
            typer.echo(f"  {line}")
            shown = line
        await asyncio.wait({result_task}, timeout=0.5)
    try:
        outcome = result_task.result()
    except WorkflowFailureError as err:
        typer.secho(f"failed: {err.cause}", fg="red", err=True)
        return 1
    r = outcome.result
    typer.echo(
        f"codex exit {r.exit_code} in {r.duration_s:.1f}s, attempt {r.attempt}, thread {r.thread_id}"
    )
    typer.echo(f"tokens: {r.usage.input_tokens} in / {r.usage.output_tokens} out")
    typer.echo(
        f"changed: {', '.join(r.changed_files) or 'nothing'}  (commit {outcome.after.commit[:10]})"
    )
    typer.echo(f"codex says: {r.final_message}")
    typer.echo(f"Temporal UI: {ui_link(settings, handle.id)}")
    return 0


async def _progress_line(client: Client, handle: WorkflowHandle, workflow: Any) -> str:
    """State from the status query and codex's progress from the activity's last heartbeat."""
    with contextlib.suppress(Exception):
        status = await handle.query(workflow.status)
        description = await handle.describe()
        for pending in description.raw_description.pending_activities:
            if pending.heartbeat_details.payloads:
                (details,) = await client.data_converter.decode(pending.heartbeat_details.payloads)
                return f"{status.state}: attempt {pending.attempt}, {details.get('events', 0)} codex events"
        return status.state
    return ""


@app.command()
def task(
    prompt: Annotated[str, typer.Argument(help="what codex should do")],
    workspace: Annotated[
        str, typer.Option(help="workspace name or path under the workspaces root")
    ],
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="follow until it ends")] = True,
    model: Annotated[str | None, typer.Option(help="codex model")] = None,
    sandbox: Annotated[
        str | None, typer.Option(help="read-only | workspace-write | danger-full-access")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds before codex is stopped")] = None,
) -> None:
    """Run one codex task durably in a workspace (a CodexTaskWorkflow)."""
    if not prompt.strip():
        raise typer.BadParameter("the prompt is empty", param_hint="PROMPT")
    if sandbox is not None and sandbox not in get_args(Sandbox):
        raise typer.BadParameter(f"unknown sandbox {sandbox!r}", param_hint="--sandbox")
    settings = get_settings()
    path = resolve_task_workspace(settings, workspace)
    options: dict[str, Any] = {"model": model, "sandbox": sandbox, "timeout_s": timeout}
    code = asyncio.run(_run_task(settings, prompt, path, wait, **options))
    # The Temporal client's Rust threads can abort interpreter teardown with "PyGILState_Release"
    # (temporalio/sdk-python#300): the work is done, so leave without it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# --- runs through the API ----------------------------------------------------------------------


@contextlib.contextmanager
def _api() -> Iterator[ApiClient]:
    """An API client; its errors become one red line and exit code 1."""
    try:
        with ApiClient(get_settings()) as client:
            yield client
    except ApiError as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from None


def _gates(value: str | None) -> list[str]:
    from crew.roles import Role

    gates = [g.strip() for g in (value or "").split(",") if g.strip()]
    if unknown := [g for g in gates if g not in Role.__members__.values()]:
        raise typer.BadParameter(
            f"unknown stage {', '.join(unknown)}; stages: {', '.join(Role)}", param_hint="--gate"
        )
    return gates


def _ask_review(api: ApiClient, session_id: str, stage: str) -> None:
    choice = (
        typer.prompt(f"Review {stage}: [a]pprove, request [c]hanges, [r]eject", default="a")
        .strip()
        .lower()
    )
    decision = {"a": "approve", "c": "request_changes", "r": "reject"}.get(choice[:1], "")
    if not decision:
        typer.echo("no review given; answer later with `codexflow review`")
        return
    feedback = typer.prompt("Feedback", default="") if decision != "approve" else ""
    try:
        api.review(session_id, stage, decision, feedback)
    except ApiError as err:  # e.g. someone else reviewed it first
        typer.secho(f"review not taken: {err}", fg="yellow", err=True)


def _follow(api: ApiClient, session_id: str, interactive: bool) -> int:
    """Show the session's events until it ends, asking for reviews; an exit code."""
    from progress import RunView

    view = RunView()

    def reconnecting(reason: str) -> None:
        typer.secho(f"  … reconnecting to the event stream ({reason})", dim=True, err=True)

    for event in api.follow(session_id, on_reconnect=reconnecting):
        for line in view.lines(event):
            typer.echo(line)
        if event.kind in ("review.awaited", "budget.paused"):
            stage = event.payload.get("stage", "")
            if interactive:
                _ask_review(api, session_id, stage)
            else:
                typer.echo(f"  answer with: codexflow review {session_id} approve --stage {stage}")
    session = api.session(session_id)
    if session.get("final_summary"):
        typer.echo(session["final_summary"])
    typer.echo(f"Temporal UI: {session.get('temporal_ui_url')}")
    return 0 if session["status"] == "completed" and session["outcome"] == "approved" else 1


@app.command()
def run(
    request: Annotated[str, typer.Argument(help="the change you want, in plain words")],
    project: Annotated[str, typer.Option(help="project name; created if there is none")],
    gate: Annotated[
        str | None, typer.Option(help="stages that wait for your review, e.g. planner,builder")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow/--no-follow", help="show progress until it ends")
    ] = True,
    interactive: Annotated[
        bool | None,
        typer.Option("--ask/--no-ask", help="ask for reviews here (default: in a terminal)"),
    ] = None,
) -> None:
    """Start a session through the API (Planner → Builder → QA → ProdReady) and follow it."""
    if not request.strip():
        raise typer.BadParameter("the request is empty", param_hint="REQUEST")
    if not project.strip():
        raise typer.BadParameter("the project name is empty", param_hint="--project")
    gates = _gates(gate)
    with _api() as api:
        found = api.project_named(project)
        session = api.start_session(found["id"], request, {"gates": gates} if gates else {})
        typer.echo(f"session {session['id']} in project {project} ({found['workspace_path']})")
        typer.echo(f"Temporal UI: {session.get('temporal_ui_url')}")
        if follow:
            ask = sys.stdin.isatty() if interactive is None else interactive
            raise typer.Exit(_follow(api, session["id"], ask))


@app.command()
def review(
    session_id: Annotated[str, typer.Argument(help="the session")],
    decision: Annotated[Decision, typer.Argument(help="your decision")],
    stage: Annotated[
        str | None, typer.Option(help="the stage under review (default: the one it waits on)")
    ] = None,
    feedback: Annotated[str, typer.Option("--feedback", "-m", help="what to change, or why")] = "",
) -> None:
    """Approve, request changes to, or reject the stage a session waits on."""
    with _api() as api:
        if stage is None:
            awaiting = (api.session(session_id).get("live") or {}).get("awaiting")
            if not awaiting:
                typer.secho(f"session {session_id} is not waiting for a review", fg="red", err=True)
                raise typer.Exit(1)
            stage = awaiting["stage"]
        api.review(session_id, stage, decision.value, feedback)
        typer.echo(f"{decision.value}: {stage} of session {session_id}")


@app.command()
def cancel(session_id: Annotated[str, typer.Argument(help="the session")]) -> None:
    """Cancel a running session (its codex tasks are stopped)."""
    with _api() as api:
        api.cancel(session_id)
        typer.echo(f"cancelling session {session_id}")


@app.command()
def status(
    session_id: Annotated[str, typer.Argument(help="the session")],
    follow: Annotated[bool, typer.Option(help="then follow its events until it ends")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="the API's JSON answer")] = False,
) -> None:
    """Show a session: its state, stage, review it waits on, codex tasks and tokens."""
    with _api() as api:
        session = api.session(session_id)
        if as_json:
            typer.echo(json.dumps(session, indent=2))
            return
        live = session.get("live") or {}
        typer.echo(f"session  {session['id']}  ({session['title']})")
        typer.echo(
            f"status   {session['status']}"
            + (f", {session['outcome']}" if session.get("outcome") else "")
        )
        if live:
            typer.echo(f"stage    {live.get('stage') or '-'} #{live.get('iteration')}")
            if awaiting := live.get("awaiting"):
                typer.echo(
                    f"waiting  for a review of {awaiting['stage']} since {awaiting['since']}"
                )
            typer.echo(
                f"codex    {live.get('codex_tasks')} tasks; {live.get('tokens_used')} tokens"
            )
        if session.get("error"):
            typer.echo(f"error    {session['error']}")
        typer.echo(f"Temporal UI: {session.get('temporal_ui_url')}")
        if follow:
            raise typer.Exit(_follow(api, session_id, sys.stdin.isatty()))


@app.command()
def sessions(
    status: Annotated[str | None, typer.Option(help="only sessions in this status")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="how many, newest first")] = 20,
) -> None:
    """List sessions, newest first."""
    with _api() as api:
        found = api.sessions(status, limit)
        for s in found["sessions"]:
            outcome = f" {s['outcome']}" if s.get("outcome") else ""
            typer.echo(
                f"{s['id']}  {s['status']:<18}{outcome:<12} {s['created_at'][:19]}  {s['title']}"
            )
        typer.echo(f"{len(found['sessions'])} of {found['total']}")


# --- the demo ----------------------------------------------------------------------------------

DEMO_REQUEST = "Build a small calculator module (add, subtract, multiply, divide) with unit tests."


@app.command()
def demo(
    keep: Annotated[
        bool | None, typer.Option("--keep/--no-keep", help="keep everything running afterwards")
    ] = None,
) -> None:
    """`codexflow up --offline`, then `codexflow run` of a small calculator: a scripted model plays
    the four agents and drives the real codex binary, which writes a program with passing tests."""
    from stack import Stack

    keep = sys.stdin.isatty() if keep is None else keep
    try:
        with Stack(get_settings(), offline=True) as stack, ApiClient(stack.settings) as api:
            project = api.project_named(f"demo-{uuid.uuid4().hex[:6]}")
            session = api.start_session(project["id"], DEMO_REQUEST, {})
            workspace = Path(project["workspace_path"])
            typer.echo(
                f"session {session['id']}: Planner → Builder → QA → ProdReady in {workspace}"
            )
            code = _follow(api, session["id"], interactive=False)
            for path in sorted(p for p in workspace.iterdir() if p.is_file()):
                typer.secho(f"--- {path}", bold=True)
                typer.echo(path.read_text())
            tests = subprocess.run(
                [sys.executable, "-m", "unittest"], cwd=workspace, capture_output=True, text=True
            )
            typer.secho(f"--- python -m unittest in {workspace}", bold=True)
            typer.echo(tests.stderr.strip())
            if keep:
                typer.echo(
                    f"Still up: API {stack.settings.api_url}/docs, Temporal UI "
                    f"{stack.settings.temporal_ui_url}; Ctrl-C stops everything."
                )
                stack.wait()
    except (StackError, ApiError) as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


# --- the records database ----------------------------------------------------------------------

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


if __name__ == "__main__":
    app()
