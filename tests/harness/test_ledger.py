"""Issue 11: latency of saturated targets was censored. The locustfile's ledger and phases
(locust/request_ledger.py) and the harness's reading of them (bench/load.py), on CONSTRUCTED runs:
a simulated closed loop against a FIFO server (tests/harness/closed_loop.py) and hand-written files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import metrics
from bench.load import latency_of, percentile, read_ledger, window_stats
from tests.harness.closed_loop import (
    CANARY,
    JOB_RESULT,
    POLL,
    ROW,
    SUBMIT,
    T0,
    ClosedLoop,
    JobLoop,
    ProcessesLoop,
    ledger_module,
)

WINDOW = 15.0


def simulate(tmp_path: Path, *, users: int, servers: int, service_s: float, drain_max_s: float = 150,
             warmup_max_s: float = WINDOW, lifo: bool = False) -> Path:
    path = tmp_path / "requests.jsonl"
    ClosedLoop(path, users=users, servers=servers, service_s=service_s, canary=True, lifo=lifo).run(
        window_s=WINDOW, warmup_max_s=warmup_max_s, drain_max_s=drain_max_s)
    return path


def locust_style_p50(path: Path) -> float:
    """What the old harness reported: Locust's -t run counted the requests that FINISHED in time."""
    run = read_ledger(path)
    start = run.marks["start"]["t"]
    done = [s for s in run.samples
            if s.name == ROW and not s.censored and s.t0 + s.ms / 1000 <= start + WINDOW]
    return latency_of(done).p50


def test_saturated_sync_workers_report_the_queue_not_the_lucky_requests(tmp_path):
    # flask-sync at 100 users: 4 workers, 0.56 s each -> 7.1 rps, W = 100 / 7.1 = 14 s
    path = simulate(tmp_path, users=100, servers=4, service_s=0.56)
    run = read_ledger(path)
    row = window_stats(run, ROW)
    w = metrics.littles_w_ms(100, row.rps)
    assert row.rps == pytest.approx(4 / 0.56, rel=0.05)
    assert w == pytest.approx(14_000, rel=0.05)
    # the bug: counting what finished within the run showed about half of the real wait
    assert locust_style_p50(path) < 0.6 * w
    # the fix: every request started in the window waits behind the whole queue, and is counted
    assert row.latency.p50 == pytest.approx(w, rel=0.05)
    assert row.latency.mean == pytest.approx(w, rel=0.05)
    assert metrics.latency_censored(row.latency.mean, w) is None
    assert (row.latency.n, row.latency.censored, row.failures) == (row.requests, 0, 0)
    phases = run.phases()
    assert phases.steady and phases.drained  # every user had cycled once, every request finished
    assert phases.warmup_s == pytest.approx(14, abs=1.5) and phases.window_s == pytest.approx(WINDOW)
    assert phases.drain_s == pytest.approx(14, abs=1.5)  # the last request of the window waited W
    # the canary waits in the same queue: one or two checks in the window, far too few for a p95
    canary = window_stats(run, CANARY)
    assert 1 <= canary.latency.n < 20 and canary.latency.text("p95") == "n<20"


def test_a_blocked_event_loop_is_measured_past_the_warmup_limit(tmp_path):
    # fastapi-blocking at 100 users: one request at a time, 0.556 s each -> W = 55.6 s
    path = simulate(tmp_path, users=100, servers=1, service_s=0.556)
    run = read_ledger(path)
    row = window_stats(run, ROW)
    w = metrics.littles_w_ms(100, row.rps)
    assert locust_style_p50(path) < 0.2 * w  # what the README showed: p50 7.2 s against W 55.9 s
    assert row.latency.mean == pytest.approx(w, rel=0.05) and row.latency.p50 == pytest.approx(w, rel=0.05)
    phases = run.phases()
    assert not phases.steady  # the first round takes 55 s: the warm-up stopped at its limit
    assert phases.warmup_s == pytest.approx(WINDOW, abs=0.2) and phases.drained
    assert 20 <= row.latency.n < 40  # 1.8 rps x 15 s: p95 is printed, on few samples (n says so)


