"""bench/session.py: a web-UI swarm's row, the session folder, earlier runs, the Host's targets. The
swarms here are CONSTRUCTED ledgers; tests/ui/test_comparison_tab.py records real ones from the web UI."""

from __future__ import annotations

import dataclasses
import json
import socket

import pytest

from bench import manifest, session
from bench.load import LedgerRun, Sample
from bench.report import finalize
from bench.results import Run
from bench.row import Resources
from bench.session import Session, Swarm, resolve_host, swarm_result

WORKLOAD = (50, 500)
T0 = 1_700_000_000.0
ROW, CANARY = "/recommendation/[id]", "/healthz"


def swarm(host: str = "http://127.0.0.1:8021", users: int = 10, window_s: float | None = 20.0,
          requests: int = 360, failures: int = 0, ms: float = 560.0, db_ms: int = 50, llm_ms: int = 500,
          at: float = T0, **cpu) -> tuple[LedgerRun, Swarm]:
    """A swarm's ledger row and what the recorder saw: 5 s of warm-up from `at`, then a window of
    `window_s` (None: stopped during the warm-up, after 3 s) holding `requests` requests of `ms`
    each, spread evenly, every one answered inside it (`failures` of them failed), and a canary."""
    opened = None if window_s is None else at + 5
    closed = at + 5 + window_s if window_s is not None else at + 3
    w0 = opened or at
    span = closed - w0 - ms / 1000
    samples = [Sample(ROW, w0 + span * i / requests, ms, i >= failures) for i in range(requests)]
    samples += [Sample(CANARY, w0 + 0.25 * i, 5.0, True) for i in range(int((closed - w0) * 4))]
    marks = {"start": {"t": at}, "window": {"t": w0, "steady": window_s is not None},
             "drain": {"t": closed}, "end": {"t": closed + 0.6, "unfinished": 0}}
    resources = Resources(peak={"pss": 90.0, "rss": 99.0, "uss": 80.0}, processes=1,
                          **{"target_cpu": 35.0, "max_process_cpu": 35.0, "locust_cpu": 12.0,
                             "machine_cpu": 40.0, **cpu})
    return LedgerRun(samples, marks), Swarm(
        host=host, users=users, scenario="recommendation", db_ms=db_ms, llm_ms=llm_ms, started=at,
        closed=closed, window_opened=opened, resources=resources,
        idle={"pss": 60.0, "rss": 70.0, "uss": 55.0})


def jobs(ledger_and_swarm: tuple[LedgerRun, Swarm], **changes) -> tuple[LedgerRun, Swarm]:
    """The same swarm in the jobs scenario (its rows are "job result")."""
    ledger, s = ledger_and_swarm
    renamed = [Sample("job result" if x.name == ROW else x.name, x.t0, x.ms, x.ok) for x in ledger.samples]
    return LedgerRun(renamed, ledger.marks), dataclasses.replace(s, scenario="jobs", **changes)


def test_the_host_names_the_target_by_local_port_or_by_compose_service():
    assert resolve_host("http://127.0.0.1:8021").name == "fastapi-async"
    assert resolve_host("http://localhost:8001/").name == "flask-sync"
    by_service = resolve_host("http://go-gin:8031")
    assert by_service.name == "go-gin" and by_service.params == manifest.load_targets()["go-gin"].params
    assert resolve_host("http://127.0.0.1:1") is None
    assert resolve_host("http://example.com:8021") is None  # another machine's port names nothing
    assert resolve_host("") is None


def test_a_swarm_row_carries_its_window_target_and_workload():
    r = swarm_result(*swarm(), WORKLOAD)
    assert (r.target, r.framework, r.source, r.runtime) == ("fastapi-async", "fastapi", "web-ui", "native")
    assert r.rps == 18.0  # 360 answers in a 20 s window
    assert r.littles_w_ms == pytest.approx(1000 * 10 / 18, abs=0.1)
    assert r.latency_ms.n == 360 and r.latency_ms.p50 == 560 and r.latency_ms.mean == 560
    assert r.db_ms is None and r.llm_ms is None  # the session's own workload
    assert r.phases.window_s == 20 and r.phases.warmup_s == 5 and r.phases.steady
    assert r.phases.drain_s == 0.6 and r.phases.drained  # drained as bench compare drains
    assert r.memory_mb.idle_pss == 60 and r.memory_mb.peak_pss == 90 and r.memory_mb.peak_uss == 80
    assert r.canary_p95_ms == 5 and r.canary_ms.n == 80
    assert r.cpu_ms_per_request == pytest.approx(10 * 35 / 18, abs=0.01)
    assert r.flags == [] and r.recorded_at.startswith("2023-11-14T22:")
    other = swarm_result(*swarm(db_ms=200, llm_ms=0), WORKLOAD)
    assert (other.db_ms, other.llm_ms) == (200, 0) and other.group() == "recommendation db_ms=200 llm_ms=0"


