"""Each role as an OpenAI Agents SDK agent, with the tools it gets.

Workspace tools are activities (``activity_as_tool``) bound to the session by the run context and
run on the host holding its worktree (``workflows.worktree``).
The codex tools are given by the caller (``workflows.codex_tools``): workflow-side, so a stage can
count codex tasks, tally their tokens against the budget and turn a failed codex run into text the
model can act on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from agents import Agent, FunctionTool, RunContextWrapper, Tool
from temporalio.common import RetryPolicy
from temporalio.openai_agents.workflow import activity_as_tool

from activities.tools import AgentTools
from core.vocabulary import Role
from crew.roles import ROLES
from workflows.codex_tools import CodexTools
from workflows.types.workspace import AgentContext
from workflows.worktree import HostCall, SessionWorktree

__all__ = ["build_agent"]

_CHAT_MODE = """

CHAT MODE: you are talking with a person directly, outside a pipeline run. Answer in plain text
(markdown is fine) instead of a report; use your tools when the question needs them."""

_TOOL_TIMEOUT = timedelta(seconds=60)
_TOOL_RETRY = RetryPolicy(maximum_attempts=3)


def _workspace_tools(role: Role, worktree: SessionWorktree) -> list[Tool]:
    tools: list[Callable[..., Awaitable[str]]] = [
        AgentTools.read_file,
        AgentTools.search,
        AgentTools.list_files,
        AgentTools.read_agents_md,
    ]
    if role is Role.PLANNER:
        tools.append(AgentTools.save_agents_md)
    return [_on_host(fn, worktree) for fn in tools]


def _on_host(fn: Callable[..., Awaitable[str]], worktree: SessionWorktree) -> FunctionTool:
    """An ``AgentTools`` activity as a tool (``activity_as_tool``), run on the host that holds
    the worktree, with its path there: after a move, on the new host."""
    template = activity_as_tool(fn, start_to_close_timeout=_TOOL_TIMEOUT, retry_policy=_TOOL_RETRY)

    async def invoke(ctx: RunContextWrapper[AgentContext], arguments: str) -> Any:
        async def call(host: HostCall) -> Any:
            tool = activity_as_tool(
                fn, start_to_close_timeout=_TOOL_TIMEOUT, retry_policy=_TOOL_RETRY, **host.options
            )
            assert isinstance(tool, FunctionTool)
            here = ctx.context.model_copy(update={"workspace": host.path})
            return await tool.on_invoke_tool(dataclasses.replace(ctx, context=here), arguments)  # type: ignore[arg-type]

        return await worktree.on_host(call)

    assert isinstance(template, FunctionTool)
    return dataclasses.replace(template, on_invoke_tool=invoke)


def build_agent(
    role: Role,
    model: str,
    codex: CodexTools,
    worktree: SessionWorktree,
    *,
    chat: bool = False,
) -> Agent:
    """The role's agent, its workspace tools run on ``worktree``'s host; ``chat`` agents answer
    in free text instead of a typed report."""
    spec = ROLES[role]
    instructions = spec.instructions + (_CHAT_MODE if chat else "")
    return Agent[AgentContext](
        name=spec.name,
        instructions=instructions,
        handoff_description=spec.handoff_description,
        model=model,
        tools=[*codex.tools(), *_workspace_tools(role, worktree)],
        output_type=None if chat else spec.output_type,
    )