def test_an_unfair_queue_starves_users_the_window_cannot_see_and_is_flagged(tmp_path):
    # What uvicorn's blocked loop did at 100 users (2026-12-02): about 27 users cycled every ~12 s,
    # the other 73 waited on their first request until Locust's timeout. Requests started in the
    # window are the cycling users' only, so their mean is far below W; the starved are counted.
    path = simulate(tmp_path, users=100, servers=1, service_s=0.556, lifo=True)
    run = read_ledger(path)
    row = window_stats(run, ROW)
    w = metrics.littles_w_ms(100, row.rps)
    assert row.rps == pytest.approx(1 / 0.556, rel=0.1)
    assert row.latency.mean < 0.5 * w and row.starved >= 50
    assert run.phases().drain_s < 5  # the drain waits for the window's requests, not the starved
    flags = metrics.flags(machine_cpu=None, locust_cpu=None, max_process_cpu=None, failures=0,
                          requests=row.requests, mean_ms=row.latency.mean, p50_ms=row.latency.p50,
                          w_ms=w, users=100, starved=row.starved)
    assert len(flags) == 1 and flags[0].startswith("latency-censored")
    assert f"{row.starved} of 100 users got no answer in the whole window" in flags[0]
    assert window_stats(read_ledger(simulate(tmp_path, users=100, servers=4, service_s=0.56)),
                        ROW).starved == 0  # FIFO: every user cycles


def test_a_model_that_does_not_queue_is_unchanged(tmp_path):
    path = simulate(tmp_path, users=100, servers=1000, service_s=0.56)
    run = read_ledger(path)
    row = window_stats(run, ROW)
    assert row.latency.p50 == pytest.approx(560) and row.latency.p99 == pytest.approx(560)
    assert metrics.littles_w_ms(100, row.rps) == pytest.approx(560, rel=0.02)
    assert run.phases().warmup_s == pytest.approx(2, abs=0.1)  # the minimum: steady at once
    assert run.phases().drain_s < 1
    canary = window_stats(run, CANARY)
    assert canary.requests == canary.latency.n == pytest.approx(4 * WINDOW, abs=1)


def test_a_drain_cut_short_censors_the_waits_and_is_flagged(tmp_path):
    full = window_stats(read_ledger(simulate(tmp_path, users=100, servers=4, service_s=0.56)), ROW)
    path = simulate(tmp_path, users=100, servers=4, service_s=0.56, drain_max_s=2)
    run = read_ledger(path)
    row = window_stats(run, ROW)
    assert not run.phases().drained and run.marks["end"]["reason"] == "drain limit"
    assert row.latency.censored > 0 and row.latency.n == row.requests + row.latency.censored
    censored = [s for s in run.samples if s.censored and s.name == ROW]
    assert all(not s.ok for s in censored) and max(s.ms for s in censored) < 14_000 + 2_000
    assert row.rps == pytest.approx(full.rps)  # throughput counts answers in the window: unaffected
    w = metrics.littles_w_ms(100, row.rps)
    assert row.latency.mean < 0.8 * w
    flags = metrics.flags(machine_cpu=None, locust_cpu=None, max_process_cpu=None, failures=0,
                          requests=row.requests, mean_ms=row.latency.mean, w_ms=w)
    assert [f.split()[0] for f in flags] == ["latency-censored"]


class GreenletExit(BaseException):
    """Stands in for gevent's: the ledger knows it by name (it imports no gevent)."""


def test_track_record_and_finish(tmp_path):
    now = [T0]
    ledger = ledger_module().Ledger(tmp_path / "l.jsonl", clock=lambda: now[0])
    with ledger.track("a", ROW):  # answered: Locust's request event records it, once
        now[0] += 0.5
        ledger.record("a", ROW, 500.0, True, start_time=T0 + 0.0001)
    with pytest.raises(ValueError), ledger.track("b", ROW):  # an error before any request event
        now[0] += 0.1
        raise ValueError("boom")
    with pytest.raises(GreenletExit), ledger.track("c", CANARY, scenario=False):  # killed: censored
        now[0] += 2
        raise GreenletExit
    ledger.record("d", "/stream first token", 80.0, True, start_time=T0 + 1)  # fired by hand
    held = ledger.track("e", ROW)  # still in flight at the end
    held.__enter__()
    now[0] += 0.1
    window = (T0, ledger.mark("drain"))
    now[0] += 3
    assert ledger.pending_between(*window) == 1 and ledger.pending_between(T0 + 5, T0 + 6) == 0
    ledger.finish("drain limit", window=window)
    ledger.record("e", ROW, 1.0, True)  # anything after the end is past the ledger's interest...
    ledger.close()
    ledger.record("f", ROW, 1.0, True)  # ...and after close, nothing is written
    lines = [json.loads(line) for line in (tmp_path / "l.jsonl").read_text().splitlines()]
    records = [rec for rec in lines if "n" in rec]
    assert [(r["n"], r.get("ok"), r.get("cens")) for r in records] == [
        (ROW, True, None), (ROW, False, None), (CANARY, None, True), ("/stream first token", True, None),
        (ROW, None, True)]
    assert records[0]["t0"] == T0  # the start the ledger saw, not Locust's a moment later
    assert records[2]["ms"] == pytest.approx(2000) and records[4]["ms"] == pytest.approx(3100)
    assert records[3]["t0"] == T0 + 1
    assert ledger.cycled == {"a", "b"}  # scenario users whose request ended (the canary is not one)
    assert lines[-1]["mark"] == "end" and lines[-1]["unfinished"] == 1  # nothing after the end


