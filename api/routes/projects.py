"""Projects: each one a central git repository — empty, imported from a repository, or seeded
from an archive."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import ValidationError
from sqlalchemy import func, select
from starlette.datastructures import UploadFile

from api.deps import DbDep, ProjectDep, StateDep
from api.schemas import MAX_BIGINT, ProjectCreate, ProjectDeleted, ProjectList, ProjectResponse
from api.services import UploadTooLarge, received_upload, unpack_onto_default_branch
from core.remotes import RemoteNotAllowed, parse_remote
from core.repos import ProjectRepos
from core.vocabulary import ProjectStatus, import_workflow_id
from store.models import Project, new_id
from workflows.types.calls import IMPORT_WORKFLOW
from workflows.types.repository import ImportInput

router = APIRouter(prefix="/api/projects", tags=["Projects"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such project"}}

# The JSON body only: a second (multipart) content makes generated clients' code break
# (openapi-python-client 0.29 emits a module that fails to import). The multipart form with an
# `archive` file is still taken, as the description says.
_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ProjectCreate"}},
        },
    }
}


def _unprocessable(message: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, message)


@router.post(
    "/",
    response_model=ProjectResponse,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_BODY,
    responses={422: {"description": "a bad body, a refused repository or archive"}},
)
async def create_project(request: Request, db: DbDep, state: StateDep) -> Project:
    """Create a project: empty (a repository with one commit), from a repository (``repository``:
    it is ``importing`` until a worker has cloned it), or, as ``multipart/form-data`` with the
    fields ``name`` (and ``description``) and the file ``archive``, from an archive (``.tar.gz``,
    ``.tgz``, ``.tar`` or ``.zip``) unpacked onto its default branch."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=10)
        archive = form.get("archive")
        if not isinstance(archive, UploadFile):
            raise _unprocessable("a multipart project needs an `archive` file")
        fields: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
        if "settings" in fields:  # a form field is a string: the settings come as JSON
            try:
                fields["settings"] = json.loads(fields["settings"])
            except ValueError:
                raise _unprocessable("settings: not JSON") from None
        body = _validated(fields)
        try:
            staged = await received_upload(archive, state.settings.max_upload_bytes)
        except UploadTooLarge as err:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(err)) from None
        try:
            return await _create(db, state, body, archive=staged.path)
        finally:
            staged.path.unlink(missing_ok=True)
    try:
        raw = await request.json()
    except ValueError:
        raise _unprocessable(
            "the body must be JSON (or a multipart form with an archive)"
        ) from None
    return await _create(db, state, _validated(raw))


def _validated(raw: object) -> ProjectCreate:
    try:
        return ProjectCreate.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in err.errors()
        )
        raise _unprocessable(problems) from None


async def _create(
    db: DbDep, state: StateDep, body: ProjectCreate, archive: Path | None = None
) -> Project:
    settings = state.settings
    if body.repository is not None:
        try:
            parse_remote(body.repository.url, settings)
        except RemoteNotAllowed as err:
            raise _unprocessable(f"repository refused: {err}") from None
    project_id = new_id()
    repos = ProjectRepos(settings)
    central = repos.central(project_id)
    project = Project(
        id=project_id,
        name=body.name,
        description=body.description,
        workspace_path=str(central.git_dir),
        settings=body.settings,
        status=ProjectStatus.IMPORTING if body.repository else ProjectStatus.READY,
        repository=body.repository.model_dump(mode="json") if body.repository else None,
    )
    try:
        if body.repository is None:
            await repos.create(project_id)
            if archive is not None:
                await unpack_onto_default_branch(state, project, archive)
        db.add(project)
        await db.commit()
    except BaseException:
        # No row, no repository: a failed create leaves nothing behind.
        shutil.rmtree(central.git_dir, ignore_errors=True)
        raise
    if body.repository is not None:
        try:
            client = await state.temporal.get()
            await client.start_workflow(
                IMPORT_WORKFLOW,
                ImportInput(project_id=project_id, repository=body.repository),
                id=import_workflow_id(project_id),
                task_queue=settings.task_queue,
            )
        except BaseException:
            await db.delete(project)  # no import will ever finish it: the project was not made
            await db.commit()
            raise
    return project


@router.get("/", response_model=ProjectList)
async def list_projects(
    db: DbDep,
    skip: Annotated[int, Query(ge=0, le=MAX_BIGINT)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    active_only: bool = True,
    name: Annotated[str | None, Query(max_length=255, description="only projects so named")] = None,
) -> ProjectList:
    query = select(Project)
    if name is not None:
        query = query.where(Project.name == name)
    if active_only:
        query = query.where(Project.is_active.is_(True))
    total = await db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await db.scalars(query.order_by(Project.updated_at.desc()).offset(skip).limit(limit))
    return ProjectList(
        projects=[ProjectResponse.model_validate(p) for p in rows.all()], total=total
    )


@router.get("/{project_id}", response_model=ProjectResponse, responses=NOT_FOUND)
async def get_project(project: ProjectDep) -> Project:
    return project


@router.delete("/{project_id}", response_model=ProjectDeleted, responses=NOT_FOUND)
async def delete_project(project: ProjectDep, db: DbDep) -> ProjectDeleted:
    """Soft delete: the project disappears from listings; its repository and history stay."""
    project.is_active = False
    await db.commit()
    return ProjectDeleted(id=project.id, project_id=project.id)
