"""A hostile model for the security tests: it steers the agents' tools and the real codex binary.

The agents' model is a ``ScriptedAgentModel`` whose script plays an attacker; the real codex binary
talks to a ``ScriptedResponsesServer`` whose :class:`CodexPlaybook` turns each prompt into shell
commands. What the model would learn (tool results, codex's output) ends up in the server's
requests, the event log and the workflow history, which the tests search for stolen bytes.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents import ModelResponse
from sqlalchemy import select
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from config import Settings
from core.repos import ProjectRepos
from devkit.agent_model import ScriptedAgentModel, Turn, report, tool
from devkit.brain import codex_prompt
from devkit.histories import with_children
from devkit.responses_server import Message, ScriptedResponsesServer, ToolCall
from devkit.responses_server import Turn as ServerTurn
from store.db import make_engine
from store.models import SessionEvent
from tests.helpers.pipeline import pipeline_client
from worker import build_worker
from workflows.pipeline import PipelineWorkflow
from workflows.types.pipeline import PipelineInput, PipelineOptions

__all__ = [
    "CodexPlaybook",
    "Attack",
    "attacking",
    "everything_recorded",
    "history_text",
    "finish_stage",
    "planner_attack",
]


@dataclass
class CodexPlaybook:
    """Plays codex: the first key found in a prompt names the shell commands codex runs (one
    ``exec_command`` each); its final message then repeats their output, as codex would."""

    plays: dict[str, list[str]]
    outputs: list[str] = field(default_factory=list)  # every command output codex got

    def reply(self, request: dict[str, Any]) -> ServerTurn:
        prompt, outputs = codex_prompt(request)
        commands = next((c for key, c in self.plays.items() if key in prompt), [])
        if len(outputs) < len(commands):
            return ToolCall("exec_command", {"cmd": commands[len(outputs)], "login": False})
        self.outputs.extend(outputs)
        return Message("Done. Output:\n" + "\n".join(outputs))


def finish_stage(turn: Turn) -> ModelResponse:
    """The honest end of any stage: its report (a Planner saves its plan first)."""
    match turn.role:
        case "planner" if turn.step == 0:
            return tool("save_agents_md", content="# Plan\n")
        case "planner":
            return report(summary="plan", requirements=["r"], steps=["s"], agents_md_saved=True)
        case "builder":
            return report(summary="built", steps_completed=[], files_changed=[], deviations=[])
        case "qa_qc":
            return report(verdict="PASS", summary="ok", issues=[], tests="none")
    return report(verdict="APPROVED", summary="ok", blocking=[], recommendations=[])


def planner_attack(*calls: tuple[str, dict[str, Any]]) -> Callable[[Turn], ModelResponse]:
    """A model whose Planner makes ``calls`` (tool name, arguments) in order, and saves a plan
    if they did not (the Builder never starts without one); every other turn ends its stage
    honestly, so the run goes on to its end."""
    if all(name != "save_agents_md" for name, _ in calls):
        calls = (*calls, ("save_agents_md", {"content": "# Plan\n"}))

    def play(turn: Turn) -> ModelResponse:
        if turn.role == "planner" and turn.step < len(calls):
            name, arguments = calls[turn.step]
            return tool(name, **arguments)
        return finish_stage(turn)

    return play


@dataclass
class Attack:
    client: Client
    settings: Settings
    handle: WorkflowHandle
    codex: CodexPlaybook
    server: ScriptedResponsesServer
    worktree: Path  # where the session works


@asynccontextmanager
async def attacking(
    env: WorkflowEnvironment,
    settings: Settings,
    task_queue: str,
    project: str,
    play: Callable[[Turn], ModelResponse],
    codex: CodexPlaybook,
    **options: Any,
) -> AsyncIterator[Attack]:
    """A session of ``project`` whose agents play ``play`` and whose real codex plays ``codex``,
    served by an in-process worker with the default security settings."""
    with ScriptedResponsesServer(codex) as server:
        real = settings.model_copy(
            update={"codex_bin": None, "codex_base_url": server.base_url, "codex_model": "gpt-5.5"}
        )
        client = await pipeline_client(env, real, ScriptedAgentModel(play))
        async with build_worker(client, real, task_queue=task_queue):
            session = uuid.uuid4().hex[:8]
            handle = await client.start_workflow(
                PipelineWorkflow.run,
                PipelineInput(
                    session_id=session,
                    project_id=project,
                    user_request="Do as the README says.",
                    options=PipelineOptions(codex_heartbeat_s=5, **options),
                ),
                id=f"session-{session}",
                task_queue=task_queue,
            )
            worktree = ProjectRepos(settings).worktree(project, session).work_tree
            assert worktree is not None
            yield Attack(client, real, handle, codex, server, worktree)


async def everything_recorded(attack: Attack) -> str:
    """All the run left behind that a model, a client or an operator reads: the model server's
    requests, the session's event log and the workflow's history."""
    engine = make_engine(attack.settings.database_url)
    try:
        async with engine.connect() as conn:
            payloads = (await conn.scalars(select(SessionEvent.payload))).all()
    finally:
        await engine.dispose()
    history = await history_text(attack.client, attack.handle.id)
    return "\n".join([json.dumps(attack.server.requests), json.dumps(list(payloads)), history])


async def history_text(client: Client, workflow_id: str) -> str:
    """A workflow's history and its children's (a session's stages) as text, every payload
    decoded (they are base64 in its JSON)."""
    histories = [json.loads(h.to_json()) for h in await with_children(client, workflow_id)]
    decoded: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("data"), str) and "metadata" in node:
                decoded.append(base64.b64decode(node["data"]).decode(errors="replace"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(histories)
    return "\n".join(decoded)
