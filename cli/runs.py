"""Runs through the API: run, review, cancel, status, sessions, and the demo."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.app import app
from cli.client import Ambiguous, ApiClient, ApiError, Kind
from cli.stack import OFFLINE_NOTICE, StackError
from config import get_settings
from core.vocabulary import FINISHED, Decision, EventKind, Outcome, Role, SessionStatus

if TYPE_CHECKING:
    from store.events import Event


@contextlib.contextmanager
def _api() -> Iterator[ApiClient]:
    """An API client; its errors become one red line and exit code 1."""
    try:
        with ApiClient(get_settings()) as client:
            yield client
    except ApiError as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from None


def _id_of(api: ApiClient, kind: Kind, ref: str, param_hint: str) -> str:
    """The id ``ref`` names (the id, or a unique prefix of it); an ambiguous prefix is a usage
    error (exit code 2) listing the candidates, an unknown one an ApiError."""
    try:
        return api.resolve(kind, ref)
    except Ambiguous as err:
        raise typer.BadParameter(
            "\n".join([str(err), *(_candidate(kind, c) for c in err.candidates)]),
            param_hint=param_hint,
        ) from None


def _candidate(kind: Kind, found: dict[str, Any]) -> str:
    if kind == "project":
        return f"  {found['id']}  {found['name']}"
    return f"  {found['id']}  {found['status']:<18} {found.get('title') or ''}"


SESSION_ID = "SESSION_ID"
SessionRef = Annotated[
    str, typer.Argument(help="the session: its id, or a unique prefix of it (4+ characters)")
]


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


def _prompt(text: str, default: str) -> str:
    """``typer.prompt``, but Ctrl-C stays a KeyboardInterrupt (the prompt makes it an Abort, as it
    does the end of the input, which here is an empty answer)."""
    try:
        return str(typer.prompt(text, default=default))
    except typer.Abort as err:
        if isinstance(err.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        return ""


def _ask_review(api: ApiClient, session_id: str, stage: str) -> None:
    choice = _prompt(f"Review {stage}: [a]pprove, request [c]hanges, [r]eject", "a").strip().lower()
    decision = {"a": "approve", "c": "request_changes", "r": "reject"}.get(choice[:1], "")
    if not decision:
        typer.echo(f"no review given; answer later with: {_review_command(session_id, stage)}")
        return
    feedback = _prompt("Feedback", "") if decision != "approve" else ""
    try:
        api.review(session_id, stage, decision, feedback)
    except ApiError as err:  # e.g. someone else reviewed it first
        typer.secho(f"review not taken: {err}", fg="yellow", err=True)


def _review_command(session_id: str, stage: str | None) -> str:
    if stage:
        return f"codexflow review {session_id} approve --stage {stage}"
    return f"codexflow review {session_id} approve|request_changes|reject"


def _still_running(session_id: str, awaiting: str | None) -> None:
    """What Ctrl-C while following says: the run carries on, and how to get back to it."""
    waits = f"; it waits for a review of {awaiting}" if awaiting else ""
    review = _review_command(session_id, awaiting)
    review += "   (or request_changes, reject)" if awaiting else "   (when it waits for one)"
    for line in (
        "",
        f"stopped following: session {session_id} goes on in the background{waits}.",
        f"  follow it:  codexflow status {session_id} --follow",
        f"  review it:  {review}",
        f"  cancel it:  codexflow cancel {session_id}",
    ):
        typer.echo(line, err=True)


def _follow(api: ApiClient, session_id: str, interactive: bool, detachable: bool = True) -> int:
    """Show the session's events until it ends, asking for reviews; an exit code. Ctrl-C stops
    following (exit code 130) and, when ``detachable``, says how to come back to the run, which
    goes on."""
    from cli.progress import RunView

    view = RunView()
    awaiting: str | None = None
    end: Event | None = None

    def reconnecting(reason: str) -> None:
        typer.secho(f"  … reconnecting to the event stream ({reason})", dim=True, err=True)

    try:
        for event in api.follow(session_id, on_reconnect=reconnecting):
            end = event
            for line in view.lines(event):
                typer.echo(line)
            if event.kind in (EventKind.REVIEW_AWAITED, EventKind.BUDGET_PAUSED):
                awaiting = event.payload.get("stage", "")
                if interactive:
                    _ask_review(api, session_id, awaiting)
                else:
                    typer.echo(f"  answer with: {_review_command(session_id, awaiting)}")
            elif event.kind == EventKind.REVIEW_RECEIVED:
                awaiting = None
    except KeyboardInterrupt:
        if not detachable:
            raise
        _still_running(session_id, awaiting)
        raise typer.Exit(130) from None
    session = _ended(api, session_id)
    if session.get("final_summary"):
        typer.echo(session["final_summary"])
    if session.get("branch"):
        typer.echo(f"branch: {session['branch']} (worktree {session.get('worktree')})")
    if delivery := session.get("delivery"):
        typer.echo(f"pushed: {delivery['branch']} to {delivery['remote']}")
    typer.echo(f"Temporal UI: {session.get('temporal_ui_url')}")
    # The end event says how it ended (the answer above may be a moment old).
    approved = (
        end is not None
        and end.kind == EventKind.SESSION_FINISHED
        and end.payload.get("outcome") == Outcome.APPROVED
    )
    return 0 if approved else 1


def _ended(api: ApiClient, session_id: str, within: float = 5) -> dict[str, Any]:
    """The session once its answer shows it ended: the API shares a running session's answer
    for a moment, so the one right after the end event may still say it runs."""
    deadline = time.monotonic() + within
    while (session := api.session(session_id))["status"] not in FINISHED:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return session


def _project_named(api: ApiClient, name: str, repository: dict[str, Any] | None) -> dict[str, Any]:
    """The project so named (made if there is none); several of that name is a usage error."""
    try:
        return api.project_named(name, repository=repository)
    except Ambiguous as err:
        raise typer.BadParameter(
            "\n".join(
                [
                    f"{err}: pick one with --project-id ID (a unique prefix will do)",
                    *(_candidate("project", c) for c in err.candidates),
                ]
            ),
            param_hint="--project",
        ) from None


@app.command()
def run(
    request: Annotated[str, typer.Argument(help="the change you want, in plain words")],
    project: Annotated[
        str, typer.Option(help="project name; created if there is none (default: the repo's name)")
    ] = "",
    project_id: Annotated[
        str | None,
        typer.Option(
            help="an existing project by its id, or a unique prefix of it (4+ characters)"
        ),
    ] = None,
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
    if project and project_id:
        raise typer.BadParameter("give --project NAME or --project-id ID, not both")
    project = project or (_name_of(repo) if repo else "")
    if not project.strip() and not project_id:
        raise typer.BadParameter(
            "give --project NAME (or --project-id ID, or --repo)", param_hint="--project"
        )
    gates = _gates(gate)
    options: dict[str, object] = {"gates": gates} if gates else {}
    if deliver:
        options["deliver"] = "push"
    if ref:
        options["base_ref"] = ref
    with _api() as api:
        repository = {"url": repo, **({"ref": ref} if ref else {})} if repo else None
        if project_id:
            found = api.project(_id_of(api, "project", project_id, "--project-id"))
        else:
            found = _project_named(api, project, repository)
        project = found["name"]
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
    session_id: SessionRef,
    decision: Annotated[Decision, typer.Argument(help="your decision")],
    stage: Annotated[
        str | None, typer.Option(help="the stage under review (default: the one it waits on)")
    ] = None,
    feedback: Annotated[str, typer.Option("--feedback", "-m", help="what to change, or why")] = "",
) -> None:
    """Approve, request changes to, or reject the stage a session waits on."""
    with _api() as api:
        session_id = _id_of(api, "session", session_id, SESSION_ID)
        if stage is None:
            awaiting = (api.session(session_id).get("live") or {}).get("awaiting")
            if not awaiting:
                typer.secho(f"session {session_id} is not waiting for a review", fg="red", err=True)
                raise typer.Exit(1)
            stage = awaiting["stage"]
        api.review(session_id, stage, decision.value, feedback)
        typer.echo(f"{decision.value}: {stage} of session {session_id}")


@app.command()
def cancel(session_id: SessionRef) -> None:
    """Cancel a running session (its codex tasks are stopped)."""
    with _api() as api:
        session_id = _id_of(api, "session", session_id, SESSION_ID)
        api.cancel(session_id)
        typer.echo(f"cancelling session {session_id}")


@app.command()
def status(
    session_id: SessionRef,
    follow: Annotated[bool, typer.Option(help="then follow its events until it ends")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="the API's JSON answer")] = False,
) -> None:
    """Show a session: its state, stage, review it waits on, codex tasks and tokens."""
    with _api() as api:
        session_id = _id_of(api, "session", session_id, SESSION_ID)
        session = api.session(session_id)
        if as_json:
            typer.echo(json.dumps(session, indent=2))
            return
        live = session.get("live") or {}
        typer.echo(f"session  {session['id']}  ({session['title'] or session['user_request']})")
        typer.echo(
            f"project  {_project_name(api, session['project_id'])} ({session['project_id']})"
        )
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
            typer.echo(f"codex    {live.get('codex_tasks')} tasks")
            typer.echo(f"tokens   {live.get('tokens_used')} so far (model and codex)")
        elif tokens := _tokens(session.get("usage") or {}):
            # The count the final line of `run` shows (■ finished: … (N tokens)).
            typer.echo(
                f"tokens   {sum(tokens.values())} (model {tokens['model']}, codex {tokens['codex']})"
            )
        if session.get("branch"):
            head = (session.get("head_commit") or "")[:10]
            base = (session.get("base_commit") or "")[:10]
            typer.echo(f"branch   {session['branch']} (from {base or '-'}, at {head or '-'})")
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
        # Every project, deleted ones too: a session outlives its project's listing.
        names = {p["id"]: p["name"] for p in api.listed("project", active_only=False)}
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


def _project_name(api: ApiClient, project_id: str) -> str:
    """The project's name; a deleted project is no longer served by id, but is still listed."""
    try:
        return str(api.project(project_id)["name"])
    except ApiError as err:
        if err.status != 404:
            raise
    listed = {p["id"]: p["name"] for p in api.listed("project", active_only=False)}
    return str(listed.get(project_id, "(deleted)"))


def _tokens(usage: dict[str, Any]) -> dict[str, int]:
    """A finished session's tokens, model and codex (input and output, as its final event)."""
    if not usage:
        return {}
    return {
        kind: int((usage.get(kind) or {}).get("input_tokens", 0))
        + int((usage.get(kind) or {}).get("output_tokens", 0))
        for kind in ("model", "codex")
    }


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
            code = _follow(api, session["id"], interactive=False, detachable=False)
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
