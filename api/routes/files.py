"""Files: uploads into a project's workspace, listing, download, delete, and the workspace tree.

Every user-supplied path goes through :func:`core.paths.confine`, and nothing may be
written inside ``.git``. An upload streams to a temporary file next to its target (hashing and
counting as it goes) and is moved into place with an atomic ``os.replace``: a failed upload leaves
neither a partial file nor a row.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mimetypes
import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import IO, Annotated, Any
from uuid import uuid4

from fastapi import APIRouter, File, Form, HTTPException, Response, UploadFile, status
from fastapi.responses import FileResponse as FileDownload
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from api.deps import DbDep, ProjectDep, SettingsDep
from api.schemas import Deleted, FileResponse, FileTree, TreeEntry
from core.paths import PathNotAllowed, confine
from store.models import Project, ProjectFile, utcnow

router = APIRouter(prefix="/api/files", tags=["Files"])

log = logging.getLogger("codexflow.api.files")

CHUNK_BYTES = 1024 * 1024
MAX_TREE_ENTRIES = 5000
UPLOAD_PREFIX = ".codexflow-upload-"
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


def _is_git(name: str) -> bool:
    return name.casefold() == ".git"


def resolve_in_workspace(workspace: Path, relative: str) -> tuple[Path, str]:
    """The absolute target and its canonical relative path; PathNotAllowed for the workspace root,
    a path outside it (``..``, absolute, escaping symlink) or anything inside ``.git``."""
    if relative.replace("\\", "/").endswith("/"):
        raise PathNotAllowed(f"the path names a directory, not a file: {relative!r}")
    target = confine(workspace, relative)
    parts = target.relative_to(workspace.resolve()).parts
    if not parts:
        raise PathNotAllowed("the path names the workspace itself")
    if any(map(_is_git, PurePosixPath(relative.replace("\\", "/")).parts + parts)):
        raise PathNotAllowed(f"paths inside .git are not allowed: {relative!r}")
    return target, PurePosixPath(*parts).as_posix()


def _unprocessable(message: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, message)


def _make_parents(workspace: Path, directory: Path) -> list[Path]:
    """Create ``directory`` and its missing ancestors; return those created, outermost first."""
    missing: list[Path] = []
    while directory != workspace and not directory.exists():
        missing.append(directory)
        directory = directory.parent
    if not directory.is_dir():
        raise _unprocessable(f"a parent of the path is not a directory: {directory.name}")
    missing.reverse()
    try:
        for path in missing:
            path.mkdir()
    except (FileExistsError, NotADirectoryError) as err:
        _remove_dirs(missing)
        raise _unprocessable(f"a parent of the path is not a directory: {err.filename}") from None
    return missing


def _remove_dirs(created: list[Path]) -> None:
    for path in reversed(created):
        with contextlib.suppress(OSError):
            path.rmdir()


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
    out.flush()
    os.fsync(out.fileno())
    return size, digest.hexdigest()


def _place(temporary: Path, target: Path) -> None:
    """The atomic move into place, refused if the target's directory was swapped meanwhile."""
    if target.parent.resolve() != target.parent:
        raise PathNotAllowed(f"{target.parent} changed during the upload")
    os.replace(temporary, target)


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
    workspace = Path(project.workspace_path)
    relative = path or file.filename
    if not relative:
        raise _unprocessable("the upload has no file name; give a path")
    try:
        target, file_path = resolve_in_workspace(workspace, relative)
    except PathNotAllowed as err:
        raise _unprocessable(f"path not allowed: {err}") from None
    if len(target.name.encode()) > 255 or len(file_path) > 1024:
        raise _unprocessable("the path or file name is too long")
    if target.is_dir():
        raise _unprocessable(f"{file_path!r} is a directory")
    limit = settings.max_upload_bytes
    if file.size is not None and file.size > limit:
        raise _too_large(limit)

    created = _make_parents(workspace.resolve(), target.parent)
    temporary: Path | None = None
    try:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=UPLOAD_PREFIX, suffix=".part")
        temporary = Path(name)
        with os.fdopen(fd, "wb") as out:
            size, digest = await run_in_threadpool(_copy, file.file, out, limit)
        row = await _upsert(db, project, file, temporary, target, file_path, size, digest, response)
    except BaseException as err:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        _remove_dirs(created)
        if isinstance(err, _TooLarge):
            raise _too_large(limit) from None
        raise
    return row