def test_failures_never_count_as_throughput_and_are_flagged():
    r = swarm_result(*swarm(requests=360, failures=60), WORKLOAD)
    assert r.rps == 15.0
    assert any(f.startswith("failures 16.7%") for f in r.flags)


def test_a_swarm_without_a_steady_window_is_flagged_too_short():
    never = swarm_result(*swarm(window_s=None), WORKLOAD)
    assert never.flags[0].startswith("too short: stopped during the warm-up")
    assert not never.phases.steady and never.phases.window_s == 3  # the whole warm-up stands in
    assert never.rps == pytest.approx(360 / 3)  # the whole swarm, since there is no window
    brief = swarm_result(*swarm(window_s=3.0), WORKLOAD)
    assert brief.flags[0] == "too short: a 3.0 s window (under 5 s)"
    assert not any(f.startswith("too short") for f in swarm_result(*swarm(), WORKLOAD).flags)


def test_latency_that_disagrees_with_littles_law_is_flagged():
    # 100 users at 7 rps: W = 14.3 s, while the requests that finished in the window say 7 s.
    r = swarm_result(*swarm(users=100, requests=140, ms=7000), WORKLOAD)
    assert any(f.startswith("latency-censored") for f in r.flags)


def test_cpu_and_locust_limits_are_flagged_as_in_bench_compare():
    r = swarm_result(*swarm(machine_cpu=96.0, locust_cpu=85.0, max_process_cpu=99.0), WORKLOAD)
    kinds = {f.split(" (")[0] for f in r.flags}
    assert {"machine-cpu-bound", "locust-bound", "target-process-cpu-bound"} <= kinds


def test_an_unknown_host_is_recorded_under_its_url():
    r = swarm_result(*swarm(host="http://127.0.0.1:1"), WORKLOAD)
    assert r.target == "http://127.0.0.1:1" and r.capacity is None and r.model.startswith("not a target")


def test_ceilings_come_from_the_sessions_own_one_user_row(tmp_path):
    s = Session(tmp_path / "web-ui-x", WORKLOAD)
    busy = s.add(*swarm(host="http://127.0.0.1:8001", users=100, requests=140, ms=14000))
    assert busy.ceiling_rps is None  # no L1 yet
    s.add(*swarm(host="http://127.0.0.1:8001", users=1, requests=36, ms=560, at=T0 + 40))
    busy = next(r for r in s.run.results if r.users == 100)
    # flask-sync: 4 workers, so min(100, 4) / 0.56 s
    assert busy.ceiling_rps == pytest.approx(4 / 0.56, abs=0.01)
    assert busy.efficiency == pytest.approx(busy.rps / busy.ceiling_rps, abs=0.001)


def test_a_jobs_swarm_on_a_job_target_is_bounded_by_its_job_capacity(tmp_path):
    """fastapi-bgtasks (port 8025): its /recommendation has capacity 1, its jobs 40 threads."""
    s = Session(tmp_path / "web-ui-j", WORKLOAD)
    for users, requests, ms in ((1, 32, 620), (100, 1160, 1720)):
        s.add(*jobs(swarm(host="http://127.0.0.1:8025", users=users, requests=requests, ms=ms,
                          at=T0 + users)))
    one, hundred = sorted(s.run.results, key=lambda r: r.users)
    assert (hundred.jobs_endpoint, hundred.capacity) == ("jobs", 40)
    assert hundred.ceiling_rps == pytest.approx(40 / 0.62, abs=0.01)  # not min(100, 1) / L1
    sync = swarm_result(*jobs(swarm(host="http://127.0.0.1:8025"), jobs_endpoint="sync"), WORKLOAD)
    assert (sync.jobs_endpoint, sync.capacity) == ("sync", 1)  # its GET /recommendation: the blocking one
    assert swarm_result(*swarm(), WORKLOAD).jobs_endpoint is None


def test_the_session_folder_is_written_with_its_first_row_and_follows_deletes(tmp_path):
    s = Session.new(tmp_path, WORKLOAD)
    assert not s.run_dir.exists()  # a web UI that records nothing leaves nothing behind
    first = s.add(*swarm())
    second = s.add(*swarm(host="http://127.0.0.1:8031", at=T0 + 40))
    assert s.run_dir.name.startswith("web-ui-")
    saved = json.loads((s.run_dir / "results.json").read_text())
    assert [r["source"] for r in saved["results"]] == ["web-ui", "web-ui"]
    assert [r.target for r in Run.load(s.run_dir).results] == ["fastapi-async", "go-gin"]
    assert s.delete(first.recorded_at) and not s.delete(first.recorded_at)
    assert [r.target for r in Run.load(s.run_dir).results] == ["go-gin"]
    again = Session(s.run_dir, WORKLOAD)  # the same folder again goes on with its rows
    assert [r.recorded_at for r in again.run.results] == [second.recorded_at]
    again.clear()
    assert Run.load(s.run_dir).results == []


