"""The read model: what happened in each project and session (Temporal says where a run is).

Generic types only, so the same models serve SQLite and PostgreSQL. Ids of rows written by workflows
are derived deterministically in the workflow, so a retried record activity never duplicates a row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Base",
    "CodexTask",
    "Conversation",
    "Message",
    "Project",
    "ProjectFile",
    "RunSession",
    "SessionEvent",
    "StoredPayload",
    "StoredPayloadRef",
    "new_id",
    "utcnow",
]


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp on every database (SQLite stores it without the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: use an aware one (UTC)")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid4())


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    workspace_path: Mapped[str] = mapped_column(String(1024), unique=True)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    # importing (its repository is being cloned), ready, or failed (see error)
    status: Mapped[str] = mapped_column(String(16), default="ready", server_default="ready")
    error: Mapped[str | None] = mapped_column(Text)
    import_progress: Mapped[str | None] = mapped_column(String(255))  # git's, while importing
    repository: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # where it was imported from
    default_branch: Mapped[str] = mapped_column(String(255), default="main", server_default="main")

    files: Mapped[list[ProjectFile]] = relationship(back_populates="project")
    sessions: Mapped[list[RunSession]] = relationship(back_populates="project")

    __table_args__ = (
        Index("ix_projects_active_updated", "is_active", "updated_at"),
        Index("ix_projects_name", "name"),
    )


class ProjectFile(Base):
    __tablename__ = "project_files"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(255))
    file_path: Mapped[str] = mapped_column(String(1024))  # relative to the workspace
    file_type: Mapped[str | None] = mapped_column(String(255))  # content type
    file_size: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[str] = mapped_column(String(64))  # sha256, for de-duplication
    # `metadata` is reserved on declarative models; the column keeps the seed's name.
    file_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    project: Mapped[Project] = relationship(back_populates="files")

    __table_args__ = (
        UniqueConstraint("project_id", "file_path", name="uq_project_files_path"),
        Index("ix_project_files_hash", "project_id", "content_hash"),
    )


class RunSession(Base):
    """A pipeline run (the seed's ``Session``; renamed to stay clear of SQLAlchemy's)."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    workflow_id: Mapped[str] = mapped_column(String(255), unique=True)
    title: Mapped[str | None] = mapped_column(String(255))
    user_request: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32), default="pending")
    current_agent: Mapped[str | None] = mapped_column(String(32))
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    agents_md_content: Mapped[str | None] = mapped_column(Text)
    final_summary: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    usage: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    branch: Mapped[str | None] = mapped_column(String(255))  # codexflow/<session id>
    base_commit: Mapped[str | None] = mapped_column(String(64))  # where the branch starts
    head_commit: Mapped[str | None] = mapped_column(String(64))  # its latest checkpoint
    worktree: Mapped[str | None] = mapped_column(String(1024))  # where it is checked out
    host: Mapped[str | None] = mapped_column(String(255))  # the machine holding the worktree
    delivery: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the last push of the branch

    project: Mapped[Project] = relationship(back_populates="sessions")
    conversations: Mapped[list[Conversation]] = relationship(
        back_populates="session", order_by="Conversation.started_at"
    )

    __table_args__ = (
        Index("ix_sessions_project_created", "project_id", "created_at"),
        Index("ix_sessions_status_created", "status", "created_at"),
    )


class Conversation(Base):
    """One stage iteration of a session: the agent's input, tool calls and report."""

    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # "<session>:<role>:<iteration>"
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    agent_type: Mapped[str] = mapped_column(String(32))
    iteration: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(32), default="running")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    session: Mapped[RunSession] = relationship(back_populates="conversations")
    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation", order_by="Message.seq"
    )

    __table_args__ = (Index("ix_conversations_session", "session_id", "started_at"),)


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[str] = mapped_column(String(160), primary_key=True)  # "<conversation>:<seq>"
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))  # user | assistant | system | tool
    content: Mapped[str] = mapped_column(Text)
    message_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    conversation: Mapped[Conversation] = relationship(back_populates="messages")

    __table_args__ = (Index("ix_messages_conversation", "conversation_id", "seq"),)


class CodexTask(Base):
    __tablename__ = "codex_tasks"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # the workflow's task id
    session_id: Mapped[str | None] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    agent_type: Mapped[str | None] = mapped_column(String(32))
    prompt: Mapped[str] = mapped_column(Text)
    working_directory: Mapped[str] = mapped_column(String(1024))
    status: Mapped[str] = mapped_column(String(32), default="pending")
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    # Which execution the current attempt is (run/activity/attempt): a repeated call of it is
    # told apart from a new attempt, on this host or another one.
    attempt_key: Mapped[str | None] = mapped_column(String(255))
    process_id: Mapped[int | None] = mapped_column(Integer)
    thread_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    exit_code: Mapped[int | None] = mapped_column(Integer)
    final_message: Mapped[str | None] = mapped_column(Text)
    output_files: Mapped[list[str]] = mapped_column(default=list)  # changed files, from git
    usage: Mapped[dict[str, Any]] = mapped_column(default=dict)
    stderr_tail: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_codex_tasks_session", "session_id", "started_at"),
        Index("ix_codex_tasks_status", "status"),
    )


class SessionEvent(Base):
    """The append-only event log; ``id`` orders events and is what followers resume from."""

    __tablename__ = "session_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    session_id: Mapped[str] = mapped_column(String(255))  # a session id, or a codex task's id
    codex_task_id: Mapped[str | None] = mapped_column(String(255))
    attempt: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        Index("ix_session_events_session_id", "session_id", "id"),
        Index("ix_session_events_task", "codex_task_id", "id"),
        {"sqlite_autoincrement": True},
    )


class StoredPayload(Base):
    """A workflow payload kept out of Temporal's history (``store/payloads.py``): by the SHA-256
    of the serialized payload, compressed."""

    __tablename__ = "stored_payloads"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)  # serialized, before compression
    data: Mapped[bytes] = mapped_column(LargeBinary)
    touched_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class StoredPayloadRef(Base):
    """Which workflow a stored payload was stored for: it lives as long as one of them does."""

    __tablename__ = "stored_payload_refs"

    digest: Mapped[str] = mapped_column(
        ForeignKey("stored_payloads.digest", ondelete="CASCADE"), primary_key=True
    )
    workflow_id: Mapped[str] = mapped_column(String(1000), primary_key=True)
    touched_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_stored_payload_refs_workflow", "workflow_id"),)
