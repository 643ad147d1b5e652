"""Headless Chromium for tests, via selenium and the system chromedriver.

Giving selenium both paths keeps selenium-manager (which downloads drivers) out of it entirely.

    from tests import browser
    pytestmark = pytest.mark.skipif(browser.missing() is not None, reason=browser.missing() or "")

    with browser.chromium_driver(width=1280, height=900) as driver:
        driver.get(url)
        png = browser.full_page_png(driver)
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--hide-scrollbars", "--force-device-scale-factor=1"]
MAX_SCREENSHOT_HEIGHT = 12000  # px; taller pages are cut off


def missing() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    gone = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    return f"{' and '.join(gone)} not installed (make system-deps)" if gone else None


@contextlib.contextmanager
def chromium_driver(width: int = 1280, height: int = 900, timeout_s: float = 30,
                    downloads: Path | None = None) -> Iterator[WebDriver]:
    """A headless Chromium WebDriver whose page area is width x height, with a fresh temporary
    profile (files a page downloads go to `downloads`); always quits the browser and removes the
    profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--window-size={width},{height}", f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    if downloads is not None:
        options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                                  "download.prompt_for_download": False})
    driver = None
    try:
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
        driver.set_page_load_timeout(timeout_s)
        if downloads is not None:  # headless Chromium saves downloads only when told where
            driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow",
                                                                 "downloadPath": str(downloads)})
        set_viewport(driver, width, height)
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def full_page_png(driver: WebDriver, max_height: int = MAX_SCREENSHOT_HEIGHT) -> bytes:
    """A screenshot of the whole page (up to max_height px): the viewport grows to the document."""
    width, height = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    set_viewport(driver, width, min(height, max_height))
    return driver.get_screenshot_as_png()


def set_viewport(driver: WebDriver, width: int, height: int) -> None:
    """Size the window so the page itself (not window + browser chrome) is width x height."""
    dx, dy = driver.execute_script(
        "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]")
    driver.set_window_size(width + dx, height + dy)

