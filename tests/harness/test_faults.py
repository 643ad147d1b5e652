"""bench/faults.py on CONSTRUCTED timelines: how a fault's figures and verdict come from the ledger.

`bench faults` itself (live targets, real faults) is not part of `make test`; the fast live forms of
faults 1, 3, 4 and 6 are tests/contract/test_faults.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

import psutil
import pytest

from bench.faults import (
    NO_ANSWER,
    ROW,
    FaultsOptions,
    Lab,
    Server,
    Timeline,
    analyse,
    answer,
    clean_exit,
    error_limit_ms,
    faults_run,
    worker_share,
)
from bench.load import Sample
from bench.procs import free_port, spawn, wait_http
from bench.report import faults_table, write_reports
from bench.results import FaultResult, Machine, Run, Scenario

T = 1_700_000_000.0


def req(t0: float, ms: float, status: int | None = None, code: str | None = None) -> Sample:
    """A request started t0 s into the run; status None means a valid 200."""
    return Sample(ROW, T + t0, ms, ok=status is None, status=status, code=code)


def calm(start: float, end: float, step: float = 0.1) -> list[Sample]:
    return [req(start + i * step, 50) for i in range(int((end - start) / step))]


def test_answers_are_counted_by_status_and_uniform_code():
    assert answer(req(0, 1)) == "200"
    assert answer(req(0, 1, 503, "database_unavailable")) == "503 database_unavailable"
    assert answer(req(0, 1, 500)) == "500 non-uniform"
    assert answer(req(0, 1, 0)) == NO_ANSWER
    assert answer(Sample(ROW, T, 1, ok=False, censored=True)) == "unfinished"


def test_a_restart_that_leaves_stale_connections_fails_after_recovery():
    tl = Timeline(injected=T + 10, cleared=T + 11, until=T + 20)
    samples = [*calm(0, 10),
               req(9.9, 300, 503, "database_unavailable"),  # taken in before, answered during: counted
               *[req(10 + i * 0.1, 20, 503, "database_unavailable") for i in range(10)],
               req(11.2, 40),  # the first 200 after the fault was cleared
               req(11.5, 30, 503, "database_unavailable"),  # a stale pooled connection
               *calm(12, 19.5),
               req(19.9, 200, 503, "database_unavailable")]  # answered after `until`: the next fault's
    r = analyse(samples, "pg-restart", "t", 20, tl)
    assert r.by_status["503 database_unavailable"] == 12
    assert r.detect_ms == pytest.approx(200, abs=1)  # the 9.9 s request answered at 10.2 s
    assert r.recover_ms == pytest.approx(240, abs=1)  # 11.2 + 0.04 - 11
    assert r.failed_after_recovery == 1
    assert r.problems == ["1 requests failed after recovery"]


def test_answers_outside_the_faults_contract_and_slow_errors_are_problems():
    tl = Timeline(injected=T + 10, cleared=T + 15, until=T + 20)
    samples = [*calm(0, 10), req(10.1, 20, 500, "internal_error"),
               req(10.2, 2500, 503, "database_unavailable"), *calm(15, 20)]
    r = analyse(samples, "pg-stop", "t", 20, tl, limit_ms=1100)
    assert r.slowest_error_ms == 2500 and r.limit_ms == 1100
    assert r.problems == ["answers outside the contract for this fault: 500 internal_error",
                          "a request waited 2500 ms for its answer (limit 1100 ms)"]


def test_a_request_that_waits_out_the_outage_in_the_pool_is_too_slow_even_when_it_succeeds():
    tl = Timeline(injected=T + 10, cleared=T + 15, until=T + 20)
    samples = [*calm(0, 10), req(10.5, 4600), *calm(15.2, 19)]  # held in the pool until it came back
    r = analyse(samples, "pg-stop", "t", 20, tl, limit_ms=1300)
    assert r.by_status == {"200": 39}
    assert r.problems == ["a request waited 4600 ms for its answer (limit 1300 ms)"]


def test_a_fault_that_never_clears_is_never_recovered():
    tl = Timeline(injected=T + 10, cleared=T + 13, until=T + 20)
    samples = [*calm(0, 10), *[req(10 + i * 0.5, 5, 502, "upstream_error") for i in range(20)]]
    r = analyse(samples, "upstream-500", "t", 20, tl)
    assert r.recover_ms is None and "never answered 200 again" in r.problems


def test_requests_in_flight_without_an_answer_are_lost_beyond_the_workers_share():
    tl = Timeline(injected=T + 10, cleared=T + 10, until=T + 20)
    struck = [req(9.8, 400, 0), req(9.9, 300, 0)]  # under way at 10 s, connection reset
    samples = [*calm(0, 9.5), *struck, *calm(10.5, 19)]
    assert analyse(samples, "worker-kill", "t", 20, tl, in_flight_allowed=2).ok
    r = analyse(samples, "worker-kill", "t", 20, tl, in_flight_allowed=1)
    assert r.lost_in_flight == 2
    assert r.problems == ["2 requests in flight got no answer (allowed: 1)"]


def test_a_connection_held_in_a_transaction_during_the_hang_is_a_problem():
    tl = Timeline(injected=T + 10, cleared=T + 14, until=T + 20, db_busy=3)
    samples = [*calm(0, 10), req(10.2, 2000, 504, "upstream_timeout"), *calm(14, 19)]
    r = analyse(samples, "upstream-hang", "t", 20, tl, limit_ms=3000)
    assert r.problems == ["3 DB connections held in a transaction while the upstream hung"]


def test_error_limits_follow_the_models_queue():
    assert error_limit_ms("pg-stop", 300, 20, 4) == 1300
    assert error_limit_ms("upstream-hang", 0, 20, None) == 3000  # one round: nobody queues
    assert error_limit_ms("upstream-hang", 0, 20, 4) == 15000  # 5 rounds behind 4 held workers
    assert error_limit_ms("upstream-hang", 0, 20, 1) == 60000  # the blocking anti-pattern
    assert error_limit_ms("upstream-500", 0, 20, 4) is None


def test_a_worker_holds_its_share_of_the_capacity():
    assert worker_share(4, 5, 20) == 1  # gunicorn sync: 4 workers + master
    assert worker_share(32, 5, 20) == 8  # gthread: 8 threads per worker
    assert worker_share(None, 1, 20) == 20  # one process: it is the whole server


def test_a_clean_exit_is_0_or_uvicorns_reraised_sigterm_after_a_complete_shutdown():
    assert clean_exit(0, "")
    assert clean_exit(-signal.SIGTERM, "INFO:     Finished server process [12]")
    assert not clean_exit(-signal.SIGTERM, "Traceback ...")
    assert not clean_exit(1, "Finished server process")
    assert not clean_exit(None, "")


def test_the_faults_report_shows_every_row_and_its_verdict(tmp_path):
    run = Run(run_id="faults-x", started_at="2026-12-03T00:00:00",
              machine=Machine(cpus=2, mem_gb=24, python="3.11"),
              scenario=Scenario(name="faults", db_ms=50, llm_ms=200, duration_s=0), faults=[
                  FaultResult(target="flask-sync", fault="pg-stop", users=20, lasted_s=5, requests=10,
                              by_status={"200": 4, "503 database_unavailable": 6}, limit_ms=1300),
                  FaultResult(target="django-async", fault="pg-restart", users=20, lasted_s=0.2, requests=9,
                              failed_after_recovery=14, problems=["14 requests failed after recovery"]),
                  FaultResult(target="go-gin", fault="sigterm", users=20, lasted_s=0, requests=20,
                              by_status={"200": 20}, exit_code=0, stop_s=0.6)])
    run.save(tmp_path)
    write_reports(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "| flask-sync | pg-stop | 4× 200, 6× 503 database_unavailable |" in md
    assert "**fails: 14 requests failed after recovery**" in md
    assert "in flight: 20× 200; exit 0 after 0.6 s" in md
    assert "**1** of 3 rows broke" in md
    html = (tmp_path / "report.html").read_text()
    assert html.count('class="verdict-fails"') == 1
    verdicts = [row.cells[-1] for row in faults_table(run).rows]
    assert verdicts == ["ok", "fails: 14 requests failed after recovery", "ok"]


def test_the_usual_wait_is_littles_w_when_the_model_queues():
    from bench.faults import usual_wait_ms
    # 4 workers at 0.25 s each serve 16 per second: 20 users wait W = 20 / 16 = 1.25 s, though a
    # short baseline's samples (the first, unqueued ones here) say 250 ms.
    served = [req(i / 16, 250) for i in range(48)]
    assert usual_wait_ms(served, 20, T + 0.25, T + 3.25) == pytest.approx(1250)
    assert usual_wait_ms(served, 2, T + 0.25, T + 3.25) == 250  # no queue: the p95
    assert usual_wait_ms([], 20, T, T + 3.0) == 10_000  # nothing answered yet: assume a long wait


def test_the_memory_slope_leaves_out_the_first_minute():
    from bench.faults import memory_slope
    filling = [(t, 50.0 + t) for t in range(0, 60, 5)]  # pools and caches filling: +60 MB
    steady = [(t, 110.0 + 0.5 * (t - 60) / 60) for t in range(60, 605, 5)]  # then +0.5 MB per minute
    assert memory_slope(filling + steady) == pytest.approx(0.5, abs=0.01)
    assert memory_slope([(0, 1.0), (5, 2.0)]) is None  # too few samples for a slope
    short = [(t, 100.0 + t / 60) for t in range(0, 90, 5)]  # shorter than 2 min: every sample counts
    assert memory_slope(short) == pytest.approx(1.0, abs=0.01)


def test_a_soak_run_renders_its_table_and_memory_chart(tmp_path):
    from bench.results import SoakResult
    go = SoakResult(target="go-gin", users=100, minutes=10, requests=100, by_status={"200": 100}, rps=160.2,
                    memory_mb=[(0, 20.0), (300, 21.0), (600, 21.5)], slope_mb_per_min=0.08)
    flask = SoakResult(target="flask-sync", users=100, minutes=10, requests=10, rps=7.1,
                       by_status={"200": 8, "no HTTP answer": 2}, problems=["2× no HTTP answer"])
    run = Run(run_id="soak-x", started_at="2026-12-03T00:00:00",
              machine=Machine(cpus=2, mem_gb=24, python="3.11"),
              scenario=Scenario(name="soak", db_ms=50, llm_ms=200, duration_s=600), soaks=[go, flask])
    run.save(tmp_path)
    write_reports(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "| go-gin | 100 | 10.0 | 160.2 | 100× 200 | 20 → 22 | 0.08 | **ok** |" in md
    assert "**fails: 2× no HTTP answer**" in md and "## Faults" not in md
    assert (tmp_path / "report.html").read_text().count("<svg") == 1  # memory over time


def test_the_workers_are_the_children_holding_the_listening_socket(tmp_path):
    import subprocess
    import sys
    import time

    from bench.faults import server_workers
    from bench.procs import free_port
    port = free_port()
    # A master listening on `port` with two forked workers that keep the socket, and one child that
    # closes it (like multiprocessing's resource tracker): only the two are workers.
    script = f"""
