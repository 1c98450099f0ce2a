"""Health: the API itself, and whether the database, Temporal and codex are usable."""

from __future__ import annotations

import asyncio
from importlib.metadata import version

from fastapi import APIRouter
from sqlalchemy import text
from temporalio.exceptions import ApplicationError

from api.deps import DbDep, SettingsDep, StateDep
from api.schemas import Check, CodexCheck, Health
from config import Settings
from core.codex_cli import codex_env, find_codex_binary, login_hint

router = APIRouter(tags=["Health"])


@router.get("/api/health", response_model=Health)
async def health(state: StateDep, db: DbDep, settings: SettingsDep) -> Health:
    """Unauthenticated: reachability of the database and Temporal, and codex's version and auth
    (checked at most once a minute: no caller can make the API start processes at will)."""
    database, temporal, codex = await asyncio.gather(
        _database(db), _temporal(state), state.codex_check.get(lambda: _codex(settings))
    )
    ok = database.ok and temporal.ok and codex.ok
    return Health(
        status="ok" if ok else "degraded",
        healthy=ok,
        task_queue=settings.task_queue,
        version=version("codexflow"),
        database=database,
        temporal=temporal,
        codex=codex,
    )


async def _database(db: DbDep) -> Check:
    try:
        await db.execute(text("SELECT 1"))
    except Exception as err:
        return Check(ok=False, detail=f"database unreachable: {type(err).__name__}")
    return Check(ok=True)


async def _temporal(state: StateDep) -> Check:
    try:
        client = await state.temporal.get()
        async with asyncio.timeout(3):
            await client.service_client.check_health()
    except Exception as err:
        return Check(ok=False, detail=f"Temporal unreachable: {err}")
    return Check(ok=True)


async def _codex(settings: Settings) -> CodexCheck:
    """The seed's `codex --version` / `codex whoami` checks (`codex login status` today)."""
    try:
        binary = find_codex_binary(settings)
    except ApplicationError as err:
        return CodexCheck(ok=False, detail=err.message)
    settings.codex_home.resolve().mkdir(parents=True, exist_ok=True)
    env = codex_env(settings)
    version_out = await _run(str(binary), "--version", env=env)
    if version_out is None:
        return CodexCheck(ok=False, detail=f"{binary} --version failed")
    if settings.codex_base_url:
        auth = "custom provider"
    elif settings.codex_api_key:
        auth = "api key"
    else:
        auth = "logged in" if await _run(str(binary), "login", "status", env=env) else "none"
    return CodexCheck(
        ok=auth != "none",
        version=version_out.strip(),
        auth=auth,
        detail=None
        if auth != "none"
        else f"codex is not logged in; {login_hint(settings, binary)}",
    )


async def _run(*cmd: str, env: dict[str, str]) -> str | None:
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=10)
    except (OSError, TimeoutError):
        return None
    return out.decode(errors="replace") if proc.returncode == 0 else None
