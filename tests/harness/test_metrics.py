from __future__ import annotations

import pytest

from bench.metrics import ceiling_rps, efficiency, flags


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
