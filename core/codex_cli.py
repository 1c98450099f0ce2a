"""Where the codex binary is, and the environment it runs with (no secrets it does not need)."""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

from temporalio.exceptions import ApplicationError

from config import PROJECT_ROOT, Settings

__all__ = ["PROVIDER_KEY_ENV", "codex_env", "find_codex_binary"]

# Environment variables codex may see; everything else (API keys, tokens, cloud credentials) stays out.
_PASSTHROUGH_ENV = (
    "PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
)  # fmt: skip
PROVIDER_KEY_ENV = "CODEXFLOW_PROVIDER_API_KEY"


def find_codex_binary(settings: Settings) -> Path:
    """``CODEXFLOW_CODEX_BIN``, else the native binary npm installed here, else ``codex`` on PATH."""
    if settings.codex_bin:
        candidates = [Path(settings.codex_bin).expanduser()]
        hint = f"CODEXFLOW_CODEX_BIN={settings.codex_bin} is not an executable file"
    else:
        candidates = sorted(PROJECT_ROOT.glob("node_modules/@openai/codex-*/vendor/*/bin/codex"))
        candidates += [Path(p) for p in [shutil.which("codex")] if p]
        hint = "run `npm ci` in the codexflow directory (it installs @openai/codex)"
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path.resolve()
    raise ApplicationError(
        f"codex binary not found: {hint}, or set CODEXFLOW_CODEX_BIN to the codex executable",
        type="CodexNotInstalled",
        non_retryable=True,
    )


def login_hint(settings: Settings, binary: Path) -> str:
    """What to do when codex is not logged in: the exact command, in the home codexflow's codex
    uses (the absolute path of ``CODEXFLOW_CODEX_HOME``), or the key setting."""
    home = shlex.quote(str(settings.codex_home.expanduser().resolve()))
    return (
        f"log in with `CODEX_HOME={home} {shlex.quote(str(binary))} login` "
        "(or set CODEXFLOW_CODEX_API_KEY)"
    )


def codex_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _PASSTHROUGH_ENV}
    env.update(CODEX_HOME=str(settings.codex_home.resolve()), NO_COLOR="1", TERM="dumb")
    key = settings.codex_api_key.get_secret_value() if settings.codex_api_key else None
    if settings.codex_base_url:
        env[PROVIDER_KEY_ENV] = key or "unused"
    elif key:
        env["CODEX_API_KEY"] = key
    return env
