"""The compose stack for real: images, healthchecks, published ports, Locust master + workers, the
memory tab in Chromium, `bench compare --docker`, and `down -v` leaving nothing behind.

`make test` runs `bench docker-lab --best-effort` first (engine, compose plugin, base images); where
that cannot work these tests skip with its one-line reason, and the recorded-output tests
(test_docker_driver.py, tests/harness/test_compare_docker.py) still run. The stack is shared by the
module and the tests run in file order: profiles come up one after another, the last tests tear it
down.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from bench import compose, docker, dockerlab, manifest
from bench.manifest import REPO_ROOT
from bench.results import Run
from tests import browser
from tests.conftest import expected_recommendation

WHY_NOT = dockerlab.problem()
pytestmark = [pytest.mark.docker, pytest.mark.skipif(WHY_NOT is not None, reason=f"no Docker: {WHY_NOT}")]

TARGETS = manifest.load_targets()
DOC = compose.compose_document()
PROFILES = ["flask", "django", "fastapi", "go", "all"]
FRAMEWORKS = list(dict.fromkeys(t.framework for t in TARGETS.values()))
LOCUST_URL = f"http://{compose.PUBLISH_HOST}:{compose.LOCUST_WEB_PORT}"
SWARM_DB_MS, SWARM_LLM_MS, SWARM_USERS = 20, 200, 4  # 4: within every first target's capacity


def compose_cmd(*args: str, profiles=("all",), timeout: float = 900) -> str:
    argv = docker.compose_argv(*args, profiles=profiles, project=compose.PROJECT)  # the user's stack
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stderr[-3000:]}"
    return done.stdout


def project_resources(project: str = compose.PROJECT) -> dict[str, list[str]]:
    label = f"label=com.docker.compose.project={project}"
    found = {}
    for kind, argv in (("containers", ["docker", "ps", "-a", "--filter", label, "--format", "{{.Names}}"]),
                       ("networks", ["docker", "network", "ls", "--filter", label, "--format", "{{.Name}}"]),
                       ("volumes", ["docker", "volume", "ls", "--filter", label, "--format", "{{.Name}}"])):
        found[kind] = docker.run(argv).split()
    return found


@pytest.fixture(scope="module")
def stack():
    compose_cmd("down", "--volumes", "--remove-orphans")  # a clean start, whatever ran before
    yield
    compose_cmd("down", "--volumes", "--remove-orphans")


def services_of(profile: str) -> set[str]:
    return {name for name, svc in DOC["services"].items()
            if not svc.get("profiles") or profile in svc["profiles"]}


@pytest.mark.timeout(1500)  # the first profile builds its images
@pytest.mark.parametrize("profile", PROFILES)
def test_profile_comes_up_healthy(stack, profile):
    compose_cmd("up", "--build", "--detach", "--wait", "--wait-timeout", "600", profiles=(profile,))
    rows = docker.parse_ps(compose_cmd("ps", "--format", "json", profiles=(profile,)))
    state = {row["Service"]: (row["State"], row.get("Health", "")) for row in rows}
    for service in services_of(profile):
        has_check = "healthcheck" in DOC["services"][service]
        assert state.get(service, ("missing",))[0] == "running", f"{service}: {state.get(service)}"
        if has_check:
            assert state[service][1] == "healthy", f"{service}: {state[service]}"


@pytest.mark.parametrize("name", list(TARGETS))
def test_target_answers_like_the_native_one(stack, db, name):
    """Through the published port, the same body as natively (computed from the same init.sql)."""
    port = TARGETS[name].port
    with httpx.Client(base_url=f"http://{compose.PUBLISH_HOST}:{port}", timeout=30) as client:
        for user_id in (1, 42, 9999):
            resp = client.get(f"/recommendation/{user_id}", params={"db_ms": 0, "llm_ms": 0})
            assert resp.status_code == 200, resp.text
            assert resp.json() == expected_recommendation(db, user_id, served_by=name)
        bad = client.get("/recommendation/0")
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "invalid_parameter"


def first_target(framework: str) -> manifest.Target:
    return next(t for t in TARGETS.values() if t.framework == framework)


def l1_seconds(base_url: str, n: int = 8) -> float:
    """The target's own 1-user latency (median of sequential requests) at the swarm's db/llm ms,
    after a concurrent warm-up: each worker's first request opens its DB and upstream connections."""
    params = {"db_ms": SWARM_DB_MS, "llm_ms": SWARM_LLM_MS}
    with httpx.Client(base_url=base_url, timeout=30) as client:
        with ThreadPoolExecutor(8) as pool:
            assert all(r.status_code == 200 for r in pool.map(
                lambda i: client.get(f"/recommendation/{i + 1}", params=params), range(16)))
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            assert client.get(f"/recommendation/{i + 1}", params=params).status_code == 200
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def locust_stats() -> dict:
    return httpx.get(f"{LOCUST_URL}/stats/requests", timeout=10).json()


