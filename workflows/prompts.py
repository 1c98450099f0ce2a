"""What each stage's agent is told: the request, earlier stages' reports, and what to fix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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

__all__ = ["codex_result_for_model", "stage_input", "transcript"]

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


def transcript(stage_prompt: str, new_items: Sequence[Any], report: Any) -> list[MessageRecord]:
    """A stage's conversation for the records: its input, each tool call and result, its report."""
    messages = [MessageRecord(role="user", content=_clip(stage_prompt))]
    for item in new_items:
        raw = getattr(item, "raw_item", None)
        if item.type == "tool_call_item":
            name, arguments = getattr(raw, "name", "tool"), getattr(raw, "arguments", "")
            messages.append(
                MessageRecord(
                    role="assistant",
                    content=_clip(f"{name}({arguments})"),
                    metadata={"tool_call": name},
                )  # fmt: skip
            )
        elif item.type == "tool_call_output_item":
            messages.append(MessageRecord(role="tool", content=_clip(str(item.output))))
    body = report.model_dump_json(indent=2) if hasattr(report, "model_dump_json") else str(report)
    messages.append(MessageRecord(role="assistant", content=_clip(body), metadata={"final": True}))
    return messages


def _clip(text: str) -> str:
    return text if len(text) <= _MESSAGE_CHARS else text[:_MESSAGE_CHARS] + "…"
