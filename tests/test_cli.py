"""The codexflow command, run as a real subprocess against the test dev server and a worker process."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.testing import WorkflowEnvironment

from cli.client import PAGE
from cli.services import readiness
from cli.stack import reachable
from config import Settings, settings_env
from core.codex_cli import login_hint
from devkit.agent_model import ScriptedAgentModel, pipeline_script
from devkit.processes import free_port, spawn_worker
from store.db import make_engine
from store.models import RunSession
from tests.helpers.api import TOKEN, serving
from tests.helpers.codex import real_codex_bin
from tests.helpers.pipeline import pipeline_client
from tests.helpers.processes import wait_for
from tests.helpers.temporal import temporal_address
from worker import build_worker

REQUEST = "Build a small calculator module with unit tests."


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXFLOW_")}
    return {**env, **settings_env(settings), "COLUMNS": "400", "NO_COLOR": "1"}


def codexflow(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            [sys.executable, "-m", "cli", *args],
            env=_env(settings),
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired as err:  # what it said until then
        raise AssertionError(f"codexflow {' '.join(args)}: {err.stdout!r} {err.stderr!r}") from None


def _default_sigint() -> None:
    # A test runner started in the background may have SIGINT ignored, and its children with it:
    # the command gets Ctrl-C as it would in a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def codexflow_started(settings: Settings, out: Path, *args: str) -> subprocess.Popen:
    """``codexflow ARGS`` running, its stdout in ``out`` and its stderr beside it (``.err``); its
    stdin a pipe left open, as a terminal nobody types into."""
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *args],
        env=_env(settings),
        stdin=subprocess.PIPE,
        stdout=out.open("w"),
        stderr=out.with_suffix(".err").open("w"),
        text=True,
        preexec_fn=_default_sigint,
    )


async def _output_shows(out: Path, text: str, proc: subprocess.Popen) -> None:
    def shown() -> bool:
        assert proc.poll() is None, out.read_text() + out.with_suffix(".err").read_text()
        return text in out.read_text()

    await wait_for(shown, within=60)


def _session_of(stdout: str) -> str:
    first = next((line for line in stdout.splitlines() if line.startswith("session ")), "")
    assert first, stdout
    return first.split()[1]


@pytest.fixture
async def stack(
    temporal_dev: WorkflowEnvironment, api_settings: Settings, task_queue: str
) -> AsyncIterator[Settings]:
    """The API (served here) and a worker (here, the agents played by a scripted model, codex
    the fake one) on the test dev server: the settings a user's CLI would have."""
    settings = api_settings.model_copy(
        update={"temporal_address": temporal_address(temporal_dev), "task_queue": task_queue}
    )
    model = ScriptedAgentModel(pipeline_script(), tokens=(100, 20))
    client = await pipeline_client(temporal_dev, settings, model)
    async with build_worker(client, settings, task_queue=task_queue), serving(settings) as url:
        yield settings.model_copy(update={"api_url": url})


async def test_task_runs_codex_and_prints_result(
    temporal_dev: WorkflowEnvironment, settings: Settings, task_queue: str, tmp_path: Path
) -> None:
    settings = settings.model_copy(
        update={"temporal_address": temporal_address(temporal_dev), "task_queue": task_queue}
    )
    worker = spawn_worker(settings, log=tmp_path / "worker.log")
    try:
        done = await asyncio.to_thread(
            codexflow,
            settings,
            "task",
            "Write it.\n@fake write=notes.md:# Notes\\n",
            "--workspace",
            "cli-demo",
        )
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    assert done.returncode == 0, done.stderr
    assert "changed: notes.md" in done.stdout
    assert "/namespaces/default/workflows/codex-task-" in done.stdout
    assert (settings.workspaces_root / "cli-demo" / "notes.md").read_text() == "# Notes\n"


def test_task_rejects_bad_input(settings: Settings, tmp_path: Path) -> None:
    outside = codexflow(settings, "task", "do it", "--workspace", str(tmp_path))
    assert (
        outside.returncode == 2 and "not directly under CODEXFLOW_WORKSPACES_ROOT" in outside.stderr
    )
    empty = codexflow(settings, "task", "  ", "--workspace", "x")
    assert empty.returncode == 2 and "prompt is empty" in empty.stderr
    sandbox = codexflow(settings, "task", "go", "--workspace", "x", "--sandbox", "yolo")
    assert sandbox.returncode == 2 and "unknown sandbox" in sandbox.stderr
    assert not (settings.workspaces_root / "x").exists()


