"""StageWorkflow: one stage iteration of a session (its role's agent, the agent's codex tasks
and workspace tools, the checkpoint it ends with) as a child workflow of the session.

Every model call's input is the whole conversation so far, so a stage's history grows with the
square of its length; as a workflow of its own, a stage's history ends with the stage, and the
session's holds one child per stage. The session keeps what outlives a stage (reports, reviews,
the budget): a stage tells it how far it has got (``stage_progress``) and, past its budget, asks
it for a review (``budget_reached``) and waits for the answer.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from agents import RunContextWrapper, Runner, Usage

    from activities.workspace import WorkspaceActivities
    from core.errors import innermost_reason
    from core.vocabulary import SessionMoved, StageStatus
    from workflows.agents import build_agent
    from workflows.codex_task import codex_for_agent
    from workflows.codex_tools import CodexTools
    from workflows.journal import Journal
    from workflows.prompts import Transcript
    from workflows.types.codex import CodexTaskRequest, TokenUsage
    from workflows.types.pipeline import StageRecord
    from workflows.types.repository import Worktree, WorktreeInput
    from workflows.types.stage import (
        BUDGET_REACHED,
        STAGE_PROGRESS,
        BudgetAnswer,
        StageInput,
        StageOutcome,
        StageProgress,
    )
    from workflows.types.workspace import AgentContext, Checkpoint, CheckpointInput
    from workflows.worktree import HostCall, SessionWorktree

__all__ = ["StageWorkflow", "tokens"]

_CHECKPOINT_TIMEOUT = timedelta(minutes=2)
_CHECKPOINT_RETRY = RetryPolicy(maximum_attempts=5)
_TELL_EVERY = timedelta(seconds=2)


class BudgetRejected(Exception):
    """The session's reviewer stopped the run at the budget pause."""


