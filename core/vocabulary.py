"""The system's words: roles, statuses, outcomes, event kinds and their payloads, ids and links.

Every producer and consumer — workflows, record activities, the event log, SSE and WebSockets,
the CLI — uses these names. The values are the strings stored in the database and in workflow
histories, so they never change; add new members rather than renaming old ones.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BUDGET",
    "END_KINDS",
    "EVENT_PAYLOADS",
    "FINISHED",
    "ChatState",
    "CodexEventPayload",
    "CodexFinished",
    "CodexStderr",
    "CodexStarted",
    "CodexTaskState",
    "Decision",
    "EventKind",
    "Outcome",
    "ProjectStatus",
    "ReviewAwaited",
    "ReviewReason",
    "ReviewIgnored",
    "ReviewReceived",
    "Role",
    "SessionEnded",
    "SessionFinished",
    "SessionMoved",
    "SessionStarted",
    "SessionStatus",
    "StageCompleted",
    "StageEnded",
    "StageStarted",
    "StageStatus",
    "chat_workflow_id",
    "host_task_queue",
    "payload_of",
    "import_workflow_id",
    "session_id_of",
    "stage_workflow_id",
    "session_workflow_id",
    "temporal_ui_url",
]


class Role(StrEnum):
    """The four roles of a pipeline run, in pipeline order."""

    PLANNER = "planner"
    BUILDER = "builder"
    QA_QC = "qa_qc"
    PROD_READY = "prod_ready"


BUDGET = "budget"
"""The review stage a budget pause waits on (reviews name a role or this)."""


class SessionStatus(StrEnum):
    """A session's status: its row's ``status``, and (from RUNNING on) its workflow's state."""

    PENDING = "pending"  # created, not started
    QUEUED = "queued"  # its workflow was started, no worker has run it yet
    RUNNING = "running"
    WAITING_FOR_REVIEW = "waiting_for_review"
    COMPLETED = "completed"  # see its Outcome
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = frozenset({SessionStatus.COMPLETED, SessionStatus.FAILED, SessionStatus.CANCELLED})
"""The statuses a session never leaves."""


class Outcome(StrEnum):
    """How a completed session ended."""

    APPROVED = "approved"
    NEEDS_WORK = "needs_work"  # ProdReady still said NEEDS_WORK after the repair loops
    QA_FAILED = "qa_failed"  # QA still said FAIL after the repair loops
    REJECTED = "rejected"  # a reviewer rejected a stage or a budget pause


class StageStatus(StrEnum):
    """One stage iteration (a conversation): running, then one of the others."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class CodexTaskState(StrEnum):
    """A codex task's status (its row), and how one attempt ended (``TIMEOUT`` for metrics)."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"


class ChatState(StrEnum):
    OPEN = "open"
    CONTINUING = "continuing"  # continuing as new: send again
    CLOSED = "closed"
    CANCELLED = "cancelled"


class Decision(StrEnum):
    """A reviewer's decision."""

    APPROVE = "approve"
    REQUEST_CHANGES = "request_changes"  # re-run the stage with the feedback
    REJECT = "reject"  # end the session: outcome rejected


class ProjectStatus(StrEnum):
    IMPORTING = "importing"  # its repository is being cloned
    READY = "ready"
    FAILED = "failed"  # see its error


class ReviewReason(StrEnum):
    GATE = "gate"
    BUDGET = "budget"


# --- events ------------------------------------------------------------------------------------


class EventKind(StrEnum):
    """The kinds of events in a session's log (``session_events.kind``)."""

    SESSION_STARTED = "session.started"
    STAGE_STARTED = "stage.started"
    STAGE_COMPLETED = "stage.completed"
    STAGE_FAILED = "stage.failed"
    STAGE_CANCELLED = "stage.cancelled"
    REVIEW_AWAITED = "review.awaited"
    BUDGET_PAUSED = "budget.paused"
    REVIEW_RECEIVED = "review.received"
    REVIEW_IGNORED = "review.ignored"  # a review signal the run could not take, and why
    CODEX_STARTED = "codex.started"
    CODEX_EVENT = "codex.event"  # one line of codex's JSONL output, as codex printed it
    CODEX_STDERR = "codex.stderr"  # one line codex (or its sandbox) wrote to stderr
    CODEX_FINISHED = "codex.finished"  # one attempt ended (a retry may follow)
    SESSION_MOVED = "session.moved"  # its worktree's host was lost: another host carries on
    SESSION_FINISHED = "session.finished"
    SESSION_FAILED = "session.failed"
    SESSION_CANCELLED = "session.cancelled"


END_KINDS = frozenset(
    {EventKind.SESSION_FINISHED, EventKind.SESSION_FAILED, EventKind.SESSION_CANCELLED}
)
"""The kinds that end a session's log: followers stop after one."""


class _Payload(BaseModel):
    # Readers tolerate fields a newer writer added.
    model_config = ConfigDict(extra="ignore")


class SessionStarted(_Payload):
    pass


class StageStarted(_Payload):
    stage: Role
    iteration: int


