"""Files: uploads onto a project's default branch, listing, download, delete, and the tree.

A project's files live in its central repository: an upload is a commit on the default branch (so
every later session sees it), made without a checkout through ``core.repos`` (plumbing commands, a
compare-and-swap ref update: two uploads at once never lose each other). Paths are checked by
``core.confined`` (no ``..``, no absolute path, nothing inside ``.git``). An upload streams to a
private temporary file (counted, hashed) before anything is written: a failed upload leaves
neither a commit nor a row.
"""

from __future__ import annotations

import logging
import mimetypes
from pathlib import Path, PurePosixPath
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, File, Form, HTTPException, Query, Response, UploadFile, status
from fastapi.responses import Response as RawResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from api.deps import DbDep, ProjectDep, SettingsDep, StateDep
from api.schemas import ArchiveUnpacked, FileDeleted, FileResponse, FileTree, TreeEntry
from api.services import (
    Received,
    UploadTooLarge,
    project_ready_or_409,
    received_upload,
    unpack_onto_default_branch,
)
from core.confined import PathNotAllowed, split_path
from core.repos import ProjectRepos
from store.models import Project, ProjectFile, utcnow

router = APIRouter(prefix="/api/files", tags=["Files"])

log = logging.getLogger("codexflow.api.files")

CHUNK_BYTES = 1024 * 1024
MAX_TREE_ENTRIES = 5000
_FILE_MODES = ("100644", "100755")

Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {404: {"description": "no such project or file"}}
BAD_PATH: Responses = {
    422: {"description": "a path outside the workspace, inside .git or empty; or a bad form"}
}
TOO_LARGE: Responses = {413: {"description": "the upload exceeds CODEXFLOW_MAX_UPLOAD_BYTES"}}
CONFLICT: Responses = {
    409: {"description": "the project is not ready, or another upload created the path"}
}
CREATED: Responses = {201: {"model": FileResponse, "description": "a new file"}}
DOWNLOAD: Responses = {
    200: {"content": {"application/octet-stream": {}}, "description": "the file's bytes"}
}


def _unprocessable(message: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, message)


def canonical_path(relative: str) -> str:
    """The '/'-separated path an upload names; PathNotAllowed for the root itself, a path outside
    it (``..``, absolute), a directory name or anything inside ``.git``."""
    if relative.replace("\\", "/").endswith("/"):
        raise PathNotAllowed(f"the path names a directory, not a file: {relative!r}")
    parts = split_path(relative, allow_git=False)
    if not parts:
        raise PathNotAllowed("the path names the workspace itself")
    return "/".join(parts)


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"the upload exceeds the limit of {limit} bytes (CODEXFLOW_MAX_UPLOAD_BYTES)",
    )


async def _conflicting_entry(repos: ProjectRepos, project: Project, file_path: str) -> str | None:
    """Why ``file_path`` cannot be a file on the default branch (a directory is there, or a
    file where a directory of it would be); None when it can."""
    branch = project.default_branch
    entry = await repos.entry(project.id, branch, file_path)
    if entry is not None and entry.is_dir:
        return f"{file_path!r} is a directory"
    parts = PurePosixPath(file_path).parts
    for depth in range(1, len(parts)):
        parent = "/".join(parts[:depth])
        found = await repos.entry(project.id, branch, parent)
        if found is not None and not found.is_dir:
            return f"a parent of the path is not a directory: {parent}"
    return None


