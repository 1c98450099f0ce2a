"""Projects, health and authentication through the real app."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from api.app import create_app
from config import Settings
from tests.helpers.api import TOKEN


async def test_create_get_list_and_soft_delete(api: httpx.AsyncClient, settings: Settings) -> None:
    created = await api.post("/api/projects/", json={"name": "calc", "description": "A calculator"})
    assert created.status_code == 201, created.text
    project = created.json()
    repository = Path(project["workspace_path"])  # the central repository
    assert repository == settings.repos_path() / f"{project['id']}.git"
    assert (repository / "HEAD").is_file()
    assert project["status"] == "ready" and project["default_branch"] == "main"
    assert project["repository"] is None and project["error"] is None
    assert project["is_active"] and project["settings"] == {}

    assert (await api.get(f"/api/projects/{project['id']}")).json()["name"] == "calc"
    await api.post("/api/projects/", json={"name": "other"})
    listing = (await api.get("/api/projects/", params={"limit": 1})).json()
    assert listing["total"] == 2 and len(listing["projects"]) == 1
    named = (await api.get("/api/projects/", params={"name": "calc"})).json()
    assert [p["id"] for p in named["projects"]] == [project["id"]]

    deleted = await api.delete(f"/api/projects/{project['id']}")
    assert deleted.json() == {"status": "deleted", "id": project["id"], "project_id": project["id"]}
    assert (await api.get(f"/api/projects/{project['id']}")).status_code == 404
    assert (await api.get("/api/projects/")).json()["total"] == 1
    everything = (await api.get("/api/projects/", params={"active_only": False})).json()
    assert everything["total"] == 2
    assert repository.exists()  # a soft delete keeps the repository


@pytest.mark.parametrize(
    "body",
    [{}, {"name": ""}, {"name": "x" * 256}, {"name": 5}, {"name": "ok", "settings": "no"}],
)
async def test_bad_project_bodies_are_422_and_write_nothing(
    api: httpx.AsyncClient, settings: Settings, body: dict
) -> None:
    answer = await api.post("/api/projects/", json=body)
    assert answer.status_code == 422 and answer.json()["detail"]
    assert (await api.get("/api/projects/")).json()["total"] == 0
    root = settings.repos_path()
    assert not root.exists() or not any(root.iterdir())


async def test_pagination_bounds_and_unknown_ids(api: httpx.AsyncClient) -> None:
    assert (await api.get("/api/projects/", params={"limit": 0})).status_code == 422
    assert (await api.get("/api/projects/", params={"skip": -1})).status_code == 422
    assert (await api.get("/api/projects/nope")).status_code == 404
    assert (await api.delete("/api/projects/nope")).status_code == 404


async def test_every_route_but_health_needs_the_token(api_settings: Settings) -> None:
    app = create_app(api_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as anonymous:
            protected = [
                (path, method.upper())
                for path, methods in app.openapi()["paths"].items()
                for method in methods
                if path != "/api/health"
            ]
            assert protected
            for path, method in protected:
                url = path.replace("{", "").replace("}", "")
                answer = await anonymous.request(method, url)
                assert answer.status_code == 401, (method, path, answer.status_code)
                assert answer.headers["www-authenticate"] == "Bearer"
            wrong = await anonymous.get("/api/projects/", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            assert (await anonymous.get("/api/health")).status_code == 200
            right = await anonymous.get(
                "/api/projects/", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert right.status_code == 200


async def test_health_reports_dependencies(api: httpx.AsyncClient, api_settings: Settings) -> None:
    body = (await api.get("/api/health")).json()
    assert body["database"] == {"ok": True, "detail": None}
    # Nothing listens at the test settings' Temporal address.
    assert body["temporal"]["ok"] is False and body["status"] == "degraded"
    # The fake codex answers --version and `login status` like the real one.
    assert body["codex"]["version"].startswith("codex-cli") and body["codex"]["auth"] == "logged in"
    assert TOKEN not in str(body)


async def test_the_app_refuses_an_out_of_date_database(settings: Settings, tmp_path: Path) -> None:
    empty = settings.model_copy(update={"database_url": f"sqlite+aiosqlite:///{tmp_path}/empty.db"})
    app = create_app(empty)
    with pytest.raises(Exception, match="codexflow db upgrade"):
        async with app.router.lifespan_context(app):
            pass


def test_openapi_documents_every_operation(api_settings: Settings) -> None:
    """Each operation has a summary, a typed success response (or a declared stream/file body)
    and its error answers, so /docs is a usable reference."""
    schema = create_app(api_settings).openapi()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            assert operation.get("summary"), where
            success = next(v for k, v in operation["responses"].items() if k.startswith("2"))
            content = success.get("content", {})
            assert content, f"{where}: success response has no documented body"
            if "application/json" in content:
                assert content["application/json"].get("schema"), where
            if "{" in path:
                assert "404" in operation["responses"], f"{where}: 404 not documented"
            if "requestBody" in operation:
                assert "422" in operation["responses"], f"{where}: 422 not documented"
