"""Attacks on the API, replayed as an attacker would send them: over a real socket to uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import websockets
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from api.app import create_app
from config import Settings
from core.repos import ProjectRepos
from devkit.processes import free_port
from observability.logs import RedactTokens
from store.db import make_engine, make_sessionmaker
from store.models import Project, RunSession
from tests.helpers.api import TOKEN, serving

GB = 1024**3


def _raw_request(url: str, head: str, body_chunks: int, chunk: bytes) -> tuple[int, bytes]:
    """Send ``head`` then up to ``body_chunks`` chunks, stopping when the server answers; the bytes
    of body sent, and the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head.encode())
        conn.setblocking(False)
        sent, answer = 0, b""
        for _ in range(body_chunks):
            with contextlib.suppress(BlockingIOError):
                answer += conn.recv(65536)
            if answer:
                break
            try:
                conn.setblocking(True)
                conn.settimeout(2)
                conn.sendall(chunk)
                sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break
            finally:
                conn.setblocking(False)
        conn.settimeout(5)
        conn.setblocking(True)
        while b"\r\n\r\n" not in answer:
            data = conn.recv(65536)
            if not data:
                break
            answer += data
    return sent, answer


async def test_an_unauthenticated_2gb_upload_is_refused_before_it_is_read(
    api_settings: Settings,
) -> None:
    """2 GB declared, no token: 401 after a few MB at most, nothing spooled to disk."""
    spool = Path(os.environ.get("TMPDIR", "/tmp"))
    before = set(spool.iterdir())
    chunk = b"x" * (1024 * 1024)
    async with serving(api_settings) as url:
        for head in (
            f"POST /api/files/upload/p HTTP/1.1\r\nHost: localhost\r\n"
            f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {2 * GB}\r\n\r\n",
            "POST /api/files/upload/p HTTP/1.1\r\nHost: localhost\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n",
        ):
            framed = chunk if "Content-Length" in head else b"%x\r\n%s\r\n" % (len(chunk), chunk)
            sent, answer = await asyncio.to_thread(_raw_request, url, head, 2048, framed)
            assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
            assert sent < 64 * 1024 * 1024, f"{sent} bytes were sent before the refusal"
    assert not [p for p in set(spool.iterdir()) - before if p.name.startswith("tmp")]


async def test_a_300mb_json_body_is_refused_before_it_is_parsed(api_settings: Settings) -> None:
    """Even with the token, a body past CODEXFLOW_MAX_REQUEST_BYTES is a 413, declared or not,
    and the server's memory stays where it was."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    chunk = b'{"name": "' + b"x" * (1024 * 1024)
    async with serving(api_settings) as url:
        declared = (
            f"POST /api/projects/ HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {300 * 1024 * 1024}\r\n\r\n"
        )
        sent, answer = await asyncio.to_thread(_raw_request, url, declared, 300, chunk)
        assert answer.startswith(b"HTTP/1.1 413") and sent < 64 * 1024 * 1024
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as c:

            async def stream():  # type: ignore[no-untyped-def]
                for _ in range(300):
                    yield chunk

            answer_ = await c.post("/api/projects/", content=stream())
            assert answer_.status_code == 413, answer_.text
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
    assert grown_mb < 100, f"peak memory grew by {grown_mb:.0f} MB"


@pytest.mark.parametrize("token", ["", "   ", "CHANGE-ME", "change-me-please", "short-token"])
def test_a_weak_token_stops_the_api_from_starting(tmp_path: Path, token: str) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXFLOW_")}
    env |= {
        "CODEXFLOW_API_TOKEN": token,
        "CODEXFLOW_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/x.db",
    }
    started = subprocess.run(
        [sys.executable, "-m", "cli", "api", "--host", "0.0.0.0", "--port", str(port)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert started.returncode == 2, started.stdout + started.stderr
    assert "CODEXFLOW_API_TOKEN" in started.stderr and "Traceback" not in started.stderr
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()


def test_without_a_token_foreign_hosts_and_origins_are_refused(settings: Settings) -> None:
    """DNS rebinding (a foreign Host) and cross-site requests (a foreign Origin) are refused;
    the API's own names and the configured browser origins pass."""
    with TestClient(create_app(settings), base_url="http://localhost:8000") as client:
        assert client.get("/api/projects/").status_code == 200
        rebound = client.get("/api/projects/", headers={"Host": "attacker.example"})
        assert rebound.status_code == 400 and "not served" in rebound.text
        project = client.post("/api/projects/", json={"name": "p"}).json()
        cross = client.post(
            f"/api/files/upload/{project['id']}",
            files={"file": ("evil.sh", b"rm -rf /", "text/plain")},
            headers={"Origin": "http://attacker.example"},
        )
        assert cross.status_code == 403
        assert not (Path(project["workspace_path"]) / "evil.sh").exists()
        allowed = client.post(
            "/api/projects/", json={"name": "q"}, headers={"Origin": "http://localhost:5173"}
        )
        assert allowed.status_code == 201
        with (
            pytest.raises(WebSocketDisconnect),
            client.websocket_connect(
                "/ws/session/x", headers={"Origin": "http://attacker.example"}
            ) as ws,
        ):
            ws.receive_json()


def test_a_token_is_masked_in_logs_however_its_key_is_spelt() -> None:
    redact = RedactTokens()
    for query in ("token=SECRET", "%74oken=SECRET", "a=1&TOKEN=SECRET", "tok%65n=SECRET&b=2"):
        record = logging.LogRecord(
            "uvicorn.access", logging.INFO, "", 0, f"GET /x?{query}", (), None
        )
        redact.filter(record)
        assert "SECRET" not in record.getMessage() and "***" in record.getMessage()


