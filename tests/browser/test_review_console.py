"""The review console, in a real browser against `codexflow up --offline`, with the network to
the outside cut: sign in, make a project, start a gated run, read the stage's diff at the gate,
ask for changes, approve, and see the run end approved with its branch."""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.helpers.browser import chromium, wait_for_text
from tests.helpers.up import local

TOKEN = "console-token-0123456789abcdef"


@pytest.mark.slow
def test_a_reviewer_runs_a_gated_session_from_the_console(tmp_path: Path) -> None:
    here = local(tmp_path)
    here.env["CODEXFLOW_API_TOKEN"] = TOKEN
    api = here.env["CODEXFLOW_API_URL"]
    shots = iter(range(1, 100))

    with here.up("--offline"), chromium(tmp_path, cut_off=True) as browser:

        def shot(name: str) -> None:
            browser.save_screenshot(str(tmp_path / f"{next(shots):02d}-{name}.png"))

        def fill(field: str, text: str) -> None:
            element = browser.find_element(By.ID, field)
            element.clear()
            element.send_keys(text)

        def press(label: str) -> None:
            browser.find_element(By.XPATH, f"//button[normalize-space(.)='{label}']").click()

        browser.get(f"{api}/")
        wait_for_text(browser, "Sign in")
        fill("token", "not-the-token-at-all-123")
        press("Sign in")
        wait_for_text(browser, "The API refused the token.")
        shot("wrong-token")
        assert "console-token" not in browser.current_url

        fill("token", TOKEN)
        press("Sign in")
        wait_for_text(browser, "New project")
        fill("p-name", "calc")
        press("Create project")
        wait_for_text(browser, "Project calc is ready.")
        shot("project")

        browser.get(f"{api}/#/sessions")
        wait_for_text(browser, "Start a session")
        Select(browser.find_element(By.ID, "s-project")).select_by_visible_text("calc")
        fill("s-request", "Build a small calculator module with unit tests.")
        browser.find_element(By.XPATH, "//input[@name='gates' and @value='planner']").click()
        press("Start")
        wait_for_text(browser, "Review of planner", within=90)
        page = wait_for_text(browser, "AGENTS.md")  # the stage's diff, per file
        shot("gate-diff")
        assert "Approve" in page and "Request changes" in page

        fill("feedback", "Name the module calc.py.")
        press("Request changes")
        # The Planner runs again with the feedback and comes back to the gate (iteration 2);
        # the panel says "Sent: request_changes." until then, which can be a moment only.
        wait_for_text(
            browser,
            lambda text: "stage: planner #2" in text and "Review of planner" in text,
            within=90,
        )
        shot("gate-again")
        press("Approve")
        page = wait_for_text(browser, "outcome: approved", within=120)
        page = wait_for_text(browser, "Branch codexflow/")
        shot("approved")
        assert "Download the patch" in page and "Download the bundle" in page
        for role in ("planner", "builder", "qa_qc", "prod_ready"):
            assert role in page
        assert "The run in the Temporal UI" in page
        # AGENTS.md rendered: its headings read as headings, not as markdown source.
        assert "Functional requirements" in page and "## Functional requirements" not in page
        # Every request stayed on the machine: the page needs nothing from outside.
        requests = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        assert requests and all(url.startswith(api) for url in requests), requests
