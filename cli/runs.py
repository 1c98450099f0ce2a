"""Runs through the API: run, review, cancel, status, sessions, and the demo."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from cli.app import app
from cli.client import ApiClient, ApiError
from cli.stack import OFFLINE_NOTICE, StackError
from config import get_settings
from core.vocabulary import Decision, EventKind, Outcome, Role, SessionStatus


@contextlib.contextmanager
def _api() -> Iterator[ApiClient]:
    """An API client; its errors become one red line and exit code 1."""
    try:
        with ApiClient(get_settings()) as client:
            yield client
    except ApiError as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from None


def _name_of(repo: str) -> str:
    """A project name from a repository's URL or path: its last component, without .git."""
    return repo.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")


def _gates(value: str | None) -> list[str]:
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
    from cli.progress import RunView

    view = RunView()

    def reconnecting(reason: str) -> None:
        typer.secho(f"  … reconnecting to the event stream ({reason})", dim=True, err=True)

    for event in api.follow(session_id, on_reconnect=reconnecting):
        for line in view.lines(event):
            typer.echo(line)
        if event.kind in (EventKind.REVIEW_AWAITED, EventKind.BUDGET_PAUSED):
            stage = event.payload.get("stage", "")
            if interactive:
                _ask_review(api, session_id, stage)
            else:
                typer.echo(f"  answer with: codexflow review {session_id} approve --stage {stage}")
    session = api.session(session_id)
    if session.get("final_summary"):
        typer.echo(session["final_summary"])
    if session.get("branch"):
        typer.echo(f"branch: {session['branch']} (worktree {session.get('worktree')})")
    if delivery := session.get("delivery"):
        typer.echo(f"pushed: {delivery['branch']} to {delivery['remote']}")
    typer.echo(f"Temporal UI: {session.get('temporal_ui_url')}")
    approved = (
        session["status"] == SessionStatus.COMPLETED and session["outcome"] == Outcome.APPROVED
    )
    return 0 if approved else 1


@app.command()
def run(
    request: Annotated[str, typer.Argument(help="the change you want, in plain words")],
    project: Annotated[
        str, typer.Option(help="project name; created if there is none (default: the repo's name)")
    ] = "",
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
    repo: Annotated[
        str | None,
        typer.Option(help="import this repository (URL or path) as the project, if it is new"),
    ] = None,
    ref: Annotated[str | None, typer.Option(help="the branch or tag to start from")] = None,
    deliver: Annotated[
        bool, typer.Option("--push/--no-push", help="push the branch to the origin when approved")
    ] = False,
) -> None:
    """Start a session through the API (Planner → Builder → QA → ProdReady) and follow it."""
    if not request.strip():
        raise typer.BadParameter("the request is empty", param_hint="REQUEST")
    project = project or (_name_of(repo) if repo else "")
    if not project.strip():
        raise typer.BadParameter("give --project NAME (or --repo)", param_hint="--project")
    gates = _gates(gate)
    options: dict[str, object] = {"gates": gates} if gates else {}
    if deliver:
        options["deliver"] = "push"
    if ref:
        options["base_ref"] = ref
    with _api() as api:
        repository = {"url": repo, **({"ref": ref} if ref else {})} if repo else None
        found = api.project_named(project, repository=repository)
        origin = (found.get("repository") or {}).get("url")
        if repo and origin != repo:
            raise typer.BadParameter(
                f"project {project} exists and was not imported from {repo} "
                f"({'from ' + origin if origin else 'it has no repository'}): give another name",
                param_hint="--project",
            )
        if found.get("status") == "importing":
            typer.echo(f"importing {repo} …")
            found = api.wait_until_imported(found["id"], lambda now: typer.echo(f"  {now}"))
        session = api.start_session(found["id"], request, options)
        branch = session.get("branch") or f"codexflow/{session['id']}"
        typer.echo(f"session {session['id']} in project {project} (branch {branch})")
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
        if session.get("branch"):
            head = (session.get("head_commit") or "")[:10]
            typer.echo(
                f"branch   {session['branch']} (from {session['base_commit'][:10]}, at {head})"
            )
        if session.get("host"):
            typer.echo(f"host     {session['host']} ({session.get('worktree')})")
        if delivery := session.get("delivery"):
            typer.echo(
                f"pushed   {delivery['branch']} to {delivery['remote']} at {delivery['commit'][:10]}"
            )
            if delivery.get("review_url"):
                typer.echo(f"review   {delivery['review_url']}")
        if session.get("error"):
            typer.echo(f"error    {session['error']}")
        typer.echo(f"Temporal UI: {session.get('temporal_ui_url')}")
        if follow:
            raise typer.Exit(_follow(api, session_id, sys.stdin.isatty()))


@app.command()
def sessions(
    status: Annotated[
        SessionStatus | None, typer.Option(help="only sessions in this status")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="how many, newest first")] = 20,
) -> None:
    """List sessions, newest first, with their project."""
    with _api() as api:
        found = api.sessions(status.value if status else None, limit)
        names = {
            p["id"]: p["name"] for p in api.request("GET", "/api/projects/?limit=200")["projects"]
        }
        typer.echo(
            f"{'session':<36}  {'status':<18} {'outcome':<11} {'created':<19}  project / title"
        )
        for s in found["sessions"]:
            project = names.get(s["project_id"], s["project_id"][:8])
            typer.echo(
                f"{s['id']:<36}  {s['status']:<18} {s.get('outcome') or '':<11} "
                f"{s['created_at'][:19]}  {project} / {s['title']}"
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
    from cli.stack import Stack

    keep = sys.stdin.isatty() if keep is None else keep
    try:
        with Stack(get_settings(), offline=True) as stack, ApiClient(stack.settings) as api:
            project = api.project_named(f"demo-{uuid.uuid4().hex[:6]}")
            typer.secho(OFFLINE_NOTICE, fg="yellow")
            session = api.start_session(project["id"], DEMO_REQUEST, {})
            typer.echo(f"session {session['id']}: Planner → Builder → QA → ProdReady")
            code = _follow(api, session["id"], interactive=False)
            workspace = Path(api.session(session["id"])["worktree"])
            for path in sorted(p for p in workspace.iterdir() if p.is_file() and p.name != ".git"):
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
