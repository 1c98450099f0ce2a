"""What people read about a run: its current details in the Temporal Web UI, its final summary."""

from __future__ import annotations

from core.vocabulary import Outcome, Role
from crew.reports import QAReport, ReadinessReport
from workflows.types.pipeline import PipelineStatus, StageRecord

__all__ = ["current_details", "final_summary"]


def current_details(
    status: PipelineStatus, outcome: Outcome | None = None, session_url: str | None = None
) -> str:
    """Markdown: state (and outcome), stage, the review awaited, codex tasks and tokens, the
    finished stages (a list: the Web UI renders no tables), a link to the session."""
    state = f"**{status.state}**" + (f" — outcome **{outcome}**" if outcome else "")
    lines = [f"{state} · stage `{status.stage or '-'}` #{status.iteration}"]
    if awaiting := status.awaiting:
        lines.append(
            f"⏸ waiting for a review of `{awaiting.stage}` since {awaiting.since:%Y-%m-%d %H:%M:%S}Z"
        )
    if worktree := status.worktree:
        lines.append(f"worktree on `{worktree.host}`, branch `{worktree.branch}`")
    for moved in status.moves:
        lines.append(
            f"↪ moved from `{moved.from_host}` (lost) to `{moved.to_host}` at `{moved.commit[:10]}`"
        )
    lines.append(
        f"codex tasks: {status.codex_tasks} · tokens: {status.tokens_used}"
        + (f" / {status.token_budget}" if status.token_budget else "")
    )
    if status.stages:
        lines += ["", "Stages:", ""]
    for record in status.stages:
        verdict = getattr(record.report, "verdict", None)
        lines.append(
            f"- `{record.stage.value}` #{record.iteration}"
            + (f" **{verdict}**" if verdict else "")
            + f" — {record.report.summary[:120]}"
        )
    if session_url:
        lines += ["", f"[the session in codexflow]({session_url})"]
    return "\n".join(lines)


def final_summary(
    outcome: Outcome, stages: list[StageRecord], undelivered: str | None = None
) -> str:
    latest: dict[Role, StageRecord] = {record.stage: record for record in stages}
    lines = [f"Outcome: {outcome}."]
    if undelivered:
        lines.append(f"Delivery: {undelivered}.")
    for role in Role:
        if record := latest.get(role):
            verdict = getattr(record.report, "verdict", None)
            lines.append(
                f"{role.value}{f' [{verdict}]' if verdict else ''}: {record.report.summary}"
            )
    ready = latest.get(Role.PROD_READY)
    if ready and isinstance(ready.report, ReadinessReport):
        lines += [f"Blocking: {item}" for item in ready.report.blocking]
        lines += [f"Recommendation: {item}" for item in ready.report.recommendations]
    qa = latest.get(Role.QA_QC)
    if outcome is Outcome.QA_FAILED and qa and isinstance(qa.report, QAReport):
        lines += [f"Open issue: {item}" for item in qa.report.issues]
    return "\n".join(lines)
