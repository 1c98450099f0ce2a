"""A pipeline run leaves the complete trail in the database: session, conversations with messages,
codex tasks with their output, and the event log in order."""

from __future__ import annotations

from sqlalchemy import select

from activities.records import Recorder
from devkit.agent_model import ScriptedAgentModel, pipeline_script
from store.models import CodexTask, Conversation, RunSession
from tests.helpers.pipeline import Start


async def test_full_run_leaves_the_trail(start: Start, recorder: Recorder) -> None:
    handle = await start(ScriptedAgentModel(pipeline_script(qa_failures=1)))
    result = await handle.result()
    session_id = result.session_id

    async with recorder.db() as db:
        session = await db.get(RunSession, session_id)
        assert session is not None
        assert session.status == "completed" and session.outcome == "approved"
        assert (
            session.final_summary == result.summary
            and session.agents_md_content == result.agents_md
        )
        assert session.workflow_id == handle.id and session.completed_at is not None
        assert session.current_agent == "prod_ready"
        assert session.usage["codex"]["input_tokens"] > 0

        conversations = (
            await db.scalars(
                select(Conversation)
                .where(Conversation.session_id == session_id)
                .order_by(Conversation.started_at)
            )  # fmt: skip
        ).all()
        assert [(c.agent_type, c.iteration) for c in conversations] == [
            ("planner", 1), ("builder", 1), ("qa_qc", 1), ("builder", 2), ("qa_qc", 2),
            ("prod_ready", 1),
        ]  # fmt: skip
        assert all(c.status == "completed" and c.report for c in conversations)
        assert conversations[2].report and conversations[2].report["verdict"] == "FAIL"
        for conversation in conversations:
            await db.refresh(conversation, ["messages"])
            roles = [m.role for m in conversation.messages]
            assert roles[0] == "user" and roles[-1] == "assistant" and "tool" in roles
            assert conversation.messages[0].content.startswith(
                f"STAGE: {conversation.agent_type} #{conversation.iteration}"
            )

        tasks = (
            await db.scalars(select(CodexTask).where(CodexTask.session_id == session_id))
        ).all()
        assert len(tasks) == result.codex_tasks == 5
        assert all(t.status == "completed" and t.exit_code == 0 and t.thread_id for t in tasks)

    events = await recorder.events.read(session_id, limit=10_000)
    kinds = [e.kind for e in events]
    assert kinds[0] == "session.started" and kinds[-1] == "session.finished"
    assert kinds.count("stage.started") == kinds.count("stage.completed") == 6
    assert kinds.count("codex.started") == kinds.count("codex.finished") == 5
    codex_output = [e for e in events if e.kind == "codex.event"]
    assert codex_output and {e.codex_task_id for e in codex_output} == {t.id for t in tasks}
    assert [e.id for e in events] == sorted(e.id for e in events)
