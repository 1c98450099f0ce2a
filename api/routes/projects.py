"""Projects: each one a git workspace under CODEXFLOW_WORKSPACES_ROOT."""

from __future__ import annotations

import shutil
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from sqlalchemy import func, select

from api.deps import DbDep, ProjectDep, SettingsDep
from api.schemas import MAX_BIGINT, Deleted, ProjectCreate, ProjectList, ProjectResponse
from core.workspaces import create_workspace
from store.models import Project, new_id

router = APIRouter(prefix="/api/projects", tags=["Projects"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such project"}}


@router.post("/", response_model=ProjectResponse, status_code=status.HTTP_201_CREATED)
async def create_project(body: ProjectCreate, db: DbDep, settings: SettingsDep) -> Project:
    """Create a project and its workspace (a git repository with an initial commit)."""
    project_id = new_id()
    workspace = settings.workspace_root() / project_id
    await create_workspace(settings, workspace)
    project = Project(
        id=project_id,
        name=body.name,
        description=body.description,
        workspace_path=str(workspace),
        settings=body.settings,
    )
    db.add(project)
    try:
        await db.commit()
    except BaseException:
        # No row, no workspace: a failed create leaves nothing behind.
        shutil.rmtree(workspace, ignore_errors=True)
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


@router.delete("/{project_id}", response_model=Deleted, responses=NOT_FOUND)
async def delete_project(project: ProjectDep, db: DbDep) -> Deleted:
    """Soft delete: the project disappears from listings; its workspace and history stay."""
    project.is_active = False
    await db.commit()
    return Deleted(id=project.id)
