"""What each stage's agent is told, what codex's result looks like to it, and each role's tools."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from agents import FunctionTool

from core.vocabulary import Role
from crew.markers import issues_in, stage_in
from crew.reports import QAReport
from workflows.agents import build_agent
from workflows.codex_tools import CodexTools
from workflows.prompts import Transcript, codex_result_for_model, stage_input
from workflows.types.codex import CodexResult, TokenUsage
from workflows.types.pipeline import StageRecord
from workflows.types.repository import WorktreeInput
from workflows.types.workspace import AgentContext, Checkpoint
from workflows.worktree import SessionWorktree


def _qa_record(summary: str) -> StageRecord:
    report = QAReport(verdict="FAIL", summary=summary, issues=["x is wrong"], tests="1 failed")
    return StageRecord(
        stage=Role.QA_QC,
        iteration=1,
        report=report,
        checkpoint=Checkpoint(commit="b" * 40, parent="a" * 40),
        model_usage=TokenUsage(),
        codex_tasks=1,
    )


def test_a_first_stage_gets_the_request_and_its_task() -> None:
    text = stage_input(Role.PLANNER, 1, "Build a calculator.", [])
    assert stage_in(text) == ("planner", 1)
    assert "USER REQUEST:\nBuild a calculator." in text
    assert "PREVIOUS STAGES" not in text and "ISSUES TO FIX" not in text
    assert text.rstrip().endswith("then write and save AGENTS.md.")


def test_a_repair_stage_lists_earlier_reports_issues_and_feedback() -> None:
    history = [_qa_record("QA found problems")]
    text = stage_input(
        Role.BUILDER, 2, "Build it.", history, fix=["x is wrong", "y too"], feedback="Be brief."
    )
    assert stage_in(text, "builder") == ("builder", 2)
    assert "- qa_qc #1 [FAIL]: QA found problems issues: x is wrong" in text
    assert issues_in(text) == ["x is wrong", "y too"]
    assert "REVIEWER FEEDBACK (address it in this attempt):\nBe brief." in text


def test_earlier_reports_are_clipped_so_inputs_stay_small() -> None:
    text = stage_input(Role.PROD_READY, 1, "r", [_qa_record("s" * 5000)])
    line = next(line for line in text.splitlines() if line.startswith("- qa_qc"))
    assert len(line) < 1600 and line.endswith("…")


def test_codex_results_are_shown_compactly() -> None:
    result = CodexResult(
        task_id="t", exit_code=1, success=False, final_message="m" * 3000,
        changed_files=["a.py"], duration_s=1.25, output_tail="$ pytest (exit 1)",
    )  # fmt: skip
    text = codex_result_for_model(result)
    assert text.startswith("codex failed (exit 1) in 1.2s\nchanged files: a.py")
    assert "output tail:\n$ pytest (exit 1)" in text
    assert len(codex_result_for_model(result, limit=100)) == 101


async def test_a_transcript_keeps_input_tool_calls_outputs_and_report() -> None:
    said = Transcript("STAGE: qa_qc #1")
    call = SimpleNamespace(tool_name="run_codex", tool_arguments='{"prompt": "p"}')
    tool = SimpleNamespace(name="run_codex")
    await said.on_tool_start(call, None, tool)
    assert [m.role for m in said.messages] == ["user", "assistant"]  # kept as it goes
    await said.on_tool_end(call, None, tool, "codex succeeded")
    report = QAReport(verdict="PASS", summary="ok", issues=[], tests="1 passed")
    messages = said.ended_with(report)
    assert [(m.role, m.content[:20]) for m in messages] == [
        ("user", "STAGE: qa_qc #1"),
        ("assistant", 'run_codex({"prompt":'),
        ("tool", "codex succeeded"),
        ("assistant", '{\n  "verdict": "PASS'),
    ]
    assert messages[1].metadata == {"tool_call": "run_codex"} and messages[-1].metadata["final"]


async def _no_codex(ctx: object, task_id: str, prompt: str) -> str:
    return "unused"


_CODEX = CodexTools(lambda session: "t1", _no_codex)
_WORKTREE = SessionWorktree(WorktreeInput(project_id="p1", name="s1"), timedelta(seconds=60))


@pytest.mark.parametrize("role", list(Role))
def test_each_role_gets_its_tools_and_report_type(role: Role) -> None:
    agent = build_agent(role, "gpt-5.5", _CODEX, _WORKTREE)
    names = [tool.name for tool in agent.tools]
    expected = ["run_codex", "check_codex_status", "wait_for_codex", "read_file", "search"]
    expected += ["list_files", "read_agents_md"]
    assert names == expected + (["save_agents_md"] if role is Role.PLANNER else [])
    assert agent.output_type is not None and agent.model == "gpt-5.5"
    chat = build_agent(role, "gpt-5.5", _CODEX, _WORKTREE, chat=True)
    assert chat.output_type is None and "CHAT MODE" in str(chat.instructions)


def test_tool_schemas_hide_the_run_context() -> None:
    """The model chooses only a path or a prompt; the workspace comes from the AgentContext."""
    agent = build_agent(Role.PLANNER, "gpt-5.5", _CODEX, _WORKTREE)
    schemas = {t.name: t.params_json_schema for t in agent.tools if isinstance(t, FunctionTool)}
    assert set(schemas["read_file"]["properties"]) == {"path", "start_line", "max_lines"}
    assert set(schemas["search"]["properties"]) == {"pattern", "path"}
    assert set(schemas["list_files"]["properties"]) == {"path", "depth", "offset"}
    assert set(schemas["save_agents_md"]["properties"]) == {"content"}
    assert set(schemas["run_codex"]["properties"]) == {"prompt", "wait_for_completion"}
    assert set(schemas["check_codex_status"]["properties"]) == {"task_id"}
    assert "ctx" not in str(schemas) and AgentContext.__name__ not in str(schemas)
