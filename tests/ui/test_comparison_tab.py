"""The web UI's Comparison tab, natively, in headless Chromium, driven with clicks and typing.

The targets run as `bench up` runs them (its registry file names them behind their URLs) and Locust's
web UI starts as `bench up` prints it, its session folder in a results folder of the test's own. The
Compare form records three targets at two users levels; the table sorts by a header click; the CSV
downloads and parses; the charts are drawn; `bench report`'s report.html shows the same table and
charts; an earlier session opens read-only and "compare with" shows bench diff's judgement. A cell
measured from the UI agrees with `bench compare` on the same lab. Stop closes the window and drains.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from bench import manifest
from bench.comparison import measures
from bench.manifest import REPO_ROOT
from bench.procs import free_port, wait_http
from bench.results import MIN_TAIL_SAMPLES, Run
from bench.session import write_registry
from bench.targets import running
from bench.up import locust_argv
from tests import browser
from tests.ui.test_locust_web_ui import _fill, _header, web_ui_running

pytestmark = pytest.mark.skipif(bool(browser.missing()), reason=browser.missing() or "")

TARGETS = ("flask-sync", "fastapi-async", "go-gin")  # a queue, an event loop, goroutines
LEVELS = (1, 50)
WINDOW_S = 5
DB_MS, LLM_MS = 5, 500  # the LLM-bound workload (bench capacity's)
SWARM_DB_MS, SWARM_LLM_MS = 20, 200  # the swarms started from Locust's own form
SCREENSHOTS_ENV = "LAB_SCREENSHOTS"  # set: the compare test rewrites the README's pictures
IMAGES = REPO_ROOT / "docs" / "img"


@pytest.fixture(scope="module")
def targets(lab, tmp_path_factory):
    known = manifest.load_targets()
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(running(known[name], lab, tmp_path_factory.mktemp(name)))[0]
               for name in TARGETS}


def with_session(argv: list[str], session_dir: Path) -> list[str]:
    """`bench up`'s Locust command with the session folder given (before the user classes)."""
    return [*argv[:-2], "--session-dir", str(session_dir), *argv[-2:]]


@contextlib.contextmanager
def locust_ui(targets: dict, tmp: Path, db_ms: int, llm_ms: int, processes: int = 0
              ) -> Iterator[tuple[str, Path, object]]:
    """Locust's web UI as `bench up` prints it, its session in tmp/results/: (URL, session folder, proc).
    `processes`: `locust --processes N`, a master (the web UI) and N forked workers."""
    registry = write_registry(tmp / "targets.json", list(targets.values()))
    port = free_port()
    session_dir = tmp / "results" / "web-ui-now"
    argv = locust_argv(next(iter(targets.values())), None, db_ms, llm_ms, web_port=port, registry=registry)
    argv = with_session(argv, session_dir)
    if processes:
        argv = [*argv[:-2], "--processes", str(processes), *argv[-2:]]
    with web_ui_running(argv, port, tmp / "locust.log") as (url, proc):
        yield url, session_dir, proc


def table_rows(driver, selector: str = "#lab-comparison table.comparison") -> list[dict[str, str]]:
    """The tab's table (or a report's): each row's cells by column head, the ✕ column left out. Read
    in one script, so a refresh of the table cannot change it halfway."""
    return driver.execute_script("""
        const table = document.querySelector(arguments[0]);
        if (!table) return [];
        const heads = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
        return [...table.querySelectorAll("tbody tr")].map((tr) => {
          const cells = [...tr.querySelectorAll("td")].map((td) => td.textContent.trim())
            .slice(-heads.length);
          return Object.fromEntries(heads.map((h, i) => [h, cells[i]]));
        });""", selector)


def choose(driver, select_id: str, value: str) -> None:
    """Pick an option of one of the tab's lists (retried if the tab re-listed its runs meanwhile)."""
    def picked(d) -> bool:
        Select(d.find_element(By.ID, select_id)).select_by_value(value)
        return d.find_element(By.ID, select_id).get_attribute("value") == value

    WebDriverWait(driver, 30, ignored_exceptions=[StaleElementReferenceException]).until(picked)


