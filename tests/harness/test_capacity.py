"""bench/capacity.py: where a level is past the knee, which level is the knee, what it costs."""

from __future__ import annotations

import pytest

from bench import capacity
from bench.capacity import knee_of, littles_shortfall, stop_reason
from bench.compare import CALIBRATION, Subject
from bench.report import capacity_table, render_html, render_markdown
from bench.results import Cpu, Knee, Latency, Memory, ProcessMemory, Result, Run


def row(users: int, rps: float, p95: float, *, mean: float | None = None, failures: int = 0,
        tree: float = 50.0, one: float = 50.0, locust: float = 30.0, machine: float = 40.0,
        pss: float = 120.0, flags: tuple[str, ...] = ()) -> Result:
    return Result(target="t", framework="fastapi", model="m", users=users, rps=rps, requests=1000,
                  failures=failures,
                  latency_ms=Latency(p50=p95 * 0.9, p95=p95, mean=mean or p95 * 0.9, n=1000),
                  memory_mb=Memory(peak_pss=pss), processes=1, flags=list(flags), db_ms=5, llm_ms=500,
                  cpu_pct=Cpu(target=tree, locust=locust, machine=machine), cpu_ms_per_request=3.0,
                  per_process=[ProcessMemory(pid=1, role="main", peak_rss=1, peak_pss=1, peak_uss=1,
                                             cpu_pct=one)])


L1 = 510.0


def calibrated(users: int, rps: float, efficiency: float, processes: int = 1, **kw) -> Result:
    """A calibration level: its efficiency is rps / (users / L1), L1 = 504.6 ms here."""
    r = row(users, rps, 540, **kw)
    return r.model_copy(update={"target": CALIBRATION, "efficiency": efficiency,
                                "ceiling_rps": round(users / 0.5046, 2),
                                "cpu_pct": r.cpu_pct.model_copy(update={
                                    "locust_processes": processes if processes > 1 else None})})


def test_the_calibration_must_reach_littles_law_at_every_level_after_l1():
    assert littles_shortfall(calibrated(1600, 2600, 0.82)) == (
        "load generator below Little's law (0.82 of users / L1 = 3171 rps)")
    assert littles_shortfall(calibrated(1600, 3040, 0.95)) is None  # 0.95 is enough
    assert littles_shortfall(calibrated(1, 1.9, 0.90)) is None  # L1 is the reference, not a level
    paced = calibrated(800, 1200, 0.5).model_copy(update={"arrival_rps": 1200.0})
    assert littles_shortfall(paced) is None  # the open model's users wait between requests


@pytest.mark.parametrize(("r", "framework", "why"), [
    (row(50, 97, 540), "fastapi", None),
    (row(50, 97, 800), "fastapi", "latency (p95 800 ms > 1.5 x L1 510 ms)"),
    (row(50, 97, 540, failures=20), "fastapi", "errors (2.0 % failed)"),
    (row(400, 300, 540, tree=92, one=92), "fastapi", "CPU (a process at 92 % of its one core)"),
    (row(400, 600, 540, tree=120, one=120), "go", None),  # a Go process may use both cores
    (row(800, 900, 540, tree=185, one=185), "go", "CPU (185 % of a core over 2 cores)"),
    (row(800, 900, 540, locust=85), "go", "load generator (Locust at 85 % of its core)"),
    # two Locust processes: 120 % of a core together, the busiest at 62 %: not the load generator's limit
    (row(1600, 1800, 540, locust=120).model_copy(update={"cpu_pct": Cpu(
        locust=120, locust_processes=2, locust_busiest=62, machine=70)}), "go", None),
    (row(1600, 1800, 540).model_copy(update={"cpu_pct": Cpu(
        locust=170, locust_processes=2, locust_busiest=85, machine=80)}), "go",
     "load generator (Locust at 85 % of its core, the busiest of 2 processes)"),
    # the calibration below Little's law (rps / (users / L1)); a target's efficiency is its model's
    (calibrated(1600, 2600, 0.82), CALIBRATION,
     "load generator below Little's law (0.82 of users / L1 = 3171 rps)"),
    (calibrated(1600, 3050, 0.96), CALIBRATION, None),
    (calibrated(1600, 2600, 0.82), "go", None),
    (row(800, 900, 540, machine=95), "go", "machine CPU (95 % of all cores)"),
    (row(50, 7, 900, mean=7000, flags=("latency-censored (mean 7000 ms vs W 7100 ms)",)), "flask",
     "latency (W 7143 ms > 1.5 x L1 510 ms)"),
    # censored, W within the SLO but the (too low) p95 already past it: the higher one is judged
    (row(6, 8, 1022, flags=("latency-censored (p50 521 ms vs W 750 ms)",)), "flask",
     "latency (p95 1022 ms > 1.5 x L1 510 ms)"),
])
def test_stop_reason(r, framework, why):
    assert stop_reason(r, L1, framework, cpus=2) == why


