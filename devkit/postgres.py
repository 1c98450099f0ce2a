"""A throwaway PostgreSQL cluster for tests and benchmarks (initdb + pg_ctl on a free port).

PostgreSQL refuses to run as root; when we are root the server runs as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from devkit.processes import free_port

__all__ = ["PostgresNotInstalled", "pg_bin_dir", "throwaway_postgres"]


class PostgresNotInstalled(RuntimeError):
    pass


def pg_bin_dir() -> Path:
    """Where initdb and pg_ctl live: Debian's versioned directory, else PATH."""
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    if found := shutil.which("initdb"):
        return Path(found).parent
    raise PostgresNotInstalled(
        "PostgreSQL server binaries not found: apt-get install -y postgresql (make test does this)"
    )


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a private cluster; yield an asyncpg SQLAlchemy URL to its ``postgres`` database."""
    bin_dir = pg_bin_dir()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="codexflow-pg-"))
    if as_postgres:
        shutil.chown(root, "postgres")
    data, log, port = root / "data", root / "server.log", free_port()

    def run(*cmd: str) -> None:
        subprocess.run([*as_postgres, *cmd], check=True, capture_output=True, cwd=root)

    try:
        run(
            str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start")
        try:
            yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
