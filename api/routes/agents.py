"""Agents: the four roles, and a direct chat with one of them (an AgentChatWorkflow per project/role)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import StateDep
from api.schemas import AgentChatRequest, AgentChatResponse, AgentInfo
from api.services import role_or_404, send_chat
from crew.roles import ROLES, RoleSpec

__all__ = ["router"]

router = APIRouter(prefix="/api/agents", tags=["Agents"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such agent"}}


def _info(spec: RoleSpec) -> AgentInfo:
    return AgentInfo(
        role=spec.role.value,
        name=spec.name,
        description=spec.description,
        handoff_description=spec.handoff_description,
    )


@router.get("/", response_model=list[AgentInfo])
async def list_agents() -> list[AgentInfo]:
    """The roles of a pipeline run, in pipeline order."""
    return [_info(spec) for spec in ROLES.values()]


@router.get("/{agent_role}", response_model=AgentInfo, responses=NOT_FOUND)
async def get_agent(agent_role: str) -> AgentInfo:
    return _info(ROLES[role_or_404(agent_role)])


@router.post(
    "/chat",
    response_model=AgentChatResponse,
    responses={
        404: {"description": "no such project or agent"},
        409: {"description": "the chat refused the message (closed, cancelled, continuing)"},
        502: {"description": "the agent's turn failed"},
    },
)
async def chat_with_agent(body: AgentChatRequest, state: StateDep) -> AgentChatResponse:
    """Chat with one agent of a project: the message is a turn of its long-lived chat workflow,
    which keeps the conversation (one chat per project and role)."""
    reply = await send_chat(state, body.project_id, body.agent_role, body.message)
    return AgentChatResponse(agent_role=reply.role.value, response=reply.response, turn=reply.turn)