def subject(idle_pss: float = 100.0, name: str = "t") -> Subject:
    return Subject(name, "fastapi", "m", {}, "http://x", 1, None, 15, idle={"pss": idle_pss})


def test_the_knee_is_the_best_level_within_the_slo_and_the_level_above_says_what_stopped_it():
    levels = [(row(50, 97, 540, tree=25), None), (row(100, 190, 560, tree=50, pss=130), None),
              (row(200, 230, 900, tree=90), "latency (p95 900 ms > 1.5 x L1 510 ms)")]
    knee = knee_of(levels, row(1, 1.9, 520), subject(), cpus=2)
    assert (knee.users, knee.rps, knee.tried) == (100, 190, [50, 100, 200])
    assert knee.stopped_by.startswith("latency (p95 900 ms")
    assert knee.rps_per_core == 380.0  # 190 rps on half a core
    in_flight = 190 * 0.504  # Little's L = rps x mean latency (504 ms)
    assert knee.in_flight == pytest.approx(in_flight, abs=0.1)
    assert knee.mb_per_in_flight == pytest.approx(30 / in_flight, abs=0.001)  # 130 - 100 MB idle


def test_a_search_down_finds_the_knee_of_a_queueing_model():
    levels = [(row(50, 7, 7000), "latency (p95 7000 ms > ...)"), (row(25, 7, 3500), "latency (...)"),
              (row(3, 5.4, 560), None)]
    knee = knee_of(levels, row(1, 1.9, 520), subject(), cpus=2)
    assert (knee.users, knee.tried) == (3, [50, 25, 3])
    assert knee.stopped_by == "latency (...)"  # the level just above the knee: 25 users


def test_no_level_within_the_slo_is_a_knee_without_figures():
    knee = knee_of([(row(1, 1.9, 900), "latency (...)")], row(1, 1.9, 520), subject(), cpus=2)
    assert knee.users is None and knee.rps is None and knee.stopped_by == "latency (...)"


def test_the_report_shows_the_knees_and_marks_one_at_the_labs_ceiling(tmp_path):
    run = Run(run_id="capacity-x", started_at="t", machine={"cpus": 2, "mem_gb": 24.0, "python": "3.11",
                                                             "platform": "x"},
              scenario={"name": "capacity", "db_ms": 5, "llm_ms": 500, "duration_s": 6})
    run.results = [row(u, r, 540).model_copy(update={"target": name}) for name, pts in
                   (("go-gin", ((50, 97), (100, 195))), ("calibration", ((50, 98), (100, 196))))
                   for u, r in pts]
    run.capacity = [Knee(target="go-gin", framework="go", model="m", db_ms=5, llm_ms=500, tried=[50, 100],
                         stopped_by="none up to 100 users", users=100, rps=195.0, open_arrival_rps=156.0,
                         open_rps=155.0, open_p50_ms=520.0, open_p95_ms=540.0, open_p99_ms=700.0),
                    Knee(target="calibration", framework="calibration", model="m", db_ms=5, llm_ms=500,
                         tried=[50, 100], stopped_by="none up to 100 users", users=100, rps=196.0)]
    cells = {r.cells[0]: r.cells for r in capacity_table(run).rows}
    assert cells["go-gin"][11] == "none up to 100 users; at the lab's ceiling"
    assert cells["go-gin"][12:14] == ["156.0 → 155.0", "520 / 540 / 700"]
    assert "Capacity: each target's knee" in render_markdown(run)
    html = render_html(run)
    assert 'id="chart-capacity-5-500"' in html and "<svg" in html


