"""Sessions through the HTTP API in tests: make a project and a session, poll until it gets there."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

__all__ = ["FAST", "Serve", "new_project", "new_session", "poll"]

Serve = Callable[..., Awaitable[None]]
FAST = {"codex_heartbeat_s": 2}


async def new_project(api: httpx.AsyncClient) -> str:
    answer = await api.post("/api/projects/", json={"name": "calc"})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


async def new_session(api: httpx.AsyncClient, project_id: str, **body: Any) -> dict[str, Any]:
    body.setdefault("options", FAST)
    answer = await api.post(
        "/api/sessions/",
        json={"project_id": project_id, "user_request": "Build a calculator.", **body},
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


async def poll(
    api: httpx.AsyncClient, url: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """GET ``url`` until ``done`` holds for its answer (within a minute)."""
    last: Any = None
    try:
        async with asyncio.timeout(60):
            while True:
                answer = await api.get(url)
                last = answer.json()
                if answer.status_code == 200 and done(last):
                    return dict(last)
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"{url} never got there; last answer: {last}") from None
