"""Workspaces: git checkpoints, and the run context that binds the agents' tools to one."""

from __future__ import annotations

from pydantic import BaseModel, Field

from core.vocabulary import Role

__all__ = ["AgentContext", "Checkpoint", "CheckpointInput", "ReadTextInput"]


class Checkpoint(BaseModel):
    """A git commit of a workspace, with what changed since the previous one."""

    commit: str
    parent: str
    diffstat: str = ""
    changed_files: list[str] = Field(default_factory=list)


class CheckpointInput(BaseModel):
    workspace: str
    message: str
    since: str | None = None  # report changes since this commit (default: the previous one)


class AgentContext(BaseModel):
    """The run context of an agent: binds its tools to the session's workspace.

    ``session_id`` is the session's id, or the chat workflow's id for a chat.
    """

    session_id: str
    project_id: str
    workspace: str
    role: Role
    iteration: int = 1


class ReadTextInput(BaseModel):
    workspace: str
    path: str
    max_chars: int = Field(default=200_000, gt=0)
