"""Small timed experiments against a live target: the seeds' own experiments, re-run as written.

Locust measures steady state; some claims are about one burst instead ("the 5th request waits",
"10 concurrent requests take ~1.1 s"). Each experiment fires its burst with all requests released
at once, checks every response, and records wall times. `bench compare` runs them while the target
is up (after its load levels); the claims engine (bench/claims.py) reads them from results.json.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from bench.results import Experiment

FIFTH_REQUEST_LLM_MS = 400  # long enough that one "round" dwarfs scheduling noise
SEED004_SLEEP_S = 0.1  # seed 004's experiment log: 10 concurrent requests, 0.1 s each
REPEATS = 3  # bursts per experiment; the median is recorded


def burst(base_url: str, path: str, n: int, timeout_s: float = 60) -> tuple[float, list[float]]:
    """n concurrent GETs released together; returns (wall seconds, sorted per-request seconds).

    Raises RuntimeError on any non-200 answer: an error must never pass for a timing.
    """
    gate = threading.Barrier(n)
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    with httpx.Client(base_url=base_url, timeout=timeout_s, limits=limits) as client:
        def one(_: int) -> tuple[float, float, int]:
            gate.wait(timeout=timeout_s)
            started = time.perf_counter()
            status = client.get(path).status_code
            return started, time.perf_counter(), status

        with ThreadPoolExecutor(n) as pool:
            answers = list(pool.map(one, range(n)))
    bad = [status for _, _, status in answers if status != 200]
    if bad:
        raise RuntimeError(f"{len(bad)} of {n} requests to {path} answered {sorted(set(bad))}")
    wall = max(end for _, end, _ in answers) - min(start for start, _, _ in answers)
    return wall, sorted(end - start for start, end, _ in answers)


def _median_burst(base_url: str, path: str, n: int) -> tuple[float, list[float]]:
    bursts = sorted((burst(base_url, path, n) for _ in range(REPEATS)), key=lambda b: b[0])
    return bursts[len(bursts) // 2]


def fifth_request(base_url: str, db_ms: int, **_: object) -> dict:
    """Seed 001: 5 concurrent requests; with 4 sync workers the 5th waits for a free one."""
    burst(base_url, f"/recommendation/1?db_ms={db_ms}&llm_ms=0", 5)  # connections, pools: untimed
    wall, latencies = _median_burst(
        base_url, f"/recommendation/1?db_ms={db_ms}&llm_ms={FIFTH_REQUEST_LLM_MS}", 5)
    first_four = statistics.median(latencies[:4])
    return {"wall_s": round(wall, 3), "latencies_s": [round(x, 3) for x in latencies],
            "fifth_over_others": round(latencies[4] / first_four, 2),
            "request_s": round((db_ms + FIFTH_REQUEST_LLM_MS) / 1000, 3)}


def seed004_burst(path: str) -> Callable[..., dict]:
    def run(base_url: str, **_: object) -> dict:
        burst(base_url, f"{path}?seconds=0", 10)  # untimed: threads and connections exist
        wall, latencies = _median_burst(base_url, f"{path}?seconds={SEED004_SLEEP_S}", 10)
        return {"wall_s": round(wall, 3), "slowest_s": round(latencies[-1], 3),
                "fastest_s": round(latencies[0], 3), "requests": 10, "sleep_s": SEED004_SLEEP_S}
    return run


def pubsub(base_url: str, redis_url: str | None = None, **_: object) -> dict:
    """Seed 003: blocking `pubsub.listen()` vs `redis.asyncio`, see bench/pubsub_probe.py."""
    if not redis_url:
        raise RuntimeError("no Redis in this run (redis-server not found)")
    from bench import pubsub_probe
    return pubsub_probe.measure(base_url, redis_url, forms=("blocking", "async"))


def pubsub_polling(base_url: str, redis_url: str | None = None, **_: object) -> dict:
    """Seed 003's own fix (get_message(timeout=0.1) + asyncio.sleep(0.01)) with its 10 streams."""
    if not redis_url:
        raise RuntimeError("no Redis in this run (redis-server not found)")
    from bench import pubsub_probe
    return pubsub_probe.measure(base_url, redis_url, listeners=10, hold_s=1.0, forms=("polling",))


@dataclass(frozen=True)
class Spec:
    id: str
    description: str
    run: Callable[..., dict]


# Which experiments run on which target (each target's default params, recommendation scenario).
PLAN: dict[str, list[Spec]] = {
    "flask-sync": [Spec("fifth-request", "5 concurrent requests (db_ms + 400 ms upstream), 4 sync workers",
                        fifth_request)],
    "fastapi-async": [
        Spec("fifth-request", "5 concurrent requests (db_ms + 400 ms upstream), 1 event loop",
             fifth_request),
        Spec("seed004-async-time-sleep", "10 concurrent GET /async/bad-blocking?seconds=0.1",
             seed004_burst("/async/bad-blocking")),
        Spec("seed004-async-asyncio-sleep", "10 concurrent GET /async/await-one?seconds=0.1",
             seed004_burst("/async/await-one")),
        Spec("seed004-def-time-sleep", "10 concurrent GET /sync/noawait?seconds=0.1",
             seed004_burst("/sync/noawait")),
        Spec("seed003-pubsub", "3 SSE listeners on Redis pub/sub: blocking listen() vs redis.asyncio",
             pubsub),
        Spec("seed003-polling-10", "10 SSE listeners on the seed's fix: sync get_message(timeout=0.1)"
             " + await asyncio.sleep(0.01)", pubsub_polling),
    ],
}


def run_for(target: str, params: dict[str, int], base_url: str, **context: object) -> list[Experiment]:
    """Every planned experiment for this target; a failing one is recorded with its error."""
    done = []
    for spec in PLAN.get(target, []):
        try:
            measured, error = spec.run(base_url, **context), None
        except Exception as exc:  # recorded, reported as "not run" by the claims engine
            measured, error = {}, f"{type(exc).__name__}: {exc}"[:300]
        done.append(Experiment(id=spec.id, target=target, params=params,
                               description=spec.description, measured=measured, error=error))
    return done
