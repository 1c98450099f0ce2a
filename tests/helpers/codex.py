"""The real codex binary, run by hand against a scripted Responses server."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from config import Settings
from core.codex_cli import find_codex_binary

__all__ = ["real_codex_bin", "run_real_codex"]


def real_codex_bin() -> str:
    """The real codex binary npm installed (or $CODEXFLOW_CODEX_BIN)."""
    return str(find_codex_binary(Settings(codex_bin=os.environ.get("CODEXFLOW_CODEX_BIN"))))


def run_real_codex(
    base_url: str, workspace: Path, home: Path, prompt: str
) -> tuple[int, list[dict]]:
    """One real `codex exec` against a scripted server (a custom provider, as the runner does); returns
    its exit code and JSONL events."""
    provider = (
        f'model_providers.scripted={{name="Scripted",base_url="{base_url}",'
        'wire_api="responses",env_key="OPENAI_API_KEY",'
        "request_max_retries=0,stream_max_retries=0}"
    )
    command = [
        real_codex_bin(), "exec", "--json", "--skip-git-repo-check", "-s", "workspace-write",
        "-C", str(workspace), "-m", "gpt-5.5", "-c", 'model_provider="scripted"', "-c", provider,
        "--disable", "plugins", "-c", "analytics.enabled=false", prompt,
    ]  # fmt: skip
    home.mkdir(parents=True, exist_ok=True)
    # Codex refuses to set up its sandbox's helpers when its home lies under TMPDIR (the tests'
    # homes lie under /tmp), so its TMPDIR is a directory of its own.
    tmp = home.parent / f"{home.name}-tmp"
    tmp.mkdir(exist_ok=True)
    result = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, "CODEX_HOME": str(home), "TMPDIR": str(tmp), "OPENAI_API_KEY": "dummy"},
        timeout=60,
    )
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.returncode, events
