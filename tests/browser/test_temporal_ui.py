"""The Temporal Web UI, the operators' main screen, as an operator sees it under `codexflow up`:
headless Chromium on the run list and a session's page, with screenshots in the test's tmp dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.browser import chromium, open_tab, wait_for_text
from tests.helpers.up import local

REQUEST = "Build a small calculator module with unit tests."


@pytest.mark.slow
def test_the_web_ui_says_what_each_run_is(tmp_path: Path) -> None:
    here = local(tmp_path)
    ui = here.env["CODEXFLOW_TEMPORAL_UI_URL"]
    with here.up("--offline"):
        started = here.codexflow(
            "run", REQUEST, "--project", "calc", "--gate", "planner", "--no-follow"
        )
        assert started.returncode in (0, 1), started.stderr
        sid = next(
            line for line in started.stdout.splitlines() if line.startswith("session ")
        ).split()[1]
        here.wait_for(sid, "waiting_for_review")

        with chromium(tmp_path) as browser:
            browser.get(f"{ui}/namespaces/default/workflows")
            listed = wait_for_text(browser, f"session-{sid}")
            browser.save_screenshot(str(tmp_path / "1-workflow-list.png"))
            assert "Running" in listed

            browser.get(f"{ui}/namespaces/default/workflows/session-{sid}")
            page = open_tab(browser, "User Metadata", "waiting for a review of")
            browser.save_screenshot(str(tmp_path / "2-session-page.png"))
            assert f"calc: {REQUEST}" in page  # the summary
            assert "gates: planner" in page and "Build a small calculator" in page  # the details
            assert "Stages:" in page and "planner #1 —" in page

        reviewed = here.codexflow("review", sid, "approve")
        assert reviewed.returncode == 0, reviewed.stderr
        here.wait_for(sid, "completed", timeout=120)
        with chromium(tmp_path) as browser:
            browser.get(f"{ui}/namespaces/default/workflows/session-{sid}")
            page = open_tab(browser, "User Metadata", "outcome")
            browser.save_screenshot(str(tmp_path / "3-session-approved.png"))
            assert "outcome approved" in page and "the session in codexflow" in page
            for stage in ("planner #1", "builder #1", "qa_qc #1 PASS", "prod_ready #1 APPROVED"):
                assert stage in page, stage  # each stage on a line of its own, not run together
