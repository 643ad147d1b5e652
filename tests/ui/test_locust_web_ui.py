"""The Locust web UI, driven in headless Chromium, against a native fastapi-async.

Starts Locust exactly as `bench up` prints it, fills the start form (users, ramp, host and the
lab's db-ms / llm-ms), swarms, checks requests flow without failures and that the live "Target
memory" tab shows a non-zero, updating figure, then stops the swarm.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from bench import manifest
from bench.manifest import REPO_ROOT
from bench.procs import Proc, free_port, spawn, wait_http
from bench.targets import running
from bench.up import locust_argv
from tests import browser

pytestmark = pytest.mark.skipif(bool(browser.missing()), reason=browser.missing() or "")

FORM_DB_MS, FORM_LLM_MS = 20, 200  # differ from the command line's 50 / 500 on purpose
CLI_DB_MS, CLI_LLM_MS = 50, 500


@pytest.fixture(scope="module")
def fastapi_async(lab, tmp_path_factory):
    target = manifest.load_targets()["fastapi-async"]
    with running(target, lab, tmp_path_factory.mktemp("ui-target")) as started:
        yield started


@contextlib.contextmanager
def web_ui_running(argv: list[str], port: int, log_path: Path) -> Iterator[tuple[str, Proc]]:
    """Locust's web UI from argv (listening on `port`) until the block ends: (its URL, the process)."""
    locust = spawn("locust-web-ui", argv, cwd=REPO_ROOT, log_path=log_path)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/", locust, timeout=30)
        yield url, locust
    finally:
        locust.stop()


@pytest.fixture
def locust_ui(fastapi_async, tmp_path):
    resolved, proc = fastapi_async
    port = free_port()
    argv = locust_argv(resolved, proc.pid, CLI_DB_MS, CLI_LLM_MS, web_port=port)
    with web_ui_running(argv, port, tmp_path / "locust.log") as (url, _):
        yield url


def _fill(driver, name: str, value: object) -> None:
    field = driver.find_element(By.NAME, name)
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE, str(value))


def _header(driver, label: str) -> str:
    return driver.find_element(By.XPATH, f"//p[text()='{label}']/following-sibling::span").text


def _memory_row(driver) -> dict[str, str]:
    table = driver.find_element(By.TAG_NAME, "table")
    heads = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    cells = [td.text for td in table.find_elements(By.CSS_SELECTOR, "tbody tr:first-child td")]
    return dict(zip(heads, cells, strict=False))


def _number(text: str) -> float:
    try:
        return float(text.rstrip("%"))
    except ValueError:
        return 0.0


def test_swarm_from_the_web_ui_shows_requests_and_live_memory(locust_ui):
    with browser.chromium_driver(width=1400, height=900) as driver:
        wait = WebDriverWait(driver, 30)
        driver.get(locust_ui)
        wait.until(lambda d: d.find_element(By.NAME, "userCount"))
        _fill(driver, "userCount", 5)
        _fill(driver, "spawnRate", 5)
        assert driver.find_element(By.NAME, "host").get_attribute("value").startswith("http://127.0.0.1:")
        driver.find_element(By.XPATH, "//button[.//*[text()='Custom parameters']]").click()
        wait.until(lambda d: d.find_element(By.NAME, "dbMs").is_displayed())
        _fill(driver, "dbMs", FORM_DB_MS)
        _fill(driver, "llmMs", FORM_LLM_MS)
        driver.find_element(By.XPATH, "//button[@type='submit']").click()

        wait.until(lambda d: _header(d, "Status") == "RUNNING")
        wait.until(lambda d: _number(_header(d, "RPS")) > 0)

        driver.find_element(By.XPATH, "//*[@role='tab'][contains(., 'Target memory')]").click()
        wait.until(lambda d: _number(_memory_row(d).get("PSS MiB", "")) > 0)
        first = _memory_row(driver)
        # The UI polls every 2 s and the sampler runs every second: the row must move on.
        wait.until(lambda d: _memory_row(d).get("Sampled at") != first["Sampled at"])
        row = _memory_row(driver)
        assert row["Process tree"].startswith("pid ")
        assert _number(row["RSS MiB"]) >= _number(row["PSS MiB"]) >= _number(row["USS MiB"]) > 0
        assert _number(row["Processes"]) == 1
        assert _number(row["Peak PSS MiB"]) >= _number(row["PSS MiB"])
        assert _header(driver, "Failures") == "0%"

        stats = httpx.get(f"{locust_ui}/stats/requests", timeout=10).json()
        rows = {r["name"]: r for r in stats["stats"]}
        rec = rows["/recommendation/[id]"]
        assert rec["num_requests"] > 0 and rec["num_failures"] == 0
        assert rows["Aggregated"]["num_failures"] == 0 and stats["fail_ratio"] == 0
        # The form's db/llm values reached the requests: every request sleeps at least their sum,
        # and typically far less than the command line's 50 + 500 ms.
        assert rec["min_response_time"] >= FORM_DB_MS + FORM_LLM_MS
        assert rec["median_response_time"] < CLI_DB_MS + CLI_LLM_MS
        assert httpx.get(f"{locust_ui}/memory", timeout=10).json()["pss_mb"] > 0

        driver.find_element(By.XPATH, "//button[text()='Stop']").click()
        wait.until(lambda d: _header(d, "Status") == "STOPPED")


def test_memory_tab_finds_the_target_from_the_host_port(fastapi_async, tmp_path):
    """Without --memory-pid the tab follows the process listening on the host's port."""
    resolved, proc = fastapi_async
    port = free_port()
    argv = locust_argv(resolved, proc.pid, CLI_DB_MS, CLI_LLM_MS, web_port=port)
    at = argv.index("--memory-pid")
    del argv[at:at + 2]
    locust = spawn("locust-memory-discovery", argv, cwd=REPO_ROOT, log_path=tmp_path / "locust.log")
    try:
        url = f"http://127.0.0.1:{port}/memory"
        wait_http(url, locust, timeout=30, ok=lambda r: "pss_mb" in r.json())
        memory = httpx.get(url, timeout=10).json()
        assert memory["source"] == f"pid {proc.pid} (port {resolved.port})"
        assert memory["pss_mb"] > 0 and memory["processes"] == 1
    finally:
        locust.stop()
