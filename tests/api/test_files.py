"""Files: uploads committed onto a project's default branch (checked paths, streamed, all or
nothing), listing, download, tree, delete, and archives unpacked onto the branch."""

from __future__ import annotations

import asyncio
import hashlib
import io
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile

from api import services
from api.app import create_app
from api.routes import files as files_route
from config import Settings
from core.repos import ProjectRepos
from tests.helpers.api import client_of
from tests.helpers.archives import tar_gz, zipped

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
def repos(api_settings: Settings) -> ProjectRepos:
    return ProjectRepos(api_settings)


@pytest.fixture
async def project(api: httpx.AsyncClient) -> str:
    created = await api.post("/api/projects/", json={"name": "files"})
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "ready" and created.json()["default_branch"] == "main"
    return str(created.json()["id"])


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


async def branch(repos: ProjectRepos, project_id: str) -> dict[str, bytes]:
    """Every file on the project's default branch and its bytes (a link: its target)."""
    entries = await repos.tree(project_id, "main")
    return {e.path: await repos.read(project_id, "main", e.path) for e in entries if not e.is_dir}


async def head(repos: ProjectRepos, project_id: str) -> str:
    return await repos.resolve(project_id, "main")


async def rows(api: httpx.AsyncClient, project_id: str) -> list[dict]:
    listing = await api.get(f"/api/files/project/{project_id}")
    assert listing.status_code == 200, listing.text
    return listing.json()


async def commit_link(repos: ProjectRepos, project_id: str, path: str, target: str) -> None:
    """A symbolic link committed onto the default branch, as an imported repository may have."""
    central = repos.central(project_id)
    blob = (await central.run("hash-object", "-w", "--stdin", stdin=target.encode())).strip()
    index = central.git_dir / "link-index"
    await central.run("read-tree", "main", index=index)
    await central.run("update-index", "--add", "--cacheinfo", f"120000,{blob},{path}", index=index)
    tree = (await central.run("write-tree", index=index)).strip()
    commit = (await central.run("commit-tree", tree, "-p", "main", "-m", "link")).strip()
    await central.run("update-ref", "refs/heads/main", commit)
    index.unlink()


async def test_upload_reupload_change_list_download_tree_delete(
    api: httpx.AsyncClient, project: str, repos: ProjectRepos
) -> None:
    first = await upload(api, project, b"hello\n", path="docs/notes.txt")
    assert first.status_code == 201, first.text
    row = first.json()
    assert await branch(repos, project) == {"docs/notes.txt": b"hello\n"}
    assert row["content_hash"] == hashlib.sha256(b"hello\n").hexdigest()
    assert row["file_path"] == "docs/notes.txt" and row["filename"] == "notes.txt"
    assert row["file_size"] == 6 and row["file_type"] == "text/plain"
    assert row["metadata"] == {"original_filename": "notes.txt"}
    log = await repos.central(project).run("log", "--format=%s", "main")
    assert log.splitlines() == ["codexflow: upload docs/notes.txt", "codexflow: project created"]

    before = await head(repos, project)
    same = await upload(api, project, b"hello\n", path="docs/notes.txt")
    assert same.status_code == 200 and same.json() == row
    assert await head(repos, project) == before  # the same bytes: no empty commit

    changed = await upload(api, project, b"hello, world\n", path="docs/notes.txt")
    assert changed.status_code == 200, changed.text
    assert changed.json()["id"] == row["id"]
    assert changed.json()["content_hash"] == hashlib.sha256(b"hello, world\n").hexdigest()
    assert changed.json()["file_size"] == 13
    assert (await branch(repos, project))["docs/notes.txt"] == b"hello, world\n"

    # The path defaults to the uploaded file's name.
    other = await upload(api, project, b"x = 1\n", filename="main.py")
    assert other.status_code == 201
    assert (await branch(repos, project))["main.py"] == b"x = 1\n"

    listing = await rows(api, project)
    assert [f["file_path"] for f in listing] == ["main.py", "docs/notes.txt"]  # newest first

    download = await api.get(f"/api/files/{row['id']}/download")
    assert download.status_code == 200 and download.content == b"hello, world\n"
    assert download.headers["content-type"].startswith("text/plain")
    assert 'filename="notes.txt"' in download.headers["content-disposition"]

    tree = await api.get(f"/api/files/tree/{project}")
    assert tree.status_code == 200, tree.text
    assert tree.json()["truncated"] is False and tree.json()["ref"] == "main"
    assert tree.json()["entries"] == [
        {"path": "docs", "is_dir": True, "size": None},
        {"path": "docs/notes.txt", "is_dir": False, "size": 13},
        {"path": "main.py", "is_dir": False, "size": 6},
    ]

    deleted = await api.delete(f"/api/files/{row['id']}")
    assert deleted.status_code == 200 and deleted.json() == {
        "status": "deleted",
        "id": row["id"],
        "file_id": row["id"],
    }
    assert await branch(repos, project) == {"main.py": b"x = 1\n"}
    assert [f["file_path"] for f in await rows(api, project)] == ["main.py"]
    assert (await api.get(f"/api/files/{row['id']}/download")).status_code == 404
    assert (await api.delete(f"/api/files/{row['id']}")).status_code == 404


