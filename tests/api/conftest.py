"""An API client on the real app (lifespan included) over a migrated test database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from api.app import create_app
from config import Settings

TOKEN = "test-token-please-ignore"


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    from pydantic import SecretStr

    return settings.model_copy(update={"api_token": SecretStr(TOKEN)})


@pytest.fixture
async def api(api_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An authenticated client of the app."""
    app = create_app(api_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client:
            yield client
