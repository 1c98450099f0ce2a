"""Dependencies shared by the routes: state, settings, a database session, Temporal, the rows a
path names, and the bearer-token checks."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Query, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.state import ApiState, api_state
from config import Settings
from store.models import Project, RunSession

__all__ = [
    "DbDep",
    "ProjectDep",
    "SessionDep",
    "SettingsDep",
    "StateDep",
    "TemporalDep",
    "project_or_404",
    "require_token",
    "require_token_or_query",
    "session_or_404",
    "token_matches",
]

StateDep = Annotated[ApiState, Depends(api_state)]


def _settings(state: StateDep) -> Settings:
    return state.settings


async def _db(state: StateDep) -> AsyncIterator[AsyncSession]:
    async with state.db() as db:
        yield db


async def _temporal(state: StateDep) -> Client:
    return await state.temporal.get()  # TemporalUnavailable → 503


SettingsDep = Annotated[Settings, Depends(_settings)]
DbDep = Annotated[AsyncSession, Depends(_db)]
TemporalDep = Annotated[Client, Depends(_temporal)]


async def project_or_404(db: AsyncSession, project_id: str, active_only: bool = True) -> Project:
    project = await db.get(Project, project_id)
    if project is None or (active_only and not project.is_active):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"project {project_id} not found")
    return project


async def session_or_404(db: AsyncSession, session_id: str) -> RunSession:
    row = await db.get(RunSession, session_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"session {session_id} not found")
    return row


async def _project(project_id: str, db: DbDep) -> Project:
    project = await project_or_404(db, project_id)
    await db.commit()  # the connection goes back to the pool: the handler may call Temporal next
    return project


async def _session(session_id: str, db: DbDep) -> RunSession:
    row = await session_or_404(db, session_id)
    await db.commit()  # the connection goes back to the pool: the handler may call Temporal next
    return row


ProjectDep = Annotated[Project, Depends(_project)]
"""The active project named by the path's ``project_id`` (404 otherwise)."""
SessionDep = Annotated[RunSession, Depends(_session)]
"""The session named by the path's ``session_id`` (404 otherwise)."""


# --- the token ---------------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="CODEXFLOW_API_TOKEN, when one is configured")


def token_matches(settings: Settings, presented: str | None) -> bool:
    """Constant-time comparison with the configured token; True when none is configured."""
    if settings.api_token is None:
        return True
    expected = settings.api_token.get_secret_value().encode()
    return presented is not None and hmac.compare_digest(presented.encode(), expected)


def _refuse() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "missing or invalid bearer token",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def require_token(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    if not token_matches(settings, credentials.credentials if credentials else None):
        raise _refuse()


async def require_token_or_query(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    token: Annotated[
        str | None, Query(description="the API token, for clients that cannot send headers")
    ] = None,
) -> None:
    """The bearer token from the ``Authorization`` header or, failing that, ``?token=``
    (browsers' EventSource cannot send headers)."""
    presented = credentials.credentials if credentials else token
    if not token_matches(settings, presented):
        raise _refuse()
