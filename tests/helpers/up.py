"""`codexflow up` as a user runs it, in tests: a working directory, an environment pointing every
command at one stack of its own (ports it picked), and the commands."""

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

from devkit.processes import free_port
from tests.helpers.codex import real_codex_bin

__all__ = ["Local", "local"]


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
