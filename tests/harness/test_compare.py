"""`bench compare`: the plan of cells, short real runs per scenario, and Ctrl-C mid-run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from bench import manifest
from bench.compare import (
    CALIBRATION,
    CLAIM_CPU_N,
    QUICK_EXTRA_WINDOW_S,
    Cell,
    CompareOptions,
    Subject,
    cell_db_pool,
    level_result,
    locust_plan,
    median_of_repeats,
    plan,
    repeated,
    run_compare,
    segments,
    with_locust_room,
)
from bench.load import ledger_path
from bench.manifest import REPO_ROOT
from bench.results import Cpu, Latency, Memory, Result, Run, invocation
from tests.harness.closed_loop import ClosedLoop, JobLoop, ProcessesLoop

TARGETS = manifest.load_targets()
DOCS = REPO_ROOT / "docs"


def opts(*names: str, **kw) -> CompareOptions:
    return CompareOptions(targets=[TARGETS[n] for n in names], users=kw.pop("users", [100]), **kw)


def test_plan_adds_calibration_sweep_and_cpu_cells_for_the_claims():
    cells = list(plan(opts("flask-sync", "fastapi-async", "fastapi-threadpool", quick=True)))
    names = [c.name for c in cells]
    assert names[0] == CALIBRATION and cells[0].scenario == "calibration"
    assert names[1:4] == ["flask-sync", "fastapi-async", "fastapi-threadpool"]
    assert all(c.levels == [1, 100] for c in cells[:4])
    assert all(c.experiments for c in cells[1:4])
    assert "flask-sync-workers16" in names  # quick: the claim's own worker count
    cpu = next(c for c in cells if c.scenario == "cpu")
    assert cpu.name == "fastapi-threadpool-cpu" and cpu.cpu_n == CLAIM_CPU_N and cpu.levels[0] == 1
    full = [c.name for c in plan(opts("flask-sync"))]
    assert [n for n in full if "workers" in n and "-db" not in n and "-cpu" not in n] == [
        "flask-sync-workers8", "flask-sync-workers16", "flask-sync-workers32"]


def test_plan_measures_the_job_fixes_beside_the_synchronous_answers():
    chosen = ("fastapi-async", "fastapi-threadpool", "fastapi-blocking-w4", "fastapi-bgtasks",
              "fastapi-celery", "fastapi-procpool")
    cells = list(plan(opts(*chosen, quick=True)))
    main = [c.name for c in cells if c.scenario == "recommendation"]
    assert main == ["fastapi-async", "fastapi-threadpool", "fastapi-blocking-w4"]  # no repeated rows
    jobs = [(c.name, c.jobs_endpoint, c.levels, c.duration_s, c.workload)
            for c in cells if c.scenario == "jobs"]
    assert jobs == [  # the synchronous answers are the recommendation rows: not measured twice
        ("fastapi-bgtasks-jobs", "jobs", [1, 100], QUICK_EXTRA_WINDOW_S, None),
        ("fastapi-celery-jobs", "jobs", [1, 100], QUICK_EXTRA_WINDOW_S, None),
        ("fastapi-celery-jobs-db50-llm1000", "jobs", [1], QUICK_EXTRA_WINDOW_S, (50, 1000))]
    celery = next(c for c in cells if c.name == "fastapi-celery-jobs")
    assert celery.capacity == 4
    assert celery.options(opts(*chosen, quick=True)).duration_s == QUICK_EXTRA_WINDOW_S
    assert [c.name for c in cells if c.scenario == "cpu"] == [
        "fastapi-threadpool-cpu", "fastapi-procpool-cpu"]
    assert all(c.duration_s is None for c in plan(opts(*chosen)) if c.combo or c.scenario != "recommendation")
    only_jobs = list(plan(opts("fastapi-async", "fastapi-celery", scenario="jobs", calibration=False)))
    assert [(c.name, c.jobs_endpoint) for c in only_jobs] == [
        ("fastapi-async-jobs", "sync"), ("fastapi-celery-jobs", "jobs")]


def test_plan_adds_the_db_bound_workload_and_the_default_go_pool_for_the_claims():
    plain = list(plan(opts("flask-sync", "fastapi-async", "go-gin", quick=True)))
    assert not any(c.workload or c.target and c.target.name == "go-gin" and c.combo for c in plain)
    quick = list(plan(opts("flask-sync", "fastapi-async", "go-gin", quick=True, all_claims=True)))
    db_bound = [c for c in quick if c.workload]
    assert [(c.name, c.levels) for c in db_bound] == [
        ("flask-sync-workers16-db200-llm0", [1, 100]), ("fastapi-async-db200-llm0", [1, 100])]
    assert all(c.options(opts("flask-sync")).db_ms == 200 and
               c.options(opts("flask-sync")).llm_ms == 0 for c in db_bound)
    assert quick[0].options(opts("flask-sync")).db_ms == 50  # the other cells keep the run's workload
    pool = [c for c in quick if c.target and c.target.name == "go-gin" and c.combo]
    assert [c.combo for c in pool] == [{"pool_size": max(4, os.cpu_count() or 1)}]
    sweep = [(c.name, c.levels) for c in plan(opts("flask-sync")) if c.scenario == "cpu" and c.combo]
    assert sweep == [(f"flask-sync-workers{w}-cpu", [1, 8]) for w in (1, 2, 4, 8)]  # full run only
    assert not any(c.scenario == "cpu" and c.combo for c in quick)
    full = [c.name for c in plan(opts("flask-sync", "fastapi-async")) if c.workload]
    assert full == ["flask-sync-db200-llm0", "flask-sync-workers16-db200-llm0",
                    "flask-sync-workers32-db200-llm0", "fastapi-async-db200-llm0"]
    # a run that IS the DB-bound workload needs no second copy of it
    same = opts("flask-sync", "fastapi-async", quick=True, db_ms=200, llm_ms=0)
    assert not any(c.workload for c in plan(same))


def test_plan_with_both_runtimes_measures_each_target_twice_and_the_claims_once():
    cells = list(plan(opts("flask-sync", "go-gin", quick=True, runtimes=("native", "docker"))))
    matrix = [(c.name, c.runtime, c.experiments) for c in cells if c.scenario == "recommendation"
              and not c.combo and not c.workload]
    assert matrix == [("flask-sync", "native", True), ("flask-sync@docker", "docker", False),
                      ("go-gin", "native", True), ("go-gin@docker", "docker", False)]
    extra = [c for c in cells if c.combo or c.scenario == "cpu" or c.workload]
    assert extra and all(c.runtime == "native" for c in extra)
    only_docker = list(plan(opts("flask-sync", quick=True, docker=True)))
    assert {c.runtime for c in only_docker if c.target} == {"docker"}
    assert not any(c.combo for c in only_docker)  # compose runs manifest defaults: no workers sweep
    with pytest.raises(ValueError, match="unknown runtime"):
        opts("flask-sync", runtimes=("podman",))


def test_plan_without_claims_or_with_a_user_sweep_is_just_the_matrix():
    bare = list(plan(opts("flask-sync", "fastapi-threadpool", calibration=False, claims=False)))
    assert [c.name for c in bare] == ["flask-sync", "fastapi-threadpool"]
    assert not any(c.experiments for c in bare)
    swept = list(plan(opts("flask-sync", calibration=False, sweep={"workers": [2, 8]})))
    assert [c.name for c in swept] == ["flask-sync-workers2", "flask-sync-workers8"]
    stream = list(plan(opts("fastapi-threadpool", calibration=False, scenario="stream")))
    assert [(c.name, c.scenario) for c in stream] == [("fastapi-threadpool-stream", "stream")]


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["stream", "cpu"])
def test_short_real_run_per_scenario(scenario, lab, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", lab.database_url)  # reuse the session's infra
    monkeypatch.setenv("UPSTREAM_URL", lab.upstream_url)
    run_dir = run_compare(opts("fastapi-async", users=[4], duration_s=4, scenario=scenario,
                               llm_ms=200, calibration=False, results_dir=tmp_path,
                               invocation=(["bench", "compare", "--quick"], "compare")),
                          run_id="t")
    run = Run.load(run_dir)
    assert (run.command, run.make_target) == (["bench", "compare", "--quick"], "compare")
    assert run.scenario.warmup_s is None  # per row now, not the last cell's value for the run
    assert [(r.target, r.scenario, r.users) for r in run.results] == [
        ("fastapi-async", scenario, 1), ("fastapi-async", scenario, 4)]
    for r in run.results:
        assert r.requests > 0 and r.failures == 0, r.failure_samples
        assert r.warmup_s and r.warmup_s > 0  # the warm-up of the start this row was measured on
        assert r.memory_mb.peak_pss and r.memory_mb.idle_pss and r.cpu_pct.locust is not None
        if scenario == "stream":  # time to first token comes before the whole stream
            assert r.ttft_ms and 0 < r.ttft_ms.p50 < r.latency_ms.p50
        # the requests started in the window, all finished in the drain (issue 11)
        assert r.phases and r.phases.drained and r.latency_ms.n == r.requests and r.littles_w_ms
    assert (run_dir / "raw" / f"fastapi-async-{scenario}_u4_stats.csv").exists()
    assert (run_dir / "raw" / f"fastapi-async-{scenario}_u4_requests.jsonl").exists()
    assert (tmp_path / "latest").resolve() == run_dir.resolve()


@pytest.mark.slow
def test_short_real_run_of_the_jobs_scenario(lab, tmp_path, monkeypatch):
    """fastapi-celery's jobs, submitted and polled: time to result, jobs done/s, every part's memory."""
    if not lab.redis_url:
        pytest.skip(f"no Redis here: {lab.redis_unavailable}")
    for key, value in (("DATABASE_URL", lab.database_url), ("UPSTREAM_URL", lab.upstream_url),
                       ("REDIS_URL", lab.redis_url)):
        monkeypatch.setenv(key, value)  # reuse the session's infra
    run = Run.load(run_compare(opts("fastapi-celery", users=[8], duration_s=4, scenario="jobs", llm_ms=300,
                                    calibration=False, results_dir=tmp_path), run_id="t"))
    one, eight = run.results
    assert (eight.scenario, eight.jobs_endpoint, eight.users) == ("jobs", "jobs", 8)
    for r in run.results:
        assert r.requests > 0 and r.failures == 0, r.failure_samples
        assert r.latency_ms.p50 > 300 and r.submit_ms and r.submit_ms.p50 < r.latency_ms.p50
    # 4 worker processes: 8 users get about 4 jobs done per time-to-result, not 8
    assert eight.ceiling_rps == pytest.approx(4 / (one.latency_ms.p50 / 1000), rel=0.01)
    assert 0.6 < eight.efficiency < 1.4
    parts = eight.memory_parts()
    assert parts["workers"] > parts["web"] > 0  # 4 prefork workers + Celery's main process
    assert parts.get("Redis", 1) > 0  # measured where the run started Redis itself (not here)


@pytest.mark.slow
def test_calibration_row_reaches_littles_law(lab, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", lab.database_url)
    monkeypatch.setenv("UPSTREAM_URL", lab.upstream_url)
    run = Run.load(run_compare(opts(users=[20], duration_s=5, llm_ms=200, results_dir=tmp_path),
                               run_id="c"))
    one, twenty = run.results
    assert (one.target, one.scenario, twenty.users) == (CALIBRATION, "calibration", 20)
    assert one.warmup_s is None and run.command is None  # nothing warmed; no command line given
    assert 240 <= one.latency_ms.p50 <= 400  # db_ms 50 + llm_ms 200 of upstream latency
    # Little's law with a wide margin: this test checks the arithmetic, not the machine.
    assert twenty.efficiency > 0.7 and twenty.failures == 0
    # nothing queues: the drained mean latency is W = users / rps, not flagged latency-censored
    assert twenty.latency_ms.mean == pytest.approx(twenty.littles_w_ms, rel=0.15)


@pytest.mark.slow
def test_ctrl_c_mid_run_keeps_results_and_leaves_no_process(lab, tmp_path):
    env = {**os.environ, "DATABASE_URL": lab.database_url, "UPSTREAM_URL": lab.upstream_url}
    bench = Path(sys.executable).parent / "bench"
    proc = subprocess.Popen(
        [str(bench), "compare", "--targets", "flask-sync,fastapi-async", "--users", "2",
         "--duration", "4", "--no-claims", "--no-calibration", "--results-dir", str(tmp_path)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        # A shell's background job starts with SIGINT ignored; this test is about Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    results = None
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:  # wait for the first target's results, then interrupt
            found = list(tmp_path.glob("*/results.json"))
            if found and '"fastapi-async"' not in found[0].read_text() and len(
                    Run.load(found[0].parent).results) >= 2:
                results = found[0]
                break
            time.sleep(0.5)
        assert results, "no results written in time"
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "a target or Locust should be running"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out.decode()[-2000:]
    assert "interrupted" in out.decode()
    run = Run.load(results.parent)
    assert [r.target for r in run.results][:2] == ["flask-sync", "flask-sync"]
    assert run.command[:4] == ["bench", "compare", "--targets", "flask-sync,fastapi-async"]
    assert run.make_target is None
    assert (results.parent / "report.md").exists()
    time.sleep(1)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_db_pool_bounds_the_ceiling_only_where_requests_use_the_db():
    cells = {c.scenario: c for c in plan(opts("fastapi-blocking-w4", "fastapi-threadpool"))}
    subject = Subject("fastapi-blocking-w4", "fastapi", "m", {}, "http://x", None, 4, 4)
    assert cell_db_pool(cells["recommendation"], subject) == 4
    assert cell_db_pool(cells["cpu"], subject) is None


def test_a_target_restarts_after_each_level_that_queued_beyond_its_capacity():
    # 4 sync workers: 1 fits; 10, 50, 100 queue -> each next level gets a fresh target
    assert segments([1, 10, 50, 100, 200], 4) == [[1, 10], [50], [100], [200]]
    assert segments([1, 10, 50, 100, 200], 40) == [[1, 10, 50], [100], [200]]
    assert segments([1, 100], 4) == [[1, 100]]  # the quick run never restarts
    assert segments([1, 10, 50, 100, 200], None) == [[1, 10, 50, 100, 200]]  # unbounded models


def test_repeats_measure_each_level_in_a_row_and_publish_the_median_with_its_spread(tmp_path, monkeypatch):
    """--repeat 3 on flask-sync (4 workers): made-up levels. Repeats of a level that queued beyond
    the capacity get fresh starts, L1 is the median 1-user repeat, and every repeat is kept."""
    from bench import compare
    from bench.results import Cpu, Latency, Memory
    assert repeated([1, 100], 3) == [1, 1, 1, 100, 100, 100]
    rps = {1: iter([1.70, 1.80, 1.75]), 100: iter([7.0, 7.3, 6.9])}
    seen_l1 = []

    def level(subject, cell, users, o, prefix, l1_s, progress, task, processes=1):
        seen_l1.append(l1_s)
        r = next(rps[users])
        return Result(target=cell.name, framework="flask", model="m", users=users, rps=r, requests=10,
                      failures=0, latency_ms=Latency(p50=1000 / r if users == 1 else 14000.0, n=10),
                      memory_mb=Memory(peak_pss=100 + 10 * r), processes=5, cpu_pct=Cpu(), capacity=4)

    starts = []

    @contextlib.contextmanager
    def start():
        starts.append(1)
        yield Subject("flask-sync", "flask", "m", {}, "http://x", None, 4, 4), lambda: True

    monkeypatch.setattr(compare, "measure_level", level)
    run = Run(run_id="r", started_at="t",
              machine={"cpus": 2, "mem_gb": 24.0, "python": "3.11", "platform": "x"},
              scenario={"name": "recommendation", "db_ms": 50, "llm_ms": 500, "duration_s": 8})
    progress = SimpleNamespace(update=lambda *a, **kw: None)
    cell = Cell(TARGETS["flask-sync"], {}, "recommendation", [1, 100])
    compare._measure_levels(cell, start, 4, opts("flask-sync", repeat=3), run, tmp_path, progress, None)
    assert len(starts) == 3  # [1, 1, 1, 100], then a fresh start for each later 100
    assert [r.repeat for r in run.repeats] == [0, 1, 2, 0, 1, 2]
    one, top = run.results
    assert (one.rps, one.spread.rps, one.spread.n) == (1.75, (1.7, 1.8), 3)
    assert (top.rps, top.spread.rps) == (7.0, (6.9, 7.3))
    assert top.spread.peak_pss == (169.0, 173.0) and top.spread.rps_pct(top.rps) == 5.7
    assert seen_l1[:3] == [None] * 3 and seen_l1[3:] == [pytest.approx(1 / 1.75)] * 3
    assert [len(r.results) for r in run.repeat_runs()] == [2, 2, 2]
    assert median_of_repeats(run.repeats[:2]).rps == 1.8  # an even count: the upper middle


@pytest.mark.slow
def test_a_level_with_no_completed_request_is_recorded_and_flagged(lab, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", lab.database_url)
    monkeypatch.setenv("UPSTREAM_URL", lab.upstream_url)
    # 1 request at a time, each 10 s of upstream latency; the warm-up stops at its 5 s limit, then
    # a 2 s window: no answer arrives in it and no request starts in it (every user is still
    # waiting on its first): three starved users, censored at the end with their wait so far
    run = Run.load(run_compare(opts("fastapi-blocking", users=[3], duration_s=2, llm_ms=10_000,
                                    drain_max_s=1, calibration=False, claims=False,
                                    results_dir=tmp_path),
                               run_id="z"))
    assert not run.skipped
    last = run.results[-1]
    assert (last.users, last.requests, last.rps) == (3, 0, 0.0)
    assert last.flags[0] == "no requests completed"
    assert last.starved_users == 3 and last.latency_ms.n == 0
    assert last.flags[1] == ("latency-censored (no request started in the window: 3 of 3 users got "
                             "no answer in the whole window)")


class FakeSampler:
    """Stands in for probe.TreeSampler after a level: CPU and memory as if sampled."""

    def __init__(self, cpu_pct: float, procs: dict | None = None) -> None:
        self._cpu, self.procs, self.elapsed = cpu_pct, procs or {}, 40.0
        self.peak = {"rss": 300.0, "pss": 250.0, "uss": 200.0}

    def cpu_pct(self) -> float:
        return self._cpu

    def max_process_cpu_pct(self) -> float:
        return self._cpu / 2


def test_a_level_row_comes_from_the_drained_window(tmp_path):
    """bench compare's row for a level, from a CONSTRUCTED ledger (simulated flask-sync, 100 users)."""
    prefix = tmp_path / "flask-sync_u100"
    ClosedLoop(ledger_path(prefix), users=100, servers=4, service_s=0.56, canary=True).run(
        window_s=15, warmup_max_s=15, drain_max_s=150)
    target = TARGETS["flask-sync"]
    cell = Cell(target, {}, "recommendation", [1, 100])
    subject = Subject("flask-sync", "flask", "gunicorn sync", {"workers": 4}, "http://x", 1, 4, 4,
                      idle={"pss": 240.0}, processes=5)
    worker = SimpleNamespace(role="worker", first_cpu=1.0, last_cpu=2.0, peak_rss=80.0, peak_pss=70.0,
                             peak_uss=60.0, peak_threads=3)
    row = level_result(subject, cell, 100, opts("flask-sync", duration_s=15), prefix, 0.56,
                       FakeSampler(20.0, {11: worker}), FakeSampler(30.0), 40.0)
    w = row.littles_w_ms
    assert row.rps == pytest.approx(7.1, abs=0.3) and w == pytest.approx(1000 * 100 / row.rps, rel=0.005)
    assert row.latency_ms.mean == pytest.approx(w, rel=0.05)
    assert row.latency_ms.p50 == pytest.approx(w, rel=0.05)
    assert row.latency_ms.n == row.requests > 100 and row.latency_ms.censored == 0 and row.flags == []
    assert row.phases.steady and row.phases.drained and row.phases.window_s == pytest.approx(15)
    # the canary waits in the queue too: a p95 resting on one or two checks is not printed
    assert row.canary_expected == 60 and row.canary_answered == row.canary_ms.n < 20
    assert row.canary_text().startswith("n<20 (")
    assert row.cpu_ms_per_request == pytest.approx(10 * 20.0 / (row.rps), rel=0.01)  # rate / rps
    assert row.efficiency == pytest.approx(row.rps / (4 / 0.56), abs=0.01)
    again = Run.model_validate_json(Run(run_id="r", started_at="t", machine={"cpus": 2, "mem_gb": 1,
                                        "python": "3.11"}, scenario={}, results=[row]).model_dump_json())
    assert again.results[0] == row  # the new fields round-trip through results.json


