"""fastapi-procpool's /cpu: in other processes, so CPU work runs in parallel and the loop stays free.

The contrast is fastapi-async (test_model_behaviour's canary), where /cpu runs on the loop."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import ALL_TARGETS
from tests.contract.test_model_behaviour import concurrent_gets

pytestmark = [pytest.mark.slow, pytest.mark.parametrize(
    "target", [t for t in ALL_TARGETS if t.name == "fastapi-procpool"], indirect=True,
    ids=lambda t: t.name)]

N = 1_500_000  # ~150-300 ms of pure Python here


def timed_cpu(base_url: str) -> float:
    with httpx.Client(base_url=base_url, timeout=60) as client:
        started = time.perf_counter()
        assert client.get(f"/cpu?n={N}").status_code == 200
        return time.perf_counter() - started


def test_cpu_requests_run_in_parallel_up_to_the_pool_size(target):
    timed_cpu(target.base_url)
    single = min(timed_cpu(target.base_url) for _ in range(2))
    burst = target.params["cpu_processes"]
    rounds = concurrent_gets(target.base_url, [f"/cpu?n={N}"] * burst) / single
    # Taking turns on one GIL would measure ~2; the pool's processes run side by side.
    assert rounds < 1.6, f"{burst} concurrent /cpu took {rounds:.2f} x one"


def test_loop_answers_during_cpu_work(client, target):
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(timed_cpu, target.base_url)
        time.sleep(0.05)
        started = time.perf_counter()
        assert client.get("/healthz").status_code == 200
        health = time.perf_counter() - started
        busy.result()
    assert health < 0.1, f"/healthz took {health * 1000:.0f} ms during /cpu"
