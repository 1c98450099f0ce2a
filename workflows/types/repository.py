"""Repositories: importing a project's, a session's worktree and branch, delivering it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = [
    "Delivery",
    "ImportInput",
    "ImportResult",
    "PushInput",
    "RepositorySpec",
    "Worktree",
    "WorktreeInput",
]


class RepositorySpec(BaseModel):
    """Where a project's code comes from (checked against the operator's rules when imported)."""

    url: str = Field(
        min_length=1,
        max_length=4096,
        examples=["https://github.com/octo/calculator.git"],
        description="https:// or ssh:// URL, user@host:path, or a file:// URL or path under "
        "CODEXFLOW_LOCAL_REPOS",
    )
    ref: str | None = Field(
        default=None, max_length=255, description="a branch or tag (default: the remote's HEAD)"
    )
    depth: int | None = Field(default=None, ge=1, le=1_000_000, description="a shallow clone")
    partial: bool = Field(
        default=False, description="a partial clone: file contents fetched when first needed"
    )


class ImportInput(BaseModel):
    project_id: str
    repository: RepositorySpec


class ImportResult(BaseModel):
    default_branch: str
    head_commit: str


class WorktreeInput(BaseModel):
    project_id: str
    name: str  # the session id, or chat-<role>
    base_ref: str | None = None  # default: the project's default branch


class Worktree(BaseModel):
    path: str
    branch: str
    base_commit: str  # where the branch started
    head_commit: str  # where the worktree stands now
    host: str  # the machine whose disk holds it
    task_queue: str  # that machine's queue: where the activities that touch it run


class PushInput(BaseModel):
    project_id: str
    session_id: str
    branch: str
    remote_branch: str | None = None  # default: the same name as the session's branch


class Delivery(BaseModel):
    """A push of a session's branch to its project's origin."""

    kind: Literal["push"] = "push"
    remote: str
    branch: str  # on the remote
    commit: str
    review_url: str | None = Field(
        default=None, description="the compare / merge-request page, for GitHub and GitLab"
    )
