"""The chaos suite: real stack, parts killed -9 mid-run (see devkit/chaos.py for the scenarios).

Slow, so out of the fast run: ``pytest -m chaos -s tests/chaos`` (``-s`` shows the reports as they
come; the terminal summary repeats the table).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devkit.chaos import ChaosReport, api_restarts, host_lost, temporal_restarts, worker_kills

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

DISRUPTIONS = 3


def check(
    report: ChaosReport, root: Path, reports: list[ChaosReport], planned: int = DISRUPTIONS
) -> None:
    """Print the report, then hold it to every promise (the logs stay in ``root/logs``)."""
    reports.append(report)
    print(f"\n{ChaosReport.table([report])}\n{report.details()}\nlogs: {root / 'logs'}")
    why = f"{report.details()}\nlogs: {root / 'logs'}"
    assert report.disruptions == report.planned == planned, why
    assert report.runs_completed == report.runs_started, why
    assert report.finished_repeated == 0, why
    assert report.events_lost == 0, why
    assert report.events_repeated == 0, why


async def test_worker_killed_three_times(tmp_path: Path, chaos_reports: list[ChaosReport]) -> None:
    report = await worker_kills(tmp_path, runs=3, kills=DISRUPTIONS)
    check(report, tmp_path, chaos_reports)
    # Something was in flight at each kill and was done again, by design.
    assert report.inflight_retries + report.codex_redone > 0, report.details()


async def test_temporal_restarted_three_times(
    tmp_path: Path, chaos_reports: list[ChaosReport]
) -> None:
    report = await temporal_restarts(tmp_path, runs=3, restarts=DISRUPTIONS)
    check(report, tmp_path, chaos_reports)


async def test_api_restarted_under_sse_followers(
    tmp_path: Path, chaos_reports: list[ChaosReport]
) -> None:
    report = await api_restarts(tmp_path, runs=3, restarts=DISRUPTIONS)
    check(report, tmp_path, chaos_reports)
    assert report.events_seen > 0, report.details()


async def test_a_host_lost_for_good(tmp_path: Path, chaos_reports: list[ChaosReport]) -> None:
    report = await host_lost(tmp_path, runs=3)
    check(report, tmp_path, chaos_reports, planned=1)
    # At least the session whose codex task was cut short moved, and redid that attempt.
    assert report.max_takeover_s > 0 and report.codex_redone > 0, report.details()
