from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.load import (
    BACKSTOP_S,
    DRAIN_MAX_S,
    LoadSpec,
    ledger_path,
    locust_argv,
    read_ledger,
    read_stats,
    start_locust,
    window_stats,
    worker_ledger_path,
)
from tests.harness.closed_loop import ledger_module

DATA = Path(__file__).parent / "data"


def test_read_stats_by_column_name():
    rows = read_stats(DATA / "locust_flask-sync_u100")
    rec = rows["/recommendation/[id]"]
    assert (rec.requests, rec.failures) == (60, 0)
    assert rec.rps > 6.9 and rec.p50 == 4500 and rec.max > 8000
    assert rows["/healthz"].requests == 1


def test_read_stats_survives_reordered_columns(tmp_path):
    src = (DATA / "locust_fastapi-async_u100_stats.csv").read_text().splitlines()
    header = src[0].split(",")
    order = list(reversed(range(len(header))))
    shuffled = [",".join(line.split(",")[i] for i in order) for line in src]
    (tmp_path / "x_stats.csv").write_text("\n".join(shuffled) + "\n")
    assert read_stats(tmp_path / "x") == read_stats(DATA / "locust_fastapi-async_u100")


def test_locust_argv_adds_the_canary_and_no_host_in_file(tmp_path):
    argv = locust_argv(LoadSpec(host="http://127.0.0.1:9", users=100, duration_s=20), tmp_path / "p")
    assert argv[argv.index("-u") + 1] == "101"  # 100 scenario users + the fixed-count canary
    assert argv[-2:] == ["RecommendationUser", "Canary"]
    assert "http://127.0.0.1:9" in argv
    assert shutil.which(argv[0])


def opt(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_locust_argv_measures_a_window_between_warmup_and_drain(tmp_path):
    argv = locust_argv(LoadSpec(host="http://x", users=100, duration_s=15), tmp_path / "p")
    assert opt(argv, "--ledger") == str(ledger_path(tmp_path / "p")) == f"{tmp_path}/p_requests.jsonl"
    assert (opt(argv, "--window-s"), opt(argv, "--warmup-max-s"), opt(argv, "--drain-max-s")) == (
        "15", "15", f"{DRAIN_MAX_S:g}")
    # Locust's --run-time is only a backstop behind the locustfile's own stop after the drain
    assert opt(argv, "-t") == f"{15 + 15 + DRAIN_MAX_S + BACKSTOP_S:.0f}s"
    short = locust_argv(LoadSpec(host="http://x", users=3, duration_s=2, drain_max_s=1), tmp_path / "p")
    assert (opt(short, "--warmup-max-s"), opt(short, "--drain-max-s")) == ("5", "1")  # warm-up >= 5 s
    # the warm-up's floor is the locustfile's unless a run asks for its own (bench capacity: 1 s)
    assert "--warmup-min-s" not in argv
    floor = locust_argv(LoadSpec(host="http://x", users=3, duration_s=2, warmup_min_s=1.0), tmp_path / "p")
    assert opt(floor, "--warmup-min-s") == "1"


def test_more_locust_processes_are_a_master_and_its_forked_workers_on_a_port_of_their_own(tmp_path):
    one = locust_argv(LoadSpec(host="http://x", users=100, duration_s=5), tmp_path / "p")
    assert "--processes" not in one
    spec = LoadSpec(host="http://x", users=1600, duration_s=5, processes=2)
    argv = locust_argv(spec, tmp_path / "p", 41234)
    assert opt(argv, "--processes") == "2"
    # not every interface, nor Locust's default port 5557, which another run may hold
    assert [opt(argv, o) for o in ("--master-bind-host", "--master-bind-port", "--master-port")] == [
        "127.0.0.1", "41234", "41234"]
    assert opt(argv, "-u") == "1601" and argv[-2:] == ["RecommendationUser", "Canary"]
    # the workers' ledgers: the names the locustfile writes (request_ledger.worker_ledger)
    path = ledger_path(tmp_path / "p")
    assert worker_ledger_path(path, 1) == ledger_module().worker_ledger(path, 1) == path.with_name(
        "p_requests.w1.jsonl")


@pytest.mark.slow
def test_two_locust_processes_measure_one_window_of_both_workers(tmp_path):
    """`locust --processes 2` straight at the mock upstream (20 users, 100 ms, a 3 s window): one
    window under the master's marks, merged from both workers' ledgers, whose requests agree with
    Locust's own CSV (which counts the whole run: compared over the run and, pro rata, the window)."""
    from bench import infra
    prefix = tmp_path / "calibration_u20"
    with infra.upstream(tmp_path) as (url, _):
        spec = LoadSpec(host=url, users=20, duration_s=3, scenario="calibration", db_ms=0, llm_ms=100,
                        processes=2)
        locust = start_locust(spec, prefix)
        try:
            assert locust.popen.wait(timeout=60) == 0, locust.log_tail()
        finally:
            locust.stop()
    run = read_ledger(ledger_path(prefix))
    assert run.marks["start"]["workers"] == 2 and run.marks["end"]["reason"] == "drained"
    phases = run.phases()
    assert phases.steady and phases.drained and phases.window_s == pytest.approx(3, abs=0.1)
    name = "/v1/chat/completions"
    mine = [sum(s.name == name for s in read_ledger(worker_ledger_path(ledger_path(prefix), i)).samples)
            for i in range(2)]
    assert min(mine) > 0.3 * sum(mine)  # both workers made load (10 users each)
    row = window_stats(run, name)
    assert 0.85 * 200 <= row.rps <= 1.02 * 200 and row.failures == 0  # 20 users / 100 ms
    assert row.latency.n == pytest.approx(row.rps * phases.window_s, rel=0.1)
    csv = read_stats(prefix)[name]
    finished = sum(s.name == name and not s.censored for s in run.samples)
    assert finished == pytest.approx(csv.requests, rel=0.05)  # the same requests, seen twice
    span = run.marks["end"]["t"] - run.marks["start"]["t"]
    assert row.requests == pytest.approx(csv.requests * phases.window_s / span, rel=0.3)
