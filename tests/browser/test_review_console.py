"""The review console, in a real browser against `codexflow up --offline`, with the network to
the outside cut: sign in, make a project, start a gated run, read the stage's diff at the gate,
ask for changes, approve, read the Builder's diff syntax-highlighted, approve, and see the run end
approved with its branch."""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from tests.helpers.browser import chromium, wait_for_text
from tests.helpers.up import local

TOKEN = "console-token-0123456789abcdef"

# A diff whose lines are markup, rendered by the console's own diffView: it must read as text.
HOSTILE_DIFF = """diff --git a/evil.html b/evil.html
--- a/evil.html
+++ b/evil.html
@@ -1 +1,2 @@
-<p>safe</p>
+<img src=x onerror="window.pwned = true"><script>window.pwned = true</script>
 <!-- <b>bold</b> -->
diff --git a/evil.py b/evil.py
--- a/evil.py
+++ b/evil.py
@@ -0,0 +1 @@
+x = '<img src=x onerror=window.pwned=true>'  # <svg onload=window.pwned=true>
"""

# Renders HOSTILE_DIFF into the page, gives an image's onerror time to fire, and says what is there.
RENDER_HOSTILE = """
const [diff, done] = arguments;
const ns = window.codexflowConsole;
window.pwned = false;
const box = document.createElement("div");
document.body.append(box);
box.append(...ns.diffView(diff));
const line = ns.highlight("x = 1  # <img src=x onerror=window.pwned=true>", "python");
setTimeout(() => {
  const code = [...box.querySelectorAll("pre")];
  done({
    pwned: window.pwned,
    tags: [...new Set(code.flatMap((pre) => [...pre.querySelectorAll("*")].map((e) => e.tagName)))],
    text: code.map((pre) => pre.textContent).join(""),
    comments: [...box.querySelectorAll(".tok-com")].map((e) => e.textContent),
    line: line.map((n) => n.nodeType === Node.TEXT_NODE ? ["text", n.data] : [n.tagName, n.className, n.textContent]),
  });
  box.remove();
}, 500);
"""


def tokens(pre: WebElement, kind: str) -> list[str]:
    """The texts of a diff's ``tok-<kind>`` spans."""
    return pre.parent.execute_script(
        "return [...arguments[0].querySelectorAll(arguments[1])].map((e) => e.textContent)",
        pre,
        f".tok-{kind}",
    )


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

        def diff_of(path: str) -> WebElement:
            """The review's diff of one file."""
            return browser.find_element(
                By.XPATH,
                f"//section[@aria-label='review']//details[summary[starts-with(., '{path} ')"
                f" or normalize-space(.)='{path}']]/pre",
            )

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
        for gate in ("planner", "builder"):
            browser.find_element(By.XPATH, f"//input[@name='gates' and @value='{gate}']").click()
        press("Start")
        wait_for_text(browser, "Review of planner", within=90)
        page = wait_for_text(browser, "AGENTS.md")  # the stage's diff, per file
        shot("gate-diff")
        assert "Approve" in page and "Request changes" in page
        agents_md = diff_of("AGENTS.md")
        assert agents_md.get_attribute("data-language") == "markdown"
        assert "# Overview" in tokens(agents_md, "head")

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

        # The Builder's gate: its diff per file, the Python highlighted on the diff's colours.
        wait_for_text(browser, "Review of builder", within=120)
        calc = diff_of("calc.py")
        assert calc.get_attribute("data-language") == "python"
        assert {"def", "return", "raise", "if", "from", "import"} <= set(tokens(calc, "kw"))
        strings = tokens(calc, "str")
        assert '"division by zero"' in strings and '"""Return a + b."""' in strings
        assert "0" in tokens(calc, "num")
        assert "Number" not in tokens(calc, "kw")  # names stay plain
        keyword = calc.find_element(By.CSS_SELECTOR, ".add .tok-kw")
        assert keyword.value_of_css_property("color") == "rgba(111, 31, 158, 1)"
        added = calc.find_element(By.CSS_SELECTOR, ".add")
        assert added.value_of_css_property("background-color") == "rgba(234, 247, 234, 1)"
        assert "def add(a: Number, b: Number) -> Number:" in calc.text
        assert {"class", "def", "with", "as"} <= set(tokens(diff_of("test_calc.py"), "kw"))
        browser.execute_script("arguments[0].parentElement.scrollIntoView()", calc)  # its <details>
        shot("builder-diff-highlighted")
        # Hostile lines read as text: no element but spans, no script run, comments marked.
        hostile = browser.execute_async_script(RENDER_HOSTILE, HOSTILE_DIFF)
        assert hostile["pwned"] is False, hostile
        assert set(hostile["tags"]) == {"SPAN"}, hostile
        assert '+<img src=x onerror="window.pwned = true"><script>' in hostile["text"]
        assert "# <svg onload=window.pwned=true>" in hostile["comments"]
        assert "<!-- <b>bold</b> -->" in hostile["comments"]
        assert hostile["line"] == [
            ["text", "x = "],
            ["SPAN", "tok-num", "1"],
            ["text", "  "],
            ["SPAN", "tok-com", "# <img src=x onerror=window.pwned=true>"],
        ]
        browser.execute_script("window.scrollTo(0, 0)")
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