def test_a_run_stopped_before_the_window_closed_is_an_error(tmp_path):
    now = [T0]
    ledger = ledger_module().Ledger(tmp_path / "l.jsonl", clock=lambda: now[0])
    ledger.mark("start")
    ledger.mark("window", steady=True)
    held = ledger.track("a", ROW)
    held.__enter__()
    now[0] += 5
    ledger.finish("stopped")  # Locust's --run-time backstop: test_stopping
    ledger.close()
    run = read_ledger(tmp_path / "l.jsonl")
    assert run.samples[0].censored
    with pytest.raises(ValueError, match="never closed.*during the window"):
        window_stats(run, ROW)


def write(path: Path, *records: dict) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_window_stats_counts_started_requests_and_arrived_answers(tmp_path):
    path = write(
        tmp_path / "l.jsonl",
        {"mark": "start", "t": 0}, {"mark": "window", "t": 10, "steady": True},
        {"n": ROW, "t0": 9.0, "ms": 2000, "ok": True},     # started before: not a sample, answered inside
        {"n": ROW, "t0": 10.0, "ms": 100, "ok": True},     # first instant of the window: a sample
        {"n": ROW, "t0": 11.0, "ms": 300, "ok": False},    # failed: a sample, never throughput
        {"n": ROW, "t0": 19.5, "ms": 4000, "ok": True},    # started inside, answered in the drain
        {"n": ROW, "t0": 19.9, "ms": 9000, "cens": True},  # never answered: its wait so far
        {"n": ROW, "t0": 20.0, "ms": 50, "ok": True},      # started at the window's end: not a sample
        {"n": CANARY, "t0": 12.0, "ms": 5, "ok": True},
        {"mark": "drain", "t": 20}, {"mark": "end", "t": 30, "reason": "drain limit", "unfinished": 1})
    run = read_ledger(path)
    row = window_stats(run, ROW)
    assert (row.requests, row.failures, row.latency.n, row.latency.censored) == (3, 1, 4, 1)
    assert row.rps == pytest.approx(2 / 10)  # the answers of 9.0 and 10.0 arrived inside the window
    assert (row.latency.p50, row.latency.max, row.latency.mean) == (300, 9000, pytest.approx(3350))
    assert window_stats(run, CANARY).latency.n == 1
    assert window_stats(run, "/nothing").latency.n == 0
    phases = run.phases()
    assert (phases.warmup_s, phases.window_s, phases.drain_s, phases.steady, phases.drained) == (
        10, 10, 10, True, False)


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, p) for p in (0.5, 0.95, 0.99, 1.0)] == [50, 95, 99, 100]
    assert percentile([7.0], 0.99) == 7 and percentile([], 0.5) is None
    assert percentile([1.0, 2.0], 0.5) == 1  # an observed value, never an interpolation


def test_a_failure_keeps_its_status_and_uniform_error_code(tmp_path):
    module = ledger_module()
    ledger = module.Ledger(tmp_path / "r.jsonl", clock=lambda: T0)
    ledger.record("a", ROW, 12.0, False, start_time=T0, status=503, code="database_unavailable")
    ledger.record("b", ROW, 3.0, False, start_time=T0, status=0)
    ledger.record("c", ROW, 5.0, True, start_time=T0, status=None)
    ledger.close()
    ok, refused, fine = read_ledger(tmp_path / "r.jsonl").samples
    assert (ok.status, ok.code, ok.ok) == (503, "database_unavailable", False)
    assert (refused.status, refused.code) == (0, None)
    assert (fine.ok, fine.status) == (True, None)  # a 200 carries no status: the file stays small


