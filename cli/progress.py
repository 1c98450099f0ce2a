"""What ``codexflow run`` shows while a session runs: one or two lines per event worth seeing.

Stages as they start and end (with verdicts, summaries and changed files), codex's activity (its
commands, file changes and messages, from the same JSONL the worker logged), reviews, and a running
tally of codex tokens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from activities.codex_events import TurnCompleted, describe, parse_line
from core.vocabulary import (
    CodexEventPayload,
    CodexFinished,
    CodexStarted,
    CodexTaskState,
    EventKind,
    ReviewAwaited,
    ReviewIgnored,
    ReviewReceived,
    SessionEnded,
    SessionFinished,
    SessionMoved,
    SessionStarted,
    StageCompleted,
    StageEnded,
    StageStarted,
    payload_of,
)
from store.events import Event

__all__ = ["RunView"]


@dataclass
class RunView:
    codex_tokens: int = 0
    codex_tasks: int = 0

    def lines(self, event: Event) -> list[str]:
        match payload_of(event.kind, event.payload):
            case StageCompleted() as p:
                verdict = f" {p.verdict}" if p.verdict else ""
                changed = ", ".join(p.changed_files) or "no files changed"
                return [
                    f"✔ {p.stage} #{p.iteration}{verdict}",
                    f"    {p.summary}  [{p.codex_tasks} codex tasks; {changed}]",
                ]
            case StageEnded() as p:
                state = event.kind.removeprefix("stage.")
                return [f"✖ {p.stage} #{p.iteration} {state}: {p.error or ''}"]
            case StageStarted() as p:
                return [f"▶ {p.stage} #{p.iteration}"]
            case CodexEventPayload() as p:
                return self._codex_event(p)
            case CodexFinished() as p:
                if p.status is CodexTaskState.COMPLETED:
                    changed = ", ".join(p.changed_files) or "nothing"
                    return [f"  ⚙ codex exit {p.exit_code}; changed {changed}"]
                return [f"  ⚙ codex {p.status}: {p.error or ''}".rstrip(": ")]
            case ReviewAwaited() as p if event.kind == EventKind.BUDGET_PAUSED:
                return [f"⏸ token budget reached ({p.tokens_used} tokens): review 'budget'"]
            case ReviewAwaited() as p:
                return [f"⏸ waiting for a review of {p.stage}"]
            case ReviewIgnored() as p:
                return [f"⚠ {p.decision} signal for {p.stage or '?'} ignored: {p.reason}"]
            case ReviewReceived() as p:
                feedback = f": {p.feedback}" if p.feedback else ""
                return [f"✔ review of {p.stage}: {p.decision}{feedback}"]
            case SessionFinished() as p:
                if p.tokens_used is not None:  # the same count as `codexflow status`
                    return [f"■ finished: {p.outcome} ({p.tokens_used} tokens)"]
                return [f"■ finished: {p.outcome} ({self.codex_tokens} codex tokens)"]
            case SessionEnded() as p:
                return [f"■ {event.kind.removeprefix('session.')}: {p.error or ''}".rstrip(": ")]
            case SessionStarted():
                return ["▶ session started"]
            case SessionMoved() as p:
                return [
                    f"↪ host {p.from_host} lost: carrying on on {p.to_host} from {p.commit[:10]}"
                ]
            case CodexStarted():
                self.codex_tasks += 1
                retry = f" (attempt {event.attempt})" if (event.attempt or 1) > 1 else ""
                return [f"  ⚙ codex task {self.codex_tasks}{retry}"]
        return []

    def _codex_event(self, payload: CodexEventPayload) -> list[str]:
        parsed = parse_line(json.dumps(payload.model_dump()))
        if isinstance(parsed, TurnCompleted):
            self.codex_tokens += parsed.usage.input_tokens + parsed.usage.output_tokens
            return [f"    tokens: {self.codex_tokens} so far"]
        text = describe(parsed) if parsed is not None else None
        if not text:
            return []
        first, *rest = text.splitlines()
        return [f"    {first}"] + [f"    │ {line}" for line in rest[-3:]]
