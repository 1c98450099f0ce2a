"""Files: uploads into the workspace (confined, streamed, atomic), listing, download, tree, delete."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile

from api.app import create_app
from api.routes import files as files_route
from config import Settings

LIMIT = 64  # max_upload_bytes where a test asks for a small limit


@pytest.fixture
def api_settings(api_settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The suite's settings; ``parametrize("api_settings", [n], indirect=True)`` sets
    ``max_upload_bytes`` to n."""
    limit = getattr(request, "param", None)
    if limit is None:
        return api_settings
    return api_settings.model_copy(update={"max_upload_bytes": limit})


@pytest.fixture
async def project(api: httpx.AsyncClient) -> tuple[str, Path]:
    created = await api.post("/api/projects/", json={"name": "files"})
    assert created.status_code == 201, created.text
    return created.json()["id"], Path(created.json()["workspace_path"])


async def upload(
    api: httpx.AsyncClient,
    project_id: str,
    content: bytes,
    path: str | None = None,
    filename: str = "notes.txt",
) -> httpx.Response:
    data = {"path": path} if path is not None else {}
    return await api.post(
        f"/api/files/upload/{project_id}",
        files={"file": (filename, content, "text/plain")},
        data=data,
    )


def contents(workspace: Path) -> list[str]:
    """Everything in the workspace but .git, relative and sorted."""
    return sorted(
        p.relative_to(workspace).as_posix()
        for p in workspace.rglob("*")
        if ".git" not in p.relative_to(workspace).parts
    )


def git_snapshot(workspace: Path) -> dict[str, bytes]:
    """Every file of the workspace's git directory (outside the workspace)."""
    git_dir = workspace.parent.parent / "repos" / f"{workspace.name}.git"
    assert git_dir.is_dir()
    return {
        p.relative_to(git_dir).as_posix(): p.read_bytes() for p in git_dir.rglob("*") if p.is_file()
    }


async def rows(api: httpx.AsyncClient, project_id: str) -> list[dict]:
    listing = await api.get(f"/api/files/project/{project_id}")
    assert listing.status_code == 200, listing.text
    return listing.json()


async def test_upload_reupload_change_list_download_tree_delete(
    api: httpx.AsyncClient, project: tuple[str, Path]
) -> None:
    project_id, workspace = project
    first = await upload(api, project_id, b"hello\n", path="docs/notes.txt")
    assert first.status_code == 201, first.text
    row = first.json()
    target = workspace / "docs" / "notes.txt"
    assert target.read_bytes() == b"hello\n"
    assert row["content_hash"] == hashlib.sha256(b"hello\n").hexdigest()
    assert row["file_path"] == "docs/notes.txt" and row["filename"] == "notes.txt"
    assert row["file_size"] == 6 and row["file_type"] == "text/plain"
    assert row["metadata"] == {"original_filename": "notes.txt"}

    same = await upload(api, project_id, b"hello\n", path="docs/notes.txt")
    assert same.status_code == 200 and same.json() == row

    changed = await upload(api, project_id, b"hello, world\n", path="docs/notes.txt")
    assert changed.status_code == 200, changed.text
    assert changed.json()["id"] == row["id"]
    assert changed.json()["content_hash"] == hashlib.sha256(b"hello, world\n").hexdigest()
    assert changed.json()["file_size"] == 13
    assert target.read_bytes() == b"hello, world\n"

    # The path defaults to the uploaded file's name.
    other = await upload(api, project_id, b"x = 1\n", filename="main.py")
    assert other.status_code == 201 and (workspace / "main.py").read_bytes() == b"x = 1\n"

    listing = await rows(api, project_id)
    assert [f["file_path"] for f in listing] == ["main.py", "docs/notes.txt"]  # newest first

    download = await api.get(f"/api/files/{row['id']}/download")
    assert download.status_code == 200 and download.content == b"hello, world\n"
    assert download.headers["content-type"].startswith("text/plain")
    assert 'filename="notes.txt"' in download.headers["content-disposition"]

    tree = await api.get(f"/api/files/tree/{project_id}")
    assert tree.status_code == 200, tree.text
    assert tree.json()["truncated"] is False
    assert tree.json()["entries"] == [
        {"path": "docs", "is_dir": True, "size": None},
        {"path": "docs/notes.txt", "is_dir": False, "size": 13},
        {"path": "main.py", "is_dir": False, "size": 6},
    ]

    deleted = await api.delete(f"/api/files/{row['id']}")
    assert deleted.status_code == 200 and deleted.json() == {"status": "deleted", "id": row["id"]}
    assert not target.exists()
    assert [f["file_path"] for f in await rows(api, project_id)] == ["main.py"]
    assert (await api.get(f"/api/files/{row['id']}/download")).status_code == 404
    assert (await api.delete(f"/api/files/{row['id']}")).status_code == 404
    assert contents(workspace) == ["docs", "main.py"]