@router.post(
    "/upload/{project_id}",
    response_model=FileResponse | ArchiveUnpacked,
    responses={**CREATED, **NOT_FOUND, **CONFLICT, **TOO_LARGE, **BAD_PATH},
)
async def upload_file(
    project: ProjectDep,
    file: Annotated[UploadFile, File(description="the file's content")],
    db: DbDep,
    state: StateDep,
    settings: SettingsDep,
    response: Response,
    path: Annotated[
        str | None,
        Form(description="where to put it, relative to the workspace; default: the file's name"),
    ] = None,
    extract: Annotated[
        bool, Query(description="unpack an archive (.tar.gz, .tgz, .tar, .zip) instead")
    ] = False,
) -> ProjectFile | ArchiveUnpacked:
    """Upload (or replace) a file on the project's default branch: 201 for a new path, 200 when
    the path was known (its row is left unchanged when the content is the same). With
    ``extract=true`` the upload is an archive whose files are committed over the branch."""
    project_ready_or_409(project)
    if extract:
        try:
            staged = await received_upload(file, settings.max_upload_bytes)
        except UploadTooLarge:
            raise _too_large(settings.max_upload_bytes) from None
        try:
            files, commit = await unpack_onto_default_branch(state, project, staged.path)
        finally:
            staged.path.unlink(missing_ok=True)
        return ArchiveUnpacked(project_id=project.id, files=files, commit=commit)
    relative = path or file.filename
    if not relative:
        raise _unprocessable("the upload has no file name; give a path")
    try:
        file_path = canonical_path(relative)
    except PathNotAllowed as err:
        raise _unprocessable(f"path not allowed: {err}") from None
    if len(file_path) > 1024:
        raise _unprocessable("the path is too long")
    repos = ProjectRepos(settings)
    if problem := await _conflicting_entry(repos, project, file_path):
        raise _unprocessable(problem)
    limit = settings.max_upload_bytes
    if file.size is not None and file.size > limit:
        raise _too_large(limit)
    try:
        staged = await received_upload(file, limit)
    except UploadTooLarge:
        raise _too_large(limit) from None
    try:
        return await _upsert(db, repos, project, file, staged, file_path, response)
    finally:
        staged.path.unlink(missing_ok=True)


async def _place(repos: ProjectRepos, project: Project, file_path: str, staged: Path) -> None:
    """The upload committed onto the default branch."""
    await repos.commit_files(
        project.id, project.default_branch, f"codexflow: upload {file_path}",
        add={file_path: staged},
    )  # fmt: skip


async def _upsert(
    db: DbDep,
    repos: ProjectRepos,
    project: Project,
    file: UploadFile,
    staged: Received,
    file_path: str,
    response: Response,
) -> ProjectFile:
    """Commit the row, then the file; the row is undone if the file's commit fails."""
    row = await db.scalar(
        select(ProjectFile).where(
            ProjectFile.project_id == project.id, ProjectFile.file_path == file_path
        )
    )
    if row is not None and row.content_hash == staged.sha256:
        # Same content: the row stays as it is; the bytes are committed again in case the
        # branch's copy was changed or removed since.
        await _place(repos, project, file_path, staged.path)
        return row

    values: dict[str, Any] = {
        "filename": PurePosixPath(file_path).name,
        "file_type": (
            file.content_type or mimetypes.guess_type(file_path)[0] or "application/octet-stream"
        )[:255],
        "file_size": staged.size,
        "content_hash": staged.sha256,
        "file_metadata": {"original_filename": file.filename} if file.filename else {},
        "uploaded_at": utcnow(),
    }
    if row is None:
        row = ProjectFile(project_id=project.id, file_path=file_path, **values)
        db.add(row)
        try:
            await db.commit()
        except IntegrityError:
            await db.rollback()
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"another upload created {file_path!r} at the same time; try again",
            ) from None
        try:
            await _place(repos, project, file_path, staged.path)
        except Exception:
            await _compensate(db, row, None)
            raise
        response.status_code = status.HTTP_201_CREATED
        return row

    previous = {key: getattr(row, key) for key in values}
    for key, value in values.items():
        setattr(row, key, value)
    await db.commit()
    try:
        await _place(repos, project, file_path, staged.path)
    except Exception:
        await _compensate(db, row, previous)
        raise
    return row


