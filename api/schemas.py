"""Request and response bodies; field names are the seed's, so its clients keep working."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, field_validator

from core.vocabulary import Decision, ProjectStatus
from workflows.types.pipeline import PipelineOptions
from workflows.types.repository import Delivery, RepositorySpec
from workflows.types.review import AwaitingReview

# The largest offset or id a query parameter may carry: a BIGINT (and SQLite's INTEGER) holds no
# more, and a larger one would fail in the database driver (a 500) instead of answering 422.
MAX_BIGINT = 2**63 - 1


MAX_JSON_BYTES = 16 * 1024
MAX_JSON_DEPTH = 8


def _bounded(value: dict[str, Any]) -> dict[str, Any]:
    """Stored JSON stays small and shallow: it is shown in every listing and, for options, goes
    into a workflow's input (Temporal refuses payloads past 2 MB)."""
    if _depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    if len(json.dumps(value, separators=(",", ":"))) > MAX_JSON_BYTES:
        raise ValueError(f"larger than {MAX_JSON_BYTES} bytes as JSON")
    return value


def _depth(value: Any, level: int = 1) -> int:
    if level > MAX_JSON_DEPTH:
        return level  # deep enough to refuse: stop before the stack does
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level


BoundedJson = Annotated[dict[str, Any], AfterValidator(_bounded)]


