"""Agents: the four roles, and a direct chat with one of them (an AgentChatWorkflow per project/role)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from temporalio.client import WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

from api.schemas import AgentChatRequest, AgentChatResponse, AgentInfo
from crew.roles import ROLES, Role, RoleSpec
from store.models import Project
from workflows.chat import AgentChatWorkflow, chat_workflow_id
from workflows.types import ChatInput, ChatMessage, ChatReply

__all__ = ["router", "send_chat"]

log = logging.getLogger("codexflow.api")

router = APIRouter(prefix="/api/agents", tags=["Agents"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such agent"}}


def _info(spec: RoleSpec) -> AgentInfo:
    return AgentInfo(
        role=spec.role.value,
        name=spec.name,
        description=spec.description,
        handoff_description=spec.handoff_description,
    )


def role_or_404(agent_role: str) -> Role:
    try:
        return Role(agent_role)
    except ValueError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"agent {agent_role!r} not found") from None


@router.get("/", response_model=list[AgentInfo])
async def list_agents() -> list[AgentInfo]:
    """The roles of a pipeline run, in pipeline order."""
    return [_info(spec) for spec in ROLES.values()]


@router.get("/{agent_role}", response_model=AgentInfo, responses=NOT_FOUND)
async def get_agent(agent_role: str) -> AgentInfo:
    return _info(ROLES[role_or_404(agent_role)])


async def send_chat(state: Any, project_id: str, agent_role: str, message: str) -> ChatReply:
    """Send ``message`` to the project's chat with ``agent_role``, starting the chat if needed.

    ``state`` is the app's state (settings, database sessions, Temporal). Raises HTTPException:
    404 for an unknown project or role, 409 when the chat refuses the message, 502 when the turn
    fails.
    """
    role = role_or_404(agent_role)
    async with state.sessions() as db:
        project = await db.get(Project, project_id)
        if project is None or not project.is_active:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"project {project_id} not found")
        workspace = project.workspace_path
    settings = state.settings
    client = await state.temporal.get()

    async def attempt() -> ChatReply:
        start = WithStartWorkflowOperation(
            AgentChatWorkflow.run,
            ChatInput(
                project_id=project_id,
                role=role,
                workspace=workspace,
                agent_model=settings.agent_model,
            ),
            id=chat_workflow_id(project_id, role),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            task_queue=settings.task_queue,
        )
        return await client.execute_update_with_start_workflow(
            AgentChatWorkflow.send, ChatMessage(message=message), start_workflow_operation=start
        )

    for tries in (1, 2):
        try:
            return await attempt()
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            reason = str(cause) if cause is not None else str(err)
            if isinstance(cause, ApplicationError) and cause.type == "ChatTurnFailed":
                raise HTTPException(status.HTTP_502_BAD_GATEWAY, reason) from None
            if tries == 1 and "continuing as new" in reason:
                log.info(
                    "chat %s is continuing as new; sending again",
                    chat_workflow_id(project_id, role),
                )
                await asyncio.sleep(0.5)  # let the new run start
                continue
            raise HTTPException(status.HTTP_409_CONFLICT, reason) from None
    raise AssertionError("unreachable")  # pragma: no cover


@router.post(
    "/chat",
    response_model=AgentChatResponse,
    responses={
        404: {"description": "no such project or agent"},
        409: {"description": "the chat refused the message (closed, cancelled, continuing)"},
        502: {"description": "the agent's turn failed"},
    },
)
async def chat_with_agent(body: AgentChatRequest, request: Request) -> AgentChatResponse:
    """Chat with one agent of a project: the message is a turn of its long-lived chat workflow,
    which keeps the conversation (one chat per project and role)."""
    reply = await send_chat(request.app.state, body.project_id, body.agent_role, body.message)
    return AgentChatResponse(agent_role=reply.role.value, response=reply.response, turn=reply.turn)
