"""What the deployment tests share: the repository's paths and the settings config.py knows."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices

from config import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

# Every file that configures codexflow for a deployment.
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE_ENV_EXAMPLE = DEPLOY / "compose.env.example"
VM_ENV_EXAMPLE = DEPLOY / "codexflow.env.example"
SYSTEMD_DIR = DEPLOY / "systemd"
NGINX_SITE = DEPLOY / "nginx" / "codexflow.conf"

_CODEXFLOW_NAME = re.compile(r"\bCODEXFLOW_[A-Z0-9_]+")
_ASSIGNMENT = re.compile(r"^#?\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def setting_env_names() -> set[str]:
    """The environment variables ``Settings`` reads, from its fields and their aliases."""
    prefix = Settings.model_config.get("env_prefix", "")
    names: set[str] = set()
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(choice for choice in alias.choices if isinstance(choice, str))
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{field_name}")
    return {name.upper() for name in names}


def unknown_codexflow_names(text: str) -> set[str]:
    """``CODEXFLOW_*`` names in ``text`` that are no setting of config.py."""
    return set(_CODEXFLOW_NAME.findall(text)) - setting_env_names()


def env_file_assignments(path: Path, *, commented: bool = False) -> dict[str, str]:
    """``NAME=value`` lines of an environment file, values unquoted the way a shell (and systemd's
    EnvironmentFile=) reads them. With ``commented``, also ``# NAME=value`` lines whose value is one
    word: settings shown as examples, not prose."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        is_comment = line.lstrip().startswith("#")
        if is_comment and not commented:
            continue
        match = _ASSIGNMENT.match(line.strip())
        if not match:
            continue
        name, raw = match.groups()
        words = shlex.split(raw)
        if is_comment and len(words) != 1:
            continue
        assert len(words) <= 1, f"{path.name}: {name}'s value is several words; quote it"
        found[name] = words[0] if words else ""
    return found


CODEXFLOW_CLI = Path(sys.executable).parent / "codexflow"


@lru_cache
def cli_help(*words: str) -> str:
    """``codexflow WORDS --help``, which must succeed: WORDS is a real (sub)command."""
    result = subprocess.run(
        [str(CODEXFLOW_CLI), *words, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"},
    )
    assert result.returncode == 0, f"codexflow {' '.join(words)} --help: {result.stderr}"
    return result.stdout


def assert_real_cli_invocation(args: list[str]) -> None:
    """``codexflow ARGS`` names a real command, and each ``--option`` is one of its options."""
    words: list[str] = []
    for arg in args:
        if arg.startswith("-"):
            break
        words.append(arg)
    assert words, f"no subcommand in codexflow {args}"
    help_text = cli_help(*words)
    for option in (arg.split("=", 1)[0] for arg in args if arg.startswith("--")):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", help_text), (
            f"codexflow {' '.join(words)} has no option {option}"
        )
