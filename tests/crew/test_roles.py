"""The roles: their instructions carry the markers the scripted models read, and round-trip."""

from __future__ import annotations

import pytest

from core.vocabulary import Role
from crew.markers import (
    ISSUES_TO_FIX,
    current_step_in,
    issues_in,
    role_in,
    role_line,
    stage_in,
    stage_line,
)
from crew.reports import BuildReport, PlanReport, QAReport, ReadinessReport
from crew.roles import ROLES

REPORTS = {
    Role.PLANNER: PlanReport,
    Role.BUILDER: BuildReport,
    Role.QA_QC: QAReport,
    Role.PROD_READY: ReadinessReport,
}


def test_every_role_has_a_spec_in_pipeline_order() -> None:
    assert list(ROLES) == list(Role) == ["planner", "builder", "qa_qc", "prod_ready"]
    for role, spec in ROLES.items():
        assert spec.role is role and spec.output_type is REPORTS[role]
        assert spec.name and spec.description and spec.handoff_description


@pytest.mark.parametrize("role", list(Role))
def test_instructions_start_with_the_role_line_and_name_the_tools(role: Role) -> None:
    instructions = ROLES[role].instructions
    assert instructions.splitlines()[0] == role_line(role) == f"ROLE: {role.value}"
    assert role_in(instructions) == role.value
    for tool in ("run_codex", "read_file", "list_files", "read_agents_md"):
        assert tool in instructions
    assert ("save_agents_md" in instructions) is (role is Role.PLANNER)


def test_stage_lines_round_trip_and_pick_the_named_role() -> None:
    text = f"{stage_line(Role.QA_QC, 3)}\n…\n{stage_line(Role.BUILDER, 2)}"
    assert stage_in(text) == ("qa_qc", 3)
    assert stage_in(text, "builder") == ("builder", 2)
    assert stage_in("no marker here") is None
    assert role_in("no role here") is None


def test_issues_are_read_back_with_continuation_lines() -> None:
    text = (
        f"STAGE: builder #2\n\n{ISSUES_TO_FIX}\n1. divide() lacks a test\n"
        "   for float operands\n2. README missing\n\nYOUR TASK: fix them"
    )
    assert issues_in(text) == ["divide() lacks a test for float operands", "README missing"]
    assert issues_in("nothing to fix") == []
    assert current_step_in("CURRENT STEP: 2. Write tests\nmore") == " 2. Write tests"