def show_comparison(driver) -> None:
    """The panel: under the start form before any swarm, else behind the Comparison tab."""
    def shown(d) -> bool:
        tabs = d.find_elements(By.XPATH, "//*[@role='tab'][contains(., 'Comparison')]")
        if tabs and tabs[0].get_attribute("aria-selected") != "true":
            tabs[0].click()
        panels = d.find_elements(By.ID, "lab-comparison")
        return bool(panels) and panels[0].is_displayed()

    WebDriverWait(driver, 60).until(shown)


def column(driver, name: str) -> list[float]:
    return [float(row[name].split()[0]) for row in table_rows(driver)]


def click_head(driver, name: str) -> None:
    driver.find_element(By.XPATH, f"//div[@id='lab-comparison']//th[starts-with(normalize-space(.), "
                                  f"'{name}')]").click()


def compare_from_the_form(driver, hosts: list[str], users: str, window_s: int, db_ms: int,
                          llm_ms: int) -> None:
    """Tick the targets, type the levels, the window and the workload, press Compare."""
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: set(hosts) <= {i.get_attribute("value") for i in
                                        d.find_elements(By.CSS_SELECTOR, "#lab-targets input")})
    for box in driver.find_elements(By.CSS_SELECTOR, "#lab-targets input"):
        if (box.get_attribute("value") in hosts) != box.is_selected():
            box.click()
    form = driver.find_element(By.ID, "lab-compare")
    for name, value in (("users", users), ("window_s", window_s), ("db_ms", db_ms), ("llm_ms", llm_ms)):
        field = form.find_element(By.NAME, name)
        field.clear()
        field.send_keys(str(value))
    driver.find_element(By.ID, "lab-start").click()


def wait_compared(driver, cells: int, timeout: float = 600) -> None:
    """Until the Compare form's cells are all done, and shown."""
    WebDriverWait(driver, timeout).until(
        lambda d: f"compared {cells} of {cells} cells" in d.find_element(By.ID, "lab-status").text
        and len(table_rows(d)) >= cells)


def save_screenshots(driver) -> None:
    """The table (its first columns, as wide as the page shows) and its charts, for the README."""
    IMAGES.mkdir(exist_ok=True)
    driver.execute_script("document.querySelector('#lab-groups h3').scrollIntoView()")
    (IMAGES / "comparison-table.png").write_bytes(
        driver.find_element(By.CSS_SELECTOR, "#lab-groups .lab-scroll").screenshot_as_png)
    (IMAGES / "comparison-charts.png").write_bytes(
        driver.find_element(By.CSS_SELECTOR, "#lab-groups .lab-charts").screenshot_as_png)


def drawn(run: Run) -> dict[str, int]:
    """What the charts must draw for a run: a point and a bar per row, and its p50, p95 and p99
    (tails of fewer than 20 samples are left out, as the table prints n<20)."""
    rows = len(run.results)
    return {"rps-memory": rows, "rps": rows,
            "latency": sum(1 + 2 * (r.latency_n >= MIN_TAIL_SAMPLES) for r in run.results)}


def chart_marks(root) -> dict[str, int]:
    """What each chart drew: points of the scatter, bars of the others."""
    return {fig.get_attribute("data-chart"): len(fig.find_elements(By.CSS_SELECTOR, "circle, rect.lab-bar"))
            for fig in root.find_elements(By.CSS_SELECTOR, "figure.lab-chart")}


