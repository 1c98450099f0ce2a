"""Request and response bodies; field names are the seed's, so its clients keep working."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field


class ProjectCreate(BaseModel):
    name: str = Field(min_length=1, max_length=255, examples=["calculator"])
    description: str | None = Field(default=None, max_length=10_000)
    settings: dict[str, Any] = Field(default_factory=dict)


class ProjectResponse(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    description: str | None
    workspace_path: str
    created_at: datetime
    updated_at: datetime
    is_active: bool
    settings: dict[str, Any]


class ProjectList(BaseModel):
    projects: list[ProjectResponse]
    total: int = Field(description="projects matching the filter, across all pages")


class Deleted(BaseModel):
    status: str = "deleted"
    id: str


class Check(BaseModel):
    ok: bool
    detail: str | None = None


class CodexCheck(Check):
    version: str | None = None
    auth: str | None = Field(
        default=None, description="logged in, api key, custom provider, or none"
    )


class Health(BaseModel):
    status: str = Field(description="ok, or degraded when a dependency is unreachable")
    version: str
    database: Check
    temporal: Check
    codex: CodexCheck


class FileResponse(BaseModel):
    """A file uploaded into a project's workspace."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    filename: str
    file_path: str = Field(description="relative to the project's workspace")
    file_type: str | None = Field(description="the content type")
    file_size: int
    content_hash: str = Field(description="sha256 of the content, hex")
    uploaded_at: datetime
    metadata: dict[str, Any] = Field(
        default_factory=dict, validation_alias=AliasChoices("file_metadata", "metadata")
    )


class TreeEntry(BaseModel):
    path: str = Field(description="relative to the project's workspace, '/'-separated")
    is_dir: bool
    size: int | None = Field(default=None, description="bytes; none for directories")


class FileTree(BaseModel):
    project_id: str
    entries: list[TreeEntry] = Field(description="depth first, sorted by name; .git is left out")
    truncated: bool = Field(description="true when the workspace has more entries than returned")
