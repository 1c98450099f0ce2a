"""What each stage's agent is told: the request, earlier stages' reports, and what to fix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agents import RunHooks

from core.vocabulary import Role
from crew.markers import (
    ISSUES_TO_FIX,
    PREVIOUS_STAGES,
    REPOSITORY,
    REVIEWER_FEEDBACK,
    USER_REQUEST,
    YOUR_TASK,
    stage_line,
)
from workflows.types.codex import CodexResult
from workflows.types.pipeline import StageRecord
from workflows.types.records import MessageRecord

__all__ = ["Transcript", "codex_result_for_model", "stage_input"]

_REPORT_CHARS = 1500  # per earlier stage, so inputs stay small however long the run

_TASKS = {
    Role.PLANNER: "Analyse the request, look at the workspace, then write and save AGENTS.md.",
    Role.BUILDER: "Read AGENTS.md, then implement its steps in order, one run_codex call per step, "
    "checking each result.",
    Role.QA_QC: "Verify the build against AGENTS.md's acceptance criteria: have codex run the tests, "
    "fix small problems, and report PASS or FAIL.",
    Role.PROD_READY: "Check production readiness (requirements, tests, security, error handling, "
    "logging, docs, configuration) and give the final verdict.",
}


def stage_input(
    role: Role,
    iteration: int,
    user_request: str,
    history: Sequence[StageRecord],
    fix: Sequence[str] = (),
    feedback: str | None = None,
    overview: str | None = None,
) -> str:
    parts = [stage_line(role, iteration), f"{USER_REQUEST}\n{user_request}"]
    if overview:
        parts.append(f"{REPOSITORY}\n{overview}")
    if history:
        lines = [_summary(record) for record in history]
        parts.append(f"{PREVIOUS_STAGES}\n" + "\n".join(lines))
    if fix:
        parts.append(
            f"{ISSUES_TO_FIX}\n" + "\n".join(f"{i}. {issue}" for i, issue in enumerate(fix, 1))
        )
    if feedback:
        parts.append(f"{REVIEWER_FEEDBACK}\n{feedback}")
    parts.append(f"{YOUR_TASK} {_TASKS[role]}")
    return "\n\n".join(parts)


def _summary(record: StageRecord) -> str:
    report = record.report
    verdict = getattr(report, "verdict", None)
    head = f"- {record.stage.value} #{record.iteration}" + (f" [{verdict}]" if verdict else "")
    details = [report.summary]
    for label in ("issues", "blocking"):
        if items := getattr(report, label, None):
            details.append(f"{label}: " + "; ".join(items))
    text = " ".join(details)
    if len(text) > _REPORT_CHARS:
        text = text[:_REPORT_CHARS] + "…"
    return f"{head}: {text}"


def codex_result_for_model(result: CodexResult, limit: int = 4000) -> str:
    """Codex's compact result as the run_codex tool shows it to the model."""
    lines = [
        f"codex {'succeeded' if result.success else 'failed'} (exit {result.exit_code}) "
        f"in {result.duration_s:.1f}s",
        f"changed files: {', '.join(result.changed_files) or 'none'}",
        f"codex's final message: {result.final_message[:1500]}",
    ]
    if result.output_tail:
        lines.append(f"output tail:\n{result.output_tail}")
    text = "\n".join(lines)
    return text if len(text) <= limit else text[:limit] + "…"


_MESSAGE_CHARS = 20_000


class Transcript(RunHooks[Any]):
    """A stage's conversation for the records, kept as it goes (agents SDK run hooks), so a
    stage that fails still leaves what it did: its input, each tool call and result, its report."""

    def __init__(self, stage_prompt: str) -> None:
        self.messages = [MessageRecord(role="user", content=_clip(stage_prompt))]

    async def on_tool_start(self, context: Any, agent: Any, tool: Any) -> None:
        name = getattr(context, "tool_name", tool.name)
        arguments = getattr(context, "tool_arguments", "")
        self.messages.append(
            MessageRecord(
                role="assistant",
                content=_clip(f"{name}({arguments})"),
                metadata={"tool_call": name},
            )
        )

    async def on_tool_end(self, context: Any, agent: Any, tool: Any, result: object) -> None:
        self.messages.append(MessageRecord(role="tool", content=_clip(str(result))))

    def ended_with(self, report: Any) -> list[MessageRecord]:
        body = (
            report.model_dump_json(indent=2) if hasattr(report, "model_dump_json") else str(report)
        )
        final = MessageRecord(role="assistant", content=_clip(body), metadata={"final": True})
        return [*self.messages, final]


def _clip(text: str) -> str:
    return text if len(text) <= _MESSAGE_CHARS else text[:_MESSAGE_CHARS] + "…"