async def test_reupload_restores_a_file_edited_in_the_workspace(
    api: httpx.AsyncClient, project: tuple[str, Path]
) -> None:
    project_id, workspace = project
    row = (await upload(api, project_id, b"v1")).json()
    (workspace / "notes.txt").write_bytes(b"edited by an agent")
    again = await upload(api, project_id, b"v1")
    assert again.status_code == 200 and again.json() == row
    assert (workspace / "notes.txt").read_bytes() == b"v1"


@pytest.mark.parametrize(
    ("path", "filename"),
    [
        ("../x", "notes.txt"),
        ("docs/../../x", "notes.txt"),
        ("/etc/x", "notes.txt"),
        ("~/x", "notes.txt"),
        (".git/config", "notes.txt"),
        (".git/hooks/pre-commit", "notes.txt"),
        ("src/.git/config", "notes.txt"),
        (".GIT/config", "notes.txt"),
        ("..\\x", "notes.txt"),
        (".", "notes.txt"),
        ("docs/", "notes.txt"),
        (None, "../escape.txt"),
        (None, ".git"),
    ],
)
async def test_bad_paths_are_422_and_write_nothing(
    api: httpx.AsyncClient, project: tuple[str, Path], path: str | None, filename: str
) -> None:
    project_id, workspace = project
    before = git_snapshot(workspace)
    answer = await upload(api, project_id, b"payload", path=path, filename=filename)
    assert answer.status_code == 422, answer.text
    assert "not allowed" in answer.json()["detail"]
    assert contents(workspace) == []
    assert git_snapshot(workspace) == before
    assert not (workspace.parent / "x").exists() and not (workspace.parent / "escape.txt").exists()
    assert await rows(api, project_id) == []


async def test_a_symlink_out_of_the_workspace_is_refused(
    api: httpx.AsyncClient, project: tuple[str, Path], tmp_path: Path
) -> None:
    project_id, workspace = project
    outside = tmp_path / "outside"
    outside.mkdir()
    (workspace / "link").symlink_to(outside, target_is_directory=True)
    (workspace / "git-alias").symlink_to(workspace / ".git", target_is_directory=True)
    before = git_snapshot(workspace)

    for path in ("link/x.txt", "link/deeper/x.txt", "git-alias/config"):
        answer = await upload(api, project_id, b"payload", path=path)
        assert answer.status_code == 422, (path, answer.text)
        assert "not allowed" in answer.json()["detail"]

    assert list(outside.iterdir()) == []
    assert git_snapshot(workspace) == before
    assert contents(workspace) == ["git-alias", "link"]
    assert await rows(api, project_id) == []


async def test_a_directory_or_a_file_used_as_one_is_422(
    api: httpx.AsyncClient, project: tuple[str, Path]
) -> None:
    project_id, workspace = project
    assert (await upload(api, project_id, b"a", path="src/a.py")).status_code == 201
    assert (await upload(api, project_id, b"b", path="src")).status_code == 422
    assert (await upload(api, project_id, b"c", path="src/a.py/c.py")).status_code == 422
    assert contents(workspace) == ["src", "src/a.py"]
    assert len(await rows(api, project_id)) == 1


@pytest.mark.parametrize("api_settings", [LIMIT], indirect=True)
async def test_an_oversized_upload_is_413_and_leaves_nothing(
    api: httpx.AsyncClient, project: tuple[str, Path]
) -> None:
    project_id, workspace = project
    answer = await upload(api, project_id, b"x" * (LIMIT + 1), path="new/dir/big.bin")
    assert answer.status_code == 413, answer.text
    assert str(LIMIT) in answer.json()["detail"]
    assert contents(workspace) == []  # no file, no temporary file, no directories
    assert await rows(api, project_id) == []

    # An existing file is left as it was.
    assert (await upload(api, project_id, b"x" * LIMIT, path="big.bin")).status_code == 201
    assert (await upload(api, project_id, b"y" * (LIMIT + 1), path="big.bin")).status_code == 413
    assert (workspace / "big.bin").read_bytes() == b"x" * LIMIT
    assert contents(workspace) == ["big.bin"]
    [row] = await rows(api, project_id)
    assert row["content_hash"] == hashlib.sha256(b"x" * LIMIT).hexdigest()


