"""Record activities are idempotent: executed twice, they leave one row and one event (both DBs)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from temporalio.testing import ActivityEnvironment

from activities.records import RecordActivities, Recorder
from core.vocabulary import CodexTaskState, EventKind, Outcome, Role, SessionStatus, StageStatus
from store.db import make_engine
from store.models import CodexTask, Conversation, Message, Project, RunSession
from workflows.types.codex import CodexResult, CodexTaskInput
from workflows.types.records import (
    ConversationRecord,
    MessageRecord,
    ProjectImported,
    SessionPatch,
    SessionStart,
)

START = SessionStart(
    session_id="s1", project_id="p1", workflow_id="session-s1",
    user_request="Build a calculator.",
)  # fmt: skip


@pytest.fixture
async def recorder(database_url: str) -> AsyncIterator[Recorder]:
    engine = make_engine(database_url)
    yield Recorder(engine)
    await engine.dispose()


async def twice(activity, arg) -> None:
    env = ActivityEnvironment()
    await env.run(activity, arg)
    await env.run(activity, arg)


async def count(recorder: Recorder, model) -> int:
    async with recorder.db() as db:
        return await db.scalar(select(func.count()).select_from(model)) or 0


async def kinds(recorder: Recorder, session_id: str = "s1") -> list[str]:
    return [event.kind for event in await recorder.events.read(session_id)]


async def test_session_start_twice_leaves_one_row(recorder: Recorder) -> None:
    records = RecordActivities(recorder)
    await twice(records.session_start, START)
    assert await count(recorder, Project) == 1 and await count(recorder, RunSession) == 1
    assert await kinds(recorder) == ["session.started"]
    async with recorder.db() as db:
        row = await db.get(RunSession, "s1")
        assert row is not None and row.status == "running" and row.started_at is not None


async def test_session_patches_twice_leave_one_event_each(recorder: Recorder) -> None:
    records = RecordActivities(recorder)
    await twice(records.session_start, START)
    waiting = SessionPatch(session_id="s1", status=SessionStatus.WAITING_FOR_REVIEW,
                           event=EventKind.REVIEW_AWAITED, event_payload={"stage": "planner"})  # fmt: skip
    await twice(records.session, waiting)
    running = SessionPatch(
        session_id="s1", status=SessionStatus.RUNNING, event=EventKind.REVIEW_RECEIVED
    )
    await twice(records.session, running)
    done = SessionPatch(session_id="s1", status=SessionStatus.COMPLETED, outcome=Outcome.APPROVED,
                        final_summary="ok", finished=True, event=EventKind.SESSION_FINISHED)  # fmt: skip
    await twice(records.session, done)
    # A late retry of an older change must not reopen a finished session.
    await ActivityEnvironment().run(records.session, running)
    assert await kinds(recorder) == [
        "session.started", "review.awaited", "review.received", "session.finished"
    ]  # fmt: skip
    async with recorder.db() as db:
        row = await db.get(RunSession, "s1")
        assert row is not None and row.status == "completed" and row.outcome == "approved"
        assert row.completed_at is not None


async def test_conversation_twice_leaves_one_row_and_its_messages(recorder: Recorder) -> None:
    records = RecordActivities(recorder)
    await twice(records.session_start, START)
    opened = ConversationRecord(
        session_id="s1", role=Role.PLANNER, iteration=1, status=StageStatus.RUNNING
    )
    await twice(records.conversation, opened)
    closed = opened.model_copy(
        update={
            "status": StageStatus.COMPLETED,
            "report": {"summary": "plan"},
            "messages": [
                MessageRecord(role="user", content="STAGE: planner #1"),
                MessageRecord(role="assistant", content='save_agents_md({"content": "…"})'),
                MessageRecord(role="tool", content="AGENTS.md saved (10 characters)."),
                MessageRecord(
                    role="assistant", content='{"summary": "plan"}', metadata={"final": True}
                ),
            ],
        }
    )
    await twice(records.conversation, closed)
    assert await count(recorder, Conversation) == 1 and await count(recorder, Message) == 4
    assert await kinds(recorder) == ["session.started", "stage.started", "stage.completed"]
    async with recorder.db() as db:
        messages = (await db.scalars(select(Message).order_by(Message.seq))).all()
        assert [m.role for m in messages] == ["user", "assistant", "tool", "assistant"]
        assert messages[-1].message_metadata == {"final": True}


async def test_codex_task_lifecycle_twice_leaves_one_row(recorder: Recorder) -> None:
    await RecordActivities(recorder).session_start(START)
    task = CodexTaskInput(task_id="s1-builder-1-1", workspace="/ws/p1", prompt="do it",
                          session_id="s1", role=Role.BUILDER)  # fmt: skip
    result = CodexResult(task_id=task.task_id, exit_code=0, success=True, final_message="done",
                         changed_files=["calc.py"])  # fmt: skip
    for _ in range(2):
        assert await recorder.codex_started(task, "run/7/1", pid=123) == 1
        await recorder.codex_finished(task, 1, CodexTaskState.COMPLETED, result)
    assert await count(recorder, CodexTask) == 1
    async with recorder.db() as db:
        row = await db.get(CodexTask, task.task_id)
        assert row is not None and row.status == "completed" and row.output_files == ["calc.py"]
        assert row.session_id == "s1" and row.agent_type == "builder" and row.exit_code == 0
    assert (await kinds(recorder)).count("codex.finished") == 1


async def test_a_codex_task_redone_elsewhere_counts_its_attempts_on(recorder: Recorder) -> None:
    """Temporal's second attempt, then the task run again by a new activity (on the host that
    took the session over, whose Temporal attempt is 1 again): attempts 2 and 3, each once."""
    await RecordActivities(recorder).session_start(START)
    task = CodexTaskInput(task_id="s1-builder-1-1", workspace="/host-a/ws", prompt="p",
                          session_id="s1", role=Role.BUILDER)  # fmt: skip
    assert await recorder.codex_started(task, "run/7/1", pid=1) == 1
    assert await recorder.codex_started(task, "run/7/2", pid=2, attempt=2) == 2
    moved = task.model_copy(update={"workspace": "/host-b/ws"})
    for _ in range(2):
        assert await recorder.codex_started(moved, "run/9/1", pid=3) == 3
    async with recorder.db() as db:
        row = await db.get(CodexTask, task.task_id)
        assert row is not None and row.attempt == 3 and row.working_directory == "/host-b/ws"
    assert (await kinds(recorder)).count("codex.started") == 3


async def test_an_import_shows_its_progress_then_settles_once(recorder: Recorder) -> None:
    async with recorder.db() as db:
        db.add(Project(id="p9", name="p", workspace_path="/r/p9.git", status="importing"))
        await db.commit()
    await recorder.project_progress("p9", "Receiving objects 42%")
    async with recorder.db() as db:
        assert (await db.get(Project, "p9")).import_progress == "Receiving objects 42%"  # type: ignore[union-attr]

    records = RecordActivities(recorder)
    await twice(records.project_import, ProjectImported(project_id="p9", default_branch="trunk"))
    # A late progress line (or a second result) changes nothing once it is settled.
    await recorder.project_progress("p9", "Resolving deltas 99%")
    await records.project_import(ProjectImported(project_id="p9", error="too late"))
    async with recorder.db() as db:
        row = await db.get(Project, "p9")
        assert row is not None and row.status == "ready" and row.default_branch == "trunk"
        assert row.import_progress is None and row.error is None
