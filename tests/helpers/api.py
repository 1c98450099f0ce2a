"""The API in tests: the app served by uvicorn in-process, an authenticated client, SSE frames."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn

from api.app import create_app
from config import Settings

__all__ = ["TOKEN", "client_of", "read_sse", "serving"]

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


async def read_sse(
    response: httpx.Response, count: int | None = None, lines: AsyncIterator[str] | None = None
) -> list[dict[str, Any]]:
    """Parse SSE frames (comments as {"comment": ...}) until the stream ends or ``count`` events."""
    frames: list[dict[str, Any]] = []
    frame: dict[str, Any] = {}
    async for line in lines or response.aiter_lines():
        if line == "":
            if frame:
                frames.append(frame)
                frame = {}
                if count is not None and sum("id" in f for f in frames) >= count:
                    break
            continue
        if line.startswith(":"):
            frame["comment"] = line[1:].strip()
            continue
        field, _, value = line.partition(": ")
        frame[field] = json.loads(value) if field == "data" else value
    return frames
