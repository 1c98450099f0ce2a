"""The JSONL event stream of ``codex exec --json``, parsed into typed events.

Codex adds event and item types between releases, and a crashing process can leave half a line:
anything unknown becomes :class:`Unknown` and anything that is not JSON becomes :class:`Garbage`,
so the runner never fails on output it does not understand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from workflows.types.codex import TokenUsage

__all__ = [
    "CodexEvent",
    "ErrorEvent",
    "Garbage",
    "ItemEvent",
    "ThreadStarted",
    "TurnCompleted",
    "TurnFailed",
    "TurnStarted",
    "Unknown",
    "describe",
    "parse_line",
]


@dataclass(frozen=True)
class ThreadStarted:
    thread_id: str
    kind: str = "thread.started"


@dataclass(frozen=True)
class TurnStarted:
    kind: str = "turn.started"


@dataclass(frozen=True)
class TurnCompleted:
    usage: TokenUsage
    kind: str = "turn.completed"


@dataclass(frozen=True)
class TurnFailed:
    message: str
    kind: str = "turn.failed"


@dataclass(frozen=True)
class ErrorEvent:
    message: str
    kind: str = "error"


@dataclass(frozen=True)
class ItemEvent:
    """``item.started`` / ``item.updated`` / ``item.completed`` for one item (command, patch, message...)."""

    kind: str
    item_type: str
    item: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Unknown:
    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Garbage:
    line: str
    kind: str = "garbage"


CodexEvent = (
    ThreadStarted
    | TurnStarted
    | TurnCompleted
    | TurnFailed
    | ErrorEvent
    | ItemEvent
    | Unknown
    | Garbage
)


def parse_line(line: str) -> CodexEvent | None:
    """One line of codex's stdout as an event; ``None`` for blank lines."""
    text = line.strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return Garbage(line=text[:2000])
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return Garbage(line=text[:2000])
    kind = data["type"]
    match kind:
        case "thread.started":
            return ThreadStarted(thread_id=str(data.get("thread_id", "")))
        case "turn.started":
            return TurnStarted()
        case "turn.completed":
            return TurnCompleted(usage=_usage(data.get("usage")))
        case "turn.failed":
            return TurnFailed(message=_message(data.get("error")))
        case "error":
            return ErrorEvent(message=_message(data))
        case "item.started" | "item.updated" | "item.completed":
            item = data["item"] if isinstance(data.get("item"), dict) else {}
            return ItemEvent(kind=kind, item_type=str(item.get("type", "unknown")), item=item)
        case _:
            return Unknown(kind=kind, data=data)


def describe(event: CodexEvent) -> str | None:
    """A one-line human summary of the events worth showing in an output tail."""
    if isinstance(event, ItemEvent) and event.kind == "item.completed":
        item = event.item
        match event.item_type:
            case "command_execution":
                output = str(item.get("aggregated_output", "")).strip()
                head = f"$ {item.get('command', '')} (exit {item.get('exit_code')})"
                return f"{head}\n{output[-800:]}" if output else head
            case "file_change":
                changes = item.get("changes") or []
                return "files: " + ", ".join(
                    f"{c.get('kind', '?')} {c.get('path', '?')}"
                    for c in changes
                    if isinstance(c, dict)
                )
            case "agent_message":
                return f"codex: {item.get('text', '')}"
    if isinstance(event, ErrorEvent | TurnFailed):
        return f"error: {event.message}"
    return None


def _usage(raw: Any) -> TokenUsage:
    if not isinstance(raw, dict):
        return TokenUsage()
    fields = TokenUsage.model_fields
    return TokenUsage(**{k: int(v) for k, v in raw.items() if k in fields and isinstance(v, int)})


def _message(raw: Any) -> str:
    if isinstance(raw, dict):
        return str(raw.get("message", "")) or json.dumps(raw)[:500]
    return str(raw or "")