def test_a_multi_process_level_row_merges_the_workers_and_judges_the_busiest_locust(tmp_path):
    """A CONSTRUCTED level from `locust --processes 2` (simulated flask-sync at 100 users): the row is
    the single-process row's, its Locust CPU is every process's together and its flag the busiest's."""
    prefix = tmp_path / "flask-sync_u100"
    ProcessesLoop(ledger_path(prefix), workers=2, users=100, servers=4, service_s=0.56, canary=True).run(
        window_s=15, warmup_max_s=15, drain_max_s=150)
    subject = Subject("flask-sync", "flask", "gunicorn sync", {"workers": 4}, "http://x", 1, 4, 4,
                      idle={"pss": 240.0}, processes=5)
    row = level_result(subject, Cell(TARGETS["flask-sync"], {}, "recommendation", [1, 100]), 100,
                       opts("flask-sync", duration_s=15), prefix, 0.56, None, FakeSampler(170.0), 40.0)
    assert row.rps == pytest.approx(7.1, abs=0.3) and row.latency_ms.mean == pytest.approx(row.littles_w_ms,
                                                                                            rel=0.05)
    assert row.cpu_pct.model_dump(include={"locust", "locust_processes", "locust_busiest"}) == {
        "locust": 170.0, "locust_processes": 2, "locust_busiest": 85.0}  # FakeSampler: the busiest is half
    assert row.flags == ["locust-bound (85% of a core, the busiest of 2 Locust processes)"]
    single = tmp_path / "single"
    ClosedLoop(ledger_path(single), users=100, servers=4, service_s=0.56).run(
        window_s=15, warmup_max_s=15, drain_max_s=150)
    one = level_result(subject, Cell(TARGETS["flask-sync"], {}, "recommendation", [1, 100]), 100,
                       opts("flask-sync", duration_s=15), single, 0.56, None, FakeSampler(85.0), 40.0)
    assert (one.cpu_pct.locust, one.cpu_pct.locust_processes, one.cpu_pct.locust_busiest) == (85, None, None)
    assert one.flags == ["locust-bound (85% of a core)"]  # one process: the whole tree is that process


