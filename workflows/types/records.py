"""What the workflows write to the database through the record activities.

Each write is idempotent: row ids come from the workflow, and an event is appended only when the
change it marks is new, so a retried activity writes nothing twice.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from core.vocabulary import EventKind, Outcome, Role, SessionStatus, StageStatus

__all__ = ["ConversationRecord", "MessageRecord", "ProjectImported", "SessionPatch", "SessionStart"]


class SessionStart(BaseModel):
    """Makes sure the project and session rows exist (runs may start outside the API)."""

    session_id: str
    project_id: str
    workflow_id: str
    user_request: str
    options: dict[str, Any] = Field(default_factory=dict)


class SessionPatch(BaseModel):
    """A change of a session's row; ``event`` is appended only when the change is new, so a
    retried activity neither duplicates events nor rewinds the row."""

    session_id: str
    status: SessionStatus | None = None
    current_agent: Role | None = None
    agents_md_content: str | None = None
    final_summary: str | None = None
    outcome: Outcome | None = None
    error: str | None = None
    usage: dict[str, Any] | None = None
    branch: str | None = None
    base_commit: str | None = None
    head_commit: str | None = None
    worktree: str | None = None
    host: str | None = None
    finished: bool = False
    event: EventKind | None = None
    event_payload: dict[str, Any] = Field(default_factory=dict)  # the kind's payload model, dumped


class EventRecord(BaseModel):
    """An event of a session's log that goes with no change of its row."""

    session_id: str
    kind: EventKind
    payload: dict[str, Any] = Field(default_factory=dict)  # the kind's payload model, dumped


class ProjectImported(BaseModel):
    """How a project's import ended: ready (its default branch known) or failed (and why)."""

    project_id: str
    error: str | None = None
    default_branch: str | None = None


class MessageRecord(BaseModel):
    role: Literal["user", "assistant", "system", "tool"]
    content: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class ConversationRecord(BaseModel):
    """One stage iteration: opened when the stage starts, closed with its transcript and report.

    ``event_payload`` is the stage event's payload (``StageCompleted`` or ``StageEnded``), dumped.
    """

    session_id: str
    role: Role
    iteration: int
    status: StageStatus
    report: dict[str, Any] | None = None
    messages: list[MessageRecord] = Field(default_factory=list)
    event_payload: dict[str, Any] = Field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.session_id}:{self.role.value}:{self.iteration}"
