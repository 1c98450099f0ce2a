"""The models on migrated SQLite and PostgreSQL databases: writes, constraints, JSON, cascades."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from store.db import make_sessionmaker
from store.models import (
    CodexTask,
    Conversation,
    Message,
    Project,
    ProjectFile,
    RunSession,
    SessionEvent,
)

METADATA: dict[str, Any] = {
    "source": "upload",
    "tags": ["spec", "ünïcode ✓"],
    "nested": {"depth": 2, "ratio": 0.5, "none": None, "flag": True},
}


def graph() -> list[Any]:
    """A project with one of everything beneath it."""
    project = Project(id="p1", name="demo", workspace_path="/ws/demo", settings={"k": "v"})
    file = ProjectFile(
        id="f1",
        project_id="p1",
        filename="spec.md",
        file_path="docs/spec.md",
        file_type="text/markdown",
        file_size=5_000_000_000,  # needs 64 bits
        content_hash="ab" * 32,
        file_metadata=METADATA,
    )
    session = RunSession(id="s1", project_id="p1", workflow_id="session-s1", user_request="build")
    conversation = Conversation(
        id="s1:planner:1", session_id="s1", agent_type="planner", report={"verdict": "ok"}
    )
    messages = [
        Message(
            id=f"s1:planner:1:{seq}",
            conversation_id="s1:planner:1",
            seq=seq,
            role=role,
            content=f"message {seq}",
            message_metadata={"seq": seq, **METADATA},
        )
        for seq, role in enumerate(["system", "user", "assistant"])
    ]
    task = CodexTask(
        id="s1:builder:1:codex:1",
        session_id="s1",
        agent_type="builder",
        prompt="write it",
        working_directory="/ws/demo",
        output_files=["a.py", "b.py"],
        usage={"input_tokens": 10, "output_tokens": 20},
    )
    events = [
        SessionEvent(session_id="s1", kind="stage_started", payload={"n": n}) for n in range(3)
    ]
    return [project, file, session, conversation, *messages, task, *events]


async def insert(engine: AsyncEngine, *rows: Any) -> None:
    async with make_sessionmaker(engine)() as session:
        session.add_all(rows)
        await session.commit()


async def count(session: AsyncSession, model: type) -> int:
    return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def test_a_whole_session_round_trips(db_engine: AsyncEngine) -> None:
    await insert(db_engine, *graph()[:4])  # parents first: each flush is in dependency order
    await insert(db_engine, *graph()[4:])
    async with make_sessionmaker(db_engine)() as session:
        file = await session.get_one(ProjectFile, "f1")
        assert file.file_metadata == METADATA
        assert file.file_size == 5_000_000_000
        project = await session.get_one(Project, "p1")
        assert project.settings == {"k": "v"} and project.is_active is True

        conversation = await session.get_one(Conversation, "s1:planner:1")
        assert conversation.report == {"verdict": "ok"}
        messages = (await session.execute(select(Message).order_by(Message.seq))).scalars().all()
        assert [m.role for m in messages] == ["system", "user", "assistant"]
        assert [m.message_metadata for m in messages] == [{"seq": n, **METADATA} for n in range(3)]

        task = await session.get_one(CodexTask, "s1:builder:1:codex:1")
        assert task.output_files == ["a.py", "b.py"]
        assert task.usage == {"input_tokens": 10, "output_tokens": 20}
        assert task.status == "pending" and task.attempt == 1

        run = await session.get_one(RunSession, "s1")
        assert run.status == "pending" and run.options == {} and run.usage == {}

        events = (await session.execute(select(SessionEvent).order_by(SessionEvent.id))).scalars()
        assert [e.payload["n"] for e in events] == [0, 1, 2]


async def test_event_ids_increase_and_are_never_reused(db_engine: AsyncEngine) -> None:
    async with make_sessionmaker(db_engine)() as session:
        first = [SessionEvent(session_id="s", kind="k", payload={}) for _ in range(3)]
        session.add_all(first)
        await session.commit()
        ids = [e.id for e in first]
        assert ids == sorted(ids) and len(set(ids)) == 3
        await session.execute(delete(SessionEvent).where(SessionEvent.id == ids[-1]))
        await session.commit()
        later = SessionEvent(session_id="s", kind="k", payload={})
        session.add(later)
        await session.commit()
        # A follower that saw ids[-1] must never miss an event written after it.
        assert later.id > ids[-1]


async def test_aware_datetimes_come_back_aware(db_engine: AsyncEngine) -> None:
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    await insert(db_engine, Project(id="p", name="n", workspace_path="/w", created_at=when))
    async with make_sessionmaker(db_engine)() as session:
        assert (await session.get_one(Project, "p")).created_at == when


@pytest.mark.parametrize(
    "duplicate",
    [
        pytest.param(
            lambda: Conversation(id="s1:planner:1", session_id="s1", agent_type="qa"),
            id="conversation-id",
        ),
        pytest.param(lambda: Project(name="again", workspace_path="/ws/demo"), id="workspace-path"),
        pytest.param(
            lambda: ProjectFile(
                project_id="p1",
                filename="other",
                file_path="docs/spec.md",
                file_size=1,
                content_hash="cd" * 32,
            ),
            id="project-file-path",
        ),
        pytest.param(
            lambda: RunSession(project_id="p1", workflow_id="session-s1", user_request="again"),
            id="session-workflow-id",
        ),
    ],
)
async def test_unique_constraints_hold(db_engine: AsyncEngine, duplicate: Any) -> None:
    await insert(db_engine, *graph()[:4])
    with pytest.raises(IntegrityError):
        await insert(db_engine, duplicate())


async def test_foreign_keys_are_enforced(db_engine: AsyncEngine) -> None:
    with pytest.raises(IntegrityError):
        await insert(db_engine, RunSession(project_id="nowhere", workflow_id="w", user_request="r"))


async def test_deleting_a_project_cascades_to_everything_beneath_it(
    db_engine: AsyncEngine,
) -> None:
    await insert(db_engine, *graph()[:4])
    await insert(db_engine, *graph()[4:])
    await insert(db_engine, Project(id="p2", name="other", workspace_path="/ws/other"))
    async with make_sessionmaker(db_engine)() as session:
        # The database cascades (ON DELETE CASCADE), not the ORM: a bulk delete loads nothing.
        await session.execute(delete(Project).where(Project.id == "p1"))
        await session.commit()
        for model in (ProjectFile, RunSession, Conversation, Message, CodexTask):
            assert await count(session, model) == 0, model.__name__
        assert await count(session, Project) == 1
        assert await count(session, SessionEvent) == 3  # the event log is not keyed to projects


async def test_deleting_a_session_keeps_its_project(db_engine: AsyncEngine) -> None:
    await insert(db_engine, *graph()[:4])
    await insert(db_engine, *graph()[4:])
    async with make_sessionmaker(db_engine)() as session:
        await session.execute(delete(RunSession).where(RunSession.id == "s1"))
        await session.commit()
        for model in (Conversation, Message, CodexTask):
            assert await count(session, model) == 0, model.__name__
        assert await count(session, Project) == 1 and await count(session, ProjectFile) == 1