@pytest.mark.parametrize(("body", "code"), [
    ('{"error": {"code": "upstream_error", "message": "m"}}', "upstream_error"),
    ('{"error": {"message": "m", "code": "x"}}', None),  # keys out of the contract's order
    ('{"detail": "Internal Server Error"}', None),
    ("Internal Server Error", None), ("", None), (None, None)])
def test_error_code_reads_only_the_uniform_error_shape(body, code):
    assert ledger_module().error_code(body) == code


def test_jobs_rows_are_time_to_result_of_the_jobs_submitted_in_the_window(tmp_path):
    """The jobs scenario on a CONSTRUCTED run: fastapi-celery-like, 4 job workers of 0.56 s each,
    100 users submitting and polling every 100 ms. "job result" is time to result (queue included),
    for the jobs submitted in the window, drained; its rps the jobs completed per second."""
    path = tmp_path / "jobs.jsonl"
    JobLoop(path, users=100, servers=4, service_s=0.56, canary=True, fail_every=50).run(
        window_s=WINDOW, warmup_max_s=WINDOW, drain_max_s=150)
    run = read_ledger(path)
    jobs = window_stats(run, JOB_RESULT)
    w = metrics.littles_w_ms(100, jobs.rps)
    assert jobs.rps == pytest.approx(4 / 0.56, rel=0.05)  # only valid results count as throughput
    assert w == pytest.approx(14_000, rel=0.1)
    # every job waits behind the whole queue: about W, plus up to one poll interval
    assert jobs.latency.p50 == pytest.approx(w, rel=0.05) and jobs.latency.mean == pytest.approx(w, rel=0.05)
    assert metrics.latency_censored(jobs.latency.mean, w, jobs.latency.p50) is None
    assert (jobs.latency.n, jobs.latency.censored) == (jobs.requests, 0) and jobs.requests > 90
    assert jobs.failures == pytest.approx(jobs.requests / 50, abs=1)  # a failed job fails its result
    assert run.phases().steady and run.phases().drained  # the window's last jobs were drained
    # the submit answers at once; the polls come every ~100 ms for the whole wait
    submit = window_stats(run, SUBMIT)
    assert submit.latency.p50 == 4 and submit.requests == pytest.approx(jobs.requests, rel=0.1)
    polls = window_stats(run, POLL)
    assert polls.latency.n / jobs.latency.n == pytest.approx(w / 102, rel=0.1)
    # the web's canary is not behind the job queue
    canary = window_stats(run, CANARY)
    assert canary.latency.n >= 58 and canary.latency.p95 == 2


def test_one_user_job_waits_its_work_plus_the_poll_that_sees_it(tmp_path):
    """1 user, a free worker: 4 ms submit, 560 ms of work; the polls begin at 104, 206, ... ms, so
    the first to see the result begins at 614 ms and ends at 616 ms (the polling's share: ~50 ms)."""
    path = tmp_path / "one.jsonl"
    JobLoop(path, users=1, servers=40, service_s=0.56).run(window_s=WINDOW, warmup_max_s=WINDOW,
                                                            drain_max_s=150)
    jobs = window_stats(read_ledger(path), JOB_RESULT)
    assert jobs.latency.p50 == jobs.latency.max == pytest.approx(616, abs=0.5)
    assert jobs.rps == pytest.approx(1000 / 616, rel=0.1) and jobs.failures == 0


# --- locust --processes N: every worker's ledger, the phases decided once, merged ----------------

