"""`codexflow up --offline` and the run/review/status/sessions/cancel commands, as a user runs them:
real subprocesses (dev server, worker, API), the scripted model server and the real codex binary."""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from cli.stack import reachable
from tests.helpers.git_server import bare_repository, run_git
from tests.helpers.up import local

REQUEST = "Build a small calculator module with unit tests."


class EventStream:
    """A client following a session's events (SSE), read in a thread until the server closes."""

    def __init__(self, api_url: str, session_id: str) -> None:
        self.events: list[str] = []
        self._closed = threading.Event()
        self._at = 0.0
        response = urllib.request.urlopen(f"{api_url}/api/sessions/{session_id}/events", timeout=60)
        threading.Thread(target=self._read, args=(response,), daemon=True).start()

    def _read(self, response) -> None:
        with contextlib.suppress(OSError, http.client.HTTPException):
            for line in response:
                if line.startswith(b"event:"):
                    self.events.append(line.decode().split(":", 1)[1].strip())
        self._at = time.monotonic()
        self._closed.set()

    def closed_at(self) -> float:
        assert self._closed.wait(60), "the stream never closed"
        return self._at


def session_id_of(started: subprocess.CompletedProcess) -> str:
    assert started.returncode in (0, 1), started.stderr
    first = next((line for line in started.stdout.splitlines() if line.startswith("session ")), "")
    assert first, started.stdout
    return first.split()[1]


@pytest.mark.slow
def test_up_runs_reviews_and_resumes_after_a_restart(tmp_path: Path) -> None:
    here = local(tmp_path)
    origin = tmp_path / "origins" / "shop.git"
    bare_repository(origin, {"README.md": "# calc\n"})
    here.env["CODEXFLOW_LOCAL_REPOS"] = json.dumps([str(origin.parent)])
    api = here.env["CODEXFLOW_API_URL"].removeprefix("http://")
    temporal = here.env["CODEXFLOW_TEMPORAL_ADDRESS"]

    with here.up("--offline") as up:
        out = (tmp_path / "up.out").read_text()
        assert here.env["CODEXFLOW_API_URL"] + "/docs" in out
        assert here.env["CODEXFLOW_TEMPORAL_UI_URL"] in out
        assert "Offline mode builds the sample calculator whatever a request says" in out
        # A second `up` beside this one refuses at once, saying what runs.
        second = here.codexflow("up", "--offline")
        assert second.returncode == 1 and "already running" in second.stderr, second.stderr
        started = here.codexflow(
            "run", REQUEST, "--project", "calc", "--gate", "planner", "--no-follow"
        )
        waiting = session_id_of(started)
        session = here.wait_for(waiting, "waiting_for_review")
        assert session["live"]["awaiting"]["stage"] == "planner"
        follower = EventStream(here.env["CODEXFLOW_API_URL"], waiting)
        stopping = time.monotonic()
    # Ctrl-C stopped everything: nothing answers any more, and the run is kept in Temporal's file.
    assert up.returncode == 0 and "stopped" in (tmp_path / "up.out").read_text()
    # A client following the run was let go at once, not held until the API was killed (20 s).
    closed_after = follower.closed_at() - stopping
    print(f"the event stream closed {closed_after:.1f} s after Ctrl-C")
    assert closed_after < 10 and follower.events, follower.events
    assert not reachable(api) and not reachable(temporal)
    # Every log lies in one place, the dev server's too.
    state = tmp_path / ".codexflow"
    assert {p.name for p in (state / "logs").iterdir()} == {"temporal.log", "worker.log", "api.log"}
    assert (state / "temporal.db").exists() and not (state / "temporal.log").exists()

    with here.up("--offline"):
        reviewed = here.codexflow("review", waiting, "approve")
        assert reviewed.returncode == 0, reviewed.stderr
        assert f"approve: planner of session {waiting}" in reviewed.stdout
        followed = here.codexflow("status", waiting, "--follow")
        assert followed.returncode == 0, followed.stdout + followed.stderr
        assert "■ finished: approved" in followed.stdout
        # The final line counts tokens as `status` does: model and codex.
        usage = here.status(waiting)["usage"]
        total = sum(
            usage[k]["input_tokens"] + usage[k]["output_tokens"] for k in ("model", "codex")
        )
        assert f"■ finished: approved ({total} tokens)" in followed.stdout

        # A followed run that asks for its review at the terminal.
        asked = here.codexflow(
            "run", REQUEST, "--project", "calc", "--gate", "planner", "--ask", stdin="a\n"
        )
        assert asked.returncode == 0, asked.stdout + asked.stderr
        for line in (
            "▶ planner #1",
            "⏸ waiting for a review of planner",
            "✔ review of planner: approve",
            "▶ builder #1",
            "  ⚙ codex task 1",
            "✔ qa_qc #1 PASS",
            "✔ prod_ready #1 APPROVED",
            "■ finished: approved",
        ):
            assert line in asked.stdout, asked.stdout

        # Each run works in a worktree of its own, on its own branch of the project.
        runs = [
            json.loads(here.codexflow("status", session_id_of(out), "--json").stdout)
            for out in (started, asked)
        ]
        assert {r["project_id"] for r in runs} == {runs[0]["project_id"]}
        assert [r["branch"] for r in runs] == [f"codexflow/{r['id']}" for r in runs]
        workspace = Path(runs[1]["worktree"])
        assert workspace.parent == Path(runs[0]["worktree"]).parent
        tests = subprocess.run(
            [sys.executable, "-m", "unittest"], cwd=workspace, capture_output=True, text=True
        )
        assert tests.returncode == 0 and "OK" in tests.stderr

        # Cancel a waiting run; list what happened.
        third = session_id_of(
            here.codexflow("run", REQUEST, "--project", "calc", "--gate", "planner", "--no-follow")
        )
        here.wait_for(third, "waiting_for_review")
        cancelled = here.codexflow("cancel", third)
        assert cancelled.returncode == 0 and f"cancelling session {third}" in cancelled.stdout
        here.wait_for(third, "cancelled")
        listed = here.codexflow("sessions")
        assert listed.returncode == 0 and listed.stdout.strip().endswith("3 of 3")
        assert listed.stdout.count("completed") == 2 and third in listed.stdout
        assert listed.stdout.startswith("session ") and "calc / " in listed.stdout  # the project
        unknown = here.codexflow("sessions", "--status", "finished")
        assert unknown.returncode == 2 and "finished" in unknown.stderr  # not a real status
        refused = here.codexflow("review", waiting, "approve", "--stage", "planner")
        assert refused.returncode == 1 and "409" in refused.stderr

        # A repository in, a pushed branch out: the project is made from the path (and named
        # after it); an existing project from elsewhere is not mistaken for it.
        other = here.codexflow("run", REQUEST, "--repo", str(origin), "--project", "calc")
        assert other.returncode == 2 and "was not imported from" in other.stderr
        pushed = here.codexflow("run", REQUEST, "--repo", str(origin), "--push")
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr
        assert "importing" in pushed.stdout and "■ finished: approved" in pushed.stdout
        sid = session_id_of(pushed)
        assert f"session {sid} in project shop (branch codexflow/{sid})" in pushed.stdout
        branches = run_git("--git-dir", str(origin), "branch", "--format=%(refname:short)")
        assert branches.split() == [f"codexflow/{sid}", "main"]
        assert "calc.py" in run_git(
            "--git-dir", str(origin), "ls-tree", "--name-only", branches.split()[0]
        )
        status = here.codexflow("status", sid)
        assert f"pushed   codexflow/{sid} to {origin}" in status.stdout, status.stdout


