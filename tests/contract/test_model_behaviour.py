"""Each model does what its manifest says, measured as ratios with wide margins.

8 concurrent requests of 400 ms take ceil(8 / min(8, capacity)) "rounds" of the 1-request latency:
~2 on 4 sync workers, ~1 on an event loop / threadpool / goroutines, ~8 on the blocking
anti-pattern. The capacity comes from targets.toml, so this also checks the manifests' claims.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

CONCURRENT = 8
LLM_MS = 400

pytestmark = pytest.mark.slow


def expected_rounds(capacity: int | None) -> int:
    return math.ceil(CONCURRENT / min(CONCURRENT, capacity or CONCURRENT))


def rounds_problem(measured: float, expected: int, what: str) -> str | None:
    """Why `measured` rounds do not fit the model's `expected` rounds, or None if they do."""
    if expected == 1:
        # flask-gthread measures 1.3-1.8 here (GIL + per-thread connection set-up); a model
        # that really queues 8 requests behind 4 slots measures >= 2.
        ok = measured < 1.9
    elif expected == 2:
        # uvicorn --workers spreads connections unevenly, so allow up to ~4.
        ok = 1.6 <= measured < 4.6
    else:
        ok = measured >= 0.6 * expected
    return None if ok else f"{what}: {measured:.2f} rounds, expected ~{expected}"


def timed_get(client: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    resp = client.get(path)
    assert resp.status_code == 200, resp.text
    return time.perf_counter() - started


def concurrent_gets(base_url: str, paths: list[str]) -> float:
    """Wall time for all paths fetched at once, each on its own connection.

    The clients exist before the clock starts and the requests leave together (a barrier):
    creating an httpx client costs milliseconds of CPU under the GIL, which on a slow machine
    would time this test's own set-up instead of the model."""
    clients = [httpx.Client(base_url=base_url, timeout=60) for _ in paths]
    ready = threading.Barrier(len(paths) + 1)

    def one(client: httpx.Client, path: str) -> float:
        ready.wait()
        resp = client.get(path)
        assert resp.status_code == 200, resp.text
        return time.perf_counter()

    try:
        with ThreadPoolExecutor(len(paths)) as pool:
            done = [pool.submit(one, c, p) for c, p in zip(clients, paths, strict=True)]
            ready.wait()
            started = time.perf_counter()
            return max(f.result() for f in done) - started
    finally:
        for client in clients:
            client.close()


def measure_rounds(client, target, path: str) -> float:
    """8 concurrent requests' wall time in units of one request's latency."""
    # Untimed warm-up batch: every worker/thread builds its pool and client on first use, and
    # that start-up cost is not the model's steady state.
    concurrent_gets(target.base_url, [path.format(30 + i) for i in range(CONCURRENT)])
    single = min(timed_get(client, path.format(2)) for _ in range(2))
    total = concurrent_gets(target.base_url, [path.format(10 + i) for i in range(CONCURRENT)])
    return total / single


def assert_rounds(client, target, path: str, what: str, attempts: int = 3) -> None:
    """The model allows its rounds in at least one of `attempts` bursts.

    Processes that share one listening socket (uvicorn --workers) split a burst by a race: now
    and then one process accepts 5 of the 8 connections and the burst takes 5 rounds. That is
    luck, not capacity; a model that really has 1 slot (or 8) never measures inside the range,
    however many bursts it gets."""
    problems = []
    for _ in range(attempts):
        problem = rounds_problem(measure_rounds(client, target, path), expected_rounds(target.capacity), what)
        if problem is None:
            return
        problems.append(problem)
    pytest.fail("; ".join(problems))


def test_concurrent_requests_take_the_rounds_the_model_allows(client, target):
    assert_rounds(client, target, "/recommendation/{}?db_ms=0&llm_ms=" + str(LLM_MS), target.name)


def test_concurrent_streams_take_the_rounds_the_model_allows(client, target):
    """Seed 003: a sync worker is held for a whole stream; an event loop interleaves them."""
    path = "/stream/{}?db_ms=0&tokens=4&llm_ms=" + str(LLM_MS)
    assert_rounds(client, target, path, f"{target.name} streams")


def test_healthz_answers_under_load_only_with_spare_capacity(client, target):
    """The canary: /healthz stays fast while 8 slow requests run iff the model has room left.

    It does on fastapi-async (the loop is free while requests await); it does not on
    fastapi-blocking (the loop itself is stuck in a sync call) nor on 4 busy sync workers.
    """
    spare = target.capacity is None or target.capacity > CONCURRENT
    slow = "/recommendation/{}?db_ms=0&llm_ms=1000"
    with ThreadPoolExecutor(CONCURRENT) as pool:
        busy = []
        for i in range(CONCURRENT):
            busy.append(pool.submit(concurrent_gets, target.base_url, [slow.format(20 + i)]))
            # Staggered: uvicorn --workers processes share one listening socket, and a worker
            # woken by a burst accepts the whole burst, leaving another worker idle (spare
            # capacity that is real, but not the state this test probes). One at a time, a
            # blocked loop cannot accept, so each slow request lands on a worker still free.
            time.sleep(0.05)
        time.sleep(0.3)  # let all of them reach the upstream call
        health = timed_get(client, "/healthz")
        for future in busy:
            future.result()
    if spare:
        assert health < 0.1, f"{target.name}: /healthz took {health * 1000:.0f} ms under load"
    else:
        assert health > 0.3, f"{target.name}: /healthz took only {health * 1000:.0f} ms"
