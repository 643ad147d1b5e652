from __future__ import annotations

import pytest

from bench.metrics import ceiling_rps, efficiency, flags, latency_censored, littles_w_ms, locust_processes


def test_ceiling_sync_workers():
    # 4 workers, 0.55 s per request: 100 users can only get 4 in flight.
    assert ceiling_rps(100, 4, 0.55, 4, 50) == pytest.approx(4 / 0.55)


def test_ceiling_unbounded_model_is_users_over_latency():
    assert ceiling_rps(100, None, 0.55, 15, 0) == pytest.approx(100 / 0.55)


def test_ceiling_db_pool_limits_when_lower():
    # 15 connections held 50 ms each: at most 300 rps whatever the users.
    assert ceiling_rps(1000, None, 0.55, 15, 50) == pytest.approx(300)


def test_ceiling_needs_l1():
    assert ceiling_rps(100, 4, None, 4, 50) is None
    assert efficiency(10, None) is None
    assert efficiency(7.0, 7.27) == pytest.approx(0.963, abs=1e-3)


def test_flags_each_limit():
    assert flags(machine_cpu=50, locust_cpu=20, max_process_cpu=30, failures=0, requests=100) == []
    got = flags(machine_cpu=95, locust_cpu=85, max_process_cpu=97, failures=2, requests=100)
    assert [f.split()[0] for f in got] == ["machine-cpu-bound", "locust-bound",
                                          "target-process-cpu-bound", "failures"]
    assert flags(machine_cpu=None, locust_cpu=None, max_process_cpu=None, failures=1,
                 requests=100) == []  # exactly 1 % is not "> 1 %"
    assert flags(machine_cpu=None, locust_cpu=None, max_process_cpu=None, failures=0,
                 requests=0) == ["no requests completed"]


def test_locust_goes_multi_process_where_one_process_would_pass_its_plan():
    # the calibration of the 2026-12 capacity run, 5/500 ms: 39 % of a core at 800 users
    assert locust_processes(39.2, 1600 / 800, cpus=2) == 2  # 78 % predicted: past 70 %
    assert locust_processes(27.2, 800 / 400, cpus=2) == 1  # 54 %: one process is enough
    assert locust_processes(96.9, 2.0, cpus=2) == 2  # never more than one per core
    assert locust_processes(96.9, 2.0, cpus=8) == 3
    assert locust_processes(80.0, 0.5, cpus=2) == 1  # a search going down needs less
    assert locust_processes(None, 2.0, cpus=2) == locust_processes(0.0, 2.0, cpus=2) == 1


def test_a_busy_locust_process_is_flagged_with_how_many_there_were():
    (one,) = flags(machine_cpu=None, locust_cpu=85, max_process_cpu=None, failures=0, requests=10)
    (many,) = flags(machine_cpu=None, locust_cpu=85, max_process_cpu=None, failures=0, requests=10,
                    locust_processes=2)
    assert one == "locust-bound (85% of a core)"
    assert many == "locust-bound (85% of a core, the busiest of 2 Locust processes)"


def test_littles_law_w_is_users_over_rps():
    # the numbers of issue 11 (make compare, 100 users)
    assert littles_w_ms(100, 7.1) == pytest.approx(14_084.5, abs=0.1)  # flask-sync
    assert littles_w_ms(100, 1.79) == pytest.approx(55_865.9, abs=0.1)  # fastapi-blocking
    assert littles_w_ms(100, 0.0) is None and littles_w_ms(0, 5.0) is None


def test_latency_censored_beyond_fifteen_percent_of_w():
    assert latency_censored(7300, 14_100) == pytest.approx(0.482, abs=1e-3)  # flask-sync's p50/W 0.52
    assert latency_censored(580, 620) is None  # fastapi-async: 6 % off
    assert latency_censored(11_900, 14_000) is None  # exactly 15 % is not "more than"
    assert latency_censored(16_200, 14_000) is not None  # too high is as suspect as too low
    assert latency_censored(None, 14_000) is None and latency_censored(500, None) is None
    # an honest mean with a p50 far from W (a skewed distribution): the p50 alone would misstate it
    assert latency_censored(1_800, 1_800, p50_ms=1_100) == pytest.approx(0.389, abs=1e-3)
    assert latency_censored(1_800, 1_800, p50_ms=1_700) is None


def test_flags_latency_censored():
    ok = dict(machine_cpu=None, locust_cpu=None, max_process_cpu=None, failures=0, requests=100)
    assert flags(**ok, mean_ms=13_900, w_ms=14_000) == []
    assert flags(**ok, mean_ms=4_500, w_ms=55_900) == [
        "latency-censored (mean 4500 ms vs W = users / rps 55900 ms)"]
    assert flags(**ok) == []  # older callers pass no latency: nothing to compare
    # nothing started in the window finished, but answers to earlier requests arrived in it
    none = dict(ok, requests=0)
    assert flags(**none, answered=3, mean_ms=9_000, w_ms=50_000)[0].startswith("latency-censored")
    assert flags(**none, answered=0) == ["no requests completed"]


def test_a_window_nobody_started_a_request_in_is_censored_when_users_starved():
    none = {"machine_cpu": None, "locust_cpu": None, "max_process_cpu": None, "failures": 0, "requests": 0}
    assert flags(**none, users=3, starved=3) == [
        "no requests completed",
        "latency-censored (no request started in the window: 3 of 3 users got no answer in the whole window)"]
    assert flags(**none, users=3, starved=0) == ["no requests completed"]
