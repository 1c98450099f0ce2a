"""What each role hands back: typed final outputs (the agents' ``output_type``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class PlanReport(BaseModel):
    """Planner: the request turned into AGENTS.md."""

    summary: str = Field(description="two or three sentences: what will be built")
    requirements: list[str] = Field(
        description="the numbered functional requirements, one per item"
    )
    steps: list[str] = Field(description="the ordered implementation steps for the Builder")
    agents_md_saved: bool = Field(description="true once save_agents_md succeeded")


class BuildReport(BaseModel):
    """Builder: what was implemented."""

    summary: str
    steps_completed: list[str] = Field(description="the AGENTS.md steps now implemented")
    files_changed: list[str]
    deviations: list[str] = Field(description="where the build differs from AGENTS.md, and why")


class QAReport(BaseModel):
    """QA: the build checked against the acceptance criteria."""

    verdict: Literal["PASS", "FAIL"]
    summary: str
    issues: list[str] = Field(description="each problem still open; empty when the verdict is PASS")
    tests: str = Field(description="what was run and its result, e.g. '4 passed'")


class ReadinessReport(BaseModel):
    """ProdReady: the final verdict."""

    verdict: Literal["APPROVED", "NEEDS_WORK"]
    summary: str
    blocking: list[str] = Field(description="what must change before release; empty if APPROVED")
    recommendations: list[str]


StageReport = PlanReport | BuildReport | QAReport | ReadinessReport
