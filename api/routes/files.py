"""Files: uploads into a project's workspace, listing, download, delete, and the workspace tree.

The workspace is codex's to write, so every touch of it goes through ``core.confined``: no link is
followed (a link's target is never written, read or deleted), nothing may be written inside
``.git``. An upload streams to a temporary file next to its target (hashing and counting as it
goes) and is renamed into place: a failed upload leaves neither a partial file nor a row.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Annotated, Any
from urllib.parse import quote
from uuid import uuid4

from fastapi import APIRouter, File, Form, HTTPException, Response, UploadFile, status
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from api.deps import DbDep, ProjectDep, SettingsDep
from api.schemas import Deleted, FileResponse, FileTree, TreeEntry
from core.confined import ConfinedDir, PathNotAllowed, Staged, split_path
from store.models import Project, ProjectFile, utcnow

router = APIRouter(prefix="/api/files", tags=["Files"])

log = logging.getLogger("codexflow.api.files")

CHUNK_BYTES = 1024 * 1024
MAX_TREE_ENTRIES = 5000
DELETE_PREFIX = ".codexflow-delete-"

Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {404: {"description": "no such project or file"}}
BAD_PATH: Responses = {
    422: {"description": "a path outside the workspace, inside .git or empty; or a bad form"}
}
TOO_LARGE: Responses = {413: {"description": "the upload exceeds CODEXFLOW_MAX_UPLOAD_BYTES"}}
CONFLICT: Responses = {409: {"description": "another upload created this path at the same time"}}
CREATED: Responses = {201: {"model": FileResponse, "description": "a new file"}}
DOWNLOAD: Responses = {
    200: {"content": {"application/octet-stream": {}}, "description": "the file's bytes"}
}


class _TooLarge(Exception):
    pass


def _unprocessable(message: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, message)


def canonical_path(relative: str) -> str:
    """The '/'-separated path an upload names; PathNotAllowed for the workspace itself, a path
    outside it (``..``, absolute), a directory name or anything inside ``.git``."""
    if relative.replace("\\", "/").endswith("/"):
        raise PathNotAllowed(f"the path names a directory, not a file: {relative!r}")
    parts = split_path(relative, allow_git=False)
    if not parts:
        raise PathNotAllowed("the path names the workspace itself")
    return "/".join(parts)


def _copy(source: IO[bytes], out: IO[bytes], limit: int) -> tuple[int, str]:
    """Copy in chunks, counting and hashing; _TooLarge as soon as ``limit`` is passed."""
    digest = hashlib.sha256()
    size = 0
    while chunk := source.read(CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        digest.update(chunk)
        out.write(chunk)
    return size, digest.hexdigest()


def _stage(
    files: ConfinedDir, file_path: str, source: IO[bytes], limit: int
) -> tuple[Staged, int, str]:
    """The upload written beside its target (not yet in place), with its size and sha256."""
    staged = files.stage(file_path, allow_git=False)
    try:
        size, digest = _copy(source, staged.file, limit)
    except BaseException:
        staged.discard()
        raise
    return staged, size, digest


def _place(staged: Staged) -> None:
    """The atomic move into place (a link at the path is replaced, never written through)."""
    staged.commit()


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"the upload exceeds the limit of {limit} bytes (CODEXFLOW_MAX_UPLOAD_BYTES)",
    )


@router.post(
    "/upload/{project_id}",
    response_model=FileResponse,
    responses={**CREATED, **NOT_FOUND, **CONFLICT, **TOO_LARGE, **BAD_PATH},
)
async def upload_file(
    project: ProjectDep,
    file: Annotated[UploadFile, File(description="the file's content")],
    db: DbDep,
    settings: SettingsDep,
    response: Response,
    path: Annotated[
        str | None,
        Form(description="where to put it, relative to the workspace; default: the file's name"),
    ] = None,
) -> ProjectFile:
    """Upload (or replace) a file in the project's workspace: 201 for a new path, 200 when the
    path was known (its row is left unchanged when the content is the same)."""
    files = ConfinedDir(Path(project.workspace_path))
    relative = path or file.filename
    if not relative:
        raise _unprocessable("the upload has no file name; give a path")
    try:
        file_path = canonical_path(relative)
    except PathNotAllowed as err:
        raise _unprocessable(f"path not allowed: {err}") from None
    if len(file_path) > 1024:
        raise _unprocessable("the path is too long")
    try:
        existing = await run_in_threadpool(files.lstat, file_path)
    except PathNotAllowed as err:
        raise _unprocessable(f"path not allowed: {err}") from None
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        raise _unprocessable(f"{file_path!r} is a directory")
    limit = settings.max_upload_bytes
    if file.size is not None and file.size > limit:
        raise _too_large(limit)
    try:
        staged, size, digest = await run_in_threadpool(_stage, files, file_path, file.file, limit)
    except _TooLarge:
        raise _too_large(limit) from None
    except (PathNotAllowed, NotADirectoryError) as err:
        raise _unprocessable(f"path not allowed: {err}") from None
    try:
        return await _upsert(db, project, file, staged, file_path, size, digest, response)
    except PathNotAllowed as err:
        raise _unprocessable(f"path not allowed: {err}") from None
    finally:
        staged.discard()


async def _upsert(
    db: DbDep,
    project: Project,
    file: UploadFile,
    staged: Staged,
    file_path: str,
    size: int,
    digest: str,
    response: Response,
) -> ProjectFile:
    """Commit the row, then move the file into place; the row is undone if the move fails."""
    row = await db.scalar(
        select(ProjectFile).where(
            ProjectFile.project_id == project.id, ProjectFile.file_path == file_path
        )
    )
    if row is not None and row.content_hash == digest:
        # Same content: the row stays as it is; the bytes are put back in case the workspace's
        # copy was edited or removed since.
        _place(staged)
        return row

    values: dict[str, Any] = {
        "filename": PurePosixPath(file_path).name,
        "file_type": (
            file.content_type or mimetypes.guess_type(file_path)[0] or "application/octet-stream"
        )[:255],
        "file_size": size,
        "content_hash": digest,
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
            _place(staged)
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
        _place(staged)
    except Exception:
        await _compensate(db, row, previous)
        raise
    return row


async def _compensate(db: DbDep, row: ProjectFile, previous: dict[str, Any] | None) -> None:
    """Undo a committed row after its file could not be moved into place: delete a new row,
    or put back the previous values of an updated one."""
    try:
        if previous is None:
            await db.delete(row)
        else:
            for key, value in previous.items():
                setattr(row, key, value)
        await db.commit()
    except Exception:
        log.exception("could not undo file row %s after a failed move", row.id)


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


def _on_disk(row: ProjectFile, project: Project) -> ConfinedDir | None:
    """The workspace when the row's path still names a file or link in it, else None."""
    files = ConfinedDir(Path(project.workspace_path))
    try:
        entry = files.lstat(row.file_path)
    except PathNotAllowed:
        return None
    return files if entry is not None and not stat.S_ISDIR(entry.st_mode) else None