async def _upsert(
    db: DbDep,
    project: Project,
    file: UploadFile,
    temporary: Path,
    target: Path,
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
        _place(temporary, target)
        return row

    values: dict[str, Any] = {
        "filename": target.name,
        "file_type": (
            file.content_type or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
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
            _place(temporary, target)
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
        _place(temporary, target)
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


def _on_disk(row: ProjectFile, project: Project) -> Path | None:
    """The row's file in the workspace, or None when it is gone or no longer inside it."""
    try:
        path, _ = resolve_in_workspace(Path(project.workspace_path), row.file_path)
    except PathNotAllowed:
        return None
    return path if path.is_file() else None


@router.get(
    "/{file_id}/download",
    response_class=FileDownload,
    responses={**DOWNLOAD, **NOT_FOUND},
)
async def download_file(file_id: str, db: DbDep) -> FileDownload:
    """The file's current bytes in the workspace, as an attachment."""
    row, project = await get_file_or_404(db, file_id)
    path = _on_disk(row, project)
    if path is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"file {file_id} ({row.file_path}) is missing from the workspace",
        )
    return FileDownload(
        path,
        media_type=row.file_type or "application/octet-stream",
        filename=row.filename,
        headers={"X-Content-Type-Options": "nosniff"},
    )


@router.delete("/{file_id}", response_model=Deleted, responses=NOT_FOUND)
async def delete_file(file_id: str, db: DbDep) -> Deleted:
    """Remove the file from the workspace and its row (both or neither)."""
    row, project = await get_file_or_404(db, file_id)
    path = _on_disk(row, project)
    # Moved aside first, so a failed commit can put it back.
    aside = path.with_name(f"{DELETE_PREFIX}{uuid4().hex}") if path is not None else None
    if path is not None and aside is not None:
        os.replace(path, aside)
    try:
        await db.delete(row)
        await db.commit()
    except BaseException:
        if path is not None and aside is not None:
            os.replace(aside, path)
        raise
    if aside is not None:
        aside.unlink(missing_ok=True)
    return Deleted(id=file_id)


@router.get("/tree/{project_id}", response_model=FileTree, responses=NOT_FOUND)
async def workspace_tree(project: ProjectDep) -> FileTree:
    """Everything in the workspace but .git (at most 5000 entries), depth first by name."""
    workspace = Path(project.workspace_path).resolve()
    if not workspace.is_dir():
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"the workspace of project {project.id} is missing"
        )
    entries, truncated = await run_in_threadpool(_walk, workspace, MAX_TREE_ENTRIES)
    return FileTree(project_id=project.id, entries=entries, truncated=truncated)


def _children(directory: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as it:
            return sorted((e for e in it if not _is_git(e.name)), key=lambda e: e.name)
    except OSError:
        return []


def _walk(root: Path, limit: int) -> tuple[list[TreeEntry], bool]:
    """Depth first, symlinks listed but never followed; stops after ``limit`` entries."""
    entries: list[TreeEntry] = []
    stack = list(reversed(_children(str(root))))
    while stack:
        if len(entries) >= limit:
            return entries, True
        entry = stack.pop()
        is_dir = entry.is_dir(follow_symlinks=False)
        try:
            size = None if is_dir else entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue  # removed while walking
        relative = Path(entry.path).relative_to(root).as_posix()
        entries.append(TreeEntry(path=relative, is_dir=is_dir, size=size))
        if is_dir:
            stack.extend(reversed(_children(entry.path)))
    return entries, False