async def test_api_without_a_token_binds_loopback_only(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXFLOW_")}
    server = subprocess.Popen(  # noqa: ASYNC220 - a server for the test's lifetime
        [sys.executable, "-m", "cli", "api", "--host", "0.0.0.0", "--port", str(port)],
        env={**env, **settings_env(settings), "COLUMNS": "400"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        health = None
        async with httpx.AsyncClient(timeout=20) as client:
            for _ in range(300):
                try:
                    health = await client.get(f"http://127.0.0.1:{port}/api/health")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=20)
    assert health is not None, stderr
    assert health.status_code == 200 and health.json()["database"]["ok"]
    assert "binding 127.0.0.1 only instead of 0.0.0.0" in stderr


def test_server_serves_the_ui_on_its_own_port_behind_a_public_url(tmp_path: Path) -> None:
    """Behind a proxy the UI URL has no port (https://…): --ui-port says where to serve it."""
    temporal_port, ui_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXFLOW_")}
    env |= {
        "CODEXFLOW_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "CODEXFLOW_TEMPORAL_UI_URL": "https://temporal.example.com",
    }
    command = [sys.executable, "-m", "cli", "server", "--db-file", str(tmp_path / "t.db")]
    server = subprocess.Popen(
        [*command, "--ui-port", str(ui_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (
            reachable(f"127.0.0.1:{ui_port}") and reachable(env["CODEXFLOW_TEMPORAL_ADDRESS"])
        ):
            assert server.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
    assert (tmp_path / "t.db").exists()


async def test_a_wrong_token_is_reported_as_refused(api_settings: Settings) -> None:
    """The API runs with a token; the CLI sent another one (or none): it says which."""
    async with serving(api_settings) as url:
        wrong = api_settings.model_copy(
            update={"api_url": url, "api_token": SecretStr("not-the-server-token-0123")}
        )
        refused = await asyncio.to_thread(codexflow, wrong, "sessions")
        assert refused.returncode == 1 and "the API refused the token" in refused.stderr
        none = await asyncio.to_thread(
            codexflow,
            api_settings.model_copy(update={"api_url": url, "api_token": None}),
            "sessions",
        )
        assert none.returncode == 1 and "set CODEXFLOW_API_TOKEN" in none.stderr


async def test_task_goes_to_the_queue_the_running_stack_serves(
    temporal_dev: WorkflowEnvironment, settings: Settings, task_queue: str, tmp_path: Path
) -> None:
    """As under `codexflow up --offline`, whose worker serves a queue of its own: the API says
    which, and the task is queued there rather than waiting forever on the configured one."""
    served = settings.model_copy(
        update={"temporal_address": temporal_address(temporal_dev), "task_queue": task_queue}
    )
    worker = spawn_worker(served, log=tmp_path / "worker.log")
    try:
        async with serving(served) as url:
            elsewhere = served.model_copy(
                update={"task_queue": "nobody-serves-this", "api_url": url}
            )
            done = await asyncio.to_thread(
                codexflow, elsewhere, "task", "Write it.\n@fake write=a.md:a\\n", "--workspace", "q"
            )
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    assert done.returncode == 0, done.stderr
    assert (served.workspaces_root / "q" / "a.md").read_text() == "a\n"


async def test_ctrl_c_while_following_says_the_run_goes_on(stack: Settings, tmp_path: Path) -> None:
    """Ctrl-C in `run`: no traceback, exit code 130, and the commands that follow, review and
    cancel the run, which goes on (they work, with a prefix of its id)."""
    out = tmp_path / "run.out"
    following = codexflow_started(
        stack, out, "run", REQUEST, "--project", "calc", "--gate", "planner", "--no-ask"
    )
    await _output_shows(out, "⏸ waiting for a review of planner", following)
    following.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(following.wait, 30) == 130
    sid, said = _session_of(out.read_text()), out.with_suffix(".err").read_text()
    assert "Traceback" not in said and "Aborted" not in said, said
    for line in (
        f"stopped following: session {sid} goes on in the background; "
        "it waits for a review of planner.",
        f"  follow it:  codexflow status {sid} --follow",
        f"  review it:  codexflow review {sid} approve --stage planner",
        f"  cancel it:  codexflow cancel {sid}",
    ):
        assert line in said, said

    reviewed = await asyncio.to_thread(codexflow, stack, "review", sid[:8], "approve")
    assert reviewed.returncode == 0, reviewed.stderr
    assert f"approve: planner of session {sid}" in reviewed.stdout
    followed = await asyncio.to_thread(codexflow, stack, "status", sid[:6].upper(), "--follow")
    assert followed.returncode == 0, followed.stdout + followed.stderr
    finished = re.search(r"■ finished: approved \((\d+) tokens\)", followed.stdout)
    assert finished, followed.stdout
    # `status` counts the tokens the final line does, and says which.
    shown = await asyncio.to_thread(codexflow, stack, "status", sid[:4])
    assert shown.returncode == 0, shown.stderr
    tokens = re.search(r"^tokens   (\d+) \(model (\d+), codex (\d+)\)$", shown.stdout, re.M)
    assert tokens, shown.stdout
    assert tokens[1] == finished[1] and int(tokens[2]) + int(tokens[3]) == int(tokens[1])
    assert int(tokens[2]) > 0 and int(tokens[3]) > 0
    assert re.search(r"^project  calc \([0-9a-f-]{36}\)$", shown.stdout, re.M), shown.stdout

    # Ctrl-C at the review prompt: the same, with no "Aborted!"; then cancelled by its prefix.
    out = tmp_path / "ask.out"
    asking = codexflow_started(
        stack, out, "run", REQUEST, "--project", "calc", "--gate", "planner", "--ask"
    )
    await _output_shows(out, "Review planner: [a]pprove", asking)
    asking.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(asking.wait, 30) == 130, out.with_suffix(".err").read_text()
    sid, said = _session_of(out.read_text()), out.with_suffix(".err").read_text()
    assert "Traceback" not in said and "Aborted" not in said, said
    assert f"codexflow review {sid} approve --stage planner" in said, said
    cancelled = await asyncio.to_thread(codexflow, stack, "cancel", sid[:5])
    assert cancelled.returncode == 0 and f"cancelling session {sid}" in cancelled.stdout
    ended = await asyncio.to_thread(codexflow, stack, "status", sid[:5], "--follow")
    assert ended.returncode == 1, ended.stdout + ended.stderr
    assert "■ cancelled\n" in ended.stdout and "None" not in ended.stdout, ended.stdout


async def _sessions_with_ids(settings: Settings, project_id: str, ids: list[str]) -> None:
    """Rows for sessions with these ids (pending, never started), the first one newest."""
    engine = make_engine(settings.database_url)
    now = datetime.now(UTC)
    try:
        async with AsyncSession(engine) as db:
            db.add_all(
                RunSession(
                    id=sid,
                    project_id=project_id,
                    workflow_id=f"session-{sid}",
                    title=f"request {n}",
                    user_request=f"request {n}",
                    status="pending",
                    created_at=now - timedelta(seconds=n),
                )
                for n, sid in enumerate(ids)
            )
            await db.commit()
    finally:
        await engine.dispose()


async def test_ids_are_taken_by_a_unique_prefix(stack: Settings) -> None:
    """As git takes commits: a unique prefix of 4+ characters, found past the API's first page;
    an ambiguous one lists its candidates, an unknown one says so. A name two projects share is
    refused the same way, and the project picked by (a prefix of) its id."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers) as api:
        twins = [
            (await api.post("/api/projects/", json={"name": "twin"})).json()["id"] for _ in "ab"
        ]
    taken = ("abcd", "feed", "0000")
    filler = [
        sid for sid in (str(uuid.uuid4()) for _ in range(PAGE + 10)) if not sid.startswith(taken)
    ]
    abcd = ["abcd0001-0000-4000-8000-000000000001", "abcd0002-0000-4000-8000-000000000002"]
    oldest = "feedbeef-0000-4000-8000-000000000000"
    await _sessions_with_ids(stack, twins[0], [*abcd, *filler, oldest])

    def cli(*args: str) -> subprocess.CompletedProcess:
        return codexflow(stack, *args)

    found = await asyncio.to_thread(cli, "status", "FEEDB")  # on the second page, any case
    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith(f"session  {oldest}  (request {len(filler) + 2})")
    ambiguous = await asyncio.to_thread(cli, "status", "abcd")
    assert ambiguous.returncode == 2, ambiguous.stderr
    assert "session id prefix 'abcd' is ambiguous: 2 sessions start with it" in ambiguous.stderr
    assert all(f"{sid}  pending" in ambiguous.stderr for sid in abcd), ambiguous.stderr
    one = await asyncio.to_thread(cli, "status", "abcd0002")
    assert one.returncode == 0 and one.stdout.startswith(f"session  {abcd[1]}"), one.stderr
    unknown = await asyncio.to_thread(cli, "review", "0000ffff", "approve")
    assert unknown.returncode == 1, unknown.stderr
    assert "no such session: no session id starts with '0000ffff'" in unknown.stderr
    short = await asyncio.to_thread(cli, "cancel", "abc")
    assert short.returncode == 2 and "give at least 4 characters" in short.stderr, short.stderr
    whole = await asyncio.to_thread(cli, "status", abcd[0].upper())
    assert whole.returncode == 0 and whole.stdout.startswith(f"session  {abcd[0]}"), whole.stderr

    listed = await asyncio.to_thread(cli, "sessions", "--status", "pending", "--limit", "3")
    assert listed.returncode == 0, listed.stderr
    header, *rows, total = listed.stdout.splitlines()
    assert header.split() == ["session", "status", "outcome", "created", "project", "/", "title"]
    assert [row.split()[0] for row in rows] == [*abcd, filler[0]]
    assert all("twin / request" in row for row in rows) and total == f"3 of {len(filler) + 3}"
    wrong = await asyncio.to_thread(cli, "sessions", "--status", "finished")
    assert wrong.returncode == 2 and "waiting_for_review" in wrong.stderr, wrong.stderr

    refused = await asyncio.to_thread(cli, "run", REQUEST, "--project", "twin", "--no-follow")
    assert refused.returncode == 2, refused.stderr
    assert "2 projects are named 'twin': pick one with --project-id ID" in refused.stderr
    assert all(f"{pid}  twin" in refused.stderr for pid in twins), refused.stderr
    both = await asyncio.to_thread(cli, "run", REQUEST, "--project", "x", "--project-id", "y")
    assert both.returncode == 2 and "not both" in both.stderr
    picked = await asyncio.to_thread(cli, "run", REQUEST, "--project-id", twins[1][:8])
    assert picked.returncode == 0, picked.stdout + picked.stderr
    assert " in project twin (branch codexflow/" in picked.stdout
    assert "■ finished: approved" in picked.stdout
    ran = await asyncio.to_thread(cli, "status", _session_of(picked.stdout), "--json")
    assert f'"project_id": "{twins[1]}"' in ran.stdout


async def test_the_login_hint_names_the_codex_home_in_use(
    api_settings: Settings, tmp_path: Path
) -> None:
    """Live mode, codex not logged in: `up` warns with the exact command, its home the absolute
    path of CODEXFLOW_CODEX_HOME (here relative, as by default), its binary the one in use."""
    home = Path(os.path.relpath(tmp_path / "home", Path.cwd()))
    spaced = api_settings.model_copy(update={"codex_home": tmp_path / "a home"})
    assert login_hint(spaced, Path("/x/codex")) == (
        f"log in with `CODEX_HOME='{tmp_path / 'a home'}' /x/codex login` "
        "(or set CODEXFLOW_CODEX_API_KEY)"
    )

    # Against the API's real check of the real codex binary, in a home nobody logged into.
    real = api_settings.model_copy(update={"codex_home": home, "codex_bin": real_codex_bin()})
    async with serving(real) as url:
        warnings = await asyncio.to_thread(readiness, real.model_copy(update={"api_url": url}))
    assert warnings == [
        "the agents have no model: set OPENAI_API_KEY (or CODEXFLOW_OPENAI_BASE_URL), "
        "or try `codexflow up --offline`",
        "codex is not ready: codex is not logged in; log in with "
        f"`CODEX_HOME={tmp_path / 'home'} {real_codex_bin()} login` "
        "(or set CODEXFLOW_CODEX_API_KEY)",
    ]


def test_the_progress_view_says_when_a_review_signal_was_ignored() -> None:
    from datetime import UTC, datetime

    from cli.progress import RunView
    from store.events import Event

    ignored = {"stage": "builder", "decision": "approve", "reason": "the run is not waiting"}
    event = Event(1, "s1", "review.ignored", ignored, None, None, datetime.now(UTC))
    assert RunView().lines(event) == [
        "⚠ approve signal for builder ignored: the run is not waiting"
    ]
