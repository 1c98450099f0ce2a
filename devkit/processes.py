"""Start codexflow processes (worker, ...) as real subprocesses, configured from a Settings object."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pydantic import SecretStr

from config import PROJECT_ROOT, Settings

__all__ = ["FAKE_CODEX", "settings_env", "spawn_worker"]

FAKE_CODEX = PROJECT_ROOT / "devkit" / "fake_codex.py"


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``CODEXFLOW_*`` environment that reproduces ``settings`` in another process."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, Path):
            value = value.resolve()
        elif isinstance(value, list | dict):
            value = json.dumps(value)  # pydantic-settings reads complex values as JSON
        env[f"CODEXFLOW_{name.upper()}"] = str(value)
    return env


def spawn_worker(settings: Settings, log: Path | None = None) -> subprocess.Popen:
    """``python worker.py`` with ``settings``; its output goes to ``log`` (or is discarded)."""
    out = log.open("ab") if log else subprocess.DEVNULL
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXFLOW_")}
    return subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "worker.py")],
        cwd=PROJECT_ROOT,
        env={**env, **settings_env(settings), "OPENAI_AGENTS_DISABLE_TRACING": "1"},
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
