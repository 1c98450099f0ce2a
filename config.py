"""Settings: the one place codexflow reads its configuration (environment prefix ``CODEXFLOW_``)."""

from __future__ import annotations

import json
import socket
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent
STATE_DIR = Path(".codexflow")

Sandbox = Literal["read-only", "workspace-write", "danger-full-access"]
SANDBOX_ORDER: tuple[Sandbox, ...] = ("read-only", "workspace-write", "danger-full-access")
"""Codex's sandboxes from the tightest to the loosest: a request may only move left of the
operator's ``CODEXFLOW_CODEX_SANDBOX``."""

# Values an example file or a hurried operator puts where a secret belongs.
_PLACEHOLDER_TOKENS = {"change-me", "changeme", "change_me", "secret", "token", "password", "xxx"}
MIN_TOKEN_CHARS = 16


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CODEXFLOW_", env_file=".env", extra="ignore")

    # Temporal
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = "codexflow"
    temporal_ui_url: str = "http://localhost:8233"
    # This worker's machine: it also serves the task queue `<task_queue>@<worker_host>`, where the
    # activities that touch the worktrees on its disk run. Unique per machine (not per process).
    worker_host: str = Field(
        default_factory=socket.gethostname, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
    )

    # Storage
    workspaces_root: Path = STATE_DIR / "workspaces"
    # Each project's central repository (bare): its default branch and the branches of its
    # sessions. Default: `repos` beside the workspaces root. Put it on durable, shared storage.
    repos_root: Path | None = None

    # Repositories imported from elsewhere
    # Directories local paths and file:// URLs may come from (none: local imports are refused).
    local_repos: list[Path] = Field(default_factory=list)
    # Credentials for private remotes, given to git only for fetches and pushes.
    git_https_token: SecretStr | None = None
    git_https_username: str = "x-access-token"
    git_ssl_ca_file: Path | None = None  # a private CA's certificates, for https remotes
    git_ssh_key: Path | None = None
    git_ssh_known_hosts: Path | None = None  # unset: a host's key is accepted on first use
    clone_timeout_s: float = Field(default=3600, gt=0)
    # What an uploaded archive (.tar.gz, .zip) may expand to.
    max_archive_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    max_archive_entries: int = Field(default=100_000, gt=0)
    # CODEXFLOW_DATABASE_URL, else the conventional DATABASE_URL.
    database_url: str = Field(
        default=f"sqlite+aiosqlite:///{STATE_DIR / 'codexflow.db'}",
        validation_alias=AliasChoices("CODEXFLOW_DATABASE_URL", "DATABASE_URL"),
    )
    # Workflow payloads past this many bytes (a model call's input is the whole conversation)
    # are kept in the records database and history holds a reference (Temporal's External
    # Storage); they go once their workflow is past its retention (swept every hour).
    payload_threshold_bytes: int = Field(default=4096, ge=256)
    payload_sweep_interval_s: float = Field(default=3600, gt=0)

    # Codex CLI
    codex_bin: str | None = None
    codex_home: Path = STATE_DIR / "codex-home"
    codex_model: str | None = None
    codex_sandbox: Sandbox = "workspace-write"  # the ceiling: a run may only ask for less
    codex_allow_full_access: bool = False  # danger-full-access is refused unless this is set
    # The outer sandbox of every codex task: a bubblewrap namespace that shows it only its own
    # workspace, a private /tmp, its project's codex home and the system's directories.
    codex_isolation: Literal["bwrap", "none"] = "bwrap"
    bwrap_bin: str = "bwrap"
    # Extra directories codex may read inside its sandbox (toolchains outside /usr, e.g. /opt).
    codex_read_only_paths: list[Path] = Field(default_factory=list)
    # Hidden from codex even though they lie in a directory it may read.
    codex_hidden_paths: list[Path] = Field(
        default_factory=lambda: [
            Path("/etc/codexflow"),
            Path("/etc/shadow"),
            Path("/etc/gshadow"),
            Path("/etc/ssh"),
            Path("/etc/sudoers"),
            Path("/etc/sudoers.d"),
        ]  # fmt: skip
    )
    codex_base_url: str | None = None
    codex_api_key: SecretStr | None = None
    codex_timeout_s: float = Field(default=1800, gt=0)
    codex_kill_grace_s: float = Field(default=5, ge=0)

    # Agents (OpenAI Agents SDK)
    agent_model: str = "gpt-5.5"
    openai_base_url: str | None = None
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("CODEXFLOW_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    tool_output_max_chars: int = Field(default=4000, gt=0)

    # API (the server's token; the `codexflow run/review/...` client sends it to api_url)
    api_token: SecretStr | None = None
    api_url: str = "http://127.0.0.1:8000"
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    max_request_bytes: int = Field(default=1024 * 1024, gt=0)  # any other request body
    max_streams: int = Field(default=2000, gt=0)  # concurrent SSE streams and WebSockets
    # Requests in progress beyond this are answered 503 + Retry-After at once.
    max_concurrent_requests: int = Field(default=100, gt=0)
    # The records database's connection pool (each API and worker process has one); a request
    # that waits db_pool_timeout_s for a connection gets 503 + Retry-After.
    db_pool_size: int = Field(default=10, gt=0)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout_s: float = Field(default=5, gt=0)
    # Host names the API answers to when it has no token (a DNS-rebinding guard); with a token,
    # any host (it sits behind a proxy).
    allowed_hosts: list[str] = Field(default_factory=lambda: ["localhost", "127.0.0.1", "::1"])
    cors_origins: list[str] = Field(
        default_factory=lambda: ["http://localhost:3000", "http://localhost:5173"]
    )
    # The key in the path of the Temporal UI's codec endpoint (`/api/codec/<key>`); unset: one
    # derived from the API token (set it where the UI's setting is written by hand, as compose).
    codec_key: SecretStr | None = None

    # Observability
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # host:port where a worker serves Prometheus /metrics (its own and the Temporal SDK's); unset = off
    worker_metrics_address: str | None = None

    @field_validator("api_token", "codec_key")
    @classmethod
    def _no_weak_token(cls, token: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if token is not None and (problem := weak_token(token.get_secret_value())):
            raise ValueError(f"CODEXFLOW_{(info.field_name or '').upper()} {problem}")
        return token

    @model_validator(mode="after")
    def _full_access_is_explicit(self) -> Settings:
        if self.codex_sandbox == "danger-full-access" and not self.codex_allow_full_access:
            raise ValueError(
                "CODEXFLOW_CODEX_SANDBOX=danger-full-access needs "
                "CODEXFLOW_CODEX_ALLOW_FULL_ACCESS=true as well"
            )
        return self

    def workspace_root(self) -> Path:
        return self.workspaces_root.resolve()

    def repos_path(self) -> Path:
        return (self.repos_root or self.workspaces_root.parent / "repos").resolve()

    def db_pool(self) -> dict[str, Any]:
        """The connection pool's settings, as ``store.db.make_engine`` takes them."""
        return {
            "pool_size": self.db_pool_size,
            "max_overflow": self.db_max_overflow,
            "pool_timeout": self.db_pool_timeout_s,
        }

    @property
    def temporal_ui_origin(self) -> str:
        """The Temporal Web UI's origin: its codec calls reach the API from there."""
        parts = urlsplit(self.temporal_ui_url)
        return f"{parts.scheme}://{parts.netloc}"

    def sandbox_for(self, requested: Sandbox | None) -> Sandbox:
        """The sandbox a codex task runs in: what was asked for, never looser than the ceiling.

        Raises ValueError for danger-full-access when the operator has not enabled it.
        """
        if requested == "danger-full-access" and not self.codex_allow_full_access:
            raise ValueError(
                "codex_sandbox=danger-full-access is refused: the operator has not set "
                "CODEXFLOW_CODEX_ALLOW_FULL_ACCESS=true"
            )
        ceiling = SANDBOX_ORDER.index(self.codex_sandbox)
        wanted = SANDBOX_ORDER.index(requested) if requested else ceiling
        return SANDBOX_ORDER[min(wanted, ceiling)]


def weak_token(token: str) -> str | None:
    """Why ``token`` is no good as the API token (None when it is fine)."""
    if not token.strip():
        return "is empty"
    if token != token.strip():
        return "has leading or trailing whitespace"
    if token.casefold() in _PLACEHOLDER_TOKENS or "change-me" in token.casefold():
        return "is a placeholder: set a random value (e.g. `openssl rand -hex 32`)"
    if len(token) < MIN_TOKEN_CHARS:
        return f"is shorter than {MIN_TOKEN_CHARS} characters"
    return None


@lru_cache
def get_settings() -> Settings:
    return Settings()


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
            value = json.dumps(value, default=str)  # pydantic-settings reads them as JSON
        env[f"CODEXFLOW_{name.upper()}"] = str(value)
    return env
