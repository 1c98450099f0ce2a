"""Codex tasks: what a caller asks of codex, what the activity gets, and what it returns."""

from __future__ import annotations

from pydantic import BaseModel, Field

from config import Sandbox
from core.vocabulary import CodexTaskState, Role
from workflows.types.workspace import Checkpoint

__all__ = [
    "CodexResult",
    "CodexTaskInput",
    "CodexTaskOutcome",
    "CodexTaskRequest",
    "CodexTaskStatus",
    "TokenUsage",
]


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
    role: Role | None = None
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
    commit: str | None = None  # what the task did, committed on the worktree's branch
    usage: TokenUsage = Field(default_factory=TokenUsage)
    duration_s: float = 0.0
    thread_id: str | None = None
    events: int = 0
    output_tail: str = ""


class CodexTaskStatus(BaseModel):
    """What the ``status`` query of a codex task workflow answers."""

    task_id: str
    state: CodexTaskState = CodexTaskState.PENDING
    base_commit: str | None = None
    result: CodexResult | None = None
    checkpoint: Checkpoint | None = None
    error: str | None = None


class CodexTaskOutcome(BaseModel):
    """The result of a codex task workflow: codex's result and the checkpoints around it."""

    result: CodexResult
    before: Checkpoint
    after: Checkpoint