async def _compensate(db: DbDep, row: ProjectFile, previous: dict[str, Any] | None) -> None:
    """Undo a committed row after its file could not be committed: delete a new row, or put back
    the previous values of an updated one."""
    try:
        if previous is None:
            await db.delete(row)
        else:
            for key, value in previous.items():
                setattr(row, key, value)
        await db.commit()
    except Exception:
        log.exception("could not undo file row %s after a failed commit", row.id)


@router.get("/project/{project_id}", response_model=list[FileResponse], responses=NOT_FOUND)
async def list_project_files(project: ProjectDep, db: DbDep) -> list[ProjectFile]:
    """The project's uploaded files, newest first."""
    rows = await db.scalars(
        select(ProjectFile)
        .where(ProjectFile.project_id == project.id)
        .order_by(ProjectFile.uploaded_at.desc(), ProjectFile.file_path)
    )
    return list(rows.all())


async def get_file_or_404(db: DbDep, file_id: str) -> tuple[ProjectFile, Project]:
    """The file's row and its project; 404 when either is unknown or the project is deleted."""
    row = await db.get(ProjectFile, file_id)
    project = await db.get(Project, row.project_id) if row is not None else None
    if row is None or project is None or not project.is_active:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"file {file_id} not found")
    return row, project


@router.get("/{file_id}/download", response_class=RawResponse, responses={**DOWNLOAD, **NOT_FOUND})
async def download_file(file_id: str, db: DbDep, settings: SettingsDep) -> RawResponse:
    """The file's bytes on the default branch, as an attachment (a link is not a file)."""
    row, project = await get_file_or_404(db, file_id)
    repos = ProjectRepos(settings)
    entry = await repos.entry(project.id, project.default_branch, row.file_path)
    if entry is None or entry.mode not in _FILE_MODES:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"file {file_id} ({row.file_path}) is not a file on {project.default_branch}",
        )
    data = await repos.read(project.id, project.default_branch, row.file_path)
    return RawResponse(
        data,
        media_type=row.file_type or "application/octet-stream",
        headers={
            "Content-Disposition": _attachment(row.filename),
            "X-Content-Type-Options": "nosniff",
        },
    )


def _attachment(filename: str) -> str:
    if filename.isascii() and filename.isprintable() and '"' not in filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename*=utf-8''{quote(filename)}"


@router.delete("/{file_id}", response_model=FileDeleted, responses=NOT_FOUND)
async def delete_file(file_id: str, db: DbDep, settings: SettingsDep) -> FileDeleted:
    """Remove the file from the default branch (a commit) and its row: the row first, put back if
    the commit fails. A link at the path is removed, never what it points to."""
    row, project = await get_file_or_404(db, file_id)
    repos = ProjectRepos(settings)
    kept = {c.key: getattr(row, c.key) for c in ProjectFile.__table__.columns}
    await db.delete(row)
    await db.commit()
    try:
        if await repos.entry(project.id, project.default_branch, row.file_path) is not None:
            await repos.commit_files(
                project.id, project.default_branch, f"codexflow: delete {row.file_path}",
                remove=(row.file_path,),
            )  # fmt: skip
    except Exception:
        db.add(ProjectFile(**kept))
        await db.commit()
        raise
    return FileDeleted(id=file_id, file_id=file_id)


@router.get("/tree/{project_id}", response_model=FileTree, responses=NOT_FOUND)
async def workspace_tree(project: ProjectDep, settings: SettingsDep) -> FileTree:
    """Everything on the project's default branch (at most 5000 entries), depth first by name."""
    project_ready_or_409(project)
    entries = await ProjectRepos(settings).tree(project.id, project.default_branch)
    shown = [
        TreeEntry(path=e.path, is_dir=e.is_dir, size=None if e.is_dir else e.size)
        for e in entries[:MAX_TREE_ENTRIES]
    ]
    return FileTree(
        project_id=project.id,
        ref=project.default_branch,
        entries=shown,
        truncated=len(entries) > MAX_TREE_ENTRIES,
    )
