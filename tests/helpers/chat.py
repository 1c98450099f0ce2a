"""A chat model scripted by the latest user message, for AgentChatWorkflow tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agents import ModelResponse
from temporalio.exceptions import ApplicationError
from temporalio.openai_agents.testing import ResponseBuilders

from devkit.agent_model import ScriptedAgentModel, Turn, tool

__all__ = ["ChatModel", "ChatTurn", "chat_model", "echo"]


@dataclass(frozen=True)
class ChatTurn:
    message: str  # the latest user message
    outputs: list[str]  # tool outputs since it


@dataclass
class ChatModel(ScriptedAgentModel):
    """A ScriptedAgentModel that also keeps each call's raw input."""

    inputs: list[list[Any]] = field(default_factory=list)

    async def get_response(
        self, system_instructions, input, *args: Any, **kwargs: Any
    ) -> ModelResponse:
        input = _plain(input)  # the activity's input holds pydantic's one-shot iterators
        self.inputs.append([input] if isinstance(input, str) else input)
        return await super().get_response(system_instructions, input, *args, **kwargs)

    def chat_turn(self) -> ChatTurn:
        items = self.inputs[-1]
        last = max(i for i, item in enumerate(items) if _is_user(item))
        outputs = [
            str(item.get("output"))
            for item in items[last:]
            if isinstance(item, dict) and item.get("type") == "function_call_output"
        ]
        return ChatTurn(message=_content(items[last]), outputs=outputs)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return value
    return [_plain(item) for item in value]


def _is_user(item: Any) -> bool:
    return isinstance(item, str) or (isinstance(item, dict) and item.get("role") == "user")


def _content(item: Any) -> str:
    return item if isinstance(item, str) else str(item.get("content"))


def chat_model(script: Callable[[ChatTurn], ModelResponse]) -> ChatModel:
    model: ChatModel

    def play(turn: Turn) -> ModelResponse:
        assert turn.role == "builder"
        return script(model.chat_turn())

    model = ChatModel(play)
    return model


def echo(turn: ChatTurn) -> ModelResponse:
    """Writes a file through codex when asked to, fails on 'explode', otherwise echoes."""
    if turn.message.startswith("codex:") and not turn.outputs:
        return tool("run_codex", prompt=turn.message.removeprefix("codex:").strip())
    if turn.outputs:
        return ResponseBuilders.output_message(f"codex says: {turn.outputs[-1]}")
    if "explode" in turn.message:
        raise ApplicationError("model exploded", non_retryable=True)
    return ResponseBuilders.output_message(f"echo: {turn.message}")