class ProjectCreate(BaseModel):
    name: str = Field(min_length=1, max_length=255, examples=["calculator"])
    description: str | None = Field(default=None, max_length=10_000)
    settings: BoundedJson = Field(default_factory=dict)

    @field_validator("settings", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return {} if value is None else value  # the seed's clients send settings: null

    repository: RepositorySpec | None = Field(
        default=None,
        description="import this repository (the project is `importing` until it "
        "is cloned); without it the project starts empty",
    )


class ProjectResponse(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    description: str | None
    workspace_path: str = Field(
        description="the project's central git repository (bare): its default branch holds the "
        "uploads, each session works on a branch of it in a worktree of its own"
    )
    created_at: datetime
    updated_at: datetime
    is_active: bool
    settings: dict[str, Any]
    status: ProjectStatus = Field(description="importing, ready, or failed (see error)")
    error: str | None = None
    import_progress: str | None = Field(
        default=None, description="while importing: git's progress, e.g. 'Receiving objects 42%'"
    )
    repository: RepositorySpec | None = None
    default_branch: str


class ProjectList(BaseModel):
    projects: list[ProjectResponse]
    total: int = Field(description="projects matching the filter, across all pages")


class Deleted(BaseModel):
    status: str = "deleted"
    id: str


class ProjectDeleted(Deleted):
    project_id: str  # as the seed's API answers


class FileDeleted(Deleted):
    file_id: str  # as the seed's API answers


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
    healthy: bool = Field(description="status is ok (the seed's API answered status: healthy)")
    version: str
    task_queue: str = Field(description="the task queue this API starts workflows on")
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
    path: str = Field(description="in the repository, '/'-separated")
    is_dir: bool
    size: int | None = Field(default=None, description="bytes; none for directories")


class FileTree(BaseModel):
    project_id: str
    ref: str = Field(description="the branch listed: the project's default branch")
    entries: list[TreeEntry] = Field(description="depth first, sorted by name")
    truncated: bool = Field(description="true when the tree has more entries than returned")


class ArchiveUnpacked(BaseModel):
    """An archive unpacked onto the project's default branch."""

    project_id: str
    files: int = Field(description="files written")
    commit: str


# --- sessions and codex tasks -------------------------------------------------------------------


class SessionCreate(BaseModel):
    project_id: str = Field(min_length=1, max_length=36)
    user_request: str = Field(
        min_length=1, max_length=100_000, examples=["Build a calculator module with tests."]
    )
    title: str | None = Field(default=None, max_length=255)
    options: PipelineOptions | None = Field(
        default=None, description="how the run behaves; unset fields take their defaults at start"
    )
    start: bool = Field(default=False, description="also start the workflow")


class LiveStatus(BaseModel):
    """The running workflow's ``status`` query, as the session answer carries it."""

    state: str
    stage: str | None
    iteration: int
    awaiting: AwaitingReview | None
    codex_tasks: int
    tokens_used: int


class SessionResponse(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    project_id: str
    title: str | None
    user_request: str
    status: str = Field(
        examples=["pending"],
        description="pending, queued, running, waiting_for_review, completed, failed, cancelled",
    )
    current_agent: str | None
    created_at: datetime
    completed_at: datetime | None
    agents_md_content: str | None
    final_summary: str | None
    workflow_id: str = Field(examples=["session-0b9c…"])
    options: dict[str, Any]
    outcome: str | None = Field(description="approved, needs_work, qa_failed or rejected")
    error: str | None
    usage: dict[str, Any]
    started_at: datetime | None = None
    branch: str | None = Field(default=None, examples=["codexflow/0b9c…"])
    base_commit: str | None = Field(default=None, description="where the branch starts")
    head_commit: str | None = Field(default=None, description="its latest checkpoint")
    worktree: str | None = Field(default=None, description="where the session works")
    host: str | None = Field(
        default=None, description="the worker machine holding its worktree (it moves if lost)"
    )
    delivery: Delivery | None = Field(default=None, description="the last push of its branch")
    temporal_ui_url: str | None = None
    live: LiveStatus | None = Field(
        default=None, description="the workflow's status query, while it runs"
    )


class SessionList(BaseModel):
    sessions: list[SessionResponse]
    total: int = Field(description="sessions matching the filter, across all pages")


class SessionStarted(BaseModel):
    status: str = "started"
    session_id: str
    workflow_id: str
    temporal_ui_url: str


class MessageResponse(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    role: str = Field(examples=["assistant"])
    content: str
    created_at: datetime
    metadata: dict[str, Any] = Field(
        default_factory=dict, validation_alias=AliasChoices("message_metadata", "metadata")
    )


class ConversationResponse(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    agent_type: str = Field(examples=["planner"])
    iteration: int
    status: str
    started_at: datetime
    ended_at: datetime | None
    report: dict[str, Any] | None
    messages: list[MessageResponse]


class ReviewAccepted(BaseModel):
    accepted: bool = True
    stage: str = Field(examples=["planner"])
    decision: Decision


class PushRequest(BaseModel):
    remote_branch: str | None = Field(
        default=None, max_length=255, description="default: the session's branch name"
    )


class Cancelling(BaseModel):
    status: str = "cancelling"
    session_id: str


class CodexOutputEvent(BaseModel):
    id: int
    kind: str = Field(examples=["codex.event"])
    attempt: int | None
    payload: dict[str, Any]
    created_at: datetime


class CodexTaskResponse(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    session_id: str | None
    agent_type: str | None
    prompt: str
    working_directory: str
    status: str = Field(examples=["completed"])
    attempt: int
    exit_code: int | None
    final_message: str | None
    output_files: list[str]
    usage: dict[str, Any]
    started_at: datetime | None
    completed_at: datetime | None
    stderr_tail: str | None
    output: list[CodexOutputEvent] = Field(
        default_factory=list, description="its codex.event events, after after_id"
    )
    next_after_id: int = Field(
        default=0, description="pass as after_id for the next page (unchanged on an empty page)"
    )


class AgentInfo(BaseModel):
    role: str = Field(examples=["planner"])
    name: str
    description: str
    handoff_description: str


class AgentChatRequest(BaseModel):
    project_id: str
    agent_role: str = Field(examples=["builder"])
    message: str = Field(min_length=1, max_length=100_000)
    session_id: str | None = Field(
        default=None,
        description="accepted for the seed's clients; the chat is per project and role",
    )


class AgentChatResponse(BaseModel):
    agent_role: str
    response: str
    turn: int | None = Field(
        default=None, description="the chat's turn number, earlier runs included"
    )
