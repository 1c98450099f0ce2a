"""Dependencies shared by the routes: settings, a database session, the bearer-token check."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings

__all__ = ["DbDep", "SettingsDep", "require_token"]


def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _db(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as db:
        yield db


SettingsDep = Annotated[Settings, Depends(_settings)]
DbDep = Annotated[AsyncSession, Depends(_db)]

_bearer = HTTPBearer(auto_error=False, description="CODEXFLOW_API_TOKEN, when one is configured")


def token_matches(settings: Settings, presented: str | None) -> bool:
    """Constant-time comparison with the configured token; True when none is configured."""
    if settings.api_token is None:
        return True
    expected = settings.api_token.get_secret_value().encode()
    return presented is not None and hmac.compare_digest(presented.encode(), expected)


async def require_token(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    if not token_matches(settings, credentials.credentials if credentials else None):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