def test_workloads_keep_the_database_out_of_the_way():
    assert all(db_ms <= 5 for db_ms, _ in capacity.WORKLOADS)
    assert {llm for _, llm in capacity.WORKLOADS} == {500, 20}


@pytest.mark.slow
def test_a_real_climb_finds_flask_syncs_knee_at_its_worker_count(lab, tmp_path, monkeypatch):
    """flask-sync, 4 sync workers, db 5 / llm 200 ms: 8 users queue (past the knee), so the search
    goes down, to its 4 workers first, and the knee is at no more than 4 users."""
    from bench import infra, manifest
    monkeypatch.setattr(infra, "start", lambda raw: _started(lab))
    opts = capacity.CapacityOptions(targets=[manifest.load_targets()["flask-sync"]], workloads=((5, 200),),
                                    start_users=8, max_users=16, duration_s=3, calibration=False,
                                    results_dir=tmp_path)
    run = Run.load(capacity.run_capacity(opts, run_id="capacity-test"))
    (knee,) = run.capacity
    assert knee.tried[:2] == [8, 4] and knee.stopped_by.startswith("latency"), knee
    assert 2 <= knee.users <= 4 and knee.rps > 0 and knee.cpu_ms_per_request, knee
    assert {(r.users, r.db_ms, r.llm_ms) for r in run.results} >= {(1, 5, 200), (8, 5, 200)}
    # the open model: paced users offering 0.8x the knee's rate, answered at about that rate
    (paced,) = [r for r in run.results if r.arrival_rps]
    assert knee.open_arrival_rps == pytest.approx(0.8 * knee.rps, abs=0.1) == paced.arrival_rps
    assert paced.users >= knee.users and paced.littles_w_ms is None and paced.w_ms() is None
    assert 0.8 * paced.arrival_rps <= knee.open_rps <= 1.1 * paced.arrival_rps, knee
    assert knee.open_p95_ms and not any(f.startswith("latency-censored") for f in paced.flags)


def _started(lab):
    import contextlib

    @contextlib.contextmanager
    def reuse():
        yield lab  # the session's infra: PostgreSQL, upstream and Redis are already up

    return reuse()


def fake_climb(monkeypatch, tmp_path, target: str, levels, run: Run | None = None) -> tuple[Knee, list[int]]:
    """climb() over made-up levels (users -> row, or a function of users and Locust processes),
    counting the subject's starts; `target` may be the calibration."""
    import contextlib
    from types import SimpleNamespace

    from bench import manifest
    starts = []

    @contextlib.contextmanager
    def start():
        starts.append(1)
        yield subject(name=target if target == CALIBRATION else "t")

    level = levels if callable(levels) else lambda users, processes: levels[users]
    monkeypatch.setattr(capacity, "measure_level", lambda subject, cell, users, *a, processes=1, **kw:
                        level(users, processes))
    t = None if target == CALIBRATION else manifest.load_targets()[target]
    opts = capacity.CapacityOptions(targets=[t] if t else [], open_model=False, results_dir=tmp_path, cpus=2)
    run = run or Run(run_id="c", started_at="t",
                     machine={"cpus": 2, "mem_gb": 24.0, "python": "3.11", "platform": "x"},
                     scenario={"name": "capacity", "db_ms": 5, "llm_ms": 20, "duration_s": 5})
    progress = SimpleNamespace(update=lambda *a, **kw: None, advance=lambda *a: None)
    knee = capacity.climb(start, target, t.framework if t else CALIBRATION, opts, opts.compare_options(5, 20),
                          run, tmp_path, progress, None)
    return knee, starts