def level(users: int, locust: float, flags: tuple[str, ...] = (), processes: int | None = None) -> Result:
    return Result(target="calibration", framework="locust", model="m", users=users, rps=users, requests=10,
                  failures=0, latency_ms=Latency(p50=500.0, n=10), memory_mb=Memory(), processes=1,
                  cpu_pct=Cpu(locust=locust, locust_processes=processes), flags=list(flags))


def test_locust_processes_are_planned_from_the_level_before():
    assert locust_plan(3, level(800, 39.0), 1600, cpus=2) == 3  # --locust-processes 3: as told
    # auto: one process until the line predicts past 1.5 cores; then one per 70 %, a core each at most
    assert locust_plan(None, level(800, 59.0), 1600, cpus=2) == 1  # 118 %: one, measured again if bound
    assert locust_plan(None, level(50, 55.6), 100, cpus=2) == 1  # 5/20 ms: predicted 111, measured 73
    assert locust_plan(None, level(400, 40.0), 1600, cpus=2) == 2  # 160 % predicted
    assert locust_plan(None, level(400, 40.0), 1600, cpus=8) == 3  # ⌈160 / 70⌉
    # never fewer than the level below used on the way up; a search going down needs less
    assert locust_plan(None, level(1600, 64.0, processes=2), 3200, cpus=2) == 2
    assert locust_plan(None, level(1600, 64.0, processes=2), 800, cpus=2) == 1
    assert locust_plan(None, None, 50, cpus=2) == 1  # the first level: one process
    assert locust_plan(None, level(1, 6.4), 50, cpus=2) == 1  # L1's CPU is Locust's start-up, no base
    paced = level(800, 60.0).model_copy(update={"arrival_rps": 500.0})
    assert locust_plan(None, paced, 1600, cpus=2) == 1