import os, socket, time
sock = socket.create_server(("127.0.0.1", {port}))
for holds in (True, True, False):
    if os.fork() == 0:
        if not holds:
            sock.close()
        time.sleep(30)
        os._exit(0)
time.sleep(30)
"""
    master = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 10
        while len(server_workers(master.pid, port)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = server_workers(master.pid, port)
        assert len(workers) == 2
        assert len(server_workers(master.pid, port, exclude=workers[0].pid)) == 1
        assert server_workers(master.pid, port + 1 if port < 65535 else port - 1) == []
    finally:
        for child in psutil.Process(master.pid).children():
            child.kill()
        master.kill()
        master.wait()


def test_faults_default_to_every_target_that_serves_the_recommendation_load():
    from bench import cli
    names = [t.name for t in cli._selected("")]
    assert {"flask-sync", "go-gin", "node-express", "rails-puma"} <= set(names)
    assert not any(n in names for n in ("fastapi-bgtasks", "fastapi-celery"))  # job targets: not theirs
    assert [t.name for t in cli._selected("go-gin, flask-sync")] == ["go-gin", "flask-sync"]


# --- a target that dies in a fault: one row, then a new server -------------------------------

TINY_TARGET = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path.startswith("/recommendation/"):
            uid = int(self.path.split("/")[2].split("?")[0])
            body = {"user_id": uid, "name": "n", "budget_cents": 1, "spent_cents": 0, "transactions": 0,
                    "top_category": None, "advice": "a", "served_by": "tiny"}
        else:
            body = {"status": "ok"}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

print("tiny target serving", flush=True)
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


class TinyLab(Lab):
    """No PostgreSQL or upstream: serve() starts a tiny real server that answers like a target."""

    def __init__(self) -> None:
        self.database_url = self.upstream_url = ""
        self.started: list[int] = []

    def connections(self) -> tuple[int, int, int]:
        return 0, 0, 0

    def restore(self) -> None:
        pass

    @contextlib.contextmanager
    def serve(self, target, raw):
        port = free_port()
        proc = spawn("tiny", [sys.executable, "-c", TINY_TARGET, str(port)],
                     log_path=raw / f"tiny-{len(self.started)}.log")
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", proc, timeout=15)
            self.started.append(proc.pid)
            yield Server(target.resolve(host="127.0.0.1", port=port), f"http://127.0.0.1:{port}", proc.pid,
                         lambda timeout: None, lambda: proc.log_tail(20), lambda: None, proc.popen.poll)
        finally:
            proc.stop()


@pytest.mark.slow
def test_a_target_that_dies_in_a_fault_is_one_died_row_then_serves_again(tmp_path, monkeypatch):
    import bench.faults as faults_mod
    from bench import manifest
    monkeypatch.setitem(faults_mod.FAULTS, "crash", faults_mod.Fault("the server SIGKILLed", "", frozenset(),
                                                                     (0.5, 0.5)))
    monkeypatch.setitem(faults_mod.FAULTS, "calm", faults_mod.Fault("nothing happens", "", frozenset(),
                                                                    (0.5, 0.5)))
    monkeypatch.setitem(faults_mod.INJECTORS, "crash", lambda s: os.kill(s.server.pid, signal.SIGKILL))
    monkeypatch.setitem(faults_mod.INJECTORS, "calm", lambda s: time.sleep(s.seconds))
    target = manifest.load_targets()["go-gin"]  # only its manifest: the tiny server stands in for it
    opts = FaultsOptions(targets=[target], faults=["crash", "calm"], quick=True, users=4,
                         results_dir=tmp_path)
    run, run_dir = faults_run(opts, "faults", "t", duration_s=0)
    lab = TinyLab()
    faults_mod.fault_target(target, lab, opts, run, run_dir, lambda text: None, lambda: None)
    crash, calm = run.faults
    assert (crash.fault, calm.fault) == ("crash", "calm")
    assert crash.died and not calm.died
    died = f"the server died (exit status {-signal.SIGKILL}); its log ends: tiny target serving"
    assert any(p.startswith(died) for p in crash.problems), crash.problems
    assert "started again" in crash.note
    assert len(lab.started) == 2 and lab.started[0] != lab.started[1]
    assert calm.ok and set(calm.by_status) == {"200"} and calm.requests > 0, calm
    assert run.fault_targets[0].restarts == 1


def test_the_plan_repeats_every_fault_with_sigterm_last_in_each_run():
    from bench.faults import fault_plan
    plan = fault_plan(["pg-restart", "sigterm", "overload", "upstream-500"], 2)
    assert [(s.name, s.repeat) for s in plan] == [
        ("pg-restart", 1), ("upstream-500", 1), ("overload", 1), ("sigterm", 1),
        ("pg-restart", 2), ("upstream-500", 2), ("overload", 2), ("sigterm", 2)]


def faults_only_run(*results: FaultResult) -> Run:
    return Run(run_id="faults-x", started_at="2026-12-03T00:00:00",
               machine=Machine(cpus=2, mem_gb=24, python="3.11"),
               scenario=Scenario(name="faults", db_ms=50, llm_ms=200, duration_s=0), faults=list(results))


def test_repeats_are_one_row_that_says_in_how_many_runs_the_verdict_held(tmp_path):
    def row(repeat: int, *problems: str, **figures) -> FaultResult:
        return FaultResult(target="go-gin", fault="pg-restart", users=20, lasted_s=0.2, requests=10,
                           by_status={"200": 9, "503 database_unavailable": 1}, repeat=repeat,
                           problems=list(problems), **figures)
    held = faults_only_run(row(1, recover_ms=100), row(2, recover_ms=300), row(3, recover_ms=200))
    assert [r.cells for r in faults_table(held).rows] == [[
        "go-gin", "pg-restart", "27× 200, 3× 503 database_unavailable", "—", "200", "0", "0", "—",
        "ok (held 3/3)"]]
    broke = faults_only_run(row(1), row(2, "1 requests failed after recovery", failed_after_recovery=1),
                            row(3))
    (only,) = faults_table(broke).rows
    assert only.cells[-1] == "fails (held 2/3): 1 requests failed after recovery" and only.cells[5] == "1"
    assert "verdict-fails" in only.marks
    broke.save(tmp_path)
    write_reports(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "Each fault ran 3 times" in md and "**1** of 1 rows broke" in md


def test_bench_faults_exits_1_when_a_row_broke_unless_allowed():
    import typer

    from bench import cli
    ok = faults_only_run(FaultResult(target="t", fault="pg-restart", users=20, lasted_s=0, requests=1))
    cli._exit_on_broken(ok, allow_broken=False)  # nothing broke: no exit
    finding = faults_only_run(FaultResult(target="t", fault="slowloris", users=20, lasted_s=0, requests=1))
    cli._exit_on_broken(finding, allow_broken=False)
    broke = faults_only_run(FaultResult(target="t", fault="pg-restart", users=20, lasted_s=0, requests=1,
                                        problems=["never answered 200 again"]))
    with pytest.raises(typer.Exit) as exited:
        cli._exit_on_broken(broke, allow_broken=False)
    assert exited.value.exit_code == 1
    cli._exit_on_broken(broke, allow_broken=True)
    failed = faults_only_run()
    failed.skipped["go-gin"] = "failed: RuntimeError: it did not start"
    with pytest.raises(typer.Exit):
        cli._exit_on_broken(failed, allow_broken=False)
    cannot = faults_only_run()
    cannot.skipped["go-gin"] = "go not found on PATH"  # could not run here: not a broken row
    cli._exit_on_broken(cannot, allow_broken=False)


def test_the_new_faults_limits_follow_their_timeouts():
    assert error_limit_ms("pg-exhausted", 300, 20, 4) == 1300  # refused at once, like pg-stop
    assert error_limit_ms("pg-hang", 0, 20, None) == 3000  # the DB timeout (2 s) + 1 s
    assert error_limit_ms("pg-hang", 0, 20, 4) == 15000  # 5 rounds of held workers
    assert error_limit_ms("pg-hang", 0, 20, None, 15) == 6000  # 5 of the 20 wait for a pooled connection
    assert error_limit_ms("pg-hang", 0, 20, 32, 32) == 3000  # pool and threads hold everyone at once
    assert error_limit_ms("upstream-hang", 0, 20, None, 15) == 3000  # the pool is free meanwhile
    assert error_limit_ms("upstream-drip", 0, 20, None) == 3000  # as a hang


def test_a_hang_that_outlasts_the_db_timeout_must_bring_503s():
    tl = Timeline(injected=T + 10, cleared=T + 14, until=T + 20)
    waited = [*calm(0, 10), req(10.1, 3900), *calm(14.2, 19)]  # waited the hang out, then 200
    r = analyse(waited, "pg-hang", "t", 20, tl, limit_ms=15000)
    assert r.problems == ["no 503 although the database hung 4.0 s: the requests waited it out "
                          "(no DB timeout of 2 s)"]
    timed_out = [*calm(0, 10), req(10.1, 2050, 503, "database_unavailable"), *calm(14.2, 19)]
    assert analyse(timed_out, "pg-hang", "t", 20, tl, limit_ms=3000).ok


def test_redis_endpoints_are_probed_where_the_target_has_them():
    from bench import manifest
    from bench.faults import JOB_PROBE, PUBSUB_PROBE, redis_probes
    targets = manifest.load_targets()
    assert redis_probes(targets["fastapi-async"]) == [PUBSUB_PROBE]
    assert JOB_PROBE in redis_probes(targets["fastapi-celery"])
    assert redis_probes(targets["go-gin"]) == []


def test_an_injection_that_fails_is_a_row_and_the_lab_is_restored(monkeypatch):
    import bench.faults as faults_mod

    class Restored(Lab):
        restored = 0

        def restore(self) -> None:
            self.restored += 1

    def boom(strike):
        raise RuntimeError("pg_ctl said no")

    monkeypatch.setitem(faults_mod.INJECTORS, "pg-restart", boom)
    lab = Restored()
    tl = faults_mod.strike_safely("pg-restart", lab, None, FaultsOptions(targets=[], faults=[]))
    assert lab.restored == 1
    assert tl.extra["problems"] == ["the injection failed: RuntimeError: pg_ctl said no"]


def test_under_compose_the_faults_act_on_the_harnesss_own_project(monkeypatch):
    """pg-hang pauses postgres, redis-down kills redis: always in the harness's compose project,
    never the user's stack (bench/docker.py)."""
    from bench import docker
    from bench.compose import HARNESS_PROJECT
    from bench.faults import DockerLab
    calls: list[list[str]] = []
    monkeypatch.setattr(docker, "run", lambda argv: calls.append(list(argv)) or "")
    monkeypatch.setattr(docker, "published_url", lambda service, port, scheme: f"{scheme}://127.0.0.1:{port}")
    monkeypatch.setattr("bench.faults.wait_redis", lambda url: None)
    lab = DockerLab()
    lab.hang_postgres()
    lab.resume_postgres()
    lab.stop_redis()
    lab.start_redis()
    assert [c[c.index("--env-file") + 2:] for c in calls] == [
        ["pause", "postgres"], ["unpause", "postgres"], ["kill", "redis"], ["start", "redis"]]
    assert all(c[c.index("--project-name") + 1] == HARNESS_PROJECT for c in calls)
    assert lab.redis_url == "redis://127.0.0.1:6379/0"