def test_the_compare_form_records_three_targets_at_two_levels_sorted_charted_downloaded(targets, tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    hosts = [targets[name].base_url for name in TARGETS]
    cells = len(TARGETS) * len(LEVELS)
    with locust_ui(targets, tmp_path, DB_MS, LLM_MS) as (url, session_dir, _), \
            browser.chromium_driver(width=1500, height=1000, downloads=downloads) as driver:
        driver.get(url)  # no swarm yet: the tab's panel is under the start form
        compare_from_the_form(driver, hosts, ", ".join(map(str, LEVELS)), WINDOW_S, DB_MS, LLM_MS)
        wait_compared(driver, cells)
        run = Run.load(session_dir)
        assert sorted((r.target, r.users) for r in run.results) == sorted(
            (name, users) for name in TARGETS for users in LEVELS)
        for r in run.results:  # measured as bench compare measures a level
            assert r.source == "web-ui" and r.failures == 0 and r.requests > 0, r
            assert r.phases.window_s == pytest.approx(WINDOW_S, abs=1) and r.phases.drain_s is not None
            assert r.latency_ms.n > 0 and r.latency_ms.p50 >= DB_MS + LLM_MS
            assert (r.db_ms, r.llm_ms) == (None, None)  # the session's own workload, as typed
            assert r.memory_mb.peak_pss >= r.memory_mb.idle_pss > 0 and r.cpu_pct.machine is not None
        shown = table_rows(driver)
        assert {(row["target"], row["users"]) for row in shown} == {(r.target, str(r.users))
                                                                    for r in run.results}
        by_cell = {(r.target, r.users): r for r in run.results}
        for row in shown:
            r = by_cell[(row["target"], int(row["users"]))]
            assert (row["rps"], row["p50 ms"], row["W ms"]) == (f"{r.rps:.1f}", f"{r.latency_ms.p50:.0f}",
                                                                f"{r.w_ms():.0f}")
        # the models part: the queue of 4 sync workers serves a fraction of what the others do
        top = {r.target: r for r in run.results if r.users == max(LEVELS)}
        assert top["flask-sync"].rps < 0.5 * min(top["fastapi-async"].rps, top["go-gin"].rps)

        if os.environ.get(SCREENSHOTS_ENV):  # `make screenshots`: the README's pictures of this comparison
            save_screenshots(driver)

        click_head(driver, "rps")
        assert column(driver, "rps") == sorted(column(driver, "rps"))
        click_head(driver, "rps")
        assert column(driver, "rps") == sorted(column(driver, "rps"), reverse=True)

        panel = driver.find_element(By.ID, "lab-comparison")
        assert chart_marks(panel) == drawn(run)

        driver.find_element(By.CSS_SELECTOR, "#lab-downloads a[data-download='comparison.csv']").click()
        csv_path = downloads / "web-ui-now-comparison.csv"
        WebDriverWait(driver, 30).until(lambda d: csv_path.exists() and csv_path.stat().st_size > 0)
        with csv_path.open(newline="") as fh:
            lines = list(csv.DictReader(fh))
        assert len(lines) == cells
        for m in measures(run.results):  # every column, units in the head
            assert all(m.csv_title in line for line in lines), m.csv_title
        rates = {float(line["rps (valid answers per second)"]) for line in lines}
        assert rates == {r.rps for r in run.results}

        # report.html (`bench report` of the session folder): the same table and the same charts
        assert httpx.get(f"{url}/lab/session/report.html", timeout=120).status_code == 200
        driver.get((session_dir / "report.html").as_uri())
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "figure.lab-chart"))
        report_cells = {tuple(row.values()) for row in table_rows(driver, "table.comparison")}
        assert chart_marks(driver) == drawn(run)
        driver.get(url)
        show_comparison(driver)
        WebDriverWait(driver, 60).until(lambda d: len(table_rows(d)) == cells)
        tab_cells = {tuple(row.values()) for row in table_rows(driver)}
        assert tab_cells == report_cells

        # an earlier session: the same cells at half the rate
        earlier = json.loads((session_dir / "results.json").read_text())
        earlier["run_id"], earlier["started_at"] = "web-ui-earlier", "2026-01-01T00:00:00+00:00"
        for r in earlier["results"]:
            r["rps"] = round(r["rps"] / 2, 2)
        (session_dir.parent / "web-ui-earlier").mkdir()
        (session_dir.parent / "web-ui-earlier" / "results.json").write_text(json.dumps(earlier))
        driver.get(url)
        show_comparison(driver)
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: "web-ui-earlier" in d.find_element(By.ID, "lab-run").text)
        choose(driver, "lab-run", "web-ui-earlier")
        halved = sorted(float(f"{r['rps']:.1f}") for r in earlier["results"])
        wait.until(lambda d: sorted(column(d, "rps")) == halved)
        assert not driver.find_elements(By.CSS_SELECTOR, "button.lab-delete")  # read-only
        assert not driver.find_element(By.ID, "lab-compare").is_displayed()
        choose(driver, "lab-run", "web-ui-now")
        choose(driver, "lab-with", "web-ui-earlier")
        wait.until(lambda d: len(table_rows(d, "table.lab-diff")) == cells)
        changes = [row["rps change"] for row in table_rows(driver, "table.lab-diff")]
        assert all(c.startswith("+") and float(c.split()[0]) == pytest.approx(100, abs=5)
                   for c in changes), changes


