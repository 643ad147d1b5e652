"""bench/capacity.py: where a level is past the knee, which level is the knee, what it costs."""

from __future__ import annotations

import pytest

from bench import capacity
from bench.capacity import knee_of, stop_reason
from bench.compare import Subject
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


@pytest.mark.parametrize(("r", "framework", "why"), [
    (row(50, 97, 540), "fastapi", None),
    (row(50, 97, 800), "fastapi", "latency (p95 800 ms > 1.5 x L1 510 ms)"),
    (row(50, 97, 540, failures=20), "fastapi", "errors (2.0 % failed)"),
    (row(400, 300, 540, tree=92, one=92), "fastapi", "CPU (a process at 92 % of its one core)"),
    (row(400, 600, 540, tree=120, one=120), "go", None),  # a Go process may use both cores
    (row(800, 900, 540, tree=185, one=185), "go", "CPU (185 % of a core over 2 cores)"),
    (row(800, 900, 540, locust=85), "go", "load generator (Locust at 85 % of its core)"),
    (row(800, 900, 540, machine=95), "go", "machine CPU (95 % of all cores)"),
    (row(50, 7, 900, mean=7000, flags=("latency-censored (mean 7000 ms vs W 7100 ms)",)), "flask",
     "latency (W 7143 ms > 1.5 x L1 510 ms)"),
    # censored, W within the SLO but the (too low) p95 already past it: the higher one is judged
    (row(6, 8, 1022, flags=("latency-censored (p50 521 ms vs W 750 ms)",)), "flask",
     "latency (p95 1022 ms > 1.5 x L1 510 ms)"),
])
def test_stop_reason(r, framework, why):
    assert stop_reason(r, L1, framework, cpus=2) == why


def subject(idle_pss: float = 100.0) -> Subject:
    return Subject("t", "fastapi", "m", {}, "http://x", 1, None, 15, idle={"pss": idle_pss})


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


def fake_climb(monkeypatch, tmp_path, target: str, levels: dict[int, Result]) -> tuple[Knee, list[int]]:
    """climb() over made-up levels (users -> row), counting the target starts."""
    import contextlib
    from types import SimpleNamespace

    from bench import manifest
    starts = []

    @contextlib.contextmanager
    def start():
        starts.append(1)
        yield subject()

    monkeypatch.setattr(capacity, "_measure_level", lambda subject, cell, users, *a, **kw: levels[users])
    t = manifest.load_targets()[target]
    opts = capacity.CapacityOptions(targets=[t], open_model=False, results_dir=tmp_path, cpus=2)
    run = Run(run_id="c", started_at="t",
              machine={"cpus": 2, "mem_gb": 24.0, "python": "3.11", "platform": "x"},
              scenario={"name": "capacity", "db_ms": 5, "llm_ms": 20, "duration_s": 5})
    knee = capacity.climb(start, t.name, t.framework, opts, opts.compare_options(5, 20), run, tmp_path,
                          SimpleNamespace(update=lambda *a, **kw: None, advance=lambda *a: None), None)
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