async def test_the_api_accepts_the_encoded_token_key_it_masks(api_settings: Settings) -> None:
    """``?%74oken=`` authenticates on the event stream (Starlette decodes the key): hence the mask."""
    async with serving(api_settings) as url, httpx.AsyncClient(base_url=url) as client:
        answer = await client.get(f"/api/sessions/none/events?%74oken={TOKEN}")
        assert answer.status_code == 404  # past the token check: the session is unknown
        assert (await client.get("/api/sessions/none/events?%74oken=wrong")).status_code == 401


async def test_deeply_nested_project_settings_are_refused(api: httpx.AsyncClient) -> None:
    nested: dict = {}
    for _ in range(256):
        nested = {"a": nested}
    answer = await api.post("/api/projects/", json={"name": "deep", "settings": nested})
    assert answer.status_code == 422 and "nested deeper" in answer.text
    big = {"k": "v" * 100_000}
    assert (
        await api.post("/api/projects/", json={"name": "big", "settings": big})
    ).status_code == 422
    assert (await api.get("/api/projects/")).status_code == 200


async def test_oversized_review_feedback_is_refused(api: httpx.AsyncClient) -> None:
    project = (await api.post("/api/projects/", json={"name": "p"})).json()
    session = (
        await api.post("/api/sessions/", json={"project_id": project["id"], "user_request": "r"})
    ).json()
    url = f"/api/sessions/{session['id']}/review"
    huge = await api.post(
        url, json={"stage": "planner", "decision": "reject", "feedback": "x" * 3_000_000}
    )
    assert huge.status_code == 413
    long = await api.post(
        url, json={"stage": "planner", "decision": "reject", "feedback": "x" * 30_000}
    )
    assert long.status_code == 422 and "20000" in long.text


async def test_a_sandbox_past_the_operators_ceiling_is_refused(api: httpx.AsyncClient) -> None:
    project = (await api.post("/api/projects/", json={"name": "p"})).json()
    body = {"project_id": project["id"], "user_request": "r"}
    full = await api.post(
        "/api/sessions/", json={**body, "options": {"codex_sandbox": "danger-full-access"}}
    )
    assert full.status_code == 422 and "CODEXFLOW_CODEX_ALLOW_FULL_ACCESS" in full.text
    tighter = await api.post(
        "/api/sessions/", json={**body, "options": {"codex_sandbox": "read-only"}}
    )
    assert tighter.status_code == 201


async def test_a_file_whose_path_became_a_link_is_never_read_or_followed(
    api: httpx.AsyncClient, api_settings: Settings, tmp_path: Path
) -> None:
    """A session may commit a link where an uploaded file was (a branch merged back, say): the
    download refuses it and the delete removes the entry, never what it points to."""
    project = (await api.post("/api/projects/", json={"name": "p"})).json()
    row = (
        await api.post(
            f"/api/files/upload/{project['id']}", files={"file": ("a.txt", b"a", "text/plain")}
        )
    ).json()
    canary = tmp_path / "precious.txt"
    canary.write_text("keep me")
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "a.txt").symlink_to(canary)
    repos = ProjectRepos(api_settings)
    await repos.commit_files(project["id"], "main", "a link", directory=staged)
    assert (await repos.entry(project["id"], "main", "a.txt")).mode == "120000"  # type: ignore[union-attr]
    download = await api.get(f"/api/files/{row['id']}/download")
    assert download.status_code == 404 and "keep me" not in download.text
    assert (await api.delete(f"/api/files/{row['id']}")).status_code == 200
    assert await repos.entry(project["id"], "main", "a.txt") is None
    assert canary.read_text() == "keep me"


async def test_health_starts_codex_at_most_once_a_minute(
    api_settings: Settings, tmp_path: Path
) -> None:
    calls = tmp_path / "codex-calls"
    counting = tmp_path / "codex"
    counting.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\necho 'codex-cli 0.169.0'\n")
    counting.chmod(0o755)
    settings = api_settings.model_copy(update={"codex_bin": str(counting)})
    async with serving(settings) as url, httpx.AsyncClient(base_url=url) as client:
        for _ in range(10):
            assert (await client.get("/api/health")).status_code == 200
    assert len(calls.read_text().splitlines()) <= 2  # `--version` and `login status`, once


async def test_streams_past_the_cap_are_refused(api_settings: Settings) -> None:
    """With CODEXFLOW_MAX_STREAMS open, another SSE stream is a 429 and another WebSocket closes
    with 1013 (try again later); a closed stream gives its slot back."""
    settings = api_settings.model_copy(update={"max_streams": 1})
    engine = make_engine(settings.database_url)
    async with make_sessionmaker(engine)() as db:
        db.add(Project(id="p", name="p", workspace_path="/nowhere"))
        db.add(RunSession(id="s", project_id="p", workflow_id="session-s", user_request="r"))
        await db.commit()
    await engine.dispose()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with serving(settings) as url, httpx.AsyncClient(base_url=url, headers=headers) as client:
        async with client.stream("GET", "/api/sessions/s/events") as first:
            assert first.status_code == 200
            second = await client.get("/api/sessions/s/events")
            assert second.status_code == 429 and second.headers["Retry-After"]
            ws_url = url.replace("http", "ws") + f"/ws/session/s?token={TOKEN}"
            async with websockets.connect(ws_url) as ws:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        for _ in range(50):  # the first stream is closed: its slot comes back
            async with client.stream("GET", "/api/sessions/s/events") as again:
                if again.status_code == 200:
                    break
            await asyncio.sleep(0.1)
        assert again.status_code == 200
