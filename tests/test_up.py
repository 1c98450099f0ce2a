"""`codexflow up --offline` and the run/review/status/sessions/cancel commands, as a user runs them:
real subprocesses (dev server, worker, API), the scripted model server and the real codex binary."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cli.stack import reachable
from devkit.processes import free_port
from tests.helpers.codex import real_codex_bin
from tests.helpers.git_server import bare_repository, run_git

REQUEST = "Build a small calculator module with unit tests."


@dataclass
class Local:
    """A working directory and the environment that points every command at one stack."""

    cwd: Path
    env: dict[str, str]

    def codexflow(
        self, *args: str, stdin: str = "", timeout: float = 120
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "cli", *args],
            cwd=self.cwd,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def status(self, session_id: str) -> dict:
        answer = self.codexflow("status", session_id, "--json")
        assert answer.returncode == 0, answer.stderr
        return json.loads(answer.stdout)

    def wait_for(self, session_id: str, status: str, timeout: float = 60) -> dict:
        url = f"{self.env['CODEXFLOW_API_URL']}/api/sessions/{session_id}"
        deadline = time.monotonic() + timeout
        while (session := httpx.get(url).json())["status"] != status:
            assert time.monotonic() < deadline, f"still {session['status']}, not {status}"
            time.sleep(0.3)
        return session

    @contextlib.contextmanager
    def up(self, *options: str) -> Iterator[subprocess.Popen]:
        """`codexflow up` until it prints its URLs; stopped with Ctrl-C (SIGINT) after."""
        log = (self.cwd / "up.out").open("w+")
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "up", *options],
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 90
            while "Ctrl-C stops everything" not in (self.cwd / "up.out").read_text():
                assert proc.poll() is None, (self.cwd / "up.out").read_text()
                assert time.monotonic() < deadline, "codexflow up did not come up"
                time.sleep(0.2)
            yield proc
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
            log.close()


def local(tmp_path: Path) -> Local:
    api_port, temporal_port, ui_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXFLOW_")}
    env |= {
        "CODEXFLOW_API_URL": f"http://127.0.0.1:{api_port}",
        "CODEXFLOW_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "CODEXFLOW_TEMPORAL_UI_URL": f"http://127.0.0.1:{ui_port}",
        "CODEXFLOW_CODEX_BIN": real_codex_bin(),
        "COLUMNS": "200",
    }
    return Local(tmp_path, env)


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
        started = here.codexflow(
            "run", REQUEST, "--project", "calc", "--gate", "planner", "--no-follow"
        )
        waiting = session_id_of(started)
        session = here.wait_for(waiting, "waiting_for_review")
        assert session["live"]["awaiting"]["stage"] == "planner"
    # Ctrl-C stopped everything: nothing answers any more, and the run is kept in Temporal's file.
    assert up.returncode == 0 and "stopped" in (tmp_path / "up.out").read_text()
    assert not reachable(api) and not reachable(temporal)

    with here.up("--offline"):
        reviewed = here.codexflow("review", waiting, "approve")
        assert reviewed.returncode == 0, reviewed.stderr
        assert f"approve: planner of session {waiting}" in reviewed.stdout
        followed = here.codexflow("status", waiting, "--follow")
        assert followed.returncode == 0, followed.stdout + followed.stderr
        assert "■ finished: approved" in followed.stdout

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
    assert "warning: codex is not ready: codex is not logged in" in out
