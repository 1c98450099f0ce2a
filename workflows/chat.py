"""AgentChatWorkflow: a long-lived chat with one role's agent, one workflow per (project, role).

Each user message is an update that runs the role's agent over the conversation so far and answers
with its final text. Turns never interleave. The conversation is carried over continue-as-new every
``max_turns_per_run`` turns (bounded), and the chat ends after ``idle_timeout_s`` without messages or
on the ``close`` signal.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, cast

from temporalio import workflow
from temporalio.exceptions import ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from agents import RunContextWrapper, Runner, TResponseInputItem

    from core.errors import innermost_reason
    from core.vocabulary import ChatState
    from workflows import search_attributes
    from workflows.agents import build_agent
    from workflows.codex_task import codex_for_agent
    from workflows.codex_tools import CodexTools
    from workflows.types.chat import ChatInput, ChatMessage, ChatReply, ChatStatus
    from workflows.types.codex import CodexTaskRequest
    from workflows.types.repository import WorktreeInput
    from workflows.types.workspace import AgentContext
    from workflows.worktree import SessionWorktree

__all__ = ["MAX_HISTORY_ITEMS", "AgentChatWorkflow", "trim_history"]

MAX_HISTORY_ITEMS = 60  # conversation items kept (and carried over continue-as-new)


def trim_history(
    items: list[dict[str, Any]], limit: int = MAX_HISTORY_ITEMS
) -> list[dict[str, Any]]:
    """The last ``limit`` items or fewer, starting at a user message so that no tool call is cut
    from its output; at least the latest exchange is always kept."""
    if len(items) <= limit:
        return items
    starts = [i for i, item in enumerate(items) if _is_user_message(item)]
    later = [i for i in starts if i >= len(items) - limit]
    start = later[0] if later else (starts[-1] if starts else len(items) - limit)
    return items[start:]


def _is_user_message(item: dict[str, Any]) -> bool:
    return item.get("role") == "user" and item.get("type", "message") == "message"


# --- the workflow ----------------------------------------------------------------------------------


@workflow.defn
class AgentChatWorkflow:
    @workflow.init
    def __init__(self, input: ChatInput) -> None:
        self.input = input
        self.history: list[dict[str, Any]] = list(input.history)
        self.turns = input.turns  # all turns of the chat, earlier runs included
        self.turns_this_run = 0
        self.state = ChatState.OPEN
        self.closed_reason: str | None = None
        self.close_requested = False
        self.lock = asyncio.Lock()
        self.pending = 0  # updates accepted and not finished
        self.activity = 0  # bumped when a turn starts or ends (restarts the idle timer)
        self.seen_activity = 0
        self.turn_task: asyncio.Task[ChatReply] | None = None
        self.codex_in_turn = 0
        self.codex = CodexTools(self.new_codex_task, self.run_codex)
        # A worktree of its own, on branch codexflow/chat-<role>: a chat never sees a session's.
        self.worktree = SessionWorktree(
            WorktreeInput(project_id=input.project_id, name=f"chat-{input.role.value}"),
            lost_after=timedelta(seconds=60),
        )
        self.ready = False  # the worktree is made

    @workflow.run
    async def run(self, input: ChatInput) -> ChatStatus:
        workflow.upsert_search_attributes([search_attributes.PROJECT.value_set(input.project_id)])
        self.show_details()
        await self.worktree.prepare()
        self.ready = True
        try:
            await self.serve()
        except BaseException as err:
            if is_cancelled_exception(err):
                self.state = ChatState.CANCELLED
                self.show_details()
                if self.turn_task is not None:
                    self.turn_task.cancel()
                # The agents SDK cancels tool tasks without awaiting them (and the turn cancels
                # those started without waiting): let codex stop first.
                await workflow.wait_condition(
                    lambda: self.codex.running == 0 and workflow.all_handlers_finished()
                )
            raise
        self.show_details()
        return self.status()

    async def serve(self) -> None:
        """Wait for a reason to stop: too many turns (continue as new), idleness or ``close``."""
        idle = self.input.idle_timeout_s
        while True:
            self.seen_activity = self.activity
            try:
                await workflow.wait_condition(
                    lambda: (
                        self.close_requested
                        or self.turns_this_run >= self.input.max_turns_per_run
                        or workflow.info().is_continue_as_new_suggested()
                        or self.activity != self.seen_activity
                    ),
                    timeout=idle,
                    timeout_summary="chat idle timeout",
                )
            except TimeoutError:
                if self.pending == 0:
                    await self.finish(f"idle for {idle:g}s")
                    return
                continue  # a turn is still running: idleness counts from its end
            if self.close_requested:
                await self.finish("close signal")
                return
            if (
                self.turns_this_run >= self.input.max_turns_per_run
                or workflow.info().is_continue_as_new_suggested()
            ):
                self.state = ChatState.CONTINUING
                self.show_details()
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    self.input.model_copy(update={"history": self.history, "turns": self.turns})
                )

    async def finish(self, reason: str) -> None:
        self.state = ChatState.CLOSED
        self.closed_reason = reason
        await workflow.wait_condition(workflow.all_handlers_finished)

    # --- messages ------------------------------------------------------------------------------

    @workflow.update
    async def send(self, message: ChatMessage) -> ChatReply:
        """One user message: the agent's turn over the conversation so far, answered in text."""
        self.pending += 1
        try:
            async with self.lock:
                if self.state is ChatState.CANCELLED:
                    raise ApplicationError(
                        "the chat was cancelled", type="ChatCancelled", non_retryable=True
                    )
                self.turns += 1
                self.activity += 1
                self.show_details()
                self.turn_task = asyncio.create_task(self.take_turn(message.message, self.turns))
                try:
                    return await self.turn_task
                finally:
                    self.turn_task = None
                    self.turns_this_run += 1
                    self.activity += 1
        finally:
            self.pending -= 1
            self.show_details()

    @send.validator
    def validate_send(self, message: ChatMessage) -> None:
        # The agents plugin's converter hands a payload that fails validation over as a plain dict.
        text = message.message if isinstance(message, ChatMessage) else None
        if not isinstance(text, str) or not text.strip():
            raise ValueError("empty message")
        if self.state is ChatState.CONTINUING:
            raise ValueError("the chat is continuing as new: send the message again")
        if self.state is not ChatState.OPEN or self.close_requested:
            # A close signal refuses new messages at once, before the run loop has seen it.
            raise ValueError(f"the chat is {'closed' if self.close_requested else self.state}")

    async def take_turn(self, message: str, turn: int) -> ChatReply:
        role = self.input.role
        await workflow.wait_condition(lambda: self.ready)
        ctx = AgentContext(
            session_id=workflow.info().workflow_id,
            project_id=self.input.project_id,
            workspace=self.worktree.worktree.path,
            role=role,
            iteration=turn,
        )
        self.codex_in_turn = 0
        agent = build_agent(role, self.input.agent_model, self.codex, self.worktree, chat=True)
        items = [*self.history, {"role": "user", "content": message}]
        try:
            result = await Runner.run(
                agent,
                cast(list[TResponseInputItem], items),
                context=ctx,
                max_turns=self.input.max_agent_turns,
            )
            await self.codex.settle()  # tasks the agent started and never waited for
        except BaseException as err:
            self.codex.cancel()  # what the turn started goes with it
            if is_cancelled_exception(err):
                raise
            raise ApplicationError(
                f"{role.value} chat turn {turn} failed: {innermost_reason(err)}",
                type="ChatTurnFailed",
                non_retryable=True,
            ) from err
        history = cast(list[dict[str, Any]], result.to_input_list())
        self.history = trim_history(history)
        return ChatReply(role=role, response=str(result.final_output or ""), turn=turn)

    def new_codex_task(self, session: AgentContext) -> str:
        self.codex_in_turn += 1
        return f"{session.session_id}-{session.iteration}-{self.codex_in_turn}"

    async def run_codex(
        self, ctx: RunContextWrapper[AgentContext], task_id: str, prompt: str
    ) -> str:
        """One codex task of the agent's, its failure shown to the model as text."""
        text, _ = await self.worktree.on_host(
            lambda host: codex_for_agent(
                CodexTaskRequest(
                    workspace=host.path,
                    prompt=prompt,
                    heartbeat_timeout_s=self.input.codex_heartbeat_s,
                ),
                task_id,
                **host.options,
            )
        )
        return text

    @workflow.signal
    def close(self) -> None:
        """End the chat once the turns already accepted are answered."""
        self.close_requested = True

    # --- what operators see --------------------------------------------------------------------

    @workflow.query
    def status(self) -> ChatStatus:
        return ChatStatus(
            project_id=self.input.project_id,
            role=self.input.role,
            state=self.state,
            turns=self.turns,
            history_items=len(self.history),
            busy=self.pending > 0,
            closed_reason=self.closed_reason,
        )

    def show_details(self) -> None:
        """The chat's current details (markdown) in the Temporal Web UI."""
        busy = " · answering" if self.pending else ""
        workflow.set_current_details(
            f"**{self.input.role.value} chat** · {self.state}{busy} · {self.turns} turns · "
            f"{len(self.history)} history items"
        )