def test_a_cpu_limit_at_the_first_level_sends_the_search_down(monkeypatch, tmp_path):
    """fastapi-async under short I/O: one process at 95 % of its core at 50 users already."""
    levels = {1: row(1, 30, 30), 50: row(50, 800, 60, tree=95, one=95),
              25: row(25, 700, 40, tree=85, one=85), 12: row(12, 380, 35, tree=45, one=45)}
    knee, starts = fake_climb(monkeypatch, tmp_path, "fastapi-async", levels)
    assert knee.tried == [50, 25] and knee.users == 25 and knee.stopped_by.startswith("CPU"), knee
    assert len(starts) == 2  # a fresh start after the level past the knee


def test_a_queueing_model_jumps_down_to_its_capacity(monkeypatch, tmp_path):
    levels = {1: row(1, 2, 510), 50: row(50, 8, 6000), 4: row(4, 7.8, 530)}
    knee, _ = fake_climb(monkeypatch, tmp_path, "flask-sync", levels)
    assert knee.tried == [50, 4] and knee.users == 4  # 4 sync workers: not 25, 12, 6


def test_the_climb_gives_locust_more_processes_where_one_would_pass_its_limit(monkeypatch, tmp_path):
    """The calibration, 5/500 ms: 200 users at 30 % of a core plan one process for 400, which
    saturates it: 400 again with two. From there every level has two (one per core); at 1,600 the
    calibration falls below Little's law with Locust far from its limit: the lab's own ceiling."""
    measured = []

    def level(users: int, processes: int) -> Result:
        measured.append((users, processes))
        cpu, busiest, eff = {(1, 1): (6, 6, 1.0), (50, 1): (10, 10, 1.0), (100, 1): (20, 20, 1.0),
                             (200, 1): (30, 30, 1.0), (400, 1): (85, 85, 0.93), (400, 2): (90, 45, 0.98),
                             (800, 2): (120, 60, 0.96), (1600, 2): (150, 75, 0.90)}[users, processes]
        r = calibrated(users, eff * users / 0.5046, eff, processes, locust=cpu)
        if processes > 1:
            r.cpu_pct.locust_busiest = busiest
        if busiest >= 80:
            r.flags.append(f"locust-bound ({busiest}% of a core)")
        return r

    run = Run(run_id="c", started_at="t", machine={"cpus": 2, "mem_gb": 24.0, "python": "3.11"},
              scenario={"name": "capacity", "db_ms": 5, "llm_ms": 500, "duration_s": 5})
    knee, _ = fake_climb(monkeypatch, tmp_path, CALIBRATION, level, run)
    assert measured == [(1, 1), (50, 1), (100, 1), (200, 1), (400, 1), (400, 2), (800, 2), (1600, 2)]
    assert knee.tried == [50, 100, 200, 400, 800, 1600] and knee.users == 800
    assert knee.locust_processes == [1, 1, 1, 2, 2, 2] and knee.littles == [1.0, 1.0, 1.0, 0.98, 0.96, 0.9]
    assert knee.stopped_by == "load generator below Little's law (0.90 of users / L1 = 3171 rps)"
    assert [r.users for r in run.results] == [1, 50, 100, 200, 400, 800, 1600]  # 400 once: the re-run's
    assert run.results[-1].flags == [knee.stopped_by]  # the calibration's row carries it too
    run.capacity = [knee]
    (cells,) = [r.cells for r in capacity_table(run).rows]
    assert cells[-1] == ("50: 1.00 → 100: 1.00 → 200: 1.00 → 400 (Locust ×2): 0.98 → 800 (Locust ×2): 0.96"
                         " → 1600 (Locust ×2): 0.90 !")
    assert "flagged" in capacity_table(run).rows[0].marks