def test_a_level_that_saturates_locust_anyway_is_measured_once_more_with_more_processes():
    measured = []

    def measure(processes: int) -> Result:
        measured.append(processes)
        return (level(1600, 97.0, ("locust-bound (97% of a core)",)) if processes == 1
                else level(1600, 110.0, processes=processes))

    assert with_locust_room(measure, 1, cpus=2).cpu_pct.locust_processes == 2 and measured == [1, 2]
    measured.clear()
    assert with_locust_room(measure, 2, cpus=2).cpu_pct.locust == 110.0 and measured == [2]  # no more
    measured.clear()
    with_locust_room(lambda n: measured.append(n) or level(800, 40.0), 1, cpus=2)
    assert measured == [1]  # not saturated: measured once


def test_a_jobs_level_row_has_time_to_result_submit_polls_and_every_part_of_the_memory(tmp_path):
    """A CONSTRUCTED jobs level (simulated fastapi-celery: 4 job workers of 0.56 s, 100 users)."""
    prefix = tmp_path / "fastapi-celery-jobs_u100"
    JobLoop(ledger_path(prefix), users=100, servers=4, service_s=0.56, canary=True).run(
        window_s=8, warmup_max_s=8, drain_max_s=150)
    cell = Cell(TARGETS["fastapi-celery"], {}, "jobs", [1, 100])
    resolved = cell.target.resolve()
    subject = Subject("fastapi-celery", "fastapi", "jobs", resolved.params, "http://x", 1, cell.capacity,
                      resolved.db_pool, processes=resolved.processes)
    proc = SimpleNamespace(role="main", first_cpu=1.0, last_cpu=1.5, peak_rss=40.0, peak_pss=30.0,
                           peak_uss=25.0, peak_threads=1)
    procs = {1: proc, 2: SimpleNamespace(**{**vars(proc), "role": "worker", "peak_pss": 70.0}),
             **{3 + i: SimpleNamespace(**{**vars(proc), "role": "celery", "peak_pss": 50.0})
                for i in range(5)}}  # Celery's main process and 4 prefork workers
    redis = FakeSampler(1.0)
    redis.peak = {"rss": 9.0, "pss": 6.5, "uss": 6.0}
    l1_s = 0.616  # one job alone: 560 ms of work, seen by the poll that began at 614 ms
    row = level_result(subject, cell, 100, opts("fastapi-celery", duration_s=8), prefix, l1_s,
                       FakeSampler(20.0, procs), FakeSampler(30.0), 40.0, redis_s=redis)
    assert (row.scenario, row.jobs_endpoint, row.capacity) == ("jobs", "jobs", 4)
    assert row.rps == pytest.approx(4 / 0.56, rel=0.05)  # jobs completed per second
    assert row.ceiling_rps == pytest.approx(4 / l1_s, rel=0.01)  # job_capacity / L1, not 100 / L1
    assert row.latency_ms.p50 == pytest.approx(row.littles_w_ms, rel=0.05) and not row.flags
    assert row.submit_ms.p50 == 4 and row.submit_ms.n == pytest.approx(row.latency_ms.n, rel=0.1)
    assert row.polls_per_job == pytest.approx(row.littles_w_ms / 102, rel=0.1)  # one per ~100 ms waited
    assert row.memory_parts() == {"web": 100.0, "workers": 250.0, "Redis": 6.5}
    sync = level_result(subject, Cell(TARGETS["fastapi-async"], {}, "jobs", [1, 100]), 100,
                        opts("fastapi-async", duration_s=8), prefix, l1_s, None, FakeSampler(30.0), 40.0)
    assert (sync.jobs_endpoint, sync.submit_ms, sync.polls_per_job, sync.redis_mb) == (
        "sync", None, None, None)