def test_a_cell_from_the_web_ui_agrees_with_bench_compare_on_the_same_lab(lab, targets, tmp_path):
    """fastapi-async at 50 users, the LLM-bound workload: the Compare form's row and `bench compare`'s
    (its own start of the target, on the same PostgreSQL and upstream) are one measurement. The
    progress is polled once a second: the web UI is the Locust process that makes the load."""
    users, window_s = 50, 20
    host = targets["fastapi-async"].base_url
    only = {"fastapi-async": targets["fastapi-async"]}
    with locust_ui(only, tmp_path, DB_MS, LLM_MS) as (url, session_dir, _):
        plan = {"hosts": [host], "users": [users], "window_s": window_s, "db_ms": DB_MS, "llm_ms": LLM_MS}
        assert httpx.post(f"{url}/lab/compare", json=plan, timeout=10).status_code == 200
        deadline = time.monotonic() + 300
        while not (httpx.get(f"{url}/lab/session", timeout=10).json()["compare"] or {}).get("finished"):
            assert time.monotonic() < deadline, "the comparison did not finish"
            time.sleep(1)
    ui = next(r for r in Run.load(session_dir).results if r.users == users)
    argv = [str(REPO_ROOT / ".venv" / "bin" / "bench"), "compare", "--targets", "fastapi-async", "--users",
            str(users), "--db-ms", str(DB_MS), "--llm-ms", str(LLM_MS), "--duration", str(window_s),
            "--no-claims", "--no-calibration", "--results-dir", str(tmp_path / "cli")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False, cwd=REPO_ROOT,
                          env={**os.environ, **lab.env()})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    cli_dir = next(p for p in (tmp_path / "cli").iterdir() if p.is_dir() and not p.is_symlink())
    cli = next(r for r in Run.load(cli_dir).results if r.users == users)
    assert ui.rps == pytest.approx(cli.rps, rel=0.05), (ui.rps, cli.rps)
    assert ui.latency_ms.p50 == pytest.approx(cli.latency_ms.p50, rel=0.10), (ui.latency_ms, cli.latency_ms)
    for r in (ui, cli):  # Little's law: both are the closed loop they claim to be
        assert r.latency_ms.p50 == pytest.approx(r.w_ms(), rel=0.15), (r.source, r.latency_ms.p50, r.w_ms())
        assert r.latency_ms.mean == pytest.approx(r.w_ms(), rel=0.15), (r.source, r.latency_ms.mean, r.w_ms())


def test_a_master_and_its_forked_workers_record_one_ledger(targets, tmp_path):
    """`locust --processes 2` with the web UI: the workers forward their requests to the master,
    which decides the phases for both and writes the one ledger the row is counted from."""
    host = targets["go-gin"].base_url
    with locust_ui({"go-gin": targets["go-gin"]}, tmp_path, SWARM_DB_MS, SWARM_LLM_MS, processes=2) as (
            url, session_dir, _):
        wait_http(f"{url}/stats/requests", None, timeout=30, ok=lambda r: len(r.json()["workers"]) == 2)
        plan = {"hosts": [host], "users": [8], "window_s": 5}
        assert httpx.post(f"{url}/lab/compare", json=plan, timeout=10).status_code == 200
        deadline = time.monotonic() + 180
        while not (httpx.get(f"{url}/lab/session", timeout=10).json()["compare"] or {}).get("finished"):
            assert time.monotonic() < deadline, "the comparison did not finish"
            time.sleep(1)
    one, eight = sorted(Run.load(session_dir).results, key=lambda r: r.users)
    assert (one.users, eight.users) == (1, 8)
    for r in (one, eight):
        assert r.cpu_pct.locust_processes == 2 and r.failures == 0 and r.phases.drained
    assert eight.rps == pytest.approx(8 * one.rps, rel=0.2)  # goroutines: 8 users, 8 times the rate
    ledgers = list((session_dir / "raw").glob("swarm-*_requests.jsonl"))
    assert len(ledgers) == 2 and not list((session_dir / "raw").glob("*.w*.jsonl"))  # one file each