def wait_for(predicate, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (httpx.HTTPError, ValueError, KeyError):
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def ready_workers() -> int:
    return sum(1 for w in locust_stats().get("workers", []) if w["state"] in ("ready", "running", "stopped"))


@pytest.fixture(scope="module")
def two_workers(stack):
    compose_cmd("up", "--detach", "--wait", "--scale", "locust-worker=2", "locust", "locust-worker")
    wait_for(lambda: ready_workers() == 2, 90, "2 Locust workers")


def swarm(host: str, seconds: float, users: int = SWARM_USERS) -> dict:
    """A swarm from the web UI's own endpoint; returns the recommendation row's steady-state rate."""
    form = {"user_count": users + 1, "spawn_rate": users + 1, "host": host,  # + the fixed Canary
            "db_ms": SWARM_DB_MS, "llm_ms": SWARM_LLM_MS}
    assert httpx.post(f"{LOCUST_URL}/swarm", data=form, timeout=10).json()["success"]
    try:
        row = "/recommendation/[id]"
        wait_for(lambda: locust_stats()["state"] == "running", 30, "the swarm to run")
        time.sleep(4)  # ramp-up and the first rounds: outside the measured window
        first, t0 = _row(row), time.monotonic()
        time.sleep(seconds)
        last, t1 = _row(row), time.monotonic()
        stats = locust_stats()
    finally:
        httpx.post(f"{LOCUST_URL}/stop", timeout=10)
        wait_for(lambda: locust_stats()["state"] == "stopped", 60, "the swarm to stop")
    httpx.post(f"{LOCUST_URL}/stats/reset", timeout=10)
    return {"rps": (last["num_requests"] - first["num_requests"]) / (t1 - t0),
            "failures": last["num_failures"], "requests": last["num_requests"], "stats": stats}


def _row(name: str) -> dict:
    rows = {r["name"]: r for r in locust_stats()["stats"]}
    return rows.get(name, {"num_requests": 0, "num_failures": 0})


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_locust_master_and_two_workers_swarm_each_framework(two_workers, framework):
    target = first_target(framework)
    l1 = l1_seconds(f"http://{compose.PUBLISH_HOST}:{target.port}")
    result = swarm(f"http://{target.name}:{target.port}", seconds=16)
    expected = SWARM_USERS / l1
    assert result["failures"] == 0 and result["stats"]["fail_ratio"] == 0
    assert len(result["stats"]["workers"]) == 2
    assert result["rps"] == pytest.approx(expected, rel=0.15), (
        f"{target.name}: {result['rps']:.1f} rps vs users/L1 = {SWARM_USERS}/{l1:.3f} s = {expected:.1f}")


def test_the_locust_master_runs_unprivileged_with_no_socket_and_no_capability(stack):
    status = compose_cmd("exec", "-T", "locust", "cat", "/proc/1/status")
    fields = {line.split(":")[0]: line.split()[1:] for line in status.splitlines() if ":" in line}
    owner = (REPO_ROOT / "results").stat().st_uid
    assert set(fields["Uid"]) == {str(owner if owner else 10001)}, status  # results' owner, never root
    assert fields["CapPrm"] == fields["CapEff"] == ["0000000000000000"] and fields["NoNewPrivs"] == ["1"]
    assert fields["Groups"] == []  # not the root group, nor any other
    missing = subprocess.run(docker.compose_argv("exec", "-T", "locust", "test", "-e", "/var/run/docker.sock",
                                                 profiles=("all",)), capture_output=True, check=False)
    assert missing.returncode != 0  # no Docker socket


def test_a_worker_rejoins_a_recreated_master(two_workers):
    # Also leaves a fresh master, whose web UI opens on the start form (the memory tab test's).
    compose_cmd("up", "--detach", "--wait", "--no-deps", "--force-recreate", "locust")
    wait_for(lambda: ready_workers() == 2, 120, "both workers to rejoin the new master")


@pytest.mark.skipif(bool(browser.missing()), reason=browser.missing() or "")
def test_memory_tab_shows_the_swarmed_containers_working_set(two_workers):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.ui.test_locust_web_ui import _fill, _header, _memory_row, _number

    target = TARGETS["fastapi-async"]
    with browser.chromium_driver(width=1400, height=900) as driver:
        wait = WebDriverWait(driver, 60)
        driver.get(LOCUST_URL)
        wait.until(lambda d: d.find_element(By.NAME, "userCount"))
        _fill(driver, "userCount", 6)
        _fill(driver, "spawnRate", 6)
        _fill(driver, "host", f"http://{target.name}:{target.port}")
        driver.find_element(By.XPATH, "//button[@type='submit']").click()
        try:
            wait.until(lambda d: _header(d, "Status") == "RUNNING")
            driver.find_element(By.XPATH, "//*[@role='tab'][contains(., 'Target memory')]").click()
            wait.until(lambda d: _number(_memory_row(d).get("Working set MiB", "")) > 0)
            row = _memory_row(driver)
            assert row["Container"] == target.name
            shown = _number(row["Working set MiB"])
            container = docker.container_for(target.name, project=compose.PROJECT)
            measured = docker.memory_mb(container)["rss"]
            assert shown == pytest.approx(measured, rel=0.25), (shown, measured)
            assert _number(row["Peak working set MiB"]) >= shown
            assert _number(row["PIDs"]) >= 1
        finally:
            httpx.post(f"{LOCUST_URL}/stop", timeout=10)


COMPARED = ["flask-sync", "fastapi-async", "go-gin"]


@pytest.mark.timeout(900)
@pytest.mark.skipif(bool(browser.missing()), reason=browser.missing() or "")
def test_the_comparison_tab_compares_three_targets_from_its_compare_form(two_workers):
    """The README walkthrough under `docker compose --profile all up`: in the Comparison tab, three
    targets ticked among the services that are up, two users levels typed, Compare; six rows measured
    as bench compare measures a level, by a master whose two workers forward their requests to it."""
    from selenium.webdriver.common.by import By

    from tests.ui import test_comparison_tab as tab

    # The master's session folder, on the host through the bind mount; earlier tests' swarms go.
    session = httpx.get(f"{LOCUST_URL}/lab/session", timeout=10).json()
    session_dir = REPO_ROOT / "results" / session["run_id"]
    assert session["dir"] == f"results/{session['run_id']}"
    # an earlier test's swarm is stopped and its row recorded (a Stop drains first) before the clear
    wait_for(lambda: httpx.get(f"{LOCUST_URL}/lab/session", timeout=10).json()["recording"] is None
             and locust_stats()["state"] in ("ready", "stopped"), 120, "the last swarm's row")
    httpx.delete(f"{LOCUST_URL}/lab/comparison", timeout=10)
    hosts = [f"http://{name}:{TARGETS[name].port}" for name in COMPARED]
    # Every target of the "all" profile is up, and offered under its service name.
    offered = {h["target"]: h["url"] for h in httpx.get(f"{LOCUST_URL}/lab/hosts", timeout=30).json()}
    assert set(offered) == set(TARGETS) and [offered[name] for name in COMPARED] == hosts
    cells = len(COMPARED) * len(tab.LEVELS)
    with browser.chromium_driver(width=1500, height=1000) as driver:
        driver.get(LOCUST_URL)
        tab.show_comparison(driver)
        tab.compare_from_the_form(driver, hosts, ", ".join(map(str, tab.LEVELS)), tab.WINDOW_S, tab.DB_MS,
                                  tab.LLM_MS)
        tab.wait_compared(driver, cells)
        run = Run.load(session_dir)
        assert tab.chart_marks(driver.find_element(By.ID, "lab-comparison")) == tab.drawn(run)
        shown = {(row["target"], row["users"]): row for row in tab.table_rows(driver)}
    assert sorted((r.target, r.users) for r in run.results) == sorted(
        (name, users) for name in COMPARED for users in tab.LEVELS)
    for r in run.results:
        assert r.runtime == "docker" and r.memory_source == "working set" and r.source == "web-ui"
        assert r.failures == 0 and r.phases.drain_s is not None and r.latency_ms.n > 0
        assert r.cpu_pct.locust_processes == 2  # the two workers' requests, in the master's ledger
        assert r.memory_mb.peak_pss >= r.memory_mb.idle_pss > 0
        assert r.processes == TARGETS[r.target].resolve().processes
        assert shown[(r.target, str(r.users))]["rps"] == f"{r.rps:.1f}"
    top = {r.target: r for r in run.results if r.users == max(tab.LEVELS)}
    assert top["flask-sync"].rps < 0.5 * min(top["fastapi-async"].rps, top["go-gin"].rps)
    report = httpx.get(f"{LOCUST_URL}/lab/session/report.md", timeout=120)
    assert report.status_code == 200 and "## Comparison" in report.text  # rendered in the Locust image


@pytest.mark.timeout(1000)
def test_bench_compare_docker_quick(stack, tmp_path):
    """The harness's --docker path for real; it ends with `compose down` itself."""
    chosen = ["flask-sync", "fastapi-async", "go-gin", "django-async"]
    argv = [str(REPO_ROOT / ".venv/bin/bench"), "compare", "--docker", "--quick", "--duration", "10",
            "--no-claims", "--no-calibration", "--targets", ",".join(chosen), "--results-dir", str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir() and not p.is_symlink())
    run = Run.load(run_dir)
    assert not run.skipped, run.skipped
    top = {r.target: r for r in run.results if r.users == 100}
    assert set(top) == set(chosen)
    for name, result in top.items():
        assert result.failures == 0 and result.requests > 0, name
        assert result.memory_mb.peak_pss and result.memory_mb.peak_pss > 0, name
        assert result.runtime == "docker", name
    for name in ("flask-sync", "go-gin"):  # neither is CPU-bound at 100 users: near their ceiling
        assert top[name].efficiency >= 0.75, (name, top[name].efficiency)
    # The event loop may meet this machine's CPU at 100 users, but it still serves many times what
    # 4 sync workers can.
    assert top["fastapi-async"].rps >= 5 * top["flask-sync"].rps, (top["fastapi-async"].rps,
                                                                  top["flask-sync"].rps)
    report = (run_dir / "report.md").read_text()
    assert "working set" in report


@pytest.mark.timeout(900)
def test_bench_compare_docker_leaves_the_users_stack_and_its_data_alone(stack, tmp_path):
    """The harness runs its own compose project: the user's stack (here the go profile, with a row
    written to its database) keeps its containers, ports and data through `bench compare --docker`,
    whose `down --volumes` removes only the harness's project."""
    import psycopg

    compose_cmd("up", "--detach", "--wait", profiles=("go",))
    before = {row["Service"]: row["ID"] for row in docker.parse_ps(compose_cmd("ps", "--format", "json",
                                                                               profiles=("go",)))}
    pg = docker.published_url("postgres", 5432, "postgresql", project=compose.PROJECT).split("://", 1)[1]
    url = f"postgresql://{compose.DB_USER}:{compose.DB_PASSWORD}@{pg}/{compose.DB_NAME}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS users_stack_marker (note text)")
        conn.execute("INSERT INTO users_stack_marker VALUES ('kept')")
    argv = [str(REPO_ROOT / ".venv/bin/bench"), "compare", "--docker", "--quick", "--duration", "5",
            "--no-claims", "--no-calibration", "--targets", "go-gin", "--results-dir", str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    after = {row["Service"]: (row["ID"], row["State"]) for row in docker.parse_ps(
        compose_cmd("ps", "--format", "json", profiles=("go",)))}
    assert {name: after.get(name, (None, "gone"))[0] for name in before} == before
    assert all(after[name][1] == "running" for name in before), after
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT note FROM users_stack_marker").fetchall() == [("kept",)]
        conn.execute("DROP TABLE users_stack_marker")
    port = TARGETS["go-gin"].port  # still the user's fixed port, answering
    assert httpx.get(f"http://{compose.PUBLISH_HOST}:{port}/healthz", timeout=10).status_code == 200
    assert project_resources(compose.HARNESS_PROJECT) == {"containers": [], "networks": [], "volumes": []}


def test_down_leaves_nothing_of_the_project(stack):
    compose_cmd("up", "--detach", "--wait", profiles=("go",))
    assert project_resources()["containers"], "the stack should be up before down"
    compose_cmd("down", "--volumes", "--remove-orphans")
    assert project_resources() == {"containers": [], "networks": [], "volumes": []}