def test_a_jobs_cell_measures_redis_too_natively_and_under_docker(monkeypatch):
    """Redis's own sampler: the infra's redis-server natively, compose's redis container in Docker;
    only for a job target in the jobs scenario."""
    from bench import compare, docker, probe
    celery = TARGETS["fastapi-celery"].resolve()
    native = Subject.of(celery, "jobs", pid=os.getpid(), redis_pid=os.getppid())
    sampler = native.redis_sampler()
    assert isinstance(sampler, probe.TreeSampler) and sampler.pid == os.getppid()
    assert Subject.of(TARGETS["fastapi-async"].resolve(), "jobs", pid=os.getpid(),
                      redis_pid=os.getppid()).redis_sampler() is None  # sync: no Redis in its path
    monkeypatch.setattr(docker, "memory_mb", lambda container: {"pss": 1.0})
    asked, seen = [], []

    @contextlib.contextmanager
    def up(target):
        yield "http://127.0.0.1:1", f"lab-{target.name}-1"

    monkeypatch.setattr(docker, "running", up)
    monkeypatch.setattr(docker, "container_for", lambda service: asked.append(service) or f"lab-{service}-1")
    monkeypatch.setattr(docker, "published_url", lambda service, port, scheme: f"{scheme}://127.0.0.1:7")
    cleared, warmed = [], []
    monkeypatch.setattr(compare, "clear_jobs", cleared.append)
    monkeypatch.setattr(compare, "warm_up_jobs", lambda *a: warmed.append("jobs") or 0.0)
    monkeypatch.setattr(compare, "warm_up", lambda *a: warmed.append("recommendation") or 0.0)

    def levels(cell, start, *a, **kw):
        with start() as (subject, _):
            seen.append(subject)

    monkeypatch.setattr(compare, "_measure_levels", levels)
    progress = SimpleNamespace(update=lambda *a, **kw: None)
    for cell in (Cell(TARGETS["fastapi-celery"], {}, "jobs", [1], runtime="docker"),
                 Cell(TARGETS["fastapi-async"], {}, "recommendation", [1], runtime="docker")):
        compare._measure_docker_cell(cell, opts("fastapi-celery"), None, None, progress, None)
    assert asked == ["redis"] and cleared == ["redis://127.0.0.1:7/0"]  # compose's redis, emptied first
    assert warmed == ["jobs", "recommendation"]  # each warmed through what it measures
    sampler = seen[0].redis_sampler()
    assert isinstance(sampler, docker.StatsSampler) and sampler.container == "lab-redis-1"
    assert seen[1].redis_sampler() is None


