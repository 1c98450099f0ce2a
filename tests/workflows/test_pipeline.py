"""PipelineWorkflow on a real dev server: scripted agents (TestModel), the fake codex, real git."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.client import (
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.service import RPCError

from activities.records import Recorder
from config import Settings
from core.repos import ProjectRepos
from core.vocabulary import Decision
from crew.reports import BuildReport, PlanReport, QAReport, ReadinessReport
from devkit.agent_model import AGENTS_MD, ScriptedAgentModel, pipeline_script, report, tool
from store.models import Conversation, Message, RunSession
from tests.helpers.git import git
from tests.helpers.pipeline import Start, wait_for_review
from tests.helpers.processes import alive, codex_pid
from workflows.pipeline import PipelineWorkflow
from workflows.types.pipeline import PipelineResult
from workflows.types.review import Review, ReviewSignal


def stages(result: PipelineResult) -> list[str]:
    return [f"{r.stage.value}#{r.iteration}" for r in result.stages]


async def refused(handle: WorkflowHandle, review: Review) -> str:
    """The reason the review update was refused (it must be refused)."""
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await handle.execute_update(PipelineWorkflow.review, review)
    return str(err.value.cause)


async def test_full_pipeline(
    start: Start, worktree: Path, settings: Settings, session_id: str
) -> None:
    model = ScriptedAgentModel(pipeline_script())
    handle = await start(model)
    result: PipelineResult = await handle.result()

    assert result.outcome == "approved"
    assert stages(result) == ["planner#1", "builder#1", "qa_qc#1", "prod_ready#1"]
    plan, build, qa, ready = (r.report for r in result.stages)
    assert isinstance(plan, PlanReport) and plan.agents_md_saved
    assert isinstance(build, BuildReport) and isinstance(qa, QAReport) and qa.verdict == "PASS"
    assert isinstance(ready, ReadinessReport) and ready.verdict == "APPROVED"
    assert result.agents_md == AGENTS_MD == (worktree / "AGENTS.md").read_text()
    assert "def add" in (worktree / "calc.py").read_text()
    assert result.codex_tasks == 3 and result.summary.startswith("Outcome: approved.")

    # The session worked in its own worktree, on its own branch; every change is a commit there
    # (the AGENTS.md save, each codex task), and each stage's checkpoint says what it changed.
    assert result.worktree is not None and result.worktree.path == str(worktree)
    assert result.worktree.branch == f"codexflow/{session_id}"
    log = await git(worktree, "log", "--format=%s")
    assert "codexflow: AGENTS.md saved" in log and f"codex task {session_id}-builder-1-1" in log
    assert result.stages[0].checkpoint.changed_files == ["AGENTS.md"]
    assert result.stages[1].checkpoint.changed_files == ["calc.py"]
    head = (await git(worktree, "rev-parse", "HEAD")).strip()
    assert result.stages[-1].checkpoint.commit == head
    assert (await git(worktree, "status", "--porcelain")).strip() == ""
    # The branch is published to the central repository: it exists off this worktree.
    central = ProjectRepos(settings).central("p1")
    assert (await central.run("rev-parse", f"codexflow/{session_id}")).strip() == head

    # Each later stage saw the earlier ones' reports.
    qa_turn = next(c for c in model.calls if c.role == "qa_qc")
    assert "- planner #1: A calculator." in qa_turn.text and "- builder #1" in qa_turn.text

    status = await handle.query(PipelineWorkflow.status)
    assert status.state == "completed" and status.codex_tasks == 3 and len(status.stages) == 4
    description = await handle.describe()
    assert description.search_attributes.get("CodexflowStage") == ["prod_ready"]


async def test_qa_fails_twice_then_passes(start: Start) -> None:
    model = ScriptedAgentModel(pipeline_script(qa_failures=2))
    result = await (await start(model, max_repair_loops=2)).result()
    assert result.outcome == "approved"
    assert stages(result) == [
        "planner#1", "builder#1", "qa_qc#1", "builder#2", "qa_qc#2", "builder#3", "qa_qc#3",
        "prod_ready#1",
    ]  # fmt: skip
    builder_2 = next(c for c in model.calls if c.role == "builder" and c.iteration == 2)
    assert "ISSUES TO FIX:\n1. issue from QA #1" in builder_2.text


async def test_qa_failing_forever_stops_at_the_limit(start: Start) -> None:
    result = await (
        await start(ScriptedAgentModel(pipeline_script(qa_failures=99)), max_repair_loops=1)
    ).result()
    assert result.outcome == "qa_failed"
    assert stages(result)[-1] == "qa_qc#2" and "prod_ready#1" not in stages(result)
    assert "Open issue: issue from QA #2" in result.summary


async def test_needs_work_goes_back_to_builder_and_qa(start: Start) -> None:
    model = ScriptedAgentModel(pipeline_script(needs_work=1))
    result = await (await start(model)).result()
    assert result.outcome == "approved"
    assert stages(result)[3:] == ["prod_ready#1", "builder#2", "qa_qc#2", "prod_ready#2"]
    builder_2 = next(c for c in model.calls if c.role == "builder" and c.iteration == 2)
    assert "blocker from ProdReady #1" in builder_2.text


async def test_gate_approve_request_changes_and_wrong_reviews(
    start: Start, recorder: Recorder
) -> None:
    model = ScriptedAgentModel(pipeline_script())
    handle = await start(model, gates=["planner", "qa_qc"])

    await wait_for_review(handle, "planner")
    wrong_stage = Review(stage="qa_qc", decision=Decision.APPROVE)
    assert "waiting for a review of planner, not qa_qc" in await refused(handle, wrong_stage)
    awaited = await handle.execute_update(
        PipelineWorkflow.review,
        Review(
            stage="planner", decision=Decision.REQUEST_CHANGES, feedback="Also support division."
        ),
    )
    assert awaited.stage == "planner" and awaited.reason == "gate"

    # The planner runs again with the feedback, then waits again; approve by signal this time.
    await wait_for_review(handle, "planner")
    rerun = [c for c in model.calls if c.role == "planner" and c.iteration == 2]
    assert (
        rerun
        and "REVIEWER FEEDBACK (address it in this attempt):\nAlso support division."
        in rerun[0].text
    )
    # Review signals the run cannot take (signals are never refused to their sender) are
    # dropped, and said so in the session's events.
    await handle.signal(PipelineWorkflow.reject, ReviewSignal(stage="builder"))
    await handle.signal("approve", {"stage": "planner", "feedback": "x" * 30_000})
    await handle.signal(PipelineWorkflow.approve, ReviewSignal(stage="planner"))

    await wait_for_review(handle, "qa_qc")
    events = await recorder.events.read(handle.id.removeprefix("session-"), limit=10_000)
    ignored = [e.payload for e in events if e.kind == "review.ignored"]
    assert ignored[0] == {
        "stage": "builder",
        "decision": "reject",
        "reason": "the run is waiting for a review of planner, not builder",
    }
    assert ignored[1]["stage"] == "planner" and ignored[1]["decision"] == "approve"
    assert ignored[1]["reason"].startswith("not a review")
    assert len(ignored) == 2  # the good one was taken
    await handle.execute_update(
        PipelineWorkflow.review, Review(stage="qa_qc", decision=Decision.APPROVE)
    )
    result = await handle.result()
    assert result.outcome == "approved"
    assert stages(result) == ["planner#1", "planner#2", "builder#1", "qa_qc#1", "prod_ready#1"]
    assert result.stages[0].feedback == "Also support division."

    with pytest.raises(RPCError, match="already completed"):
        await handle.execute_update(
            PipelineWorkflow.review, Review(stage="planner", decision=Decision.APPROVE)
        )


async def test_gate_reject_ends_the_run(start: Start) -> None:
    handle = await start(ScriptedAgentModel(pipeline_script()), gates=["builder"])
    await wait_for_review(handle, "builder")
    await handle.execute_update(
        PipelineWorkflow.review,
        Review(stage="builder", decision=Decision.REJECT, feedback="Wrong approach"),
    )
    result = await handle.result()
    assert result.outcome == "rejected" and stages(result) == ["planner#1", "builder#1"]


async def test_review_when_none_is_awaited_is_refused(start: Start) -> None:
    model = ScriptedAgentModel(pipeline_script(codex_prompt="@fake sleep=1"))
    handle = await start(model)
    assert re.search(
        r"not waiting for a review",
        await refused(handle, Review(stage="planner", decision=Decision.APPROVE)),
    )
    assert (await handle.result()).outcome == "approved"


async def test_budget_pauses_and_resumes_on_approval(start: Start) -> None:
    # Every model call reports 60 tokens (8 calls in all), codex none; 300 is crossed after QA.
    model = ScriptedAgentModel(pipeline_script(codex_prompt="@fake tokens=0,0"), tokens=(50, 10))
    handle = await start(model, token_budget=300)
    await wait_for_review(handle, "budget")
    status = await handle.query(PipelineWorkflow.status)
    assert (
        status.state == "waiting_for_review"
        and status.awaiting
        and status.awaiting.reason == "budget"
    )
    assert status.tokens_used == 360 and status.stage == "qa_qc"
    assert re.search(
        r"approve .continue. or reject",
        await refused(handle, Review(stage="budget", decision=Decision.REQUEST_CHANGES)),
    )
    await handle.execute_update(
        PipelineWorkflow.review, Review(stage="budget", decision=Decision.APPROVE)
    )
    result = await handle.result()
    assert result.outcome == "approved"
    assert result.usage.model.input_tokens == 50 * len(model.calls)


async def test_budget_reached_mid_stage_pauses_the_stage_and_a_rejection_ends_the_run(
    start: Start, recorder: Recorder
) -> None:
    # 60 tokens a model call: QA's first call brings the run to 300, past 250, before its codex
    # task: the stage (a child workflow) waits while its session asks for the review.
    model = ScriptedAgentModel(pipeline_script(codex_prompt="@fake tokens=0,0"), tokens=(50, 10))
    handle = await start(model, token_budget=250)
    await wait_for_review(handle, "budget")
    status = await handle.query(PipelineWorkflow.status)
    assert status.stage == "qa_qc" and status.tokens_used == 300
    assert [s.stage for s in status.stages] == ["planner", "builder"]
    calls = len(model.calls)
    await handle.execute_update(
        PipelineWorkflow.review,
        Review(stage="budget", decision=Decision.REJECT, feedback="too dear"),
    )
    result = await handle.result()
    assert result.outcome == "rejected" and len(model.calls) == calls  # QA went no further
    kinds = [e.kind for e in await recorder.events.read(result.session_id)]
    assert kinds[-3:] == ["review.received", "stage.failed", "session.finished"]


async def test_cancel_mid_stage_stops_codex(start: Start, worktree: Path) -> None:
    handle = await start(
        ScriptedAgentModel(pipeline_script(codex_prompt="@fake pidfile=codex.pid\n@fake hang"))
    )
    pid = await codex_pid(worktree, within=30)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as err:
        await handle.result()
    assert isinstance(err.value.cause, CancelledError)
    assert not alive(pid)
    status = await handle.query(PipelineWorkflow.status)
    assert status.state == "cancelled" and status.stage == "builder"


async def test_failing_agent_stage_fails_the_run_with_the_reason(
    start: Start, recorder: Recorder
) -> None:
    def broken(turn):
        if turn.role == "builder" and turn.step == 0:
            return tool("read_agents_md")
        if turn.role == "builder":
            # As the plugin reports a 4xx from the model: not worth retrying.
            raise ApplicationError("model exploded", non_retryable=True)
        return pipeline_script()(turn)

    handle = await start(ScriptedAgentModel(broken))
    with pytest.raises(WorkflowFailureError) as err:
        await handle.result()
    assert "builder stage failed" in str(err.value.cause) and "model exploded" in str(
        err.value.cause
    )

    # The failure is recorded before the run ends: the stage and the session, with the reason.
    session_id = handle.id.removeprefix("session-")
    async with recorder.db() as db:
        session = await db.get(RunSession, session_id)
        assert session is not None and session.status == "failed"
        assert session.error and "model exploded" in session.error
        # AGENTS.md was recorded when the Planner saved it, not only at a run's end.
        assert session.agents_md_content == AGENTS_MD
        builder = await db.get(Conversation, f"{session_id}:builder:1")
        assert builder is not None and builder.status == "failed"
        # What the failed stage was told and did until it failed is kept.
        said = (
            await db.scalars(
                select(Message).where(Message.conversation_id == builder.id).order_by(Message.seq)
            )
        ).all()
        assert [m.role for m in said] == ["user", "assistant", "tool"]
        assert said[0].content.startswith("STAGE: builder #1")
        assert said[1].content.startswith("read_agents_md(") and said[2].content == AGENTS_MD
    kinds = [e.kind for e in await recorder.events.read(session_id)]
    assert kinds[-2:] == ["stage.failed", "session.failed"]


async def test_codex_tasks_started_without_waiting_run_one_at_a_time(
    start: Start, worktree: Path, recorder: Recorder, session_id: str
) -> None:
    """The seed's asynchronous codex tools: run_codex(wait_for_completion=False) answers with the
    task's id at once; check_codex_status and wait_for_codex follow it; a second task waits for
    the first, since one codex task writes the worktree at a time."""
    first, second = (f"{session_id}-builder-1-{n}" for n in (1, 2))
    slow = "@fake sleep=2\n@fake write=calc.py:def add(a, b):\\n    return a + b\\n"
    quick = "@fake write=test_calc.py:from calc import add\\n"
    whole = pipeline_script()

    def builder(turn):
        if turn.role != "builder":
            return whole(turn)
        match turn.step:
            case 0:
                return tool("run_codex", prompt=slow, wait_for_completion=False)
            case 1:
                return tool("run_codex", prompt=quick, wait_for_completion=False)
            case 2:
                return tool("check_codex_status", task_id=second)
            case 3:
                return tool("wait_for_codex", task_id=second)
            case 4:
                return tool("check_codex_status", task_id=first)
            case 5:
                return tool("wait_for_codex", task_id="no-such-task")
        return whole(turn)

    model = ScriptedAgentModel(builder)
    result: PipelineResult = await (await start(model)).result()
    assert result.outcome == "approved"

    seen = next(c for c in model.calls if c.role == "builder" and c.step == 6).outputs
    assert seen[0].startswith(f"codex task {first} started") and "wait_for_codex" in seen[0]
    assert seen[1].startswith(f"codex task {second} started")
    assert f"{second} is queued behind {first}" in seen[2]
    assert seen[3].startswith("codex succeeded") and "test_calc.py" in seen[3]
    assert seen[4].startswith(f"codex task {first} has ended") and "calc.py" in seen[4]
    assert "No codex task 'no-such-task'" in seen[5]
    assert (worktree / "test_calc.py").exists() and "def add" in (worktree / "calc.py").read_text()
    assert result.stages[1].checkpoint.changed_files == ["calc.py", "test_calc.py"]

    # One writer at a time: the second task started after the first had finished.
    events = await recorder.events.read(result.session_id, limit=10_000)
    ends = ("codex.started", "codex.finished")
    order = [(e.kind, e.codex_task_id) for e in events if e.kind in ends]
    assert [entry for entry in order if entry[1] in (first, second)] == [
        ("codex.started", first),
        ("codex.finished", first),
        ("codex.started", second),
        ("codex.finished", second),
    ]


async def test_the_builder_never_starts_without_an_agents_md(
    start: Start, recorder: Recorder, session_id: str
) -> None:
    """A Planner that saves no AGENTS.md is asked once more; if it still saves none, the run
    fails saying so, and no Builder is run."""
    whole = pipeline_script()

    def forgetful(turn):
        if turn.role == "planner":
            return report(summary="A plan.", requirements=["add"], steps=["calc.py"],
                          agents_md_saved=False)  # fmt: skip
        return whole(turn)

    model = ScriptedAgentModel(forgetful)
    handle = await start(model)
    with pytest.raises(WorkflowFailureError) as err:
        await handle.result()
    assert "the Planner saved no AGENTS.md" in str(err.value.cause)
    assert {c.role for c in model.calls} == {"planner"}
    second = next(c for c in model.calls if c.iteration == 2)
    assert "AGENTS.md was not saved" in second.text
    async with recorder.db() as db:
        session = await db.get(RunSession, session_id)
        assert session is not None and session.status == "failed"
        assert session.error and "no AGENTS.md" in session.error