@workflow.defn
class StageWorkflow:
    @workflow.init
    def __init__(self, input: StageInput) -> None:
        self.input = input
        self.options = input.options
        self.journal = Journal(input.session_id)
        self.worktree = SessionWorktree(
            WorktreeInput(
                project_id=input.project_id, name=input.session_id, base_ref=input.options.base_ref
            ),
            lost_after=timedelta(seconds=input.options.host_lost_after_s),
            moved=self.worktree_moved,
            current=input.worktree,
        )
        self.progress = StageProgress()
        self.told: datetime | None = None  # when the session was last told the progress
        self.codex = CodexTools(self.new_codex_task, self.run_codex)
        self.budget_left = input.budget_left
        self.answer: BudgetAnswer | None = None
        self.rejected: str | None = None

    @workflow.run
    async def run(self, input: StageInput) -> StageOutcome:
        role, iteration = input.role, input.iteration
        ctx = AgentContext(
            session_id=input.session_id,
            project_id=input.project_id,
            workspace=input.worktree.path,
            role=role,
            iteration=iteration,
        )
        agent = build_agent(role, self.options.agent_model, self.codex, self.worktree)
        said = Transcript(input.prompt)
        await self.journal.stage_started(role, iteration, said.messages[:1])
        try:
            result = await Runner.run(
                agent,
                input.prompt,
                context=ctx,
                max_turns=self.options.max_agent_turns,
                hooks=said,
            )
            await self.codex.settle()  # tasks the agent started and never waited for
        except BaseException as err:
            cancelled = is_cancelled_exception(err)
            status = StageStatus.CANCELLED if cancelled else StageStatus.FAILED
            # Codex stops first: the agents SDK cancels its tool tasks without awaiting them, and
            # the tasks started without waiting are ours to cancel.
            self.codex.cancel()
            await workflow.wait_condition(lambda: self.codex.running == 0)
            await self.journal.stage_ended(
                role, iteration, status, None if cancelled else innermost_reason(err), said.messages
            )
            if cancelled:
                raise
            if self.rejected is not None:  # the session knows: it ends the run rejected
                raise ApplicationError(
                    self.rejected, type="BudgetRejected", non_retryable=True
                ) from None
            raise ApplicationError(
                f"{role.value} stage failed: {innermost_reason(err)}",
                type="StageFailed",
                non_retryable=True,
            ) from err
        self.progress.model_usage = tokens(result.context_wrapper.usage)
        record = StageRecord(
            stage=role,
            iteration=iteration,
            report=result.final_output,
            checkpoint=await self.checkpoint(f"codexflow: {role.value} #{iteration}"),
            model_usage=self.progress.model_usage,
            codex_tasks=self.progress.codex_tasks,
            feedback=input.feedback,
        )
        await self.journal.stage_completed(
            record,
            result.final_output.model_dump(mode="json"),
            said.ended_with(result.final_output),
        )
        return StageOutcome(record=record, progress=self.progress, worktree=self.worktree.worktree)

    # --- the agent's codex tasks ---------------------------------------------------------------

    def new_codex_task(self, session: AgentContext) -> str:
        self.progress.codex_tasks += 1
        number = self.input.codex_before + self.progress.codex_tasks
        return f"{session.session_id}-{session.role}-{session.iteration}-{number}"

    async def run_codex(
        self, ctx: RunContextWrapper[AgentContext], task_id: str, prompt: str
    ) -> str:
        """One codex task of the agent's, tallied, its failure shown to the model."""
        await self.within_budget(ctx.usage)
        session = ctx.context
        text, result = await self.worktree.on_host(
            lambda host: codex_for_agent(
                CodexTaskRequest(
                    workspace=host.path,
                    prompt=prompt,
                    model=self.options.codex_model,
                    sandbox=self.options.codex_sandbox,
                    timeout_s=self.options.codex_timeout_s,
                    heartbeat_timeout_s=self.options.codex_heartbeat_s,
                ),
                task_id,
                session.session_id,
                session.role,
                **host.options,
            )
        )
        if result:
            self.progress.codex_usage = self.progress.codex_usage + result.usage
        self.progress.model_usage = tokens(ctx.usage)
        await self.tell_session(soon=True)
        return text

    async def within_budget(self, usage: Usage) -> None:
        """Past its budget, the stage asks its session for a review and waits for the answer."""
        self.progress.model_usage = tokens(usage)
        while self.budget_left is not None and self.progress.tokens > self.budget_left:
            self.answer = None
            await workflow.get_external_workflow_handle(self._session()).signal(
                BUDGET_REACHED, self.progress
            )
            await workflow.wait_condition(lambda: self.answer is not None)
            assert self.answer is not None
            if self.answer.rejected is not None:
                self.rejected = f"rejected at budget: {self.answer.rejected or 'no reason given'}"
                raise BudgetRejected(self.rejected)
            self.budget_left = self.answer.budget_left

    @workflow.signal
    def budget_answer(self, answer: BudgetAnswer) -> None:
        self.answer = answer

    # --- the worktree --------------------------------------------------------------------------

    async def worktree_moved(self, moved: SessionMoved, worktree: Worktree) -> None:
        self.progress.worktree = worktree
        # Assigned, not appended: the converter leaves out fields never set (exclude_unset).
        self.progress.moves = [*self.progress.moves, moved]
        await self.journal.worktree_moved(moved, worktree)
        await self.tell_session()

    async def checkpoint(self, message: str) -> Checkpoint:
        """Commit the worktree; the changes are counted from the stage's start."""

        def commit(host: HostCall) -> Awaitable[Checkpoint]:
            return workflow.execute_activity_method(
                WorkspaceActivities.checkpoint,
                CheckpointInput(workspace=host.path, message=message, since=self.input.head),
                start_to_close_timeout=_CHECKPOINT_TIMEOUT,
                retry_policy=_CHECKPOINT_RETRY,
                **host.options,
            )

        return await self.worktree.on_host(commit)

    async def tell_session(self, soon: bool = False) -> None:
        """Send the session the progress; ``soon``: unless it was sent in the last seconds (each
        signal costs history in both workflows, and quick codex tasks come in bursts)."""
        now = workflow.now()
        if soon and self.told is not None and now - self.told < _TELL_EVERY:
            return
        self.told = now
        await workflow.get_external_workflow_handle(self._session()).signal(
            STAGE_PROGRESS, self.progress
        )

    def _session(self) -> str:
        parent = workflow.info().parent
        assert parent is not None, "a stage runs as its session's child"
        return parent.workflow_id


def tokens(usage: Usage) -> TokenUsage:
    return TokenUsage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens)
