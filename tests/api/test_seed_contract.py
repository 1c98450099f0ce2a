"""What a client written for the seed's API sends and expects (``../shared/seed``), and how the
API holds under concurrent load: answers are 200 or 503, never 500 or a hang."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from collections import Counter

import httpx
import pytest
import websockets
from starlette.types import Receive, Scope, Send

from api.guard import Guard
from config import Settings
from tests.helpers.api import TOKEN, serving
from tests.helpers.sessions import FAST, Serve, new_project, new_session, poll

AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_routes_answer_with_and_without_the_trailing_slash(api: httpx.AsyncClient) -> None:
    for path in ("/api/projects", "/api/projects/"):
        created = await api.post(path, json={"name": f"calc {path}"})
        assert created.status_code == 201, (path, created.status_code, created.text)
    for path in ("/api/projects", "/api/projects/", "/api/sessions", "/api/sessions/"):
        listed = await api.get(path)
        assert listed.status_code == 200 and listed.json(), path
    project_id = created.json()["id"]
    for path in (f"/api/projects/{project_id}", f"/api/projects/{project_id}/"):
        assert (await api.get(path)).json()["id"] == project_id
    assert (await api.get("/api/no-such-route/")).status_code == 404
    assert (await api.put("/api/projects")).status_code == 405  # routed, wrong method


async def test_seed_bodies_and_answers(api: httpx.AsyncClient) -> None:
    # settings: null, as the seed's clients send it.
    project = await api.post("/api/projects/", json={"name": "calc", "settings": None})
    assert project.status_code == 201 and project.json()["settings"] == {}
    project_id = project.json()["id"]

    # An unknown option is refused, by name, and no session is written.
    before = (await api.get("/api/sessions/")).json()
    wrong = await api.post(
        "/api/sessions/",
        json={
            "project_id": project_id,
            "user_request": "Build it.",
            "options": {"gate": ["qa_qc"]},
        },
    )
    assert wrong.status_code == 422 and "gate" in wrong.text and "Extra inputs" in wrong.text
    assert (await api.get("/api/sessions/")).json() == before

    uploaded = await api.post(
        f"/api/files/upload/{project_id}",
        files={"file": ("a.py", b"x = 1\n")},
        data={"path": "a.py"},
    )
    assert uploaded.status_code in (200, 201), uploaded.text
    file_id = uploaded.json()["id"]
    deleted = await api.delete(f"/api/files/{file_id}")
    assert deleted.json() == {"status": "deleted", "id": file_id, "file_id": file_id}
    deleted = await api.delete(f"/api/projects/{project_id}")
    assert deleted.json() == {"status": "deleted", "id": project_id, "project_id": project_id}

    health = (await api.get("/api/health")).json()
    assert health["healthy"] is (health["status"] == "ok") and health["version"]


def test_the_standard_database_url_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CODEXFLOW_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u@db/records")
    assert Settings(_env_file=None).database_url == "postgresql+asyncpg://u@db/records"  # type: ignore[call-arg]
    monkeypatch.setenv("CODEXFLOW_DATABASE_URL", "sqlite+aiosqlite:///mine.db")
    assert Settings(_env_file=None).database_url == "sqlite+aiosqlite:///mine.db"  # type: ignore[call-arg]


async def test_past_its_capacity_the_api_answers_503_with_retry_after(
    settings: Settings,
) -> None:
    release = asyncio.Event()

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    gate = Guard(slow, settings.model_copy(update={"max_concurrent_requests": 2}))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gate), base_url="http://localhost"
    ) as client:
        held = [asyncio.create_task(client.get("/api/health")) for _ in range(2)]
        await asyncio.sleep(0.1)
        refused = await client.get("/api/health")
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "capacity" in refused.json()["detail"]
        # Event streams are counted apart (CODEXFLOW_MAX_STREAMS): they still get in.
        stream = asyncio.create_task(client.get("/api/sessions/s1/events"))
        release.set()
        assert [r.status_code for r in await asyncio.gather(*held, stream)] == [200, 200, 200]
        assert (await client.get("/api/health")).status_code == 200  # capacity is back


async def test_concurrent_gets_while_a_run_progresses_are_200_or_503(
    app_settings: Settings, serve: Serve
) -> None:
    """A real API under uvicorn, a run going through its stages, 400 GETs at once."""
    await serve(codex_prompt="@fake sleep=1")
    settings = app_settings.model_copy(
        update={"max_concurrent_requests": 40, "db_pool_size": 2, "db_max_overflow": 0}
    )
    async with (
        serving(settings) as url,
        httpx.AsyncClient(
            base_url=url,
            headers={"Authorization": f"Bearer {TOKEN}"},
            # Idle connections dropped before uvicorn closes them (5 s): no keep-alive race.
            limits=httpx.Limits(max_connections=400, keepalive_expiry=1),
            timeout=30,
        ) as client,
    ):
        project_id = await new_project(client)
        sid = (await new_session(client, project_id, start=True, options=FAST))["id"]
        seen: Counter[int] = Counter()
        for _ in range(3):
            answers = await asyncio.gather(
                *(client.get(f"/api/sessions/{sid}") for _ in range(400))
            )
            seen.update(a.status_code for a in answers)
            assert all(a.headers["retry-after"] == "1" for a in answers if a.status_code == 503)
            await asyncio.sleep(0.5)
        assert set(seen) <= {200, 503} and seen[200] > 0, seen
        done = await poll(client, f"/api/sessions/{sid}", lambda s: s["status"] == "completed")
        assert done["outcome"] == "approved"
        # A plain urllib client (it follows no 307 of a POST) gets its answer without the slash.
        request = urllib.request.Request(
            f"{url}/api/sessions/{sid}/", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(request).read())
        assert json.loads(body)["id"] == sid


async def test_the_api_docs_need_no_internet(api: httpx.AsyncClient) -> None:
    for page, assets in (
        ("/docs", ("swagger-ui-bundle.js", "swagger-ui.css")),
        ("/redoc", ("redoc.standalone.js",)),
    ):
        html = (await api.get(page)).text
        assert "https://" not in html and "http://" not in html, page  # no CDN, no web fonts
        for asset in assets:
            assert f"/docs/assets/{asset}" in html
            loaded = await api.get(f"/docs/assets/{asset}", headers={"Authorization": ""})
            assert loaded.status_code == 200 and len(loaded.content) > 10_000, asset
    assert "oauth2" in (await api.get("/docs/oauth2-redirect")).text.lower()


async def test_the_seed_websocket_journey(app_settings: Settings, serve: Serve) -> None:
    """As the seed's client: open /ws/session/<a new id>, start_workflow with project_id and
    user_request, and follow workflow_progress to workflow_complete, on two sockets at once;
    subscribe_codex gives codex_output lines."""
    await serve()
    async with serving(app_settings) as url:
        async with httpx.AsyncClient(base_url=url, headers=AUTH) as client:
            project_id = await new_project(client)
        session_id = str(uuid.uuid4())
        ws_url = url.replace("http://", "ws://") + f"/ws/session/{session_id}?token={TOKEN}"
        async with websockets.connect(ws_url) as first, websockets.connect(ws_url) as second:
            await first.send(
                json.dumps(
                    {
                        "action": "start_workflow",
                        "project_id": project_id,
                        "user_request": "Build a calculator.",
                        "options": FAST,
                    }
                )
            )
            await first.send(json.dumps({"action": "subscribe_codex"}))
            heard: dict[str, list[dict]] = {"first": [], "second": []}

            async def listen(name: str, ws: websockets.ClientConnection) -> None:
                async with asyncio.timeout(60):
                    async for raw in ws:
                        message = json.loads(raw)
                        heard[name].append(message)
                        if message["type"] == "workflow_complete" and name == "second":
                            return
                        if message["type"] == "complete" and name == "first":
                            return

            await asyncio.gather(listen("first", first), listen("second", second))

    types = [m["type"] for m in heard["first"]]
    assert "workflow_started" in types and "codex_output" in types
    started = next(m for m in heard["first"] if m["type"] == "workflow_started")
    assert started["session_id"] == session_id
    for name in ("first", "second"):  # every socket on the session hears the run
        progress = [m for m in heard[name] if m["type"] == "workflow_progress"]
        stages = {m["stage"] for m in progress}
        assert {"planner", "builder", "qa_qc", "prod_ready"} <= stages, name
        assert all(isinstance(m["message"], str) and m["message"] for m in progress)
        (complete,) = [m for m in heard[name] if m["type"] == "workflow_complete"]
        assert complete["result"]["status"] == "completed"
        assert complete["result"]["outcome"] == "approved"
    lines = [m for m in heard["first"] if m["type"] == "codex_output"]
    assert all(m["task_id"].startswith(session_id) for m in lines)
    # codex's stdout (its JSONL) and stderr lines, as a terminal shows them.
    assert any(m["line"].startswith('{"type":') for m in lines)
