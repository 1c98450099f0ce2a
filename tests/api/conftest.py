"""API fixtures: settings with a token, and an authenticated client of the real app."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from config import Settings
from tests.helpers.api import TOKEN, client_of


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_token": SecretStr(TOKEN)})


@pytest.fixture
async def api(api_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(api_settings) as client:
        yield client