def test_a_level_cut_by_the_drain_limit_is_flagged_latency_censored(tmp_path):
    prefix = tmp_path / "fastapi-blocking_u100"
    ClosedLoop(ledger_path(prefix), users=100, servers=1, service_s=0.556).run(
        window_s=15, warmup_max_s=15, drain_max_s=5)
    subject = Subject("fastapi-blocking", "fastapi", "blocking", {}, "http://x", 1, 1, 1)
    row = level_result(subject, Cell(TARGETS["fastapi-blocking"], {}, "recommendation", [1, 100]), 100,
                       opts("fastapi-blocking", duration_s=15), prefix, 0.556, None, FakeSampler(5.0), 20.0)
    assert row.latency_ms.censored > 0 and not row.phases.drained
    assert row.rps == pytest.approx(1.8, abs=0.1)  # throughput does not depend on the drain
    # nothing started in the window finished, yet answers arrived: served, but its latency is censored
    assert row.requests == 0 and [f.split()[0] for f in row.flags] == ["latency-censored"]
    assert row.cpu_ms_per_request is None and row.processes == 0


def test_a_level_whose_window_never_closed_says_so(tmp_path):
    prefix = tmp_path / "x_u1"
    ledger_path(prefix).write_text('{"mark":"start","t":1}\n{"mark":"end","t":2,"reason":"stopped"}\n')
    prefix.with_suffix(".log").write_text("Traceback: boom\n")
    subject = Subject("fastapi-async", "fastapi", "m", {}, "http://x", 1, None, 15)
    with pytest.raises(RuntimeError, match="(?s)never closed.*warm-up.*boom"):
        level_result(subject, Cell(TARGETS["fastapi-async"], {}, "recommendation", [1]), 1,
                     opts("fastapi-async"), prefix, None, None, FakeSampler(1.0), 10.0)
    with pytest.raises(RuntimeError, match="no request ledger"):
        level_result(subject, Cell(TARGETS["fastapi-async"], {}, "recommendation", [1]), 1,
                     opts("fastapi-async"), tmp_path / "missing", None, None, FakeSampler(1.0), 10.0)


