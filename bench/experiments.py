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


# Seed 003's numbers, re-run. Each experiment's `quick` (bench compare --quick) size is cheap; the
# full run measures at the seed's own scale where that fits in a few minutes.
BLOCKING_10_HOLD_S = {True: 0.5, False: 10 / 3}  # 10/3 s: the stream length at which a queue of
# 10 streams gives the seed's "Average wait time: 15 seconds" ((10 - 1) / 2 x 10/3 = 15)
SEED_TIMELINE_S = (30.0, 10.0, 5.0)  # the seed's three requests, 30 s, 10 s and 5 s long
TIMELINE_SCALE = {True: 0.1, False: 0.2}  # ... scaled down: 3 / 1 / 0.5 s in --quick
TIMELINE_STAGGER_S = 0.05  # user 1 opens first, then user 2, then user 3, as in the seed
POLL_TIMEOUTS_S = {True: (0.1, 1.0, 10.0), False: (0.0, 0.1, 1.0, 10.0)}
MANY_LISTENERS = {True: 100, False: 1000}  # the seed: "Result: Thousands of concurrent streams"
MANY_BUDGET_S = {True: 40.0, False: 150.0}  # per form; what is still open then is counted, not waited for


def _probe(redis_url: str | None):
    if not redis_url:
        raise RuntimeError("no Redis in this run (redis-server not found)")
    from bench import pubsub_probe
    return pubsub_probe


def pubsub_blocking_10(base_url: str, redis_url: str | None = None, quick: bool = False,
                       pid: int | None = None, **_: object) -> dict:
    """Seed 003's "Test: 10 Concurrent Streams" on blocking listen() (async beside it): each
    stream's wait before it starts, the total, /healthz and the target's CPU meanwhile."""
    probe = _probe(redis_url)
    return probe.measure(base_url, redis_url, listeners=10, hold_s=round(BLOCKING_10_HOLD_S[quick], 3),
                         forms=("blocking", "async"), pid=pid)


def pubsub_timeline(base_url: str, redis_url: str | None = None, quick: bool = False,
                    pid: int | None = None, **_: object) -> dict:
    """Seed 003's timeline: requests of 30, 10 and 5 s (scaled down) opened one after another, on
    blocking listen(), on the seed's polling fix and on redis.asyncio."""
    probe = _probe(redis_url)
    scale = TIMELINE_SCALE[quick]
    measured = probe.measure(base_url, redis_url, holds=[h * scale for h in SEED_TIMELINE_S],
                             stagger_s=TIMELINE_STAGGER_S, pid=pid)
    return {"scale": scale, **measured}


def pubsub_poll_timeout(base_url: str, redis_url: str | None = None, quick: bool = False,
                        pid: int | None = None, **_: object) -> dict:
    """The polling form with get_message(timeout=T) for each T of the sweep, 1 listener: how long
    /healthz waits (the loop is blocked for up to T per call). The stream lasts T + 0.5 s (at least
    1 s), so the canary sees at least one whole call."""
    probe = _probe(redis_url)
    out: dict = {"poll_timeouts_s": list(POLL_TIMEOUTS_S[quick]), "listeners": 1}
    for t in POLL_TIMEOUTS_S[quick]:
        m = probe.measure(base_url, redis_url, listeners=1, hold_s=max(1.0, t + 0.5),
                          forms=("polling",), params={"poll_timeout_s": f"{t:g}"}, pid=pid)
        for key in ("hold_s", "polling_healthz_ms", "polling_healthz_p50_ms", "polling_healthz_n",
                    "polling_delivery_ms", "polling_cpu_pct"):
            out[f"t{t:g}_{key.removeprefix('polling_')}"] = m.get(key)
    return out


def pubsub_many(base_url: str, redis_url: str | None = None, quick: bool = False,
                pid: int | None = None, **_: object) -> dict:
    """Seed 003's "Thousands of concurrent streams": 100 (--quick) or 1,000 streams at once on
    redis.asyncio and on the seed's polling fix, each held 1 s; what was still open at the budget
    is counted, not waited for."""
    probe = _probe(redis_url)
    return probe.measure(base_url, redis_url, listeners=MANY_LISTENERS[quick], hold_s=1.0,
                         forms=("async", "polling"), pid=pid, budget_s=MANY_BUDGET_S[quick],
                         partial_ok=True)


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
        Spec("seed003-blocking-10", "10 SSE listeners at once on blocking listen() (and redis.asyncio):"
             " each stream's wait, total, /healthz and the target's CPU", pubsub_blocking_10),
        Spec("seed003-timeline", "the seed's 30/10/5 s requests (scaled) opened one after another:"
             " blocking listen(), polling fix, redis.asyncio", pubsub_timeline),
        Spec("seed003-poll-timeout", "1 SSE listener on the polling form with get_message(timeout=T)"
             " for T in the sweep: /healthz latency meanwhile", pubsub_poll_timeout),
        Spec("seed003-many", "100 (--quick) or 1,000 SSE listeners at once: redis.asyncio vs the"
             " polling fix, starts, delivery, /healthz, the target's CPU and memory", pubsub_many),
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
