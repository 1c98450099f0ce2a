"""One stage iteration as a child workflow of its session: what it is given, what it tells its
session while it runs, and what it returns."""

from __future__ import annotations

from pydantic import BaseModel, Field

from core.vocabulary import Role, SessionMoved
from workflows.types.codex import TokenUsage
from workflows.types.pipeline import PipelineOptions, StageRecord
from workflows.types.repository import Worktree

__all__ = [
    "BUDGET_REACHED",
    "STAGE_PROGRESS",
    "BudgetAnswer",
    "StageInput",
    "StageOutcome",
    "StageProgress",
]

# The session's signals a stage sends (by name: the session workflow imports the stage's).
STAGE_PROGRESS = "stage_progress"
BUDGET_REACHED = "budget_reached"


class StageInput(BaseModel):
    session_id: str
    project_id: str
    role: Role
    iteration: int
    prompt: str
    feedback: str | None = None  # the review's, when the stage is run again for it
    options: PipelineOptions
    worktree: Worktree  # where the session's worktree is when the stage starts
    head: str | None = None  # the commit it starts from: its checkpoint reports changes since
    codex_before: int = 0  # codex tasks the session ran before (task ids go on from there)
    budget_left: int | None = None  # tokens this stage may use before the session reviews them


class StageProgress(BaseModel):
    """The stage so far, as its session shows it: sent after codex tasks (at most every couple
    of seconds) and after a move."""

    codex_tasks: int = 0
    codex_usage: TokenUsage = Field(default_factory=TokenUsage)
    model_usage: TokenUsage = Field(default_factory=TokenUsage)
    worktree: Worktree | None = None  # where the worktree went, once it moved
    moves: list[SessionMoved] = Field(default_factory=list)

    @property
    def tokens(self) -> int:
        return self.codex_usage.total + self.model_usage.total


class BudgetAnswer(BaseModel):
    """The session's answer to a stage past its budget: more tokens, or the reviewer's rejection."""

    budget_left: int | None = None
    rejected: str | None = None


class StageOutcome(BaseModel):
    record: StageRecord
    progress: StageProgress
    worktree: Worktree  # where the stage left the worktree