def test_calibration_scenario_is_refused_for_framework_targets():
    with pytest.raises(ValueError, match="calibration.*recommendation, stream, cpu"):
        opts("fastapi-async", scenario="calibration")
    from typer.testing import CliRunner

    from bench.cli import app
    result = CliRunner().invoke(app, ["compare", "--targets", "fastapi-async", "--scenario", "calibration"])
    assert result.exit_code == 2, result.output
    assert "the `calibration` row of every compare" in " ".join(
        result.output.replace("│", " ").split())


def test_invocation_records_the_command_line_and_the_make_target():
    argv = ["/repo/.venv/bin/bench", "compare", "--quick"]
    assert invocation(argv, {}) == (["bench", "compare", "--quick"], None)
    assert invocation(argv, {"LAB_MAKE_TARGET": "compare", "MAKELEVEL": "1"}) == (
        ["bench", "compare", "--quick"], "compare")
    # a LAB_MAKE_TARGET left exported in a shell, outside make, is not a make run
    assert invocation(argv, {"LAB_MAKE_TARGET": "compare"})[1] is None


def test_older_results_files_still_load():
    """The README's snapshot until issue 11 predates the command record and per-row warm-ups."""
    run = Run.model_validate_json((Path(__file__).parent / "data" /
                                   "results_before_drained_windows.json").read_text())
    assert run.command is None and run.make_target is None
    assert run.scenario.warmup_s and all(r.warmup_s is None for r in run.results)
    # and the drained-window fields (issue 11): absent, W computed from what the file has
    for r in run.results:
        assert r.latency_ms.mean is None and r.latency_ms.n is None and r.phases is None
        assert r.littles_w_ms is None and r.canary_ms is None and r.latency_n == r.requests
    blocking = next(r for r in run.results if r.target == "fastapi-blocking" and r.users == 100)
    assert blocking.w_ms() == pytest.approx(55_866, abs=1)