async def test_concurrent_uploads_all_land(
    api: httpx.AsyncClient, project: str, repos: ProjectRepos
) -> None:
    """Twenty uploads at once: each one's commit is built on the others', none is lost."""
    answers = await asyncio.gather(
        *(upload(api, project, f"{n}\n".encode(), path=f"f{n:02}.txt") for n in range(20))
    )
    assert [a.status_code for a in answers] == [201] * 20
    assert await branch(repos, project) == {f"f{n:02}.txt": f"{n}\n".encode() for n in range(20)}
    assert len(await rows(api, project)) == 20


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
    api: httpx.AsyncClient, project: str, repos: ProjectRepos, path: str | None, filename: str
) -> None:
    before = await head(repos, project)
    answer = await upload(api, project, b"payload", path=path, filename=filename)
    assert answer.status_code == 422, answer.text
    assert "not allowed" in answer.json()["detail"]
    assert await head(repos, project) == before
    assert await branch(repos, project) == {}
    assert await rows(api, project) == []


async def test_a_link_on_the_branch_is_neither_followed_nor_downloaded(
    api: httpx.AsyncClient, project: str, repos: ProjectRepos
) -> None:
    await commit_link(repos, project, "link", "/etc")
    before = await head(repos, project)
    for path in ("link/passwd", "link/deeper/x.txt"):
        answer = await upload(api, project, b"payload", path=path)
        assert answer.status_code == 422, (path, answer.text)
        assert "not a directory" in answer.json()["detail"]
    assert await head(repos, project) == before

    # Replacing the link itself with a file is an ordinary upload; a file's row whose path
    # became a link downloads nothing.
    row = (await upload(api, project, b"now a file", path="link")).json()
    assert (await branch(repos, project))["link"] == b"now a file"
    await commit_link(repos, project, "link", "/etc/passwd")
    refused = await api.get(f"/api/files/{row['id']}/download")
    assert refused.status_code == 404 and "not a file" in refused.json()["detail"]


async def test_a_directory_or_a_file_used_as_one_is_422(
    api: httpx.AsyncClient, project: str, repos: ProjectRepos
) -> None:
    assert (await upload(api, project, b"a", path="src/a.py")).status_code == 201
    assert (await upload(api, project, b"b", path="src")).status_code == 422
    assert (await upload(api, project, b"c", path="src/a.py/c.py")).status_code == 422
    assert await branch(repos, project) == {"src/a.py": b"a"}
    assert len(await rows(api, project)) == 1


@pytest.mark.parametrize("api_settings", [LIMIT], indirect=True)
async def test_an_oversized_upload_is_413_and_leaves_nothing(
    api: httpx.AsyncClient, project: str, repos: ProjectRepos
) -> None:
    before = await head(repos, project)
    answer = await upload(api, project, b"x" * (LIMIT + 1), path="new/dir/big.bin")
    assert answer.status_code == 413, answer.text
    assert str(LIMIT) in answer.json()["detail"]
    assert await head(repos, project) == before
    assert await rows(api, project) == []

    # An existing file is left as it was.
    assert (await upload(api, project, b"x" * LIMIT, path="big.bin")).status_code == 201
    assert (await upload(api, project, b"y" * (LIMIT + 1), path="big.bin")).status_code == 413
    assert await branch(repos, project) == {"big.bin": b"x" * LIMIT}
    [row] = await rows(api, project)
    assert row["content_hash"] == hashlib.sha256(b"x" * LIMIT).hexdigest()


