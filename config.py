"""Settings: the one place codexflow reads its configuration (environment prefix ``CODEXFLOW_``)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent
STATE_DIR = Path(".codexflow")

Sandbox = Literal["read-only", "workspace-write", "danger-full-access"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CODEXFLOW_", env_file=".env", extra="ignore")

    # Temporal
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = "codexflow"
    temporal_ui_url: str = "http://localhost:8233"

    # Storage
    workspaces_root: Path = STATE_DIR / "workspaces"
    database_url: str = f"sqlite+aiosqlite:///{STATE_DIR / 'codexflow.db'}"

    # Codex CLI
    codex_bin: str | None = None
    codex_home: Path = STATE_DIR / "codex-home"
    codex_model: str | None = None
    codex_sandbox: Sandbox = "workspace-write"
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
    cors_origins: list[str] = Field(
        default_factory=lambda: ["http://localhost:3000", "http://localhost:5173"]
    )

    # Observability
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # host:port where a worker serves Prometheus /metrics (its own and the Temporal SDK's); unset = off
    worker_metrics_address: str | None = None

    def workspace_root(self) -> Path:
        return self.workspaces_root.resolve()


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
            value = json.dumps(value)  # pydantic-settings reads complex values as JSON
        env[f"CODEXFLOW_{name.upper()}"] = str(value)
    return env
