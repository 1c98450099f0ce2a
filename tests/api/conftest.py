"""An API client on the real app (lifespan included) over a migrated test database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from api.app import create_app
from config import Settings

TOKEN = "test-token-please-ignore"


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[str]:
    """The app served by uvicorn in-process (httpx's ASGI transport buffers whole responses)."""
    app = create_app(settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert server.started
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_token": SecretStr(TOKEN)})


@asynccontextmanager
async def client_of(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An authenticated client of the app built from ``settings`` (lifespan included)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client:
            yield client


@pytest.fixture
async def api(api_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(api_settings) as client:
        yield client
