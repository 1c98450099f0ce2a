"""Sessions through the HTTP API: a real Temporal dev server, an in-process worker, the fake codex."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from config import Settings
from devkit.agent_model import ScriptedAgentModel, pipeline_script
from tests.helpers.api import TOKEN, client_of, read_sse, serving
from tests.helpers.pipeline import pipeline_client
from tests.helpers.sessions import FAST, Serve, new_project, new_session, poll
from worker import build_worker


@pytest.fixture
async def api(app_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(app_settings) as client:
        yield client


def finished(session: dict[str, Any]) -> bool:
    return session["status"] in ("completed", "failed", "cancelled")


async def test_a_session_runs_to_completion(api: httpx.AsyncClient, serve: Serve) -> None:
    await serve()
    project_id = await new_project(api)
    created = await new_session(api, project_id, title="calc", start=True)
    sid = created["id"]
    assert created["workflow_id"] == f"session-{sid}"
    assert created["status"] in ("queued", "running")
    assert created["temporal_ui_url"].endswith(f"/namespaces/default/workflows/session-{sid}")
    assert created["options"] == FAST

    session = await poll(api, f"/api/sessions/{sid}", finished)
    assert session["status"] == "completed", session
    assert session["outcome"] == "approved" and session["completed_at"]
    assert session["live"] is None and "Outcome: approved" in session["final_summary"]
    assert session["agents_md_content"].startswith("# Overview")

    conversations = (await api.get(f"/api/sessions/{sid}/conversations")).json()
    assert [c["agent_type"] for c in conversations] == ["planner", "builder", "qa_qc", "prod_ready"]
    assert all(c["messages"] and c["status"] == "completed" and c["report"] for c in conversations)
    assert {"id", "role", "content", "created_at", "metadata"} <= set(
        conversations[0]["messages"][0]
    )

    task = (await api.get(f"/api/codex-tasks/{sid}-builder-1-1")).json()
    assert task["status"] == "completed" and task["exit_code"] == 0 and task["session_id"] == sid
    assert "calc.py" in task["output_files"] and len(task["output"]) >= 2
    assert {e["kind"] for e in task["output"]} <= {"codex.event", "codex.stderr"}
    first = (await api.get(f"/api/codex-tasks/{sid}-builder-1-1", params={"limit": 1})).json()
    assert [e["id"] for e in first["output"]] == [task["output"][0]["id"]]
    rest = await api.get(
        f"/api/codex-tasks/{sid}-builder-1-1", params={"after_id": first["next_after_id"]}
    )
    assert rest.json()["output"] == task["output"][1:]

    diff = await api.get(f"/api/sessions/{sid}/diff")
    assert diff.status_code == 200 and diff.headers["content-type"].startswith("text/x-diff")
    assert "+def add" in diff.text and "AGENTS.md" in diff.text
    planner = await api.get(f"/api/sessions/{sid}/diff", params={"stage": "planner"})
    assert "AGENTS.md" in planner.text and "def add" not in planner.text
    builder = await api.get(
        f"/api/sessions/{sid}/diff", params={"stage": "builder", "iteration": 1}
    )
    assert "+def add" in builder.text
    missing = await api.get(
        f"/api/sessions/{sid}/diff", params={"stage": "builder", "iteration": 9}
    )
    assert missing.status_code == 404

    listing = (await api.get("/api/sessions/", params={"project_id": project_id})).json()
    assert listing["total"] == 1 and listing["sessions"][0]["id"] == sid
    assert (await api.get("/api/sessions/", params={"status": "running"})).json()["total"] == 0
    assert [s["id"] for s in (await api.get(f"/api/sessions/project/{project_id}")).json()] == [sid]

    # A finished run can be neither started again, reviewed nor cancelled.
    assert (await api.post(f"/api/sessions/{sid}/start")).status_code == 409
    review = await api.post(
        f"/api/sessions/{sid}/review", json={"stage": "planner", "decision": "approve"}
    )
    assert review.status_code == 409, review.text
    assert (await api.post(f"/api/sessions/{sid}/cancel")).status_code == 409


async def test_a_gated_stage_waits_for_a_review(api: httpx.AsyncClient, serve: Serve) -> None:
    await serve()
    project_id = await new_project(api)
    sid = (await new_session(api, project_id, start=True, options={**FAST, "gates": ["planner"]}))[
        "id"
    ]

    def awaiting_planner(session: dict[str, Any]) -> bool:
        live = session.get("live") or {}
        return (live.get("awaiting") or {}).get("stage") == "planner"

    waiting = await poll(api, f"/api/sessions/{sid}", awaiting_planner)
    assert (
        waiting["live"]["state"] == "waiting_for_review" and waiting["live"]["stage"] == "planner"
    )

    wrong = await api.post(
        f"/api/sessions/{sid}/review", json={"stage": "builder", "decision": "approve"}
    )
    assert wrong.status_code == 409
    assert "waiting for a review of planner" in wrong.json()["detail"]

    right = await api.post(
        f"/api/sessions/{sid}/review",
        json={"stage": "planner", "decision": "approve", "feedback": "good plan"},
    )
    assert right.status_code == 200, right.text
    assert right.json() == {"accepted": True, "stage": "planner", "decision": "approve"}

    session = await poll(api, f"/api/sessions/{sid}", finished)
    assert session["status"] == "completed" and session["outcome"] == "approved"
    again = await api.post(
        f"/api/sessions/{sid}/review", json={"stage": "planner", "decision": "approve"}
    )
    assert again.status_code == 409


async def test_start_then_cancel_mid_run(api: httpx.AsyncClient, serve: Serve) -> None:
    await serve(codex_prompt="@fake hang")
    project_id = await new_project(api)
    sid = (await new_session(api, project_id))["id"]
    assert (await api.get(f"/api/sessions/{sid}")).json()["status"] == "pending"
    # Not started: nothing to review or cancel.
    assert (await api.post(f"/api/sessions/{sid}/cancel")).status_code == 409
    review = await api.post(
        f"/api/sessions/{sid}/review", json={"stage": "planner", "decision": "approve"}
    )
    assert review.status_code == 409

    started = await api.post(f"/api/sessions/{sid}/start")
    assert started.status_code == 202, started.text
    assert (
        started.json()["status"] == "started" and started.json()["workflow_id"] == f"session-{sid}"
    )
    assert (await api.post(f"/api/sessions/{sid}/start")).status_code == 409

    await poll(api, f"/api/codex-tasks/{sid}-builder-1-1", lambda t: t["status"] == "running")
    cancel = await api.post(f"/api/sessions/{sid}/cancel")
    assert cancel.status_code == 202 and cancel.json()["status"] == "cancelling"
    session = await poll(api, f"/api/sessions/{sid}", finished)
    assert session["status"] == "cancelled", session
    assert (await api.post(f"/api/sessions/{sid}/cancel")).status_code == 409


async def test_unknown_ids_are_404(api: httpx.AsyncClient) -> None:
    for method, url in [
        ("GET", "/api/sessions/nope"),
        ("GET", "/api/sessions/nope/conversations"),
        ("GET", "/api/sessions/nope/diff"),
        ("POST", "/api/sessions/nope/start"),
        ("POST", "/api/sessions/nope/cancel"),
        ("GET", "/api/sessions/project/nope"),
        ("GET", "/api/codex-tasks/nope"),
    ]:
        assert (await api.request(method, url)).status_code == 404, url
    review = await api.post(
        "/api/sessions/nope/review", json={"stage": "planner", "decision": "approve"}
    )
    assert review.status_code == 404
    unknown_project = await api.post(
        "/api/sessions/", json={"project_id": "nope", "user_request": "x"}
    )
    assert unknown_project.status_code == 404
    assert (await api.get("/api/sessions/")).json()["total"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"user_request": ""},
        {"user_request": "x" * 100_001},
        {"user_request": "ok", "options": {"gates": ["nope"]}},
        {"user_request": "ok", "options": {"max_repair_loops": -1}},
        {"user_request": "ok", "title": "t" * 256},
    ],
)
async def test_bad_session_bodies_are_422_and_write_nothing(
    api: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    project_id = await new_project(api)
    answer = await api.post("/api/sessions/", json={"project_id": project_id, **body})
    assert answer.status_code == 422 and answer.json()["detail"]
    assert (await api.get("/api/sessions/")).json()["total"] == 0


async def test_bad_review_and_query_parameters_are_422(api: httpx.AsyncClient) -> None:
    project_id = await new_project(api)
    sid = (await new_session(api, project_id))["id"]
    bad = await api.post(f"/api/sessions/{sid}/review", json={"stage": "planner", "decision": "?"})
    assert bad.status_code == 422
    assert (await api.get("/api/sessions/", params={"limit": 0})).status_code == 422
    assert (await api.get("/api/codex-tasks/x", params={"after_id": -1})).status_code == 422
    assert (await api.get(f"/api/sessions/{sid}/diff")).status_code == 404


async def test_the_whole_journey_through_http(app_settings: Settings, serve: Serve) -> None:
    """Create a project, upload a file, start a gated session, follow its events over SSE to the
    end, review the gated stage on the way, then read what happened."""
    await serve()
    async with (
        serving(app_settings) as url,
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as http,
    ):
        project_id = await new_project(http)
        upload = await http.post(
            f"/api/files/upload/{project_id}",
            files={"file": ("spec.md", b"# Calculator spec\n", "text/markdown")},
        )
        assert upload.status_code == 201, upload.text
        sid = (await new_session(http, project_id, options={**FAST, "gates": ["qa_qc"]}))["id"]
        assert (await http.post(f"/api/sessions/{sid}/start")).status_code == 202

        async def follow() -> list[dict[str, Any]]:
            async with http.stream("GET", f"/api/sessions/{sid}/events", timeout=60) as stream:
                assert stream.status_code == 200
                return await read_sse(stream)

        events = asyncio.create_task(follow())
        await poll(http, f"/api/sessions/{sid}", lambda s: bool(
            s["live"] and s["live"]["awaiting"] and s["live"]["awaiting"]["stage"] == "qa_qc"
        ))  # fmt: skip
        review = await http.post(
            f"/api/sessions/{sid}/review",
            json={"stage": "qa_qc", "decision": "approve", "feedback": "Looks right."},
        )
        assert review.status_code == 200, review.text
        frames = [f for f in await asyncio.wait_for(events, timeout=60) if "id" in f]

        kinds = [f["event"] for f in frames]
        assert kinds[0] == "session.started" and kinds[-1] == "session.finished"
        assert [int(f["id"]) for f in frames] == sorted(int(f["id"]) for f in frames)
        assert {"review.awaited", "review.received", "codex.event"} <= set(kinds)
        stages = [f["data"]["payload"]["stage"] for f in frames if f["event"] == "stage.completed"]
        assert stages == ["planner", "builder", "qa_qc", "prod_ready"]

        session = (await http.get(f"/api/sessions/{sid}")).json()
        assert session["status"] == "completed" and session["outcome"] == "approved"
        conversations = (await http.get(f"/api/sessions/{sid}/conversations")).json()
        assert len(conversations) == 4
        task = (await http.get(f"/api/codex-tasks/{sid}-builder-1-1")).json()
        assert task["status"] == "completed" and task["output"]
        assert "+def add" in (await http.get(f"/api/sessions/{sid}/diff")).text


async def test_secrets_stay_out_of_responses_events_and_logs(
    app_settings: Settings, temporal_dev: WorkflowEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = {"openai_api_key": "sk-agents-SECRET-1", "codex_api_key": "sk-codex-SECRET-2"}
    settings = app_settings.model_copy(update={k: SecretStr(v) for k, v in secrets.items()})
    caplog.set_level(logging.DEBUG)
    model = ScriptedAgentModel(pipeline_script())
    worker_client = await pipeline_client(temporal_dev, settings, model)
    app = create_app(settings)
    async with (
        build_worker(worker_client, settings, task_queue=settings.task_queue),
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://api",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as http,
    ):
        project_id = await new_project(http)
        sid = (await new_session(http, project_id, start=True))["id"]
        await poll(http, f"/api/sessions/{sid}", finished)
        answers = [
            await http.get(url)
            for url in (
                f"/api/sessions/{sid}",
                f"/api/sessions/{sid}/conversations",
                f"/api/codex-tasks/{sid}-builder-1-1",
                "/api/health",
                "/openapi.json",
            )
        ]
        events = await app.state.api.events.read(sid, limit=10_000)
    seen = "\n".join(
        [a.text for a in answers] + [json.dumps(e.payload) for e in events] + [caplog.text]
    )
    assert events and all(a.status_code == 200 for a in answers)
    for secret in [*secrets.values(), TOKEN]:
        assert secret not in seen