class StageCompleted(StageStarted):
    verdict: str | None = None  # QA's PASS/FAIL, ProdReady's APPROVED/NEEDS_WORK
    summary: str = ""
    codex_tasks: int = 0
    changed_files: list[str] = Field(default_factory=list)
    commit: str | None = None  # the stage's checkpoint
    parent: str | None = None  # the checkpoint it started from


class StageEnded(StageStarted):
    """``stage.failed`` and ``stage.cancelled``."""

    error: str | None = None


class ReviewAwaited(_Payload):
    """``review.awaited`` (a gate) and ``budget.paused`` (stage ``budget``)."""

    stage: str
    reason: ReviewReason
    tokens_used: int = 0


class ReviewReceived(_Payload):
    stage: str
    decision: Decision
    feedback: str = ""


class ReviewIgnored(_Payload):
    """A review sent as a signal (signals cannot be refused to their sender) that the run
    dropped: not waiting, another stage, a malformed body."""

    stage: str | None = None
    decision: Decision
    reason: str


class CodexStarted(_Payload):
    pid: int | None = None


class CodexEventPayload(_Payload):
    """Codex's own JSONL event (``{"type": ...}``), kept whole; a garbage line is
    ``{"type": "garbage", "line": ...}``."""

    model_config = ConfigDict(extra="allow")
    type: str = "unknown"


class CodexStderr(_Payload):
    line: str


class CodexFinished(_Payload):
    status: CodexTaskState
    final: bool = True  # no attempt follows: the task's streams end here
    error: str | None = None
    exit_code: int | None = None
    changed_files: list[str] = Field(default_factory=list)


class SessionFinished(_Payload):
    outcome: Outcome
    codex_tasks: int = 0
    tokens_used: int | None = None  # model and codex, as `status` counts them


class SessionMoved(_Payload):
    """``session.moved``: the host holding the worktree stopped answering; another rebuilt the
    worktree from the branch's last checkpoint and carries on there."""

    from_host: str
    to_host: str
    commit: str  # the checkpoint it carries on from
    waited_s: float = 0.0  # from the last answer of the lost host to the move


class SessionEnded(_Payload):
    """``session.failed`` and ``session.cancelled``."""

    error: str | None = None


EVENT_PAYLOADS: dict[EventKind, type[BaseModel]] = {
    EventKind.SESSION_STARTED: SessionStarted,
    EventKind.STAGE_STARTED: StageStarted,
    EventKind.STAGE_COMPLETED: StageCompleted,
    EventKind.STAGE_FAILED: StageEnded,
    EventKind.STAGE_CANCELLED: StageEnded,
    EventKind.REVIEW_AWAITED: ReviewAwaited,
    EventKind.BUDGET_PAUSED: ReviewAwaited,
    EventKind.REVIEW_RECEIVED: ReviewReceived,
    EventKind.REVIEW_IGNORED: ReviewIgnored,
    EventKind.CODEX_STARTED: CodexStarted,
    EventKind.CODEX_EVENT: CodexEventPayload,
    EventKind.CODEX_STDERR: CodexStderr,
    EventKind.CODEX_FINISHED: CodexFinished,
    EventKind.SESSION_MOVED: SessionMoved,
    EventKind.SESSION_FINISHED: SessionFinished,
    EventKind.SESSION_FAILED: SessionEnded,
    EventKind.SESSION_CANCELLED: SessionEnded,
}
"""The payload model of each event kind."""


def payload_of(kind: str, payload: dict[str, Any]) -> BaseModel | None:
    """A stored payload read as its kind's model; None for a kind this code does not know."""
    try:
        model = EVENT_PAYLOADS[EventKind(kind)]
    except ValueError:
        return None
    return model.model_validate(payload)


# --- ids and links -----------------------------------------------------------------------------

_SESSION_PREFIX = "session-"


def host_task_queue(task_queue: str, host: str) -> str:
    """The task queue of one worker machine: its worktrees' activities run there."""
    return f"{task_queue}@{host}"


def session_workflow_id(session_id: str) -> str:
    """The id of a session's PipelineWorkflow."""
    return f"{_SESSION_PREFIX}{session_id}"


def stage_workflow_id(session_id: str, role: Role | str, iteration: int) -> str:
    """The id of one stage iteration of a session (a StageWorkflow, its PipelineWorkflow's child)."""
    return f"{session_workflow_id(session_id)}.{Role(role).value}-{iteration}"


def session_id_of(workflow_id: str) -> str | None:
    """The session of a PipelineWorkflow's (or one of its stages') id; None for another's."""
    if workflow_id.startswith(_SESSION_PREFIX):
        return workflow_id.removeprefix(_SESSION_PREFIX).split(".", 1)[0]
    return None


def import_workflow_id(project_id: str) -> str:
    """The id of a project's ImportProjectWorkflow."""
    return f"import-{project_id}"


def chat_workflow_id(project_id: str, role: Role | str) -> str:
    """The id of a project's chat with one role (one AgentChatWorkflow per project and role)."""
    return f"chat-{project_id}-{Role(role).value}"


def temporal_ui_url(ui_base: str, namespace: str, workflow_id: str) -> str:
    """The Temporal Web UI page of a workflow."""
    return f"{ui_base.rstrip('/')}/namespaces/{namespace}/workflows/{workflow_id}"
