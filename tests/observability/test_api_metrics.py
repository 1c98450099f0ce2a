"""The API's ``/metrics``: served by uvicorn, scraped over HTTP with the bearer token."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from api.app import create_app
from config import Settings
from store.db import make_engine, make_sessionmaker
from store.models import Project, RunSession
from tests.helpers.api import TOKEN, serving
from tests.helpers.prometheus import Scrape

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_token": SecretStr(TOKEN)})


@pytest.fixture
async def http(api_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serving(api_settings) as url,
        httpx.AsyncClient(base_url=url, headers=AUTH, timeout=10) as client,
    ):
        yield client


async def scrape(http: httpx.AsyncClient) -> Scrape:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)


async def add_sessions(settings: Settings, *statuses: str) -> list[str]:
    engine = make_engine(settings.database_url)
    ids = [uuid.uuid4().hex for _ in statuses]
    try:
        async with make_sessionmaker(engine).begin() as db:
            project = Project(id=uuid.uuid4().hex, name="p", workspace_path="/nonexistent")
            db.add(project)
            await db.flush()
            for session_id, status in zip(ids, statuses, strict=True):
                db.add(RunSession(id=session_id, project_id=project.id, status=status,
                                  workflow_id=f"session-{session_id}", user_request="x"))  # fmt: skip
    finally:
        await engine.dispose()
    return ids


async def test_requests_are_counted_by_route_template(http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/projects/")).status_code == 200
    assert (await http.get("/api/projects/")).status_code == 200
    unknown = [uuid.uuid4().hex for _ in range(3)]
    for session_id in unknown:
        assert (await http.get(f"/api/sessions/{session_id}")).status_code == 404
    assert (await http.get("/no/such/route")).status_code == 404

    m = await scrape(http)
    requests = "codexflow_api_requests_total"
    assert m.value(requests, method="GET", route="/api/projects/", status="200") == 2
    assert m.value(requests, method="GET", route="/api/sessions/{session_id}", status="404") == 3
    assert m.value(requests, route="unmatched", status="404") == 1
    assert not any(session_id in m.text for session_id in unknown)  # ids never become labels
    duration = "codexflow_api_request_duration_seconds_count"
    assert m.value(duration, method="GET", route="/api/projects/") == 2
    # The scrape itself is counted by the next one.
    assert m.value(requests, route="/metrics") == 0
    assert (await scrape(http)).value(requests, route="/metrics", status="200") == 1


async def test_metrics_need_the_token_and_stay_out_of_the_schema(
    http: httpx.AsyncClient,
) -> None:
    assert (await http.get("/metrics", headers={"Authorization": ""})).status_code == 401
    assert (
        await http.get("/metrics", headers={"Authorization": "Bearer wrong"})
    ).status_code == 401
    assert (await http.get("/api/health", headers={"Authorization": ""})).status_code == 200
    assert "/metrics" not in (await http.get("/openapi.json")).json()["paths"]


async def test_sessions_by_status_come_from_the_database(
    http: httpx.AsyncClient, api_settings: Settings
) -> None:
    m = await scrape(http)
    assert m.value("codexflow_sessions", status="running") == 0  # present, and zero
    await add_sessions(api_settings, "running", "running", "completed", "failed", "pending")
    m = await scrape(http)
    assert m.value("codexflow_sessions", status="running") == 2
    assert m.value("codexflow_sessions", status="completed") == 1
    assert m.value("codexflow_sessions", status="failed") == 1
    assert m.value("codexflow_sessions", status="pending") == 1
    assert m.value("codexflow_sessions", status="cancelled") == 0
    assert m.value("codexflow_sessions") == 5


async def test_open_streams_are_counted_while_open(
    http: httpx.AsyncClient, api_settings: Settings
) -> None:
    (session_id,) = await add_sessions(api_settings, "running")
    async with http.stream("GET", f"/api/sessions/{session_id}/events") as stream:
        assert stream.status_code == 200
        assert (await scrape(http)).value("codexflow_api_subscribers", kind="sse") == 1
    for _ in range(100):  # the server notices the disconnect shortly
        m = await scrape(http)
        if m.value("codexflow_api_subscribers", kind="sse") == 0:
            break
        await asyncio.sleep(0.05)
    assert m.value("codexflow_api_subscribers", kind="sse") == 0
    route = "/api/sessions/{session_id}/events"
    assert m.value("codexflow_api_requests_total", route=route, status="200") == 1
    assert m.value("codexflow_api_request_duration_seconds_count", route=route) == 0  # not timed


async def test_websockets_are_counted_while_open(api_settings: Settings) -> None:
    (session_id,) = await add_sessions(api_settings, "running")
    with TestClient(create_app(api_settings), headers=AUTH) as client:

        def sockets() -> float:
            metrics = Scrape(client.get("/metrics").text)
            return metrics.value("codexflow_api_subscribers", kind="websocket")

        assert sockets() == 0
        with client.websocket_connect(f"/ws/session/{session_id}", headers=AUTH) as ws:
            ws.send_json({"action": "ping"})
            assert ws.receive_json() == {"type": "pong"}
            assert sockets() == 1
        for _ in range(100):
            if sockets() == 0:
                break
            await asyncio.sleep(0.05)
        assert sockets() == 0
