"""A session's pipeline run: its input and options, finished stages, status and result."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from config import Sandbox
from core.vocabulary import Outcome, Role, SessionMoved, SessionStatus
from crew.reports import StageReport
from workflows.types.codex import TokenUsage
from workflows.types.repository import Delivery, Worktree
from workflows.types.review import AwaitingReview
from workflows.types.workspace import Checkpoint

__all__ = [
    "PipelineInput",
    "PipelineOptions",
    "PipelineResult",
    "PipelineStatus",
    "PipelineUsage",
    "StageRecord",
]


class PipelineOptions(BaseModel):
    """How a pipeline run behaves; every field has a sensible default, and an unknown one is an
    error (``"gate"`` for ``"gates"`` must not give a run without its gate)."""

    model_config = ConfigDict(extra="forbid")

    gates: list[Role] = Field(
        default_factory=list, max_length=len(Role), description="stages that wait for a review"
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
    max_agent_turns: int = Field(default=250, ge=2, le=1000)
    base_ref: str | None = Field(
        default=None,
        max_length=255,
        description="the branch, tag or commit the session's branch starts from (default: the "
        "project's default branch)",
    )
    deliver: Literal["none", "push"] = Field(
        default="none",
        description="push: push the session's branch to the project's origin "
        "when the run is approved",
    )
    remote_branch: str | None = Field(
        default=None, max_length=255, description="the branch pushed to (default: its own name)"
    )
    host_lost_after_s: float = Field(
        default=60,
        ge=1,
        le=3600,
        description="a host that leaves work on its worktree unstarted this long is taken for "
        "lost: another host rebuilds the worktree from its last checkpoint and carries on",
    )


class PipelineInput(BaseModel):
    session_id: str
    project_id: str
    user_request: str = Field(min_length=1)
    options: PipelineOptions = Field(default_factory=PipelineOptions)
    session_url: str | None = None  # the session in the codexflow API, linked from the Web UI
    project_name: str | None = None  # for the Web UI's filters (CodexflowProjectName)


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
    worktree: Worktree | None = None
    moves: list[SessionMoved] = Field(default_factory=list)  # hosts lost, and where it went
    state: SessionStatus
    stage: Role | None
    iteration: int
    awaiting: AwaitingReview | None
    stages: list[StageRecord]
    codex_tasks: int
    usage: PipelineUsage
    tokens_used: int
    token_budget: int | None


class PipelineResult(BaseModel):
    session_id: str
    worktree: Worktree | None = None
    delivery: Delivery | None = None
    outcome: Outcome
    summary: str
    agents_md: str | None
    stages: list[StageRecord]
    usage: PipelineUsage
    codex_tasks: int
