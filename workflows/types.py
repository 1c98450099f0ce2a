"""Types at the boundaries of workflows, activities and the API: one definition of each."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from config import Sandbox
from crew.reports import BuildReport, PlanReport, QAReport, ReadinessReport
from crew.roles import Role


class Checkpoint(BaseModel):
    """A git commit of a workspace, with what changed since the previous one."""

    commit: str
    parent: str
    diffstat: str = ""
    changed_files: list[str] = Field(default_factory=list)


class CheckpointInput(BaseModel):
    workspace: str
    message: str
    since: str | None = None  # report changes since this commit (default: the previous one)


class RestoreInput(BaseModel):
    workspace: str
    commit: str


class TokenUsage(BaseModel):
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_output_tokens: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            reasoning_output_tokens=self.reasoning_output_tokens + other.reasoning_output_tokens,
        )


class CodexTaskRequest(BaseModel):
    """What a caller asks of codex: a prompt to run in a workspace."""

    workspace: str
    prompt: str
    model: str | None = None
    sandbox: Sandbox | None = None
    timeout_s: float | None = Field(default=None, gt=0)
    # How fast a dead worker is noticed and a cancel reaches codex (heartbeats carry both).
    heartbeat_timeout_s: float = Field(default=10, gt=0)
    max_attempts: int = Field(default=3, ge=1)


class CodexTaskInput(CodexTaskRequest):
    """The codex activity's input: the request plus the ids a durable run needs."""

    task_id: str
    session_id: str | None = None  # the pipeline session it belongs to, if any
    role: str | None = None
    # The checkpoint a retry restores before running again; taken by the activity when absent.
    base_commit: str | None = None


class CodexResult(BaseModel):
    """The compact outcome of one codex run; the full output stays out of workflow history."""

    task_id: str
    attempt: int = 1
    exit_code: int
    success: bool
    final_message: str = ""
    error: str | None = None
    changed_files: list[str] = Field(default_factory=list)
    usage: TokenUsage = Field(default_factory=TokenUsage)
    duration_s: float = 0.0
    thread_id: str | None = None
    events: int = 0
    output_tail: str = ""


class CodexTaskStatus(BaseModel):
    """What the ``status`` query of a codex task workflow answers."""

    task_id: str
    state: str = "pending"  # pending | running | completed | failed | cancelled
    base_commit: str | None = None
    result: CodexResult | None = None
    checkpoint: Checkpoint | None = None
    error: str | None = None


class CodexTaskOutcome(BaseModel):
    """The result of a codex task workflow: codex's result and the checkpoints around it."""

    result: CodexResult
    before: Checkpoint
    after: Checkpoint


class SessionCtx(BaseModel):
    """The run context of an agent: binds its tools to the session's workspace."""

    session_id: str
    project_id: str
    workspace: str
    role: str
    iteration: int = 1


class ReadTextInput(BaseModel):
    workspace: str
    path: str
    max_chars: int = Field(default=200_000, gt=0)


# --- the pipeline ------------------------------------------------------------------------------


class PipelineOptions(BaseModel):
    """How a pipeline run behaves; every field has a sensible default."""

    gates: list[Role] = Field(
        default_factory=list, description="stages that wait for a human review"
    )
    max_repair_loops: int = Field(default=2, ge=0, le=10)
    agent_model: str = "gpt-5.5"
    codex_model: str | None = None
    codex_sandbox: Sandbox | None = None
    codex_timeout_s: float | None = Field(default=None, gt=0)
    codex_heartbeat_s: float = Field(default=10, gt=0)
    token_budget: int | None = Field(default=None, gt=0, description="pause for review past this")
    review_timeout_s: float = Field(default=7 * 24 * 3600, gt=0)
    on_review_timeout: Literal["fail", "approve"] = "fail"
    max_agent_turns: int = Field(default=40, ge=2, le=200)


class PipelineInput(BaseModel):
    session_id: str
    project_id: str
    workspace: str
    user_request: str = Field(min_length=1)
    options: PipelineOptions = Field(default_factory=PipelineOptions)


class Decision(StrEnum):
    APPROVE = "approve"
    REQUEST_CHANGES = "request_changes"
    REJECT = "reject"


BUDGET = "budget"  # the review stage a budget pause waits on


