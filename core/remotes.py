"""Where a project's repository may come from, and the credentials git takes to it.

Accepted: ``https://`` and ``ssh://`` URLs and scp-like ``user@host:path``; ``file://`` URLs and
absolute local paths only beneath a directory the operator lists in ``CODEXFLOW_LOCAL_REPOS``.
Refused: every other transport (``ext::``, ``fd::``, any ``helper::address``, ``git://``, plain
``http://``), anything that looks like an option, control characters, and passwords inside the URL
(credentials come from the worker's settings and never appear in a response, event or log).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from config import Settings

__all__ = ["Remote", "RemoteNotAllowed", "parse_remote", "remote_env", "redact_secrets"]

# A host starts with a letter or digit: ssh would take "-oProxyCommand=…" for an option.
_HOST = r"[A-Za-z0-9][A-Za-z0-9.-]*"
_SCP_LIKE = re.compile(rf"^(?:[A-Za-z0-9._-]+@)?({_HOST}):(?!//)([^:\s-][^\s]*)$")


class RemoteNotAllowed(ValueError):
    """A repository location codexflow will not fetch from or push to; the message says why."""


@dataclass(frozen=True)
class Remote:
    kind: Literal["https", "ssh", "local"]
    url: str  # what git is given (a local path for "local")
    host: str | None = None


def parse_remote(location: str, settings: Settings) -> Remote:
    """``location`` checked and normalised; RemoteNotAllowed otherwise."""
    text = location.strip()
    if not text:
        raise RemoteNotAllowed("the repository location is empty")
    if text.startswith("-"):
        raise RemoteNotAllowed("a repository location may not start with '-'")
    if any(ord(c) < 32 or c.isspace() for c in text):
        raise RemoteNotAllowed("a repository location may not contain spaces or control characters")
    if "::" in text:
        raise RemoteNotAllowed("transport helpers (ext::, fd::, …) are not allowed")
    if text.startswith("file://") or text.startswith("/"):
        return _local(text.removeprefix("file://"), settings)
    if "://" in text:
        parts = urlsplit(text)
        if parts.password is not None:
            raise RemoteNotAllowed(
                "put credentials in the worker's settings (CODEXFLOW_GIT_HTTPS_TOKEN), "
                "not in the URL"
            )
        if parts.scheme in ("https", "ssh"):
            if not parts.hostname or not re.fullmatch(_HOST, parts.hostname):
                raise RemoteNotAllowed(f"not a host name: {parts.hostname!r}")
            return Remote("https" if parts.scheme == "https" else "ssh", text, parts.hostname)
        raise RemoteNotAllowed(
            f"{parts.scheme}:// is not allowed: use https://, ssh://, or a local path"
        )
    if match := _SCP_LIKE.match(text):
        return Remote("ssh", text, match[1])
    raise RemoteNotAllowed(f"not a repository URL or absolute path: {location!r}")


def _local(path: str, settings: Settings) -> Remote:
    if not settings.local_repos:
        raise RemoteNotAllowed(
            "local repositories are refused: the operator lists the directories they may come "
            "from in CODEXFLOW_LOCAL_REPOS"
        )
    real = Path(path).resolve()
    for allowed in settings.local_repos:
        if real.is_relative_to(allowed.resolve()):
            return Remote("local", str(real))
    raise RemoteNotAllowed(f"{path} is not under a directory of CODEXFLOW_LOCAL_REPOS")


def remote_env(remote: Remote, settings: Settings) -> dict[str, str]:
    """The environment that gives git the worker's credentials for ``remote`` (only through the
    environment: never on a command line another process could read, never in a config file)."""
    if remote.kind == "https":
        config: list[tuple[str, str]] = []
        if settings.git_https_token:
            token = settings.git_https_token.get_secret_value()
            credentials = base64.b64encode(f"{settings.git_https_username}:{token}".encode())
            config.append(("http.extraHeader", f"Authorization: Basic {credentials.decode()}"))
        if settings.git_ssl_ca_file:
            config.append(("http.sslCAInfo", str(settings.git_ssl_ca_file)))
        env = {"GIT_CONFIG_COUNT": str(len(config))}
        for n, (key, value) in enumerate(config):
            env |= {f"GIT_CONFIG_KEY_{n}": key, f"GIT_CONFIG_VALUE_{n}": value}
        return env if config else {}
    if remote.kind == "ssh":
        known_hosts = settings.git_ssh_known_hosts or "/dev/null"
        command = [
            "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "StrictHostKeyChecking=" + ("yes" if settings.git_ssh_known_hosts else "accept-new"),
        ]  # fmt: skip
        if settings.git_ssh_key:
            command += ["-i", str(settings.git_ssh_key)]
        return {"GIT_SSH_COMMAND": " ".join(command)}
    return {}


def redact_secrets(text: str, settings: Settings) -> str:
    """``text`` (git's stderr, say) with the worker's git credentials masked."""
    token = settings.git_https_token.get_secret_value() if settings.git_https_token else None
    if token:
        text = text.replace(token, "***")
        credentials = f"{settings.git_https_username}:{token}"
        text = text.replace(base64.b64encode(credentials.encode()).decode(), "***")
    return text
