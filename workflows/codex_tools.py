"""The agents' codex tools, as the seed gives them: ``run_codex`` (waiting for the task, or
returning its id at once), ``check_codex_status`` and ``wait_for_codex``.

A task started without waiting is a coroutine of the workflow that owns the agent (a stage or a
chat), so it is as durable as that workflow: after a worker restart the workflow replays, the
codex activity goes on (heartbeats, retries) and a later ``wait_for_codex`` gets its result. One
lock per worktree: at most one codex task writes it at a time, whatever the model asks at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from agents import FunctionTool, RunContextWrapper, function_tool

from workflows.types.workspace import AgentContext

__all__ = ["CodexRun", "CodexTools"]

# The owner's codex task: (run context, task id, prompt) -> the text the model sees.
CodexRun = Callable[[RunContextWrapper[AgentContext], str, str], Awaitable[str]]


class CodexTools:
    def __init__(self, new_task_id: Callable[[AgentContext], str], run: CodexRun) -> None:
        self._new_task_id = new_task_id
        self._run = run
        self._lock = asyncio.Lock()
        self._tasks: dict[str, asyncio.Task[str]] = {}  # started without waiting
        self._writing: str | None = None  # the task that holds the worktree
        self.running = 0  # tasks started and not ended (a stage waits for none left)

    async def run_codex(
        self, ctx: RunContextWrapper[AgentContext], prompt: str, wait: bool = True
    ) -> str:
        task_id = self._new_task_id(ctx.context)
        if wait:
            return await self._one_at_a_time(ctx, task_id, prompt)
        self._tasks[task_id] = asyncio.create_task(self._one_at_a_time(ctx, task_id, prompt))
        return (
            f"codex task {task_id} started. Follow it with check_codex_status({task_id!r}); "
            f"get its result with wait_for_codex({task_id!r})."
        )

    def status(self, task_id: str) -> str:
        task = self._tasks.get(task_id)
        if task is None:
            return self._unknown(task_id)
        if not task.done():
            if self._writing == task_id:
                return f"codex task {task_id} is running."
            return (
                f"codex task {task_id} is queued behind {self._writing}: one codex task writes "
                "the workspace at a time."
            )
        if task.cancelled():
            return f"codex task {task_id} was cancelled."
        if (err := task.exception()) is not None:
            return f"codex task {task_id} failed: {err}"
        return f"codex task {task_id} has ended.\n{task.result()}"

    async def wait(self, task_id: str) -> str:
        task = self._tasks.get(task_id)
        if task is None:
            return self._unknown(task_id)
        # Shielded: a cancelled tool call leaves the task to its owner (``cancel``).
        return await asyncio.shield(task)

    async def settle(self) -> None:
        """Wait for the tasks started without waiting (a checkpoint must hold their edits); a
        task's error (a budget rejection, say) is raised here, as wait_for_codex would have."""
        await asyncio.gather(*self._tasks.values())

    def cancel(self) -> None:
        for task in self._tasks.values():
            task.cancel()

    def tools(self) -> list[FunctionTool]:
        """The three tools, for an agent."""

        async def run_codex(
            ctx: RunContextWrapper[AgentContext], prompt: str, wait_for_completion: bool = True
        ) -> str:
            """Have codex carry out one focused task in the project workspace: edit files, run
            commands. One codex task runs at a time; tasks started together run in turn.

            Args:
                prompt: complete instructions for codex: exact file paths, expected behaviour,
                    and how to verify the result.
                wait_for_completion: true (default) to wait and get codex's result; false to get
                    the task's id at once and follow it with check_codex_status and
                    wait_for_codex.
            """
            return await self.run_codex(ctx, prompt, wait_for_completion)

        async def check_codex_status(task_id: str) -> str:
            """Whether a codex task started with wait_for_completion=false is queued, running or
            ended (with its result).

            Args:
                task_id: the id run_codex gave.
            """
            return self.status(task_id)

        async def wait_for_codex(task_id: str) -> str:
            """Wait until a codex task started with wait_for_completion=false ends; its result.

            Args:
                task_id: the id run_codex gave.
            """
            return await self.wait(task_id)

        # Errors propagate: the owner decides what the model sees (and cancellation must pass).
        return [
            function_tool(tool, failure_error_function=None)
            for tool in (run_codex, check_codex_status, wait_for_codex)
        ]

    async def _one_at_a_time(
        self, ctx: RunContextWrapper[AgentContext], task_id: str, prompt: str
    ) -> str:
        self.running += 1
        try:
            async with self._lock:
                self._writing = task_id
                try:
                    return await self._run(ctx, task_id, prompt)
                finally:
                    self._writing = None
        finally:
            self.running -= 1

    def _unknown(self, task_id: str) -> str:
        started = ", ".join(self._tasks) or "none"
        return f"No codex task {task_id!r} was started without waiting here (started: {started})."
