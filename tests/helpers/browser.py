"""Debian's Chromium, headless, driven through its WebDriver (chromium-driver), for the tests that
look at pages as a person does."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

__all__ = ["chromium", "open_tab", "page_text", "wait_for_text"]


@contextlib.contextmanager
def chromium(downloads: Path, *, cut_off: bool = False) -> Iterator[webdriver.Chrome]:
    """Headless Chromium; ``cut_off``: no name but the loopback one resolves (the network to
    the outside is cut, as on an air-gapped machine)."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert binary and driver, "chromium and chromium-driver (make system-packages) are needed"
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1440,900")  # a laptop's screen
    options.add_argument(f"--user-data-dir={downloads / 'chromium-profile'}")
    if cut_off:
        options.add_argument("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
    browser = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        yield browser
    finally:
        browser.quit()


def page_text(browser: webdriver.Chrome) -> str:
    """The text a person reads: the page's and its frames' (the Temporal UI renders markdown
    in iframes)."""
    texts = [browser.find_element(By.TAG_NAME, "body").text]
    for frame in browser.find_elements(By.TAG_NAME, "iframe"):
        try:
            browser.switch_to.frame(frame)
            texts.append(browser.find_element(By.TAG_NAME, "body").text)
        except WebDriverException:
            pass  # a frame that went away meanwhile
        finally:
            browser.switch_to.default_content()
    return "\n".join(texts)


def wait_for_text(
    browser: webdriver.Chrome, wanted: str | Callable[[str], bool], within: float = 45
) -> str:
    """The page's text once it shows ``wanted`` (the pages render in the browser, later)."""
    check = wanted if callable(wanted) else (lambda text: wanted in text)
    deadline = time.monotonic() + within
    while True:
        text = page_text(browser)
        if check(text):
            return text
        assert time.monotonic() < deadline, f"the page never showed {wanted!r}; it shows:\n{text}"
        time.sleep(0.5)


def open_tab(browser: webdriver.Chrome, tab: str, wanted: str, within: float = 45) -> str:
    """Click the page's ``tab`` (once it is there) and wait for ``wanted`` in the page."""
    wait_for_text(browser, tab, within)
    for element in browser.find_elements(By.XPATH, f"//*[normalize-space(text())='{tab}']"):
        if element.is_displayed():
            element.click()
            break
    return wait_for_text(browser, wanted, within)