def test_a_session_renders_the_same_report_as_a_run_with_the_claims_its_rows_allow(tmp_path):
    s = Session.new(tmp_path, WORKLOAD)
    s.add(*swarm(host="http://127.0.0.1:8001", users=100, requests=140, ms=14000))
    s.add(*swarm(host="http://127.0.0.1:8021", users=100, requests=3400, ms=580, at=T0 + 60))
    run = finalize(s.run_dir)  # what `bench report results/web-ui-...` does
    md = (s.run_dir / "report.md").read_text()
    html = (s.run_dir / "report.html").read_text()
    assert "swarms recorded from the Locust web UI" in md and "flask-sync" in md and "fastapi-async" in md
    assert "## Comparison" in md and "## Throughput and latency" not in md  # the tab's one table
    assert "window.LabCharts" in html and "lab-points" in html  # the tab's charts, drawn by its script
    verdicts = {c.verdict for c in run.claims}
    assert "not_run" in verdicts and verdicts - {"not_run"}  # some judged, the rest not run
    assert Run.load(s.run_dir).claims  # saved with the verdicts


def test_a_session_that_recorded_nothing_leaves_nothing_behind(tmp_path):
    s = Session.new(tmp_path, WORKLOAD)
    (s.run_dir / "raw").mkdir(parents=True)
    (s.run_dir / "raw" / "swarm-1_requests.jsonl").write_text("")  # a swarm stopped before any row
    s.discard_if_empty()
    assert not s.run_dir.exists()
    kept = Session.new(tmp_path / "kept", WORKLOAD)
    kept.add(*swarm())
    kept.discard_if_empty()
    assert (kept.run_dir / "results.json").exists()


def test_earlier_runs_are_listed_newest_first_and_opened_by_name_only(tmp_path):
    older = Session(tmp_path / "web-ui-20260101-000000", WORKLOAD)
    older.add(*swarm())
    older.run.started_at = "2026-01-01T00:00:00+00:00"
    older.save()
    cli = Session(tmp_path / "20260102-000000", WORKLOAD)  # a bench compare run's folder name
    cli.add(*swarm())
    cli.run.started_at = "2026-01-02T00:00:00+00:00"
    cli.save()
    (tmp_path / "latest").symlink_to(cli.run_dir.name)
    runs = session.list_runs(tmp_path)
    assert [(r["run_id"], r["kind"], r["rows"]) for r in runs] == [
        ("20260102-000000", "compare", 1), ("web-ui-20260101-000000", "web-ui", 1)]
    assert session.run_folder(tmp_path, "20260102-000000") == cli.run_dir
    for bad in ("latest", "..", "../x", "20260102-000000/raw", "missing", ""):
        assert session.run_folder(tmp_path, bad) is None, bad


def test_hosts_up_lists_only_the_targets_that_accept_connections():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    closed_port = socket.create_server(("127.0.0.1", 0))
    unused = closed_port.getsockname()[1]
    closed_port.close()
    known = manifest.load_targets()
    targets = [dataclasses.replace(known["go-gin"], port=port),
               dataclasses.replace(known["flask-sync"], port=unused)]
    try:
        up = session.hosts_up(compose=False, targets=targets)
    finally:
        listener.close()
    assert [(h["target"], h["url"]) for h in up] == [("go-gin", f"http://127.0.0.1:{port}")]


def test_bench_ups_registry_names_the_target_and_params_behind_any_url(tmp_path):
    moved = manifest.load_targets()["flask-sync"].resolve({"workers": 8}, port=18001)
    path = session.write_registry(tmp_path / "targets.json", [moved])
    registry = session.read_registry(path)
    assert registry == {"http://127.0.0.1:18001": ("flask-sync", {"workers": 8, "pool_size": 1})}
    resolved = resolve_host("http://127.0.0.1:18001/", registry)
    assert (resolved.name, resolved.params["workers"], resolved.capacity) == ("flask-sync", 8, 8)
    r = swarm_result(*swarm(host="http://127.0.0.1:18001"), WORKLOAD, registry)
    assert (r.target, r.params["workers"], r.processes) == ("flask-sync", 8, 1)
    assert session.read_registry(tmp_path / "missing.json") == {}
