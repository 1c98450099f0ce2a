"""A client generated from the API's OpenAPI document by a well-known generator
(openapi-python-client) drives a run: create a project, upload a file, start a gated session,
review it, read its diff. What a team generating its own client would do first."""

from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from api.app import create_app
from config import Settings
from tests.helpers.api import TOKEN, serving
from tests.helpers.sessions import FAST, Serve, poll

AUTH = {"Authorization": f"Bearer {TOKEN}"}
GENERATOR = Path(sys.executable).parent / "openapi-python-client"


def generated_client(settings: Settings, where: Path) -> Any:
    spec = where / "openapi.json"
    spec.write_text(json.dumps(create_app(settings).openapi()))
    done = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(spec), "--meta", "none"]
        + ["--output-path", str(where / "codexflow_client")],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{GENERATOR.parent}:{os.environ['PATH']}"},
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout, done.stdout  # every operation and model generated
    sys.path.insert(0, str(where))
    try:
        return importlib.import_module("codexflow_client")
    finally:
        sys.path.remove(str(where))


async def test_a_generated_client_runs_a_session(
    app_settings: Settings, serve: Serve, tmp_path: Path
) -> None:
    await serve(codex_prompt="@fake write=calc.py:def add(a, b):\\n    return a + b\\n")
    gen = generated_client(app_settings, tmp_path)
    models = importlib.import_module("codexflow_client.models")
    types = importlib.import_module("codexflow_client.types")
    create_project, upload_file, create_session, review_session, session_diff = (
        importlib.import_module(f"codexflow_client.api.{name}")
        for name in (
            "projects.create_project",
            "files.upload_file",
            "sessions.create_session",
            "sessions.review_session",
            "sessions.session_diff",
        )
    )

    async with serving(app_settings) as url:
        client = gen.AuthenticatedClient(base_url=url, token=TOKEN)
        project = await create_project.asyncio(
            client=client, body=models.ProjectCreate(name="generated")
        )
        assert isinstance(project, models.ProjectResponse), project
        uploaded = await upload_file.asyncio(
            project.id,
            client=client,
            body=models.BodyUploadFile(
                file=types.File(payload=io.BytesIO(b"# notes\n"), file_name="NOTES.md")
            ),
        )
        assert isinstance(uploaded, models.FileResponse), uploaded  # not a 422
        options = models.PipelineOptions.from_dict({**FAST, "gates": ["planner"]})
        created = await create_session.asyncio(
            client=client,
            body=models.SessionCreate(
                project_id=project.id,
                user_request="Build a calculator.",
                options=options,
                start=True,
            ),
        )
        assert isinstance(created, models.SessionResponse), created

        async with httpx.AsyncClient(base_url=url, headers=AUTH) as http:
            await poll(http, f"/api/sessions/{created.id}", _awaiting("planner"))
        wrong = await review_session.asyncio_detailed(
            created.id,
            client=client,
            body=models.Review(stage=models.Role("builder"), decision=models.Decision("approve")),
        )
        assert wrong.status_code == 409 and isinstance(wrong.parsed, models.ErrorResponse)
        assert "planner" in wrong.parsed.detail
        accepted = await review_session.asyncio(
            created.id,
            client=client,
            body=models.Review(stage=models.Role("planner"), decision=models.Decision("approve")),
        )
        assert isinstance(accepted, models.ReviewAccepted) and accepted.accepted
        async with httpx.AsyncClient(base_url=url, headers=AUTH) as http:
            done = await poll(
                http, f"/api/sessions/{created.id}", lambda s: s["status"] == "completed"
            )
        assert done["outcome"] == "approved"
        diff = await session_diff.asyncio_detailed(created.id, client=client)
        assert diff.status_code == 200 and "def add" in diff.content.decode()


def _awaiting(stage: str):
    def check(session: dict[str, Any]) -> bool:
        return ((session.get("live") or {}).get("awaiting") or {}).get("stage") == stage

    return check
