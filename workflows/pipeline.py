"""PipelineWorkflow: Planner → Builder → QA → ProdReady, with repair loops, human gates and a budget.

Each stage iteration is a child workflow (``workflows/stage.py``): there every model call and tool
call is an activity (the agents plugin), so a replay after a worker crash rebuilds the agent's
state from history without calling the model again for finished turns, and the history a stage
grows ends with the stage. The session keeps the reports, the reviews and the budget.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from activities.tools import AGENTS_MD, AgentTools
    from core.errors import innermost_reason
    from core.vocabulary import (
        BUDGET,
        Decision,
        Outcome,
        ReviewIgnored,
        ReviewReason,
        Role,
        SessionMoved,
        SessionStatus,
        stage_workflow_id,
    )
    from crew.reports import BuildReport, PlanReport, QAReport, ReadinessReport
    from workflows import search_attributes
    from workflows.details import current_details, final_summary
    from workflows.journal import Journal
    from workflows.prompts import stage_input
    from workflows.repository import push_branch
    from workflows.stage import StageWorkflow
    from workflows.types.pipeline import (
        PipelineInput,
        PipelineResult,
        PipelineStatus,
        PipelineUsage,
        StageRecord,
    )
    from workflows.types.repository import Delivery, PushInput, Worktree, WorktreeInput
    from workflows.types.review import MAX_FEEDBACK_CHARS, AwaitingReview, Review, ReviewSignal
    from workflows.types.stage import (
        BUDGET_REACHED,
        STAGE_PROGRESS,
        BudgetAnswer,
        StageInput,
        StageProgress,
    )
    from workflows.types.workspace import ReadTextInput
    from workflows.worktree import SessionWorktree

__all__ = ["PipelineWorkflow"]

_NO_AGENTS_MD = "AGENTS.md was not saved: write it and save it with save_agents_md."
_ACTIVITY_TIMEOUT = timedelta(minutes=2)
_ACTIVITY_RETRY = RetryPolicy(maximum_attempts=5)

R = TypeVar("R", bound=BaseModel)


class Rejected(Exception):
    """A reviewer rejected the run."""

    def __init__(self, stage: str, feedback: str) -> None:
        super().__init__(f"rejected at {stage}: {feedback or 'no reason given'}")
        self.stage = stage
        self.feedback = feedback


@workflow.defn
class PipelineWorkflow:
    @workflow.init
    def __init__(self, input: PipelineInput) -> None:
        self.input = input
        self.options = input.options
        self.journal = Journal(input.session_id)
        self.state = SessionStatus.RUNNING
        self.stage: Role | None = None
        self.iteration = 0
        self.iterations: dict[Role, int] = {}
        self.stages: list[StageRecord] = []
        self.usage = PipelineUsage()
        self.codex_tasks = 0
        self.budget = self.options.token_budget
        # The stage running now (a child workflow), how far it has got, and a budget rejection.
        self.stage_run: workflow.ChildWorkflowHandle | None = None
        self.progress: StageProgress | None = None
        self.rejected_at_budget: str | None = None
        # The session's own worktree, on branch codexflow/<session>, and the host holding it.
        self.worktree = SessionWorktree(
            WorktreeInput(
                project_id=input.project_id,
                name=input.session_id,
                base_ref=input.options.base_ref,
            ),
            lost_after=timedelta(seconds=input.options.host_lost_after_s),
            moved=self.worktree_moved,
        )
        self.overview: str | None = None  # of the repository, for the Planner
        self.head: str | None = None  # the commit the current stage started from
        self.delivery: Delivery | None = None
        self.awaiting: AwaitingReview | None = None
        self.review_received: Review | None = None
        self.outcome: Outcome | None = None

    # --- the diagram ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: PipelineInput) -> PipelineResult:
        workflow.upsert_search_attributes(
            [search_attributes.PROJECT.value_set(input.project_id)]
            + (
                [search_attributes.PROJECT_NAME.value_set(input.project_name)]
                if input.project_name
                else []
            )
        )
        await self.journal.session_started(input)
        try:
            await self.prepare_worktree()
            await self.plan()
            qa = await self.build_and_verify()
            if qa.verdict == "FAIL":
                return await self.finish(Outcome.QA_FAILED)
            ready = await self.run_stage(Role.PROD_READY, ReadinessReport)
            for _ in range(self.options.max_repair_loops):
                if ready.verdict == "APPROVED":
                    break
                qa = await self.build_and_verify(fix=ready.blocking)
                if qa.verdict == "FAIL":
                    return await self.finish(Outcome.QA_FAILED)
                ready = await self.run_stage(Role.PROD_READY, ReadinessReport)
            approved = ready.verdict == "APPROVED"
            return await self.finish(Outcome.APPROVED if approved else Outcome.NEEDS_WORK)
        except Rejected:
            return await self.finish(Outcome.REJECTED)
        except BaseException as err:
            if not isinstance(err, Exception | asyncio.CancelledError):
                raise  # the worker evicting the run from its cache: nothing happened to the run
            cancelled = is_cancelled_exception(err)
            self.state = SessionStatus.CANCELLED if cancelled else SessionStatus.FAILED
            workflow.upsert_search_attributes([search_attributes.OUTCOME.value_set(self.state)])
            self.show_details()
            await self.journal.session_ended(
                self.state, None if cancelled else innermost_reason(err)
            )
            raise

    async def plan(self) -> None:
        """The Planner writes AGENTS.md; the Builder never starts without one."""
        await self.run_stage(Role.PLANNER, PlanReport)
        if await self.read_agents_md():
            return
        await self.run_stage(Role.PLANNER, PlanReport, fix=[_NO_AGENTS_MD])
        if not await self.read_agents_md():
            raise ApplicationError(
                "the Planner saved no AGENTS.md, twice: the Builder has nothing to work from",
                type="NoAgentsMd",
                non_retryable=True,
            )

    async def build_and_verify(self, fix: list[str] | None = None) -> QAReport:
        """Builder, then QA; a QA FAIL goes back to the Builder with its issues, a bounded number of times."""
        await self.run_stage(Role.BUILDER, BuildReport, fix=fix)
        qa = await self.run_stage(Role.QA_QC, QAReport)
        for _ in range(self.options.max_repair_loops):
            if qa.verdict == "PASS":
                break
            await self.run_stage(Role.BUILDER, BuildReport, fix=qa.issues)
            qa = await self.run_stage(Role.QA_QC, QAReport)
        return qa

    # --- the worktree --------------------------------------------------------------------------

    async def prepare_worktree(self) -> None:
        """The session's own worktree, on its own branch, from its base ref."""
        worktree = await self.worktree.prepare()
        self.head = worktree.head_commit
        await self.journal.worktree_ready(worktree)
        self.overview = await self.worktree.overview()

    async def worktree_moved(self, moved: SessionMoved, worktree: Worktree) -> None:
        """Its host was lost: the session carries on from the last checkpoint elsewhere (the
        stage's changes are still counted from where it started)."""
        self.show_details()
        await self.journal.worktree_moved(moved, worktree)

    async def deliver(self) -> str | None:
        """Push the approved branch, as the options ask; why it could not be, if it could not."""
        try:
            self.delivery = await push_branch(
                PushInput(
                    project_id=self.input.project_id,
                    session_id=self.input.session_id,
                    branch=self.worktree.worktree.branch,
                    remote_branch=self.options.remote_branch,
                )
            )
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            return f"the run was approved, but its branch was not pushed: {innermost_reason(err)}"
        return None

    # --- one stage -----------------------------------------------------------------------------

    async def run_stage(self, role: Role, report_type: type[R], fix: list[str] | None = None) -> R:
        """Run the role's agent and checkpoint, then, if gated, wait for a review:
        request_changes re-runs the stage with the feedback. Returns the role's report."""
        feedback: str | None = None
        while True:
            record = await self.run_agent(role, fix or [], feedback)
            await self.check_budget()
            report = record.report
            if not isinstance(report, report_type):  # the agent's output_type guarantees it
                raise ApplicationError(
                    f"{role} returned a {type(report).__name__}",
                    type="StageFailed",
                    non_retryable=True,
                )
            if role not in self.options.gates:
                return report
            review = await self.wait_for_review(role, ReviewReason.GATE)
            record.feedback = review.feedback or None
            if review.decision is Decision.APPROVE:
                return report
            if review.decision is Decision.REJECT:
                raise Rejected(role, review.feedback)
            feedback = review.feedback

    async def run_agent(self, role: Role, fix: list[str], feedback: str | None) -> StageRecord:
        """One stage iteration, as a child workflow: the role's agent on the session's worktree."""
        self.iteration = self.iterations[role] = self.iterations.get(role, 0) + 1
        self.stage = role
        workflow.upsert_search_attributes([search_attributes.STAGE.value_set(role.value)])
        overview = self.overview if role is Role.PLANNER else None
        stage = StageInput(
            session_id=self.input.session_id,
            project_id=self.input.project_id,
            role=role,
            iteration=self.iteration,
            prompt=stage_input(
                role, self.iteration, self.input.user_request, self.stages, fix, feedback, overview
            ),
            feedback=feedback,
            options=self.options,
            worktree=self.worktree.worktree,
            head=self.head,
            codex_before=self.codex_tasks,
            budget_left=None if self.budget is None else self.budget - self.usage.total,
        )
        self.progress = StageProgress()
        self.show_details()
        try:
            self.stage_run = await workflow.start_child_workflow(
                StageWorkflow.run,
                stage,
                id=stage_workflow_id(self.input.session_id, role, self.iteration),
                static_summary=f"{role.value} #{self.iteration}",
            )
            outcome = await self.stage_run
        except ChildWorkflowError as err:
            if self.rejected_at_budget is not None:
                raise Rejected(BUDGET, self.rejected_at_budget) from None
            if isinstance(err.cause, ApplicationError):  # the session fails with the stage's reason
                raise ApplicationError(
                    err.cause.message, type=err.cause.type, non_retryable=True
                ) from err
            raise
        finally:
            self.stage_run = self.progress = None
        record = outcome.record
        self.worktree.adopt(outcome.worktree, outcome.progress.moves)
        self.head = record.checkpoint.commit
        self.codex_tasks += record.codex_tasks
        self.usage.model = self.usage.model + record.model_usage
        self.usage.codex = self.usage.codex + outcome.progress.codex_usage
        self.stages.append(record)
        self.show_details()
        return record

    @workflow.signal(name=STAGE_PROGRESS)
    def stage_progress(self, progress: StageProgress) -> None:
        """The running stage's codex tasks, tokens and worktree so far."""
        if self.stage_run is not None:
            self.progress = progress
            self.show_details()

    @workflow.signal(name=BUDGET_REACHED)
    async def budget_reached(self, progress: StageProgress) -> None:
        """The running stage is past its budget: pause for a review and answer it."""
        stage_run = self.stage_run
        if stage_run is None:
            return
        self.progress = progress
        try:
            await self.check_budget()
            left = None if self.budget is None else self.budget - self.usage.total
            answer = BudgetAnswer(budget_left=left)
        except Rejected as rejected:
            self.rejected_at_budget = rejected.feedback
            answer = BudgetAnswer(rejected=rejected.feedback)
        await stage_run.signal(StageWorkflow.budget_answer, answer)

    # --- reviews and the budget ----------------------------------------------------------------

    async def wait_for_review(self, stage: str, reason: ReviewReason) -> Review:
        self.awaiting = AwaitingReview(stage=stage, reason=reason, since=workflow.now())
        self.review_received = None
        self.state = SessionStatus.WAITING_FOR_REVIEW
        workflow.upsert_search_attributes([search_attributes.WAITING.value_set(reason.value)])
        self.show_details()
        await self.journal.review_awaited(self.awaiting, self.tokens_used())
        timeout = timedelta(seconds=self.options.review_timeout_s)
        try:
            await workflow.wait_condition(
                lambda: self.review_received is not None,
                timeout=timeout,
                timeout_summary=f"review of {stage}: {self.options.on_review_timeout} after {timeout}",
            )
            review = self.review_received
            assert review is not None
        except TimeoutError:
            if self.options.on_review_timeout == "fail":
                raise ApplicationError(
                    f"no review of {stage} within {self.options.review_timeout_s:g}s",
                    type="ReviewTimeout",
                    non_retryable=True,
                ) from None
            review = Review(
                stage=stage, decision=Decision.APPROVE, feedback="approved after timeout"
            )
        finally:
            self.awaiting = None
            self.state = SessionStatus.RUNNING
            workflow.upsert_search_attributes([search_attributes.WAITING.value_unset()])
        self.show_details()
        await self.journal.review_received(review)
        return review

    async def check_budget(self) -> None:
        """Past the token budget, pause for a review: approve grants another budget, reject ends the run."""
        while self.budget is not None and self.tokens_used() > self.budget:
            review = await self.wait_for_review(BUDGET, ReviewReason.BUDGET)
            if review.decision is Decision.REJECT:
                raise Rejected(BUDGET, review.feedback)
            self.budget += self.options.token_budget or 0

    def tokens_used(self) -> int:
        return self.usage.total + (self.progress.tokens if self.progress else 0)

    @workflow.update
    def review(self, review: Review) -> AwaitingReview:
        """Approve, request changes to, or reject the stage the run is waiting on."""
        assert self.awaiting is not None
        awaited = self.awaiting
        self.review_received = review
        return awaited

    @review.validator
    def validate_review(self, review: Review) -> None:
        if problem := self.review_problem(review):
            raise ValueError(problem)

    def review_problem(self, review: Review) -> str | None:
        if self.awaiting is None or self.review_received is not None:
            return "the run is not waiting for a review"
        if review.stage != self.awaiting.stage:
            return f"the run is waiting for a review of {self.awaiting.stage}, not {review.stage}"
        if (
            self.awaiting.reason is ReviewReason.BUDGET
            and review.decision is Decision.REQUEST_CHANGES
        ):
            return "a budget pause takes approve (continue) or reject (stop)"
        return None

    @workflow.signal
    async def approve(self, signal: ReviewSignal) -> None:
        await self.review_by_signal(signal, Decision.APPROVE)

    @workflow.signal
    async def request_changes(self, signal: ReviewSignal) -> None:
        await self.review_by_signal(signal, Decision.REQUEST_CHANGES)

    @workflow.signal
    async def reject(self, signal: ReviewSignal) -> None:
        await self.review_by_signal(signal, Decision.REJECT)

    async def review_by_signal(self, signal: object, decision: Decision) -> None:
        # Signals cannot be refused to their sender: one the run cannot take is dropped, and
        # said so in the session's events. (One that failed validation, e.g. oversized
        # feedback, arrives as a plain dict.)
        if isinstance(signal, ReviewSignal):
            review = Review(stage=signal.stage, decision=decision, feedback=signal.feedback)
            if (problem := self.review_problem(review)) is None:
                self.review_received = review
                return
            stage: object = signal.stage
        else:
            problem = (
                f"not a review: a stage, and feedback of at most {MAX_FEEDBACK_CHARS} characters"
            )
            stage = signal.get("stage") if isinstance(signal, dict) else None
        workflow.logger.warning("ignored %s signal: %s", decision.value, problem)
        await self.journal.review_ignored(
            ReviewIgnored(
                stage=str(stage)[:32] if stage else None, decision=decision, reason=problem
            )
        )

    # --- what operators see --------------------------------------------------------------------

    @workflow.query
    def status(self) -> PipelineStatus:
        progress = self.progress
        usage = self.usage
        if progress is not None:
            usage = PipelineUsage(
                model=usage.model + progress.model_usage, codex=usage.codex + progress.codex_usage
            )
        return PipelineStatus(
            session_id=self.input.session_id,
            worktree=progress and progress.worktree or self.worktree.current,
            moves=self.worktree.moves + (progress.moves if progress else []),
            state=self.state,
            stage=self.stage,
            iteration=self.iteration,
            awaiting=self.awaiting,
            stages=self.stages,
            codex_tasks=self.codex_tasks + (progress.codex_tasks if progress else 0),
            usage=usage,
            tokens_used=self.tokens_used(),
            token_budget=self.budget,
        )

    def show_details(self) -> None:
        """The run's current details (markdown) in the Temporal Web UI."""
        workflow.set_current_details(
            current_details(self.status(), self.outcome, self.input.session_url)
        )

    # --- mechanics -----------------------------------------------------------------------------

    async def read_agents_md(self) -> str | None:
        return await self.worktree.on_host(
            lambda host: workflow.execute_activity_method(
                AgentTools.read_workspace_text,
                ReadTextInput(workspace=host.path, path=AGENTS_MD),
                start_to_close_timeout=_ACTIVITY_TIMEOUT,
                retry_policy=_ACTIVITY_RETRY,
                **host.options,
            )
        )

    async def finish(self, outcome: Outcome) -> PipelineResult:
        agents_md = await self.read_agents_md()
        undelivered = None
        if outcome is Outcome.APPROVED and self.options.deliver == "push":
            undelivered = await self.deliver()
        self.state = SessionStatus.COMPLETED
        self.outcome = outcome
        workflow.upsert_search_attributes([search_attributes.OUTCOME.value_set(outcome.value)])
        self.show_details()
        result = PipelineResult(
            session_id=self.input.session_id,
            worktree=self.worktree.current,
            delivery=self.delivery,
            outcome=outcome,
            summary=final_summary(outcome, self.stages, undelivered),
            agents_md=agents_md,
            stages=self.stages,
            usage=self.usage,
            codex_tasks=self.codex_tasks,
        )
        if self.delivery is not None:  # delivered: its worktree goes, its branch stays
            await self.worktree.remove()
        # Recorded last: a client that sees the session finished sees all of it done.
        await self.journal.session_finished(
            outcome, result.summary, agents_md, self.usage, self.codex_tasks, undelivered
        )
        await workflow.wait_condition(workflow.all_handlers_finished)  # e.g. a review.ignored
        return result