def test_multi_process_locust_measures_the_same_window_as_one_process(tmp_path):
    """flask-sync at 100 users (4 workers of 0.56 s) from 2 Locust worker processes: the master's
    Fleet decides the phases from the workers' reports, each worker writes its own file, and
    read_ledger merges them into the run one process would have written (a report late at most)."""
    one = read_ledger(simulate(tmp_path, users=100, servers=4, service_s=0.56))
    path = tmp_path / "multi" / "requests.jsonl"
    path.parent.mkdir()
    ProcessesLoop(path, workers=2, users=100, servers=4, service_s=0.56, canary=True).run(
        window_s=WINDOW, warmup_max_s=WINDOW, drain_max_s=150)
    master = [json.loads(line) for line in path.read_text().splitlines()]
    assert [m["mark"] for m in master] == ["start", "window", "drain", "end"]  # marks only
    assert master[0]["workers"] == 2 and master[-1]["reason"] == "drained"
    files = [ledger_module().worker_ledger(path, i) for i in range(2)]
    assert [f.name for f in files] == ["requests.w0.jsonl", "requests.w1.jsonl"]
    per_worker = [read_ledger(f).samples for f in files]
    assert all(len(s) > 100 for s in per_worker)  # both made load
    run = read_ledger(path)
    assert len(run.samples) == sum(len(s) for s in per_worker)
    assert run.marks["end"] == master[-1]  # the master's end, not a worker's
    row, single = window_stats(run, ROW), window_stats(one, ROW)
    assert row.rps == pytest.approx(single.rps, rel=0.02) and row.latency.n == pytest.approx(
        single.latency.n, rel=0.02)
    assert row.latency.p50 == pytest.approx(single.latency.p50, rel=0.02) and row.latency.censored == 0
    phases, alone = run.phases(), one.phases()
    assert phases.steady and phases.drained
    # the master learns of the warm-up's and the drain's end from a report: at most a tick later
    assert 0 <= phases.warmup_s - alone.warmup_s <= ledger_module().WORKER_STATUS_S + 0.05
    assert phases.drain_s == pytest.approx(alone.drain_s, abs=ledger_module().WORKER_STATUS_S + 0.05)
    assert window_stats(run, CANARY).latency.n >= 1  # worker 0's canary is in the merged run too


def test_merged_ledgers_are_one_run_under_the_masters_marks(tmp_path):
    main = write(tmp_path / "x_requests.jsonl",
                 {"mark": "start", "t": 0, "workers": 2}, {"mark": "window", "t": 10, "steady": True},
                 {"mark": "drain", "t": 20},
                 {"mark": "end", "t": 30, "reason": "drain limit", "unfinished": 1})
    write(tmp_path / "x_requests.w0.jsonl",
          {"n": ROW, "t0": 9.0, "ms": 2000, "ok": True}, {"n": ROW, "t0": 12.0, "ms": 100, "ok": True},
          {"mark": "end", "t": 29.9, "reason": "drain limit", "unfinished": 0})  # a worker's own end
    write(tmp_path / "x_requests.w1.jsonl",
          {"n": ROW, "t0": 15.0, "ms": 300, "ok": False}, {"n": ROW, "t0": 19.9, "ms": 9000, "cens": True},
          {"n": ROW, "t0": 21.0, "ms": 50, "ok": True},  # started after the window: not a sample
          {"mark": "end", "t": 30.0, "reason": "drain limit", "unfinished": 1})
    run = read_ledger(main)
    row = window_stats(run, ROW)
    assert (row.requests, row.failures, row.latency.n, row.latency.censored) == (2, 1, 3, 1)
    assert row.rps == pytest.approx(2 / 10)  # 9.0 + 2 s and 12.0 + 0.1 s answered inside the window
    assert run.marks["end"]["unfinished"] == 1 and not run.phases().drained
    # one process: no `workers` in the start mark, no file beside it is read
    write(tmp_path / "y_requests.jsonl", {"mark": "start", "t": 0})
    write(tmp_path / "y_requests.w0.jsonl", {"n": ROW, "t0": 1.0, "ms": 1, "ok": True})
    assert read_ledger(tmp_path / "y_requests.jsonl").samples == []
    (tmp_path / "x_requests.w1.jsonl").unlink()
    with pytest.raises(ValueError, match="worker 1 wrote no request ledger"):
        read_ledger(main)


def test_the_fleet_waits_for_every_workers_current_report(tmp_path):
    module = ledger_module()
    now, sent = [T0], []
    ledger = module.Ledger(tmp_path / "m.jsonl", clock=lambda: now[0])
    fleet = module.Fleet(ledger, 2, lambda kind, data: sent.append((kind, data)), sleep=lambda s: None)

    def status(users, cycled, spawned=True, window=None, pending=None, inflight=0):
        return {"users": users, "cycled": cycled, "spawned": spawned, "inflight": inflight,
                "window": window, "pending": pending}

    fleet.update("a", status(50, 50))
    assert fleet.users() == 50 and not fleet.steady(fleet.users())  # worker b has not reported yet
    fleet.update("b", status(50, 49))
    assert not fleet.steady(fleet.users())  # one of b's users has not cycled
    fleet.update("b", status(50, 50, spawned=False))
    assert not fleet.steady(fleet.users())  # b's count may still grow
    fleet.update("b", status(51, 51))
    assert fleet.users() == 101 and fleet.steady(101)
    window = (T0 + 2, T0 + 17)
    assert not fleet.drained(window)  # reports from before the window was told do not count
    assert sent == [("lab_window", {"window": list(window)})]
    fleet.update("a", status(50, 50, window=list(window), pending=0, inflight=50))
    fleet.update("b", status(51, 51, window=list(window), pending=3, inflight=51))
    assert not fleet.drained(window) and fleet.unfinished() == 3
    fleet.update("b", status(51, 51, window=list(window), pending=0, inflight=51))
    assert fleet.drained(window) and len(sent) == 1  # told once
    fleet.ended("a", 0)
    fleet.ended("b", 1)  # a request finished in between
    assert fleet.finish("drain limit", window=window) == 1
    assert sent[-1] == ("lab_finish", {"reason": "drain limit", "window": list(window), "end": True,
                                       "row": None})
    ledger.close()
    end = json.loads((tmp_path / "m.jsonl").read_text().splitlines()[-1])
    assert (end["mark"], end["reason"], end["unfinished"]) == ("end", "drain limit", 1)