class Review(BaseModel):
    """A human's review of a gated stage (or of a budget pause: stage ``budget``)."""

    stage: str = Field(examples=["planner"])
    decision: Decision = Field(examples=["request_changes"])
    feedback: str = Field(default="", examples=["Also support division by zero as an error."])


class ReviewSignal(BaseModel):
    """The payload of the ``approve`` / ``request_changes`` / ``reject`` signals."""

    stage: str
    feedback: str = ""


class AwaitingReview(BaseModel):
    stage: str
    reason: Literal["gate", "budget"]
    since: datetime


StageReport = PlanReport | BuildReport | QAReport | ReadinessReport


class StageRecord(BaseModel):
    """One finished stage iteration."""

    stage: Role
    iteration: int
    report: StageReport
    checkpoint: Checkpoint
    model_usage: TokenUsage
    codex_tasks: int
    feedback: str | None = None


class PipelineUsage(BaseModel):
    model: TokenUsage = Field(default_factory=TokenUsage)
    codex: TokenUsage = Field(default_factory=TokenUsage)

    @property
    def total(self) -> int:
        return self.model.total + self.codex.total


class PipelineStatus(BaseModel):
    """What the ``status`` query answers."""

    session_id: str
    state: Literal["running", "waiting_for_review", "completed", "failed", "cancelled"]
    stage: Role | None
    iteration: int
    awaiting: AwaitingReview | None
    stages: list[StageRecord]
    codex_tasks: int
    usage: PipelineUsage
    tokens_used: int
    token_budget: int | None


Outcome = Literal["approved", "needs_work", "qa_failed", "rejected"]


class PipelineResult(BaseModel):
    session_id: str
    outcome: Outcome
    summary: str
    agents_md: str | None
    stages: list[StageRecord]
    usage: PipelineUsage
    codex_tasks: int


# --- single-agent chat --------------------------------------------------------------------------


class ChatInput(BaseModel):
    project_id: str
    role: Role
    workspace: str
    agent_model: str = "gpt-5.5"
    history: list[dict[str, Any]] = Field(default_factory=list)  # the agents SDK's input items
    turns: int = Field(default=0, ge=0)  # turns taken by earlier runs of this chat
    max_turns_per_run: int = Field(default=20, ge=1)
    idle_timeout_s: float = Field(default=24 * 3600, gt=0)
    codex_heartbeat_s: float = Field(default=10, gt=0)
    max_agent_turns: int = Field(default=40, ge=2, le=200)  # model calls within one chat turn


class ChatMessage(BaseModel):
    message: str = Field(min_length=1)


class ChatReply(BaseModel):
    role: Role
    response: str
    turn: int


ChatState = Literal["open", "continuing", "closed", "cancelled"]


class ChatStatus(BaseModel):
    """What the ``status`` query answers, and what a finished chat returns."""

    project_id: str
    role: Role
    state: ChatState
    turns: int
    history_items: int
    busy: bool = False  # a turn is running or waiting to run
    closed_reason: str | None = None


# --- records (what the workflows write to the database) -----------------------------------------


class SessionStart(BaseModel):
    """Makes sure the project and session rows exist (runs may start outside the API)."""

    session_id: str
    project_id: str
    workspace: str
    workflow_id: str
    user_request: str
    options: dict[str, Any] = Field(default_factory=dict)


class SessionPatch(BaseModel):
    """A change of a session's row; ``event`` is appended only when the change is new, so a
    retried activity neither duplicates events nor rewinds the row."""

    session_id: str
    status: str | None = None
    current_agent: str | None = None
    agents_md_content: str | None = None
    final_summary: str | None = None
    outcome: str | None = None
    error: str | None = None
    usage: dict[str, Any] | None = None
    finished: bool = False
    event: str | None = None
    event_payload: dict[str, Any] = Field(default_factory=dict)


class MessageRecord(BaseModel):
    role: Literal["user", "assistant", "system", "tool"]
    content: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class ConversationRecord(BaseModel):
    """One stage iteration: opened when the stage starts, closed with its transcript and report."""

    session_id: str
    role: str
    iteration: int
    status: Literal["running", "completed", "failed", "cancelled"]
    report: dict[str, Any] | None = None
    messages: list[MessageRecord] = Field(default_factory=list)
    event_payload: dict[str, Any] = Field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.session_id}:{self.role}:{self.iteration}"
