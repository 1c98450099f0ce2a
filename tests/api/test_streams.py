"""Live streams: SSE session events (resumable), agents and their chat, the WebSockets."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from temporalio.client import Client
from temporalio.openai_agents.testing import TestModelProvider
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.routes import events as events_routes
from config import Settings
from core.vocabulary import chat_workflow_id
from crew.roles import ROLES
from devkit.agent_model import ScriptedAgentModel, pipeline_script
from store.db import make_engine, make_sessionmaker
from store.events import EventLog, NewEvent
from store.models import CodexTask, Project, RunSession
from tests.helpers.api import TOKEN, read_sse, serving
from tests.helpers.chat import chat_model, echo
from tests.helpers.temporal import temporal_address
from worker import agents_plugin, build_worker
from workflows.chat import AgentChatWorkflow

AUTH = {"Authorization": f"Bearer {TOKEN}"}


# --- helpers -------------------------------------------------------------------------------------


async def add_rows(settings: Settings, *rows: Any) -> None:
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine).begin() as db:
            for row in rows:
                db.add(row)
                await db.flush()
    finally:
        await engine.dispose()


async def append(settings: Settings, *events: NewEvent) -> None:
    engine = make_engine(settings.database_url)
    try:
        await EventLog(engine).append(list(events))
    finally:
        await engine.dispose()


async def new_session(settings: Settings) -> str:
    project = Project(
        id=uuid.uuid4().hex, name="p", workspace_path=str(settings.workspaces_root / "p")
    )
    session_id = uuid.uuid4().hex
    session = RunSession(
        id=session_id,
        project_id=project.id,
        workflow_id=f"session-{session_id}",
        user_request="build it",
    )
    await add_rows(settings, project, session)
    return session_id


@pytest.fixture
async def server(api_settings: Settings) -> AsyncIterator[str]:
    async with serving(api_settings) as url:
        yield url


def close_code(client: TestClient, url: str, **kwargs: Any) -> int:
    """The code the server closes a new WebSocket with (it must close it at once)."""
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect(url, **kwargs) as ws,
    ):
        ws.receive_json()
    return closed.value.code


def only_events(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in frames if "id" in f]


# --- SSE -----------------------------------------------------------------------------------------


async def test_sse_replays_in_order_and_ends_after_finished(
    server: str, api_settings: Settings
) -> None:
    session = await new_session(api_settings)
    await append(
        api_settings,
        NewEvent(session, "session.started", {}),
        NewEvent(session, "codex.event", {"n": 1}, "t1", 1),
        NewEvent(session, "session.finished", {"outcome": "ready"}),
        NewEvent(session, "late", {}),  # after the end: never streamed
    )
    async with (
        httpx.AsyncClient(base_url=server, headers=AUTH, timeout=10) as client,
        client.stream("GET", f"/api/sessions/{session}/events") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        frames = only_events(await read_sse(response))
    assert [f["event"] for f in frames] == ["session.started", "codex.event", "session.finished"]
    ids = [int(f["id"]) for f in frames]
    assert ids == sorted(ids) and [f["data"]["id"] for f in frames] == ids
    data = frames[1]["data"]
    assert data["kind"] == "codex.event" and data["payload"] == {"n": 1}
    assert data["codex_task_id"] == "t1" and data["attempt"] == 1 and data["created_at"]

    # ?after_id= resumes too.
    async with (
        httpx.AsyncClient(base_url=server, headers=AUTH, timeout=10) as client,
        client.stream(
            "GET", f"/api/sessions/{session}/events", params={"after_id": ids[0]}
        ) as response,
    ):
        assert [int(f["id"]) for f in only_events(await read_sse(response))] == ids[1:]


async def test_sse_reconnect_with_last_event_id_loses_and_repeats_nothing(
    server: str, api_settings: Settings
) -> None:
    session = await new_session(api_settings)
    url = f"/api/sessions/{session}/events"
    async with httpx.AsyncClient(base_url=server, headers=AUTH, timeout=10) as client:
        async with client.stream("GET", url) as response:
            await append(api_settings, *(NewEvent(session, "tick", {"n": n}) for n in range(3)))
            first = only_events(await read_sse(response, count=2))  # leave mid-stream
        # Written while nobody listens.
        await append(api_settings, *(NewEvent(session, "tick", {"n": n}) for n in range(3, 5)))
        last = first[-1]["id"]
        async with client.stream("GET", url, headers={"Last-Event-ID": last}) as response:
            await append(
                api_settings,
                NewEvent(session, "tick", {"n": 5}),
                NewEvent(session, "session.failed", {"error": "boom"}),
            )
            second = only_events(await read_sse(response))
    ticks = [f["data"]["payload"]["n"] for f in first + second if f["event"] == "tick"]
    assert ticks == [0, 1, 2, 3, 4, 5]
    assert second[-1]["event"] == "session.failed"


async def test_sse_keepalive_auth_and_unknown_ids(
    server: str, api_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_routes, "KEEPALIVE_S", 0.2)
    session = await new_session(api_settings)
    url = f"/api/sessions/{session}/events"
    async with httpx.AsyncClient(base_url=server, timeout=10) as client:
        assert (await client.get(url)).status_code == 401
        assert (await client.get(url, params={"token": "wrong"})).status_code == 401
        assert (await client.get("/api/sessions/nope/events", headers=AUTH)).status_code == 404

        async with client.stream("GET", url, params={"token": TOKEN}) as response:
            assert response.status_code == 200
            lines = response.aiter_lines()
            async for line in lines:
                if line == ": keepalive":
                    break
            await append(api_settings, NewEvent(session, "session.cancelled", {}))
            frames = only_events(await read_sse(response, lines=lines))
        assert [f["event"] for f in frames] == ["session.cancelled"]


async def test_a_codex_task_stream_ends_with_its_last_attempt(
    server: str, api_settings: Settings
) -> None:
    task = CodexTask(id=f"task-{uuid.uuid4().hex[:8]}", prompt="p", working_directory="/w")
    await add_rows(api_settings, task)
    failed = {"status": "failed", "final": False, "error": "exit 1"}  # a retry follows
    await append(
        api_settings,
        NewEvent(task.id, "codex.started", {"pid": 1}, task.id, 1),
        NewEvent(task.id, "codex.finished", failed, task.id, 1),
        NewEvent(task.id, "codex.started", {"pid": 2}, task.id, 2),
        NewEvent(task.id, "codex.event", {"type": "x"}, task.id, 2),
        NewEvent(task.id, "codex.finished", {"status": "completed", "final": True}, task.id, 2),
        NewEvent(task.id, "codex.event", {"type": "after the end"}, task.id, 2),
    )
    async with (
        httpx.AsyncClient(base_url=server, headers=AUTH, timeout=10) as client,
        client.stream("GET", f"/api/sessions/{task.id}/events") as response,
    ):
        frames = only_events(await read_sse(response))
    assert [(f["event"], f["data"]["attempt"]) for f in frames] == [
        ("codex.started", 1),
        ("codex.finished", 1),
        ("codex.started", 2),
        ("codex.event", 2),
        ("codex.finished", 2),
    ]


async def test_sse_follows_a_standalone_codex_task(server: str, api_settings: Settings) -> None:
    task = CodexTask(id=f"task-{uuid.uuid4().hex[:8]}", prompt="p", working_directory="/w")
    await add_rows(api_settings, task)
    await append(
        api_settings,
        NewEvent(task.id, "codex.started", {"pid": 1}, task.id, 1),
        NewEvent(task.id, "codex.event", {"type": "x"}, task.id, 1),
        NewEvent(task.id, "codex.finished", {"status": "completed"}, task.id, 1),
    )
    async with (
        httpx.AsyncClient(base_url=server, headers=AUTH, timeout=10) as client,
        client.stream("GET", f"/api/sessions/{task.id}/events") as response,
    ):
        frames = only_events(await read_sse(response))
    assert [f["event"] for f in frames] == ["codex.started", "codex.event", "codex.finished"]


# --- agents --------------------------------------------------------------------------------------


async def test_agents_list_and_get(api: httpx.AsyncClient) -> None:
    listed = (await api.get("/api/agents/")).json()
    assert [a["role"] for a in listed] == [r.value for r in ROLES]
    assert set(listed[0]) == {"role", "name", "description", "handoff_description"}
    one = await api.get("/api/agents/builder")
    assert one.status_code == 200
    assert one.json() == next(a for a in listed if a["role"] == "builder")
    assert (await api.get("/api/agents/janitor")).status_code == 404


async def test_chat_through_the_api(
    temporal_dev: WorkflowEnvironment, api_settings: Settings, task_queue: str
) -> None:
    settings = api_settings.model_copy(
        update={"temporal_address": temporal_address(temporal_dev), "task_queue": task_queue}
    )
    model = chat_model(echo)
    worker_client = await Client.connect(
        temporal_address(temporal_dev),
        plugins=[agents_plugin(settings, provider=TestModelProvider(model))],
    )
    app = create_app(settings)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(
            build_worker(worker_client, settings, task_queue=task_queue)
        )
        await stack.enter_async_context(app.router.lifespan_context(app))
        api = await stack.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://api", headers=AUTH
            )
        )
        project = (await api.post("/api/projects/", json={"name": "chatty"})).json()["id"]
        body = {"project_id": project, "agent_role": "builder", "message": "hello"}
        first = await api.post("/api/agents/chat", json=body)
        assert first.status_code == 200, first.text
        assert first.json() == {"agent_role": "builder", "response": "echo: hello", "turn": 1}
        second = await api.post("/api/agents/chat", json={**body, "message": "again"})
        assert second.json()["response"] == "echo: again" and second.json()["turn"] == 2
        assert "echo: hello" in str(model.inputs[-1])  # the same chat: it saw the first exchange

        missing = await api.post("/api/agents/chat", json={**body, "project_id": "nope"})
        assert missing.status_code == 404
        unknown = await api.post("/api/agents/chat", json={**body, "agent_role": "janitor"})
        assert unknown.status_code == 404

        # The chat's validator refuses it: 409 with the reason.
        refused = await api.post("/api/agents/chat", json={**body, "message": "   "})
        assert refused.status_code == 409 and "empty message" in refused.json()["detail"]

        # A closed chat is not reopened: the next message starts a new one.
        handle = worker_client.get_workflow_handle(chat_workflow_id(project, "builder"))
        await handle.signal(AgentChatWorkflow.close)
        await handle.result()
        fresh = await api.post("/api/agents/chat", json={**body, "message": "anew"})
        assert fresh.json() == {"agent_role": "builder", "response": "echo: anew", "turn": 1}
        latest = worker_client.get_workflow_handle(handle.id)
        await latest.signal(AgentChatWorkflow.close)
        await latest.result()


# --- WebSockets ----------------------------------------------------------------------------------


def test_websocket_ping_subscribe_and_auth(api_settings: Settings) -> None:
    session = asyncio.run(new_session(api_settings))
    with TestClient(create_app(api_settings)) as client:
        assert close_code(client, f"/ws/session/{session}?token=wrong") == 4401
        assert close_code(client, f"/ws/session/{session}") == 4401

        with client.websocket_connect(f"/ws/session/{session}", headers=AUTH) as ws:
            ws.send_json({"action": "ping"})
            assert ws.receive_json() == {"type": "pong"}
            ws.send_json({"action": "dance"})
            assert ws.receive_json()["type"] == "error"

        with client.websocket_connect(f"/ws/session/{session}?token={TOKEN}") as ws:
            ws.send_json({"action": "subscribe_codex"})
            assert ws.receive_json()["type"] == "subscribed"
            asyncio.run(append(api_settings, NewEvent(session, "tick", {"n": 1})))
            first = ws.receive_json()
            assert first["type"] == "event" and first["kind"] == "tick"
            # The stream runs in the background: the socket still answers.
            ws.send_json({"action": "ping"})
            assert ws.receive_json() == {"type": "pong"}
            asyncio.run(
                append(
                    api_settings,
                    NewEvent(session, "tick", {"n": 2}),
                    NewEvent(session, "session.finished", {}),
                )
            )
            rest = [ws.receive_json() for _ in range(4)]
            # Ours (event, complete) and the seed's (workflow_complete), each stream in order.
            ours = [m for m in rest if m["type"] in ("event", "complete")]
            assert [m.get("kind") for m in ours[:2]] == ["tick", "session.finished"]
            assert ours[0]["payload"] == {"n": 2} and ours[0]["id"] > first["id"]
            assert ours[2]["type"] == "complete"
            (seed,) = [m for m in rest if m["type"] == "workflow_complete"]
            assert seed["result"]["status"] == "completed"

        assert close_code(client, "/ws/session/not_an_id!", headers=AUTH) == 4404


def test_terminal_streams_a_codex_task_until_it_finishes(api_settings: Settings) -> None:
    session = asyncio.run(new_session(api_settings))
    task = CodexTask(id=f"{session}-1-1", session_id=session, prompt="p", working_directory="/w")
    asyncio.run(add_rows(api_settings, task))
    asyncio.run(
        append(
            api_settings,
            NewEvent(session, "codex.started", {"pid": 1}, task.id, 1),
            NewEvent(session, "codex.event", {"line": "one"}, task.id, 1),
            NewEvent(session, "codex.event", {"line": "other task"}, "other", 1),
        )
    )
    with TestClient(create_app(api_settings)) as client:
        with client.websocket_connect(f"/ws/terminal/{task.id}", headers=AUTH) as ws:
            assert ws.receive_json()["event"] == {"line": "one"}
            asyncio.run(
                append(
                    api_settings,
                    NewEvent(session, "codex.event", {"line": "two"}, task.id, 1),
                    NewEvent(session, "codex.stderr", {"line": "warning: slow"}, task.id, 1),
                    NewEvent(session, "codex.finished", {"status": "completed"}, task.id, 1),
                )
            )
            two = ws.receive_json()
            assert two["type"] == "output" and two["event"] == {"line": "two"}
            assert two["stream"] == "stdout"
            # stderr lines too, as the seed's terminal shows them, marked as such.
            err = ws.receive_json()
            assert err["type"] == "output" and err["stream"] == "stderr"
            assert err["line"] == "warning: slow"
            done = ws.receive_json()
            assert done["type"] == "complete" and done["status"] == "completed"
            with pytest.raises(WebSocketDisconnect):
                ws.receive_json()
        assert close_code(client, f"/ws/terminal/{task.id}?token=bad") == 4401


async def test_websocket_start_workflow_and_chat_with_a_real_worker(
    temporal_dev: WorkflowEnvironment, api_settings: Settings, task_queue: str
) -> None:
    """The socket starts a session's workflow, streams it to the end, and chats, all at once."""
    settings = api_settings.model_copy(
        update={"temporal_address": temporal_address(temporal_dev), "task_queue": task_queue}
    )
    model = ScriptedAgentModel(pipeline_script())
    worker_client = await Client.connect(
        temporal_address(temporal_dev),
        plugins=[agents_plugin(settings, provider=TestModelProvider(model))],
    )

    def over_the_socket() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        with TestClient(create_app(settings), headers=AUTH) as client:
            project = client.post("/api/projects/", json={"name": "ws"}).json()["id"]
            session = client.post(
                "/api/sessions/",
                json={"project_id": project, "user_request": "Build a calculator.",
                      "options": {"codex_heartbeat_s": 2}},
            ).json()["id"]  # fmt: skip
            with client.websocket_connect(f"/ws/session/{session}", headers=AUTH) as ws:
                ws.send_json({"action": "start_workflow"})
                assert ws.receive_json()["type"] == "workflow_started"
                ws.send_json({"action": "subscribe_codex"})
                ws.send_json({"action": "chat", "agent_role": "planner", "message": "hi",
                              "project_id": project})  # fmt: skip
                messages: list[dict[str, Any]] = []
                while not any(m["type"] == "complete" for m in messages):
                    messages.append(ws.receive_json())
                if not any(m["type"] == "agent_message" for m in messages):
                    messages.append(ws.receive_json())
                again = client.post(f"/api/sessions/{session}/start")
                return messages, again.json()

    async with build_worker(worker_client, settings, task_queue=task_queue):
        messages, again = await asyncio.wait_for(asyncio.to_thread(over_the_socket), timeout=120)
    kinds = [m.get("kind") for m in messages if m["type"] == "event"]
    assert kinds[0] == "session.started" and kinds[-1] == "session.finished"
    assert "stage.completed" in kinds and "codex.event" in kinds
    reply = next(m for m in messages if m["type"] == "agent_message")
    assert reply["agent_role"] == "planner" and reply["content"]
    assert "already started" in again["detail"]
