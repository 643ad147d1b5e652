"""The web UI's Comparison tab, natively, in headless Chromium: two swarms, two rows, one report.

Two targets run as `bench up` runs them (its registry file names them behind their URLs); Locust's
web UI starts as `bench up` prints it. The test picks each target from the Host field's list,
swarms it for a few seconds of window ("Record s"), and reads the Comparison tab: each row agrees
with Locust's own /stats for the same window, and the session's report.html renders.
"""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from bench import manifest
from bench.procs import free_port, wait_http
from bench.results import Result, Run
from bench.session import write_registry
from bench.targets import running
from bench.up import locust_argv
from tests import browser
from tests.ui.test_locust_web_ui import _fill, _header, web_ui_running

pytestmark = pytest.mark.skipif(bool(browser.missing()), reason=browser.missing() or "")

TARGETS = ("fastapi-async", "flask-sync")
USERS = 4  # + the fixed-count Canary, which is one more Locust user
RECORD_S = 6
DB_MS, LLM_MS = 20, 200


@pytest.fixture(scope="module")
def targets(lab, tmp_path_factory):
    known = manifest.load_targets()
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(running(known[name], lab, tmp_path_factory.mktemp(name)))
               for name in TARGETS]


@pytest.fixture
def web_ui(targets, tmp_path):
    registry = write_registry(tmp_path / "targets.json", [resolved for resolved, _ in targets])
    port = free_port()
    argv = locust_argv(targets[0][0], None, DB_MS, LLM_MS, web_port=port, registry=registry)
    session_dir = tmp_path / "web-ui-session"
    with web_ui_running(with_session(argv, session_dir), port, tmp_path / "locust.log") as (url, _):
        yield url, session_dir


def with_session(argv: list[str], session_dir: Path) -> list[str]:
    """`bench up`'s Locust command with the session folder given (before the user classes)."""
    return [*argv[:-2], "--session-dir", str(session_dir), *argv[-2:]]


def _status(driver) -> str:
    return _header(driver, "Status")


def _host_choices(driver) -> dict[str, str]:
    return driver.execute_script(
        "const host = document.querySelector('input[name=host]');"
        "const list = host && host.list;"
        "return list ? Object.fromEntries([...list.options].map(o => [o.label.split(':')[0], o.value]))"
        "  : {};")


def _swarm(driver, wait, host: str) -> None:
    """Fill the start form (the first one, or the one "New" opens) and swarm until Record s stops it.
    The host is picked from the Host field's list: it must be offered there."""
    wait.until(lambda d: host in _host_choices(d).values())
    _fill(driver, "userCount", USERS + 1)
    _fill(driver, "spawnRate", USERS + 1)
    _fill(driver, "host", host)
    driver.find_element(By.XPATH, "//button[.//*[text()='Custom parameters']]").click()
    wait.until(lambda d: d.find_element(By.NAME, "recordS").is_displayed())
    _fill(driver, "recordS", RECORD_S)
    wait.until(lambda d: float(d.find_element(By.NAME, "recordS").get_attribute("value") or 0) == RECORD_S)
    driver.find_element(By.XPATH, "//button[@type='submit']").click()
    wait.until(lambda d: _status(d) == "RUNNING")
    url = driver.current_url.split("?")[0].rstrip("/")
    recording = httpx.get(f"{url}/lab/session", timeout=10).json()["recording"]
    assert recording and recording["record_s"] == RECORD_S and recording["host"] == host, recording
    wait.until(lambda d: _status(d) == "STOPPED")


def _locust_stats(url: str) -> dict:
    rows = httpx.get(f"{url}/stats/requests", timeout=10).json()["stats"]
    return {r["name"]: r for r in rows}