def test_run_commands_reject_bad_input_and_say_when_the_api_is_down(tmp_path: Path) -> None:
    here = local(tmp_path)  # nothing is running at these addresses
    empty = here.codexflow("run", "  ", "--project", "calc")
    assert empty.returncode == 2 and "request is empty" in empty.stderr
    gate = here.codexflow("run", "go", "--project", "calc", "--gate", "planner,nope")
    assert gate.returncode == 2 and "unknown stage nope" in gate.stderr
    decision = here.codexflow("review", "s1", "maybe")
    assert decision.returncode == 2
    down = here.codexflow("sessions")
    assert down.returncode == 1
    assert f"cannot reach the codexflow API at {here.env['CODEXFLOW_API_URL']}" in down.stderr
    assert "codexflow up" in down.stderr


@pytest.mark.slow
def test_up_in_live_mode_says_what_is_missing(tmp_path: Path) -> None:
    here = local(tmp_path)
    here.env.pop("OPENAI_API_KEY", None)
    with here.up():
        deadline = time.monotonic() + 30
        while "codex is not ready" not in (out := (tmp_path / "up.out").read_text()):
            assert time.monotonic() < deadline, out
            time.sleep(0.2)
    assert "codexflow is up (live)" in out
    assert "warning: the agents have no model: set OPENAI_API_KEY" in out
    # The login hint is the exact command: the codex home in use (its absolute path), the binary.
    home = (tmp_path / ".codexflow" / "codex-home").resolve()
    login = f"CODEX_HOME={home} {here.env['CODEXFLOW_CODEX_BIN']} login"
    assert f"warning: codex is not ready: codex is not logged in; log in with `{login}`" in out