def test_a_calibration_level_below_littles_law_is_flagged_in_the_capacity_table():
    run = Run(run_id="capacity-x", started_at="t", machine={"cpus": 2, "mem_gb": 24.0, "python": "3.11"},
              scenario={"name": "capacity", "db_ms": 5, "llm_ms": 20, "duration_s": 5})
    # the search went down past a level below Little's law that latency had stopped
    run.capacity = [Knee(target=CALIBRATION, framework="locust", model="m", db_ms=5, llm_ms=20,
                         tried=[50, 25, 12], locust_processes=[1, 1, 1], littles=[0.91, 0.93, 0.97],
                         stopped_by="latency (p95 40 ms > 1.5 x L1 26 ms)", users=12, rps=450.0)]
    (row,) = capacity_table(run).rows
    assert row.cells[11] == ("latency (p95 40 ms > 1.5 x L1 26 ms); load generator below Little's law "
                             "at 50, 25 users")
    assert row.cells[-1] == "50: 0.91 ! → 25: 0.93 ! → 12: 0.97" and "flagged" in row.marks


@pytest.mark.slow
def test_the_calibration_keeps_littles_law_from_two_locust_processes(tmp_path):
    """Live, 3 s windows: the calibration (100 ms: db 5 + llm 95) at 50 users from one Locust process,
    then at 200 from two (their ledgers merged under the master's window): both levels reach
    CALIBRATION_MIN of Little's law. Then the open model: 400 users paced to 800 req/s (a request
    every 0.5 s each) arrive evenly, so they are answered at that rate and within L1's latency."""
    import os
    from types import SimpleNamespace

    from bench import infra
    from bench.compare import Cell, measure_level
    cpus = os.cpu_count() or 1
    if cpus < 2:
        pytest.skip("one core: no room for a second Locust process")
    copts = capacity.CapacityOptions(targets=[], duration_s=3, results_dir=tmp_path).compare_options(5, 95)
    cell = Cell(None, {}, CALIBRATION, [1], workload=(5, 95))
    progress = SimpleNamespace(update=lambda *a, **kw: None, tasks={0: SimpleNamespace(completed=0)})
    with infra.upstream(tmp_path) as (url, upstream):
        calibration = Subject(CALIBRATION, "locust", "m", {}, url, upstream.pid, None, None)

        def measure(users: int, l1_s: float | None, processes: int = 1, pace_rps: float = 0.0) -> Result:
            return measure_level(calibration, cell, users, copts, tmp_path / f"calibration_u{users}", l1_s,
                                 progress, 0, pace_rps=pace_rps, processes=processes)

        l1_s = measure(1, None).latency_ms.p50 / 1000
        at_50 = measure(50, l1_s)
        at_200 = measure(200, l1_s, processes=2)
        paced = measure(400, l1_s, pace_rps=2.0)
    assert at_200.cpu_pct.locust_processes == 2, at_200.cpu_pct
    assert at_50.phases.warmup_s < 1.9, at_50.phases  # capacity's 1 s floor reached Locust, not its 2 s
    for r in (at_50, at_200):
        assert littles_shortfall(r) is None, (r.users, r.efficiency, r.cpu_pct, r.flags)
        assert r.phases.steady and r.phases.drained and not r.flags, r.flags
    # Users bunched at one instant of their period (Locust's constant_throughput counted the first
    # delay as run time) queue at every burst: p95 then passes L1 by far more than 20 %.
    assert 0.9 * 800 <= paced.rps <= 1.05 * 800, paced.rps
    assert paced.latency_ms.p95 <= 1.2 * l1_s * 1000, (paced.latency_ms, l1_s)