def test_idle_pairs_are_planned_for_the_claims_targets_natively():
    from bench.compare import idle_plan
    assert idle_plan(opts("flask-sync", "fastapi-async", "flask-gthread")) == ["flask-sync", "fastapi-async"]
    assert idle_plan(opts("flask-sync", quick=True, all_claims=True)) == ["flask-sync"]
    assert idle_plan(opts("flask-sync", quick=True)) == []  # a plain --quick run leaves them out
    assert idle_plan(opts("flask-sync", claims=False)) == []
    assert idle_plan(opts("flask-sync", docker=True)) == []


def test_a_job_target_starts_on_an_empty_job_queue(tmp_path):
    """The run's Redis outlives the targets: what a previous start left queued is deleted (it would
    be done before the next level's jobs), the job targets' own keys only."""
    import redis

    from bench import infra
    from bench.compare import clear_jobs
    try:
        context = infra.redis_server(tmp_path)
        url, _ = context.__enter__()
    except infra.RedisUnavailable as why:
        pytest.skip(f"no redis-server here: {why}")
    try:
        with redis.Redis.from_url(url) as client:
            client.rpush("celery", *(f"leftover job {i}" for i in range(100)))
            client.hset("unacked", "tag", "job")
            client.set("job:" + "a" * 32, "{}")
            client.set("celery-task-meta-x", "{}")
            client.sadd("_kombu.binding.celery", "celery")  # the queue's binding: Celery's, kept
            client.set("pubsub-of-another-experiment", "1")
            assert clear_jobs(url) == 4
            assert sorted(client.keys()) == [b"_kombu.binding.celery", b"pubsub-of-another-experiment"]
            assert clear_jobs(url) == 0
    finally:
        context.__exit__(None, None, None)
