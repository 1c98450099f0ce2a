"""The chaos reports of this session, shown again in the terminal summary."""

from __future__ import annotations

import pytest

from devkit.chaos import ChaosReport

REPORTS: list[ChaosReport] = []


@pytest.fixture
def chaos_reports() -> list[ChaosReport]:
    return REPORTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORTS:
        terminalreporter.section("chaos")
        terminalreporter.write_line(ChaosReport.table(REPORTS))
