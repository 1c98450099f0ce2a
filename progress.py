"""What ``codexflow run`` shows while a session runs: one or two lines per event worth seeing.

Stages as they start and end (with verdicts, summaries and changed files), codex's activity (its
commands, file changes and messages, from the same JSONL the worker logged), reviews, and a running
tally of codex tokens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from activities.codex_events import TurnCompleted, describe, parse_line
from store.events import Event

__all__ = ["RunView"]


@dataclass
class RunView:
    codex_tokens: int = 0
    codex_tasks: int = 0

    def lines(self, event: Event) -> list[str]:
        p = event.payload
        match event.kind:
            case "session.started":
                return ["▶ session started"]
            case "stage.started":
                return [f"▶ {p.get('stage')} #{p.get('iteration')}"]
            case "stage.completed":
                verdict = f" {p['verdict']}" if p.get("verdict") else ""
                changed = ", ".join(p.get("changed_files") or []) or "no files changed"
                return [
                    f"✔ {p.get('stage')} #{p.get('iteration')}{verdict}",
                    f"    {p.get('summary', '')}  [{p.get('codex_tasks', 0)} codex tasks; {changed}]",
                ]
            case "stage.failed" | "stage.cancelled":
                state = event.kind.removeprefix("stage.")
                return [f"✖ {p.get('stage')} #{p.get('iteration')} {state}: {p.get('error', '')}"]
            case "codex.started":
                self.codex_tasks += 1
                retry = f" (attempt {event.attempt})" if (event.attempt or 1) > 1 else ""
                return [f"  ⚙ codex task {self.codex_tasks}{retry}"]
            case "codex.event":
                return self._codex_event(p)
            case "codex.finished":
                changed = ", ".join(p.get("changed_files") or []) or "nothing"
                if p.get("status") == "completed":
                    return [f"  ⚙ codex exit {p.get('exit_code')}; changed {changed}"]
                return [f"  ⚙ codex {p.get('status')}: {p.get('error') or ''}".rstrip(": ")]
            case "review.awaited":
                return [f"⏸ waiting for a review of {p.get('stage')}"]
            case "budget.paused":
                return [f"⏸ token budget reached ({p.get('tokens_used')} tokens): review 'budget'"]
            case "review.received":
                feedback = f": {p['feedback']}" if p.get("feedback") else ""
                return [f"✔ review of {p.get('stage')}: {p.get('decision')}{feedback}"]
            case "session.finished":
                return [f"■ finished: {p.get('outcome')} ({self.codex_tokens} codex tokens)"]
            case "session.failed" | "session.cancelled":
                return [
                    f"■ {event.kind.removeprefix('session.')}: {p.get('error') or ''}".rstrip(": ")
                ]
        return []

    def _codex_event(self, payload: dict) -> list[str]:
        parsed = parse_line(json.dumps(payload))
        if isinstance(parsed, TurnCompleted):
            self.codex_tokens += parsed.usage.input_tokens + parsed.usage.output_tokens
            return [f"    tokens: {self.codex_tokens} so far"]
        text = describe(parsed) if parsed is not None else None
        if not text:
            return []
        first, *rest = text.splitlines()
        return [f"    {first}"] + [f"    │ {line}" for line in rest[-3:]]