@pytest.mark.parametrize("api_settings", [LIMIT], indirect=True)
async def test_the_limit_holds_when_the_upload_size_is_unknown(
    api: httpx.AsyncClient, project: str, repos: ProjectRepos, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the early check on the declared size, the streamed byte count still stops it."""
    original = UploadFile.__init__

    def unsized(self: UploadFile, file: Any, **kwargs: Any) -> None:
        original(self, file, **{**kwargs, "size": None})

    monkeypatch.setattr(UploadFile, "__init__", unsized)
    answer = await upload(api, project, b"x" * (LIMIT + 1), path="d/big.bin")
    assert answer.status_code == 413, answer.text
    assert await branch(repos, project) == {}
    assert await rows(api, project) == []


async def test_receiving_stops_reading_past_the_limit_and_leaves_no_file(tmp_path: Path) -> None:
    chunk = services.CHUNK_BYTES
    source = io.BytesIO(b"x" * (3 * chunk))
    spooled = list(Path(tempfile.gettempdir()).glob("codexflow-upload-*"))
    with pytest.raises(services.UploadTooLarge):
        await services.received_upload(UploadFile(source), chunk + 1)
    assert source.tell() == 2 * chunk  # it stopped reading: not the whole upload
    assert list(Path(tempfile.gettempdir()).glob("codexflow-upload-*")) == spooled

    received = await services.received_upload(UploadFile(io.BytesIO(b"abc")), 3)
    assert received.size == 3 and received.sha256 == hashlib.sha256(b"abc").hexdigest()
    assert received.path.read_bytes() == b"abc"
    received.path.unlink()


async def test_a_failed_commit_of_the_file_leaves_no_row(
    api: httpx.AsyncClient, project: str, repos: ProjectRepos, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await upload(api, project, b"v1", path="kept.txt")).status_code == 201
    [kept] = await rows(api, project)

    async def fail(*args: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(files_route, "_place", fail)
    with pytest.raises(OSError, match="disk on fire"):
        await upload(api, project, b"new", path="new.txt")
    with pytest.raises(OSError, match="disk on fire"):
        await upload(api, project, b"v2", path="kept.txt")
    monkeypatch.undo()

    assert await branch(repos, project) == {"kept.txt": b"v1"}
    assert await rows(api, project) == [kept]  # the new row deleted, the updated one restored


async def test_a_failed_database_commit_leaves_the_branch_and_keeps_a_deleted_file(
    api: httpx.AsyncClient, project: str, repos: ProjectRepos, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = (await upload(api, project, b"keep me", path="keep.txt")).json()
    before = await head(repos, project)

    async def fail(self: AsyncSession) -> None:
        raise OperationalError("COMMIT", {}, Exception("database gone"))

    monkeypatch.setattr(AsyncSession, "commit", fail)
    assert (await upload(api, project, b"new", path="sub/new.txt")).status_code == 503
    assert (await upload(api, project, b"changed", path="keep.txt")).status_code == 503
    assert (await api.delete(f"/api/files/{row['id']}")).status_code == 503
    monkeypatch.undo()

    assert await head(repos, project) == before
    assert await branch(repos, project) == {"keep.txt": b"keep me"}
    assert await rows(api, project) == [row]


async def test_the_tree_is_bounded(
    api: httpx.AsyncClient, project: str, repos: ProjectRepos, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in "abcde":
        assert (await upload(api, project, name.encode(), path=name)).status_code == 201
    monkeypatch.setattr(files_route, "MAX_TREE_ENTRIES", 3)
    tree = (await api.get(f"/api/files/tree/{project}")).json()
    assert tree["truncated"] is True
    assert [e["path"] for e in tree["entries"]] == ["a", "b", "c"]


async def test_unknown_projects_and_files_are_404(
    api: httpx.AsyncClient, project: str, repos: ProjectRepos
) -> None:
    assert (await upload(api, "nope", b"x")).status_code == 404
    assert (await api.get("/api/files/project/nope")).status_code == 404
    assert (await api.get("/api/files/tree/nope")).status_code == 404
    assert (await api.get("/api/files/nope/download")).status_code == 404
    assert (await api.delete("/api/files/nope")).status_code == 404

    row = (await upload(api, project, b"x")).json()
    await repos.commit_files(project, "main", "gone", remove=("notes.txt",))  # outlives its file
    missing = await api.get(f"/api/files/{row['id']}/download")
    assert missing.status_code == 404 and "not a file on main" in missing.json()["detail"]

    assert (await api.delete(f"/api/projects/{project}")).status_code == 200
    assert (await upload(api, project, b"x")).status_code == 404
    assert (await api.get(f"/api/files/project/{project}")).status_code == 404
    assert (await api.get(f"/api/files/tree/{project}")).status_code == 404
    assert (await api.get(f"/api/files/{row['id']}/download")).status_code == 404


async def test_a_missing_file_field_is_422(
    api: httpx.AsyncClient, project: str, repos: ProjectRepos
) -> None:
    before = await head(repos, project)
    answer = await api.post(f"/api/files/upload/{project}", data={"path": "a.txt"})
    assert answer.status_code == 422
    assert await head(repos, project) == before


async def test_an_archive_unpacks_onto_the_branch(
    api: httpx.AsyncClient, project: str, repos: ProjectRepos
) -> None:
    assert (await upload(api, project, b"old", path="README.md")).status_code == 201
    archive = zipped({"calc-main/README.md": b"# calc\n", "calc-main/src/calc.py": b"x = 1\n"})
    answer = await api.post(
        f"/api/files/upload/{project}",
        params={"extract": "true"},
        files={"file": ("calc.zip", archive, "application/zip")},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["files"] == 2 and answer.json()["commit"] == await head(repos, project)
    # One top directory, as downloaded archives have, is dropped; files are added over the branch.
    assert await branch(repos, project) == {"README.md": b"# calc\n", "src/calc.py": b"x = 1\n"}


@pytest.mark.parametrize(
    ("archive", "reason"),
    [
        (tar_gz({"../escape.txt": b"x"}), "not allowed"),
        (tar_gz({"/etc/cron.d/x": b"x"}), "not allowed"),
        (tar_gz({"a/.git/hooks/post-checkout": b"#!/bin/sh\n"}), "not allowed"),
        (tar_gz({"a.txt": b"x"}, links={"out": "/etc/passwd"}), "out of"),
        (tar_gz({"a.txt": b"x"}, links={"up": "../../.."}), "out of"),
        (tar_gz({f"f{n}": b"" for n in range(40)}), "entries"),
        (tar_gz({"bomb.txt": b"\0" * 4096}), "bytes"),
        (b"not an archive at all", "not a .tar.gz"),
    ],
    ids=["dotdot", "absolute", "git-dir", "link-out", "link-up", "too-many", "bomb", "garbage"],
)
async def test_a_hostile_archive_is_422_and_changes_nothing(
    api_settings: Settings, archive: bytes, reason: str, tmp_path: Path
) -> None:
    settings = api_settings.model_copy(
        update={"max_archive_entries": 30, "max_archive_bytes": 1024}
    )
    async with client_of(settings) as api:
        project = (await api.post("/api/projects/", json={"name": "a"})).json()["id"]
        repos = ProjectRepos(settings)
        before = await head(repos, project)
        answer = await api.post(
            f"/api/files/upload/{project}",
            params={"extract": "true"},
            files={"file": ("x.tar.gz", archive, "application/gzip")},
        )
        assert answer.status_code == 422, answer.text
        assert reason in answer.json()["detail"]
        assert await head(repos, project) == before
        # Nothing written outside either.
        assert not (settings.workspace_root().parent / "escape.txt").exists()
        created = await api.post(
            "/api/projects/", data={"name": "b"}, files={"archive": ("x.tar.gz", archive)}
        )
        assert created.status_code == 422, created.text
        listed = (await api.get("/api/projects/", params={"name": "b"})).json()
        assert listed["total"] == 0
        assert sorted(p.name for p in settings.repos_path().iterdir()) == [f"{project}.git"]


async def test_every_files_route_needs_the_token(
    api_settings: Settings, project: str, repos: ProjectRepos
) -> None:
    before = await head(repos, project)
    app = create_app(api_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as anonymous:
            answers = [
                await upload(anonymous, project, b"x"),
                await anonymous.get(f"/api/files/project/{project}"),
                await anonymous.get(f"/api/files/tree/{project}"),
                await anonymous.get("/api/files/some-id/download"),
                await anonymous.delete("/api/files/some-id"),
            ]
    assert [a.status_code for a in answers] == [401] * 5
    assert await head(repos, project) == before


def test_openapi_documents_the_errors(api_settings: Settings) -> None:
    paths = create_app(api_settings).openapi()["paths"]
    upload_responses = paths["/api/files/upload/{project_id}"]["post"]["responses"]
    assert {"200", "201", "404", "409", "413", "422"} <= upload_responses.keys()
    assert "404" in paths["/api/files/{file_id}/download"]["get"]["responses"]
    assert "404" in paths["/api/files/{file_id}"]["delete"]["responses"]
    assert "404" in paths["/api/files/tree/{project_id}"]["get"]["responses"]
