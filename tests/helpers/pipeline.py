"""Pipeline runs in tests: a client whose agents play a scripted model, waiting for a review."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.openai_agents.testing import TestModelProvider
from temporalio.testing import WorkflowEnvironment

from config import Settings
from devkit.brain import PipelineBrain
from devkit.responses_server import ToolCall, Turn
from tests.helpers.temporal import temporal_address
from worker import agents_plugin
from workflows.pipeline import PipelineWorkflow

__all__ = ["SlowBuilderCodex", "Start", "pipeline_client", "wait_for_review"]

Start = Callable[..., Awaitable[WorkflowHandle]]


class SlowBuilderCodex:
    """The offline brain, with ``directives`` (fake codex's ``@fake`` lines) added to the
    Builder's codex prompts: a codex task that takes a while, so a worker can be killed in it."""

    def __init__(self, directives: str, background: bool = False) -> None:
        self.brain = PipelineBrain(fake_codex=True, background_codex=background)
        self.directives = directives

    def reply(self, request: dict[str, Any]) -> Turn:
        turn = self.brain.reply(request)
        if (
            isinstance(turn, ToolCall)
            and turn.name == "run_codex"
            and "ROLE: builder" in str(request.get("instructions"))
        ):
            prompt = turn.arguments["prompt"] + self.directives
            return ToolCall("run_codex", {**turn.arguments, "prompt": prompt})
        return turn


async def pipeline_client(env: WorkflowEnvironment, settings: Settings, model) -> Client:
    return await Client.connect(
        temporal_address(env), plugins=[agents_plugin(settings, provider=TestModelProvider(model))]
    )


async def wait_for_review(handle: WorkflowHandle, stage: str) -> None:
    for _ in range(400):
        status = await handle.query(PipelineWorkflow.status)
        if status.awaiting and status.awaiting.stage == stage:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never waited for a review of {stage}")