@pytest.mark.parametrize("api_settings", [LIMIT], indirect=True)
async def test_the_limit_holds_when_the_upload_size_is_unknown(
    api: httpx.AsyncClient, project: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the early check on the declared size, the streamed byte count still stops it."""
    original = UploadFile.__init__

    def unsized(self: UploadFile, file: Any, **kwargs: Any) -> None:
        original(self, file, **{**kwargs, "size": None})

    monkeypatch.setattr(UploadFile, "__init__", unsized)
    answer = await upload(api, project_id := project[0], b"x" * (LIMIT + 1), path="d/big.bin")
    assert answer.status_code == 413, answer.text
    assert contents(project[1]) == []
    assert await rows(api, project_id) == []


def test_the_copy_stops_reading_past_the_limit(tmp_path: Path) -> None:
    chunk = files_route.CHUNK_BYTES
    source = io.BytesIO(b"x" * (3 * chunk))
    with (tmp_path / "out").open("wb") as out, pytest.raises(files_route._TooLarge):
        files_route._copy(source, out, chunk + 1)
    assert source.tell() == 2 * chunk  # it stopped reading: not the whole upload
    assert (tmp_path / "out").stat().st_size == chunk


async def test_a_failed_move_leaves_no_row_and_no_file(
    api: httpx.AsyncClient, project: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    project_id, workspace = project
    assert (await upload(api, project_id, b"v1", path="kept.txt")).status_code == 201
    [kept] = await rows(api, project_id)

    def fail(staged: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(files_route, "_place", fail)
    with pytest.raises(OSError, match="disk on fire"):
        await upload(api, project_id, b"new", path="new.txt")
    with pytest.raises(OSError, match="disk on fire"):
        await upload(api, project_id, b"v2", path="kept.txt")
    monkeypatch.undo()

    assert contents(workspace) == ["kept.txt"]
    assert (workspace / "kept.txt").read_bytes() == b"v1"
    assert await rows(api, project_id) == [kept]  # the new row deleted, the updated one restored


async def test_a_failed_commit_leaves_no_file_and_keeps_a_deleted_one(
    api: httpx.AsyncClient, project: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    project_id, workspace = project
    row = (await upload(api, project_id, b"keep me", path="keep.txt")).json()

    async def fail(self: AsyncSession) -> None:
        raise OperationalError("COMMIT", {}, Exception("database gone"))

    monkeypatch.setattr(AsyncSession, "commit", fail)
    assert (await upload(api, project_id, b"new", path="sub/new.txt")).status_code == 503
    assert (await upload(api, project_id, b"changed", path="keep.txt")).status_code == 503
    assert (await api.delete(f"/api/files/{row['id']}")).status_code == 503
    monkeypatch.undo()

    assert contents(workspace) == ["keep.txt"]
    assert (workspace / "keep.txt").read_bytes() == b"keep me"
    assert await rows(api, project_id) == [row]


async def test_the_tree_is_bounded(
    api: httpx.AsyncClient, project: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    project_id, workspace = project
    for name in "abcde":
        (workspace / name).write_text(name)
    monkeypatch.setattr(files_route, "MAX_TREE_ENTRIES", 3)
    tree = (await api.get(f"/api/files/tree/{project_id}")).json()
    assert tree["truncated"] is True
    assert [e["path"] for e in tree["entries"]] == ["a", "b", "c"]


async def test_unknown_projects_and_files_are_404(
    api: httpx.AsyncClient, project: tuple[str, Path]
) -> None:
    project_id, workspace = project
    assert (await upload(api, "nope", b"x")).status_code == 404
    assert (await api.get("/api/files/project/nope")).status_code == 404
    assert (await api.get("/api/files/tree/nope")).status_code == 404
    assert (await api.get("/api/files/nope/download")).status_code == 404
    assert (await api.delete("/api/files/nope")).status_code == 404

    row = (await upload(api, project_id, b"x")).json()
    (workspace / "notes.txt").unlink()  # the row outlives its file
    missing = await api.get(f"/api/files/{row['id']}/download")
    assert missing.status_code == 404 and "missing" in missing.json()["detail"]

    assert (await api.delete(f"/api/projects/{project_id}")).status_code == 200
    assert (await upload(api, project_id, b"x")).status_code == 404
    assert (await api.get(f"/api/files/project/{project_id}")).status_code == 404
    assert (await api.get(f"/api/files/tree/{project_id}")).status_code == 404
    assert (await api.get(f"/api/files/{row['id']}/download")).status_code == 404
    assert contents(workspace) == []


async def test_a_missing_file_field_is_422(
    api: httpx.AsyncClient, project: tuple[str, Path]
) -> None:
    project_id, workspace = project
    answer = await api.post(f"/api/files/upload/{project_id}", data={"path": "a.txt"})
    assert answer.status_code == 422
    assert contents(workspace) == []


async def test_every_files_route_needs_the_token(
    api_settings: Settings, project: tuple[str, Path]
) -> None:
    project_id, workspace = project
    app = create_app(api_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as anonymous:
            answers = [
                await upload(anonymous, project_id, b"x"),
                await anonymous.get(f"/api/files/project/{project_id}"),
                await anonymous.get(f"/api/files/tree/{project_id}"),
                await anonymous.get("/api/files/some-id/download"),
                await anonymous.delete("/api/files/some-id"),
            ]
    assert [a.status_code for a in answers] == [401] * 5
    assert contents(workspace) == []


def test_openapi_documents_the_errors(api_settings: Settings) -> None:
    paths = create_app(api_settings).openapi()["paths"]
    upload_responses = paths["/api/files/upload/{project_id}"]["post"]["responses"]
    assert {"200", "201", "404", "413", "422"} <= upload_responses.keys()
    assert "404" in paths["/api/files/{file_id}/download"]["get"]["responses"]
    assert "404" in paths["/api/files/{file_id}"]["delete"]["responses"]
    assert "404" in paths["/api/files/tree/{project_id}"]["get"]["responses"]