def _comparison_rows(driver) -> list[dict[str, str]]:
    table = driver.find_element(By.CSS_SELECTOR, "#lab-comparison table.throughput")
    heads = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    return [dict(zip(heads, [td.text for td in tr.find_elements(By.TAG_NAME, "td")], strict=True))
            for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")]


def swarm_each(driver, url: str, hosts: list[str], recorded: Callable[[], int]) -> list[dict]:
    """Swarm each host in turn from the web UI; after each, Locust's /stats rows for its window."""
    wait = WebDriverWait(driver, 90)
    seen = []
    for host in hosts:
        new = driver.find_elements(By.XPATH, "//button[text()='New']")
        if new:  # after a swarm: "New" opens the start form again
            new[0].click()
            wait.until(lambda d: d.find_element(By.NAME, "userCount").is_displayed())
        before = recorded()
        _swarm(driver, wait, host)
        wait.until(lambda d, n=before: recorded() > n)
        seen.append(_locust_stats(url))
    return seen


def open_comparison(driver, rows: int) -> dict[str, dict[str, str]]:
    """The Comparison tab, once it shows `rows` rows: target -> its throughput row's cells."""
    driver.find_element(By.XPATH, "//*[@role='tab'][contains(., 'Comparison')]").click()
    WebDriverWait(driver, 30).until(lambda d: len(_comparison_rows(d)) == rows)
    return {row["target"]: row for row in _comparison_rows(driver)}


def assert_rows_agree(results: list[Result], seen: list[dict], shown: dict[str, dict[str, str]]) -> None:
    """Each recorded row against Locust's /stats for the same window and the tab's cells."""
    for r, stats in zip(results, seen, strict=True):
        rec, canary = stats["/recommendation/[id]"], stats["/healthz"]
        assert r.source == "web-ui" and r.users == USERS and r.failures == 0, r.target
        assert r.phases.window_s == pytest.approx(RECORD_S, abs=1.5) and r.phases.steady, r.phases
        # The same window as Locust's statistics: the same requests, percentiles and rate.
        assert r.requests == rec["num_requests"] and r.failures == rec["num_failures"]
        assert r.latency_ms.p50 == rec["median_response_time"]
        assert r.latency_ms.p95 == rec["response_time_percentile_0.95"]
        assert r.rps == pytest.approx(rec["total_rps"], rel=0.15)
        assert r.canary_ms.n == canary["num_requests"]
        # Every request sleeps db_ms + llm_ms: the form kept the command line's workload.
        assert r.latency_ms.p50 >= DB_MS + LLM_MS
        assert r.memory_mb.peak_pss >= r.memory_mb.idle_pss > 0
        assert r.cpu_pct.target is not None and r.cpu_pct.machine is not None
        row = shown[r.target]
        assert (row["users"], row["rps"], row["p50 ms"]) == (
            str(USERS), f"{r.rps:.1f}", f"{r.latency_ms.p50:.0f}")
        assert row["flags"] == ("; ".join(r.flags) or "—")


def assert_report_renders(url: str, session_dir: Path, targets: list[str]) -> None:
    """The session's downloads: results.json as recorded, report.md and report.html as `bench report`
    writes them, and the HTML opens in Chromium with a row per target."""
    data = httpx.get(f"{url}/lab/session/results.json", timeout=30)
    assert [r["target"] for r in json.loads(data.content)["results"]] == targets
    md = httpx.get(f"{url}/lab/session/report.md", timeout=60).text
    assert "swarms recorded from the Locust web UI" in md and "## Claims" in md
    page = httpx.get(f"{url}/lab/session/report.html", timeout=60)
    assert page.status_code == 200 and "<svg" in page.text
    with browser.chromium_driver(width=1280, height=900) as driver:
        driver.get((session_dir / "report.html").as_uri())
        assert "Concurrency Lab" in driver.title
        names = driver.find_elements(By.CSS_SELECTOR, "table.throughput td:first-child")
        assert set(targets) <= {td.text.split()[0] for td in names if td.text}


def test_two_swarms_from_the_web_ui_become_two_rows_that_agree_with_locusts_stats(web_ui, targets):
    url, session_dir = web_ui
    wanted = {resolved.name: resolved.base_url for resolved, _ in targets}
    with browser.chromium_driver(width=1500, height=1000) as driver:
        driver.get(url)
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_element(By.NAME, "userCount"))
        # The Host field offers the targets that are up, under their registered URLs.
        wait.until(lambda d: set(wanted) <= set(_host_choices(d)))
        assert {k: v for k, v in _host_choices(driver).items() if k in wanted} == wanted
        seen = swarm_each(driver, url, [wanted[name] for name in TARGETS], lambda: _rows(session_dir))
        shown = open_comparison(driver, len(TARGETS))
    run = Run.load(session_dir)
    assert [r.target for r in run.results] == list(TARGETS)
    assert all((r.db_ms, r.llm_ms, r.runtime) == (None, None, "native") for r in run.results)
    assert_rows_agree(run.results, seen, shown)
    # fastapi-async: 1 process; flask-sync: a gunicorn master and 4 workers.
    assert [r.processes for r in run.results] == [1, 5]
    assert_report_renders(url, session_dir, list(TARGETS))


def _rows(session_dir: Path) -> int:
    return len(Run.load(session_dir).results) if (session_dir / "results.json").exists() else 0


def test_a_row_can_be_deleted_and_the_session_cleared(web_ui, targets):
    url, session_dir = web_ui
    host = targets[0][0].base_url
    for done in range(2):
        form = {"user_count": USERS + 1, "spawn_rate": USERS + 1, "host": host, "record_s": 3}
        assert httpx.post(f"{url}/swarm", data=form, timeout=10).json()["success"]
        wait_http(f"{url}/lab/session/results.json", None, timeout=60,
                  ok=lambda r, n=done: len(r.json()["results"]) > n)
    ids = [r.recorded_at for r in Run.load(session_dir).results]
    assert len(ids) == 2
    assert httpx.delete(f"{url}/lab/comparison/rows/{ids[0]}", timeout=10).json() == {"rows": 1}
    missing = httpx.delete(f"{url}/lab/comparison/rows/{ids[0]}", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert [r.recorded_at for r in Run.load(session_dir).results] == ids[1:]
    assert httpx.delete(f"{url}/lab/comparison", timeout=10).json() == {"rows": 0}
    assert Run.load(session_dir).results == []
    assert "No swarm recorded yet" in httpx.get(f"{url}/lab/comparison", timeout=10).text


def test_quitting_locust_in_the_middle_of_a_swarm_keeps_its_row(targets, tmp_path):
    """No Record s and no Stop: Locust told to quit (SIGTERM, as `docker stop` sends; Ctrl-C takes
    the same shutdown path) closes the open window and saves its row."""
    port = free_port()
    session_dir = tmp_path / "web-ui-interrupted"
    registry = write_registry(tmp_path / "targets.json", [targets[0][0]])
    argv = with_session(locust_argv(targets[0][0], None, DB_MS, LLM_MS, web_port=port, registry=registry),
                        session_dir)
    with web_ui_running(argv, port, tmp_path / "locust.log") as (url, locust):
        form = {"user_count": USERS + 1, "spawn_rate": USERS + 1, "host": targets[0][0].base_url}
        assert httpx.post(f"{url}/swarm", data=form, timeout=10).json()["success"]
        wait_http(f"{url}/lab/session", locust, timeout=30,
                  ok=lambda r: (r.json()["recording"] or {}).get("window_s", 0) > 2)
        locust.popen.send_signal(signal.SIGTERM)
        assert locust.popen.wait(timeout=30) == 0
    run = Run.load(session_dir)
    assert len(run.results) == 1
    row = run.results[0]
    assert row.target == "fastapi-async" and row.requests > 0 and row.phases.window_s > 0
