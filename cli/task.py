"""``codexflow task``: one durable codex task (a CodexTaskWorkflow), no agents."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_args

import httpx
import typer

from cli.app import app
from config import Sandbox, Settings, get_settings
from core.vocabulary import temporal_ui_url

if TYPE_CHECKING:  # the Temporal client is imported when a task runs: `codexflow api` starts fast
    from temporalio.client import Client, WorkflowHandle


def ui_link(settings: Settings, workflow_id: str) -> str:
    return temporal_ui_url(settings.temporal_ui_url, settings.temporal_namespace, workflow_id)


def resolve_task_workspace(settings: Settings, workspace: str) -> Path:
    """A path, or a bare name, of a workspace directly under CODEXFLOW_WORKSPACES_ROOT."""
    root = settings.workspace_root()
    given = Path(workspace).expanduser()
    path = given if given.is_absolute() or given.exists() else root / given
    path = path.resolve()
    if path.parent != root:
        raise typer.BadParameter(
            f"{workspace} is not directly under CODEXFLOW_WORKSPACES_ROOT ({root}); "
            "give a name or a path directly under it",
            param_hint="--workspace",
        )
    return path


async def _run_task(
    settings: Settings, prompt: str, workspace: Path, wait: bool, **options: Any
) -> int:
    from core.workspaces import create_workspace
    from store.temporal import connect
    from workflows.codex_task import CodexTaskWorkflow
    from workflows.types.codex import CodexTaskRequest

    request = CodexTaskRequest(workspace=str(workspace), prompt=prompt, **options)
    await create_workspace(settings, workspace)
    client = await connect(settings)
    workflow_id = f"codex-task-{uuid.uuid4().hex[:12]}"
    handle = await client.start_workflow(
        CodexTaskWorkflow.run, request, id=workflow_id, task_queue=_served_queue(settings)
    )
    typer.echo(f"started {workflow_id} in {workspace}")
    typer.echo(f"Temporal UI: {ui_link(settings, workflow_id)}")
    if not wait:
        return 0
    return await follow_codex_task(client, handle, settings)


def _served_queue(settings: Settings) -> str:
    """The task queue the running stack's workers serve: the API says which (`codexflow up
    --offline` keeps its runs on a queue of their own); without an API, the configured one."""
    try:
        health = httpx.get(f"{settings.api_url.rstrip('/')}/api/health", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return settings.task_queue
    queue = health.get("task_queue") if isinstance(health, dict) else None
    return queue if isinstance(queue, str) and queue else settings.task_queue


async def follow_codex_task(client: Client, handle: WorkflowHandle, settings: Settings) -> int:
    """Show progress until the task ends; print its result. Returns a process exit code."""
    from temporalio.client import WorkflowFailureError

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