def swarm_from_the_start_form(driver, host: str, users: int) -> None:
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: d.find_element(By.NAME, "userCount"))
    _fill(driver, "userCount", users + 1)  # + the fixed-count Canary
    _fill(driver, "spawnRate", users + 1)
    _fill(driver, "host", host)
    driver.find_element(By.XPATH, "//button[@type='submit' and contains(., 'Start')]").click()
    wait.until(lambda d: _header(d, "Status") == "RUNNING")


def test_stop_closes_the_window_then_drains_its_requests_before_the_swarm_stops(targets, tmp_path):
    """flask-sync at 12 users: 4 workers, so each request waits W = 3 x its own time. Stop ends the
    window; the swarm goes on until the window's requests are answered, then stops: no row censored."""
    with locust_ui({"flask-sync": targets["flask-sync"]}, tmp_path, SWARM_DB_MS, SWARM_LLM_MS) as (
            url, session_dir, _), browser.chromium_driver(width=1400, height=900) as driver:
        driver.get(url)
        swarm_from_the_start_form(driver, targets["flask-sync"].base_url, 12)
        wait_http(f"{url}/lab/session", None, timeout=90,
                  ok=lambda r: (r.json()["recording"] or {}).get("window_s", 0) >= 6)
        driver.find_element(By.XPATH, "//button[contains(., 'Stop')]").click()
        WebDriverWait(driver, 90).until(lambda d: _header(d, "Status") == "STOPPED")
    (row,) = Run.load(session_dir).results
    assert row.target == "flask-sync" and row.users == 12 and row.failures == 0
    assert row.phases.window_s >= 6 and row.phases.drained and row.latency_ms.censored == 0
    assert row.phases.drain_s > 0  # the window's last requests were still queued at Stop
    assert row.latency_ms.mean == pytest.approx(row.w_ms(), rel=0.15)  # drained: nothing cut off


def test_changing_the_users_mid_swarm_closes_the_row_and_measures_the_next(targets, tmp_path):
    """The Edit form's POST /swarm while running: a row per users count, each with its own warm-up."""
    host = targets["go-gin"].base_url
    with locust_ui({"go-gin": targets["go-gin"]}, tmp_path, SWARM_DB_MS, SWARM_LLM_MS) as (
            url, session_dir, _):
        for users in (4, 8):
            form = {"user_count": users + 1, "spawn_rate": users + 1, "host": host}
            assert httpx.post(f"{url}/swarm", data=form, timeout=10).json()["success"]
            wait_http(f"{url}/lab/session", None, timeout=60,
                      ok=lambda r, n=users: (r.json()["recording"] or {}).get("users") == n
                      and r.json()["recording"]["window_s"] >= 5)
        assert httpx.post(f"{url}/stop", timeout=10).json()["success"]
        wait_http(f"{url}/lab/session", None, timeout=60, ok=lambda r: r.json()["rows"] == 2
                  and r.json()["recording"] is None)
    four, eight = Run.load(session_dir).results
    assert (four.users, eight.users) == (4, 8)
    assert eight.rps == pytest.approx(2 * four.rps, rel=0.2)  # goroutines: twice the users, twice the rate
    assert four.phases.window_s >= 5 and eight.phases.window_s >= 5 and four.failures == eight.failures == 0