def test_a_web_ui_row_closed_by_a_users_change_keeps_the_ledger_for_the_next_row(tmp_path):
    """A web-UI swarm's rows (request_ledger.RowControl): the first closes as the users change, its
    drain cut short, so its window's requests still in flight are censored; the ledger goes on, the
    next row warms up again and is measured on the same file. Each row reads back as its own."""
    module = ledger_module()

    class UsersChange(module.RowControl):
        def closing(self, opened: float, now: float) -> str | None:
            if self.close is None and now - opened >= self.window_s:
                self.close, self.cut = "users", True  # the Edit form, and no time to drain
            return self.close

    path = tmp_path / "swarm.jsonl"
    loop = ClosedLoop(path, users=10, servers=2, service_s=0.2, canary=True)  # W = 1 s
    common = {"warmup_max_s": WINDOW, "drain_max_s": 150, "scenario_users": lambda: loop.spawned_users,
              "sleep": loop.sleep, "stop": loop.stop}
    first = UsersChange(row=1, window_s=10.0)
    assert module.run_phases(loop.ledger, control=first, **common) == "users"
    assert first.phase == "done" and not loop.ledger.ended and not loop.stopped
    loop.ledger.new_row()
    loop.ledger.spawned = True  # Locust's spawning_complete for the new users
    second = module.RowControl(row=2, window_s=10.0)
    assert module.run_phases(loop.ledger, control=second, **common) == "record"
    assert loop.ledger.ended and loop.stopped
    loop.ledger.close()

    one, two = read_ledger(path, row=1), read_ledger(path, row=2)
    assert one.window[1] <= two.marks["start"]["t"] < two.window[0]
    row1, row2 = window_stats(one, ROW), window_stats(two, ROW)
    assert row1.rps == pytest.approx(10, rel=0.1) and row2.rps == pytest.approx(10, rel=0.1)
    assert row1.latency.censored >= 5  # the requests in flight when the users changed
    assert row2.latency.censored == 0 and two.phases().drained and not one.phases().drained
    # each request started in row 1's window counted once: censored there, not again when answered
    answered_later = read_ledger(path)  # the whole file, every record
    w0, w1 = one.window
    real = [s for s in answered_later.samples if s.name == ROW and not s.censored and w0 <= s.t0 < w1]
    assert row1.latency.n == len(real)
    assert not any(s.censored for s in two.samples if s.t0 < two.window[0])  # row 1's are not row 2's


def test_a_web_ui_masters_ledger_holds_its_workers_requests(tmp_path):
    """Forwarded (web UI): the workers' records are written into the master's file, not beside it."""
    module = ledger_module()
    now = [T0]
    master = module.Ledger(tmp_path / "m.jsonl", clock=lambda: now[0])
    worker = module.Ledger(forward=lambda rec: master.write_forwarded([rec]), clock=lambda: now[0])
    fleet = module.Fleet(master, 1, lambda *_: None, sleep=lambda s: None, forwarded=True)
    start = master.mark("start", workers=fleet.workers, forwarded=True)
    with worker.track("u1", ROW):
        now[0] += 0.5
        worker.record("u1", ROW, 500.0, True)
    worker.mark("window")  # a worker's own marks never reach the master's file
    master.mark("window", steady=True, at=start)
    master.mark("drain")
    master.finish("drained")
    master.close()
    run = read_ledger(tmp_path / "m.jsonl")  # no worker files are looked for
    assert [(s.name, s.ms) for s in run.samples] == [(ROW, 500.0)]
    assert run.marks["window"]["t"] == start
