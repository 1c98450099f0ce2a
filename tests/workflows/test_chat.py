"""AgentChatWorkflow on a real dev server: a scripted chat model, the fake codex, real git."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import CancelledError
from temporalio.openai_agents.testing import TestModelProvider
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from config import Settings
from core.repos import ProjectRepos
from core.vocabulary import Role, chat_workflow_id
from tests.helpers.chat import ChatModel, chat_model, echo
from tests.helpers.processes import alive, codex_pid
from tests.helpers.temporal import temporal_address
from worker import agents_plugin, build_worker
from workflows.chat import AgentChatWorkflow, trim_history
from workflows.types.chat import ChatInput, ChatMessage, ChatReply, ChatStatus

# --- fixtures ------------------------------------------------------------------------------------

Start = Callable[..., Awaitable[tuple[Client, WorkflowHandle]]]


@pytest.fixture
async def start(
    temporal_dev: WorkflowEnvironment, settings: Settings, task_queue: str
) -> AsyncIterator[Start]:
    """start(model, **input) → (client, handle) of a builder chat on a new project, served by an
    in-process worker."""
    async with AsyncExitStack() as stack:

        async def _start(model: ChatModel, **input: Any) -> tuple[Client, WorkflowHandle]:
            client = await Client.connect(
                temporal_address(temporal_dev),
                plugins=[agents_plugin(settings, provider=TestModelProvider(model))],
            )
            await stack.enter_async_context(build_worker(client, settings, task_queue=task_queue))
            project = uuid.uuid4().hex[:8]
            await ProjectRepos(settings).create(project)
            handle = await client.start_workflow(
                AgentChatWorkflow.run,
                chat_input(project, **input),
                id=chat_workflow_id(project, Role.BUILDER),
                task_queue=task_queue,
            )
            return client, handle

        yield _start


def chat_input(project: str, **input: Any) -> ChatInput:
    return ChatInput(project_id=project, role=Role.BUILDER, codex_heartbeat_s=2, **input)


def chat_worktree(settings: Settings, handle: WorkflowHandle) -> Path:
    """Where a builder chat works: its own worktree of its project (``chat-<project>-builder``)."""
    project = handle.id.removeprefix("chat-").removesuffix("-builder")
    path = ProjectRepos(settings).worktree(project, "chat-builder").work_tree
    assert path is not None
    return path


async def send(handle: WorkflowHandle, message: str) -> ChatReply:
    return await handle.execute_update(AgentChatWorkflow.send, ChatMessage(message=message))


async def refused(handle: WorkflowHandle, message: Any) -> str:
    """The reason the message was refused (it must be)."""
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await handle.execute_update(AgentChatWorkflow.send, message)
    return str(err.value.cause)


async def until_busy(handle: WorkflowHandle) -> None:
    for _ in range(200):
        status: ChatStatus = await handle.query(AgentChatWorkflow.status)
        if status.busy:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the chat never took the message")


# --- tests ---------------------------------------------------------------------------------------


async def test_chat_keeps_the_conversation(start: Start) -> None:
    model = chat_model(echo)
    client, handle = await start(model)
    assert handle.id.startswith("chat-") and handle.id.endswith("-builder")

    first = await send(handle, "hello there")
    assert first == ChatReply(role=Role.BUILDER, response="echo: hello there", turn=1)
    second = await send(handle, "and again")
    assert second.response == "echo: and again" and second.turn == 2

    # The second model call saw the first exchange: the user's message and the agent's answer.
    seen = str(model.inputs[-1])
    assert "hello there" in seen and "echo: hello there" in seen
    status: ChatStatus = await handle.query(AgentChatWorkflow.status)
    assert status.state == "open" and status.turns == 2 and not status.busy
    assert status.history_items == 4  # user, assistant, user, assistant

    # How an API sends a message: update-with-start, which reuses the running chat.
    start_op = WithStartWorkflowOperation(
        AgentChatWorkflow.run,
        ChatInput(project_id="ignored", role=Role.BUILDER),
        id=handle.id,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        task_queue="ignored",
    )
    third = await client.execute_update_with_start_workflow(
        AgentChatWorkflow.send, ChatMessage(message="third"), start_workflow_operation=start_op
    )
    assert third.turn == 3 and (await start_op.workflow_handle()).id == handle.id


async def test_chat_runs_codex(start: Start, settings: Settings) -> None:
    model = chat_model(echo)
    _, handle = await start(model)
    reply = await send(handle, "codex: @fake write=notes.md:hi")
    assert (chat_worktree(settings, handle) / "notes.md").read_text() == "hi"
    assert reply.response.startswith("codex says: codex succeeded")
    assert "changed files: notes.md" in reply.response


async def test_continues_as_new_with_the_conversation(start: Start, settings: Settings) -> None:
    model = chat_model(echo)
    client, handle = await start(model, max_turns_per_run=2)
    first_run = (await handle.describe()).run_id

    assert (await send(handle, "message one")).turn == 1
    assert (await send(handle, "message two")).turn == 2
    latest = client.get_workflow_handle(handle.id)
    third = await send(latest, "message three")
    assert third.turn == 3

    description = await latest.describe()
    assert description.run_id != first_run
    old = await client.get_workflow_handle(handle.id, run_id=first_run).describe()
    assert old.status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    seen = str(model.inputs[-1])
    assert "message one" in seen and "echo: message two" in seen
    status: ChatStatus = await latest.query(AgentChatWorkflow.status)
    assert status.turns == 3 and status.history_items == 6

    # Both runs replay against the code (determinism, including across continue-as-new).
    replayer = Replayer(workflows=[AgentChatWorkflow], plugins=[agents_plugin(settings)])
    for run_id in (first_run, description.run_id):
        history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        await replayer.replay_workflow(history)


async def test_bad_messages_and_a_failing_turn(start: Start) -> None:
    model = chat_model(echo)
    _, handle = await start(model)

    assert "empty message" in await refused(handle, ChatMessage(message="   "))
    # A message that skips the client's checks (the workflow gets a dict: see validate_send).
    assert "empty message" in await refused(handle, {"message": ""})
    assert "empty message" in await refused(handle, {"text": "hi"})

    with pytest.raises(WorkflowUpdateFailedError) as err:
        await send(handle, "please explode")
    assert "builder chat turn 1 failed" in str(err.value.cause)
    assert "model exploded" in str(err.value.cause)

    reply = await send(handle, "still there?")
    assert reply.response == "echo: still there?" and reply.turn == 2
    assert "explode" not in str(model.inputs[-1])  # a failed turn is not in the conversation


async def test_idle_and_close_end_the_chat(start: Start) -> None:
    _, idle = await start(chat_model(echo), idle_timeout_s=1)
    await send(idle, "hi")
    summary: ChatStatus = await idle.result()
    assert summary.state == "closed" and summary.closed_reason == "idle for 1s"
    assert summary.turns == 1

    # close while a turn runs: the turn is answered, later messages are refused.
    _, closed = await start(chat_model(echo))
    turn = asyncio.create_task(send(closed, "codex: @fake sleep=1"))
    await until_busy(closed)
    await closed.signal(AgentChatWorkflow.close)
    assert "the chat is closed" in await refused(closed, ChatMessage(message="one more"))
    assert (await turn).response.startswith("codex says: codex succeeded")
    summary = await closed.result()
    assert summary.closed_reason == "close signal" and summary.turns == 1


async def test_cancel_stops_codex_and_fails_the_turn(start: Start, settings: Settings) -> None:
    _, handle = await start(chat_model(echo))
    turn = asyncio.create_task(send(handle, "codex: @fake pidfile=codex.pid\n@fake hang"))
    pid = await codex_pid(chat_worktree(settings, handle), within=30)

    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as err:
        await handle.result()
    assert isinstance(err.value.cause, CancelledError)
    assert not alive(pid)
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await turn
    assert isinstance(failed.value.cause, CancelledError)
    status: ChatStatus = await handle.query(AgentChatWorkflow.status)
    assert status.state == "cancelled" and status.turns == 1 and not status.busy


def test_trim_history_cuts_at_a_user_message() -> None:
    def exchange(n: int) -> list[dict[str, Any]]:
        return [
            {"role": "user", "content": f"m{n}"},
            {"type": "function_call", "call_id": f"c{n}", "name": "run_codex", "arguments": "{}"},
            {"type": "function_call_output", "call_id": f"c{n}", "output": "ok"},
            {"role": "assistant", "type": "message", "content": []},
        ]

    items = [item for n in range(5) for item in exchange(n)]
    assert trim_history(items, limit=20) == items
    assert trim_history(items, limit=10) == items[12:]  # two whole exchanges, not 2.5
    assert trim_history(items, limit=2) == items[16:]  # never less than the latest exchange