def test_a_row_can_be_deleted_and_the_session_cleared(targets, tmp_path):
    host = targets["go-gin"].base_url
    with locust_ui({"go-gin": targets["go-gin"]}, tmp_path, SWARM_DB_MS, SWARM_LLM_MS) as (
            url, session_dir, _):
        for done in range(2):
            form = {"user_count": 3, "spawn_rate": 3, "host": host, "record_s": 3}
            assert httpx.post(f"{url}/swarm", data=form, timeout=10).json()["success"]
            wait_http(f"{url}/lab/session", None, timeout=60,
                      ok=lambda r, n=done: r.json()["rows"] > n and r.json()["recording"] is None)
            wait_http(f"{url}/stats/requests", None, timeout=30, ok=lambda r: r.json()["state"] == "stopped")
        ids = [r.recorded_at for r in Run.load(session_dir).results]
        assert len(ids) == 2
        assert httpx.delete(f"{url}/lab/comparison/rows/{ids[0]}", timeout=10).json() == {"rows": 1}
        missing = httpx.delete(f"{url}/lab/comparison/rows/{ids[0]}", timeout=10)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert [r.recorded_at for r in Run.load(session_dir).results] == ids[1:]
        assert httpx.delete(f"{url}/lab/comparison", timeout=10).json() == {"rows": 0}
        assert Run.load(session_dir).results == []
        assert httpx.get(f"{url}/lab/table", timeout=10).json()["groups"] == []


def test_quitting_locust_in_the_middle_of_a_swarm_keeps_its_row(targets, tmp_path):
    """No Record s and no Stop: Locust told to quit (SIGTERM, as `docker stop` sends; Ctrl-C takes
    the same shutdown path) closes the open window and saves its row."""
    host = targets["fastapi-async"].base_url
    with locust_ui({"fastapi-async": targets["fastapi-async"]}, tmp_path, SWARM_DB_MS, SWARM_LLM_MS) as (
            url, session_dir, locust):
        assert httpx.post(f"{url}/swarm", data={"user_count": 5, "spawn_rate": 5, "host": host},
                          timeout=10).json()["success"]
        wait_http(f"{url}/lab/session", locust, timeout=30,
                  ok=lambda r: (r.json()["recording"] or {}).get("window_s", 0) > 2)
        locust.popen.send_signal(signal.SIGTERM)
        assert locust.popen.wait(timeout=30) == 0
    (row,) = Run.load(session_dir).results
    assert row.target == "fastapi-async" and row.requests > 0 and row.phases.window_s > 2


def test_the_web_ui_refuses_hidden_options_and_other_sites(targets, tmp_path):
    """The start form may set only what it shows, and no page of another site may change anything."""
    host = targets["go-gin"].base_url
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    with locust_ui({"go-gin": targets["go-gin"]}, tmp_path, SWARM_DB_MS, SWARM_LLM_MS) as (
            url, session_dir, _):
        harmful = {"ledger": str(victim), "window_s": "1", "drain_max_s": "0", "memory_pid": "1",
                   "session_dir": "/", "lab_targets": str(victim), "memory_cgroup": "/"}
        for name, value in harmful.items():
            form = {"user_count": 2, "spawn_rate": 2, "host": host, name: value}
            resp = httpx.post(f"{url}/swarm", data=form, timeout=10)
            assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_parameter", name
        time.sleep(1)
        assert httpx.get(f"{url}/stats/requests", timeout=10).json()["state"] == "ready"  # nothing started
        evil = {"Origin": "http://evil.example"}
        for method, path in (("POST", "/swarm"), ("POST", "/stop"), ("DELETE", "/lab/comparison"),
                             ("POST", "/lab/compare"), ("DELETE", "/lab/comparison/rows/x")):
            resp = httpx.request(method, f"{url}{path}", headers=evil,
                                 data={"user_count": 2, "spawn_rate": 2}, timeout=10)
            assert resp.status_code == 403 and resp.json()["error"]["code"] == "cross_origin", path
        read = httpx.get(f"{url}/lab/session", headers=evil, timeout=10)
        assert "access-control-allow-origin" not in read.headers  # another site's page cannot read it
        own = httpx.post(f"{url}/swarm", headers={"Origin": url}, data={"user_count": 2, "spawn_rate": 2,
                                                                         "host": host}, timeout=10)
        assert own.json()["success"]
        httpx.post(f"{url}/stop", headers={"Origin": url}, timeout=10)
    assert victim.read_text() == "keep me"
    assert not (Path("/") / "results.json").exists()