@router.get(
    "/{file_id}/download",
    response_class=StreamingResponse,
    responses={**DOWNLOAD, **NOT_FOUND},
)
async def download_file(file_id: str, db: DbDep) -> StreamingResponse:
    """The file's current bytes in the workspace, as an attachment (a link is not followed)."""
    row, project = await get_file_or_404(db, file_id)
    try:
        opened = await run_in_threadpool(
            ConfinedDir(Path(project.workspace_path)).open_file, row.file_path
        )
    except (FileNotFoundError, PathNotAllowed):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"file {file_id} ({row.file_path}) is missing from the workspace",
        ) from None
    size = os.fstat(opened.fileno()).st_size

    def chunks() -> Iterator[bytes]:
        with opened:
            while chunk := opened.read(CHUNK_BYTES):
                yield chunk

    return StreamingResponse(
        chunks(),
        media_type=row.file_type or "application/octet-stream",
        headers={
            "Content-Length": str(size),
            "Content-Disposition": _attachment(row.filename),
            "X-Content-Type-Options": "nosniff",
        },
    )


def _attachment(filename: str) -> str:
    if filename.isascii() and filename.isprintable() and '"' not in filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename*=utf-8''{quote(filename)}"


@router.delete("/{file_id}", response_model=Deleted, responses=NOT_FOUND)
async def delete_file(file_id: str, db: DbDep) -> Deleted:
    """Remove the file from the workspace and its row (both or neither); a link is removed, never
    what it points to."""
    row, project = await get_file_or_404(db, file_id)
    files = _on_disk(row, project)
    # Moved aside first, so a failed commit can put it back.
    parent = PurePosixPath(row.file_path).parent
    aside = (parent / f"{DELETE_PREFIX}{uuid4().hex}").as_posix()
    if files is not None:
        await run_in_threadpool(files.rename, row.file_path, aside)
    try:
        await db.delete(row)
        await db.commit()
    except BaseException:
        if files is not None:
            await run_in_threadpool(files.rename, aside, row.file_path)
        raise
    if files is not None:
        await run_in_threadpool(files.remove, aside)
    return Deleted(id=file_id)


@router.get("/tree/{project_id}", response_model=FileTree, responses=NOT_FOUND)
async def workspace_tree(project: ProjectDep) -> FileTree:
    """Everything in the workspace but .git (at most 5000 entries), depth first by name."""
    workspace = Path(project.workspace_path)
    if not workspace.is_dir():
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"the workspace of project {project.id} is missing"
        )
    entries, truncated = await run_in_threadpool(_walk, ConfinedDir(workspace), MAX_TREE_ENTRIES)
    return FileTree(project_id=project.id, entries=entries, truncated=truncated)


def _walk(files: ConfinedDir, limit: int) -> tuple[list[TreeEntry], bool]:
    """Depth first, links listed but never followed; stops after ``limit`` entries."""
    entries: list[TreeEntry] = []
    for entry in files.walk(".", skip=frozenset({".git"})):
        if entry.path.split("/", 1)[0].casefold() == ".git":
            continue
        if len(entries) >= limit:
            return entries, True
        size = None if entry.is_dir or entry.is_link else entry.size
        entries.append(TreeEntry(path=entry.path, is_dir=entry.is_dir, size=size))
    return entries, False
