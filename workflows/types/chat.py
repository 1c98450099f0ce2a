"""A long-lived chat with one role's agent (an AgentChatWorkflow per project and role)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from core.vocabulary import ChatState, Role

__all__ = ["ChatInput", "ChatMessage", "ChatReply", "ChatStatus"]


class ChatInput(BaseModel):
    project_id: str
    role: Role
    agent_model: str = "gpt-5.5"
    history: list[dict[str, Any]] = Field(default_factory=list)  # the agents SDK's input items
    turns: int = Field(default=0, ge=0)  # turns taken by earlier runs of this chat
    max_turns_per_run: int = Field(default=20, ge=1)
    idle_timeout_s: float = Field(default=24 * 3600, gt=0)
    codex_heartbeat_s: float = Field(default=10, gt=0)
    max_agent_turns: int = Field(default=40, ge=2, le=200)  # model calls within one chat turn


class ChatMessage(BaseModel):
    message: str = Field(min_length=1)


class ChatReply(BaseModel):
    role: Role
    response: str
    turn: int


class ChatStatus(BaseModel):
    """What the ``status`` query answers, and what a finished chat returns."""

    project_id: str
    role: Role
    state: ChatState
    turns: int
    history_items: int
    busy: bool = False  # a turn is running or waiting to run
    closed_reason: str | None = None
