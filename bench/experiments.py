"""Small timed experiments against a live target: the seeds' own experiments, re-run as written.

Locust measures steady state; some claims are about one burst instead ("the 5th request waits",
"10 concurrent requests take ~1.1 s"). Each experiment fires its burst with all requests released
at once, checks every response, and records wall times. `bench compare` runs them while the target
is up (after its load levels); the claims engine (bench/claims.py) reads them from results.json.
"""

from __future__ import annotations

import os
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
CANARY_PATH = "/healthz"
CANARY_DELAY_S = 0.01


def burst(base_url: str, path: str, n: int, timeout_s: float = 60) -> tuple[float, list[float]]:
    """n concurrent GETs released together; returns (wall seconds, sorted per-request seconds).

    Raises RuntimeError on any non-200 answer: an error must never pass for a timing.
    """
    wall, latencies, _ = _burst(base_url, path, n, timeout_s)
    return wall, latencies


def burst_with_canary(base_url: str, path: str, n: int,
                      timeout_s: float = 60) -> tuple[float, list[float], list[float]]:
    """`burst`, with /healthz timed one after another while it runs (from CANARY_DELAY_S after the
    release until the last request is answered): (wall, per-request seconds, canary seconds).

    /healthz is `async def` touching nothing, so its latency is how long the event loop made it
    wait: a few ms while the loop is free, about the rest of the burst while something holds it."""
    return _burst(base_url, path, n, timeout_s, canary=True)


def _burst(base_url: str, path: str, n: int, timeout_s: float,
           canary: bool = False) -> tuple[float, list[float], list[float]]:
    gate = threading.Barrier(n + 1 if canary else n)
    done = threading.Event()
    checks: list[float] = []
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    with httpx.Client(base_url=base_url, timeout=timeout_s, limits=limits) as client, \
            httpx.Client(base_url=base_url, timeout=timeout_s) as probe:
        def one(_: int) -> tuple[float, float, int]:
            gate.wait(timeout=timeout_s)
            started = time.perf_counter()
            status = client.get(path).status_code
            return started, time.perf_counter(), status

        def watch() -> None:
            gate.wait(timeout=timeout_s)
            time.sleep(CANARY_DELAY_S)  # the burst's requests reach the server first
            while not done.is_set() or not checks:
                started = time.perf_counter()
                status = probe.get(CANARY_PATH).status_code
                if status != 200:
                    raise RuntimeError(f"{CANARY_PATH} answered {status} during the burst")
                checks.append(time.perf_counter() - started)

        if canary:
            _check(probe.get(CANARY_PATH), CANARY_PATH)  # its connection exists before the clock
        with ThreadPoolExecutor(n + 1) as pool:
            watcher = pool.submit(watch) if canary else None
            try:
                answers = list(pool.map(one, range(n)))
            finally:
                done.set()
            if watcher:
                watcher.result()
    bad = [status for _, _, status in answers if status != 200]
    if bad:
        raise RuntimeError(f"{len(bad)} of {n} requests to {path} answered {sorted(set(bad))}")
    wall = max(end for _, end, _ in answers) - min(start for start, _, _ in answers)
    return wall, sorted(end - start for start, end, _ in answers), checks


def _check(response: httpx.Response, path: str) -> httpx.Response:
    if response.status_code != 200:
        raise RuntimeError(f"{path} answered {response.status_code}: {response.text[:200]}")
    return response


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


# Seed 002 and 004's CPU and blocking statements: sizes small enough for a quick run (< 5 s each).
AWAIT_MANY_S = 0.2  # /async/await-many sleeps 1.0, 1.5 and 0.5 x this: max 0.3 s, sum 0.6 s
CANARY_BURST = 10  # requests per burst timed with the /healthz canary
BLOCKING_S = 0.05  # /async/wrap-blocking vs /async/bad-blocking: a 50 ms time.sleep each
LIGHT_CPU_S = 0.02  # "light CPU work (<50ms)": 20 ms of pure-Python CPU per request
LONG_CPU_S = 0.25  # one request's CPU work long enough that holding the loop for it shows
HEAVY_CPU_N = 1_500_000  # /cpu?n=: ~100 ms of pure Python per request, "heavy" (> 50 ms) by seed 004
GIL_PYTHON_N = 500_000  # /cpu?n=: ~50 ms of pure Python (holds the GIL)
GIL_NUMPY_N = 300  # /cpu/numpy?n=: a 300 x 300 int64 matmul, ~40 ms in numpy's C loop (GIL released)
NODE_CPU_N = 5_000_000  # /cpu?n= on Node: the contract's largest n, ~30 ms of JavaScript on the loop


def cores() -> int:
    return os.cpu_count() or 1


def await_many(base_url: str, **_: object) -> dict:
    """Seed 002: one request awaiting three sleeps with asyncio.gather; its time vs their max and sum."""
    path = f"/async/await-many?seconds={AWAIT_MANY_S}"
    with httpx.Client(base_url=base_url, timeout=30) as client:
        _check(client.get("/async/await-many?seconds=0"), path)  # untimed: the connection exists
        walls, body = [], {}
        for _ in range(REPEATS):
            started = time.perf_counter()
            body = _check(client.get(path), path).json()
            walls.append(time.perf_counter() - started)
    return {"wall_s": round(statistics.median(walls), 3), "walls_s": [round(w, 3) for w in walls],
            "server_s": body["elapsed_s"], "durations_s": body["durations"], "max_s": body["max_s"],
            "sum_s": body["sum_s"]}


def canary_forms(forms: dict[str, str], n: int = CANARY_BURST, **fixed: float) -> Callable[..., dict]:
    """Per form (name -> path): n concurrent requests with /healthz timed meanwhile, the median of
    REPEATS bursts by wall time. `fixed` (the burst's size per request) is recorded alongside."""
    def run(base_url: str, **_: object) -> dict:
        with httpx.Client(base_url=base_url, timeout=30) as probe:
            _check(probe.get(CANARY_PATH), CANARY_PATH)
            idle = []
            for _ in range(10):
                started = time.perf_counter()
                _check(probe.get(CANARY_PATH), CANARY_PATH)
                idle.append(time.perf_counter() - started)
        measured: dict = {"requests": n, **fixed,
                          "idle_canary_p50_ms": round(1000 * statistics.median(idle), 1)}
        for name, path in forms.items():
            burst(base_url, path.split("?")[0] + "?seconds=0", n)  # untimed: threads, connections
            runs = sorted((burst_with_canary(base_url, path, n) for _ in range(REPEATS)),
                          key=lambda b: b[0])
            wall, latencies, checks = runs[len(runs) // 2]
            measured.update({f"{name}_wall_s": round(wall, 3), f"{name}_slowest_s": round(latencies[-1], 3),
                             f"{name}_canary_max_ms": round(1000 * max(checks), 1),
                             f"{name}_canary_p50_ms": round(1000 * statistics.median(checks), 1),
                             f"{name}_canary_n": len(checks)})
        return measured
    return run


def loop_burst(path: str) -> Callable[..., dict]:
    """One request of `path` alone (its time, the median of REPEATS: `cpu_s`), then canary_forms'
    burst of CANARY_BURST of them with /healthz timed meanwhile (form "cpu")."""
    def run(base_url: str, **_: object) -> dict:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            _check(client.get(path), path)  # untimed: the connection, the JIT
            alone = []
            for _ in range(REPEATS):
                started = time.perf_counter()
                _check(client.get(path), path)
                alone.append(time.perf_counter() - started)
        return canary_forms({"cpu": path}, cpu_s=round(statistics.median(alone), 4))(base_url)
    return run


def parallel_speedup(forms: dict[str, str], per_core: int = 1) -> Callable[..., dict]:
    """Per form (name -> path): k = per_core x cores requests one after another, then k at once;
    the speed-up is serial time / concurrent time (medians of REPEATS). ~1x where one GIL (or one
    event loop) serialises the work, up to the core count where it runs in parallel."""
    def run(base_url: str, **_: object) -> dict:
        k = per_core * cores()
        measured: dict = {"cores": cores(), "concurrent": k}
        for name, path in forms.items():
            burst(base_url, path, k)  # untimed: threads, connections, lazy imports
            serial, together = [], []
            for _ in range(REPEATS):
                with httpx.Client(base_url=base_url, timeout=60) as client:
                    started = time.perf_counter()
                    for _ in range(k):
                        _check(client.get(path), path)
                    serial.append(time.perf_counter() - started)
                together.append(burst(base_url, path, k)[0])
            s, c = statistics.median(serial), statistics.median(together)
            measured.update({f"{name}_one_s": round(s / k, 3), f"{name}_serial_s": round(s, 3),
                             f"{name}_concurrent_s": round(c, 3), f"{name}_speedup": round(s / c, 2)})
        return measured
    return run


WRAP_VS_BAD = canary_forms({"wrap": f"/async/wrap-blocking?seconds={BLOCKING_S}",
                            "bad": f"/async/bad-blocking?seconds={BLOCKING_S}"}, sleep_s=BLOCKING_S)
CPU_LONG = canary_forms({"offloaded": f"/async/cpu-bound?seconds={LONG_CPU_S}",
                         "inline": f"/async/cpu-inline?seconds={LONG_CPU_S}"}, n=1, cpu_s=LONG_CPU_S)
CPU_FORMS = canary_forms({"def": f"/sync/cpu?seconds={LIGHT_CPU_S}",
                          "offloaded": f"/async/cpu-bound?seconds={LIGHT_CPU_S}",
                          "inline": f"/async/cpu-inline?seconds={LIGHT_CPU_S}"}, cpu_s=LIGHT_CPU_S)
HEAVY_CPU = parallel_speedup({"cpu": f"/cpu?n={HEAVY_CPU_N}"})
GIL_RELEASE = parallel_speedup({"python": f"/cpu?n={GIL_PYTHON_N}", "numpy": f"/cpu/numpy?n={GIL_NUMPY_N}"},
                               per_core=2)
HEAVY_CPU_TEXT = (f"/cpu?n={HEAVY_CPU_N} (~100 ms of pure Python): one request per core, one after "
                  "another vs all at once")
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
    # Not in a plain --quick run (the full run, or --quick --all-claims): a minute or more of bursts.
    costly: bool = False


# Which experiments run on which target (each target's default params, recommendation scenario).
PLAN: dict[str, list[Spec]] = {
    "flask-sync": [Spec("fifth-request", "5 concurrent requests (db_ms + 400 ms upstream), 4 sync workers",
                        fifth_request),
                   Spec("heavy-cpu", HEAVY_CPU_TEXT + " (4 gunicorn sync worker processes)", HEAVY_CPU)],
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
        Spec("seed002-await-many", f"GET /async/await-many?seconds={AWAIT_MANY_S}: asyncio.gather of "
             f"sleeps {AWAIT_MANY_S:g} x 1.0, 1.5, 0.5", await_many),
        Spec("seed002-wrap-vs-bad", f"{CANARY_BURST} concurrent GET /async/wrap-blocking vs "
             f"/async/bad-blocking?seconds={BLOCKING_S}, /healthz timed meanwhile", WRAP_VS_BAD),
        Spec("seed002-cpu-forms", f"{CANARY_BURST} concurrent requests of {LIGHT_CPU_S * 1000:.0f} ms "
             "pure-Python CPU each as def (/sync/cpu), async def + run_in_threadpool (/async/cpu-bound) "
             "and inline in async def (/async/cpu-inline), /healthz timed meanwhile", CPU_FORMS),
        Spec("seed002-cpu-long", f"1 request of {LONG_CPU_S * 1000:.0f} ms pure-Python CPU: async def + "
             "run_in_threadpool (/async/cpu-bound) vs inline in async def (/async/cpu-inline), "
             "/healthz timed meanwhile", CPU_LONG),
        Spec("heavy-cpu", HEAVY_CPU_TEXT + " (async def: on the event loop)", HEAVY_CPU),
        Spec("seed003-blocking-10", "10 SSE listeners at once on blocking listen() (and redis.asyncio):"
             " each stream's wait, total, /healthz and the target's CPU", pubsub_blocking_10, costly=True),
        Spec("seed003-timeline", "the seed's 30/10/5 s requests (scaled) opened one after another:"
             " blocking listen(), polling fix, redis.asyncio", pubsub_timeline, costly=True),
        Spec("seed003-poll-timeout", "1 SSE listener on the polling form with get_message(timeout=T)"
             " for T in the sweep: /healthz latency meanwhile", pubsub_poll_timeout, costly=True),
        Spec("seed003-many", "100 (--quick) or 1,000 SSE listeners at once: redis.asyncio vs the"
             " polling fix, starts, delivery, /healthz, the target's CPU and memory", pubsub_many,
             costly=True),
    ],
    "fastapi-threadpool": [
        Spec("heavy-cpu", HEAVY_CPU_TEXT + " (def: 1 process, 40 threads)", HEAVY_CPU),
        Spec("gil-release", f"2 requests per core, one after another vs all at once: pure-Python "
             f"/cpu?n={GIL_PYTHON_N} vs numpy /cpu/numpy?n={GIL_NUMPY_N} (int64 matmul), def handlers",
             GIL_RELEASE),
    ],
    "django-sync": [Spec("fifth-request", "5 concurrent requests (db_ms + 400 ms upstream), 4 sync workers",
                         fifth_request)],
    "node-express": [Spec("node-cpu-burst", f"{CANARY_BURST} concurrent GET /cpu?n={NODE_CPU_N} (JavaScript "
                          "on the one event loop), /healthz timed meanwhile",
                          loop_burst(f"/cpu?n={NODE_CPU_N}"))],
}


def run_for(target: str, params: dict[str, int], base_url: str, **context: object) -> list[Experiment]:
    """Every planned experiment for this target (the costly ones only with context `every`, as
    in the full run); a failing one is recorded with its error."""
    done = []
    for spec in PLAN.get(target, []):
        if spec.costly and not context.get("every", True):
            continue
        try:
            measured, error = spec.run(base_url, **context), None
        except Exception as exc:  # recorded, reported as "not run" by the claims engine
            measured, error = {}, f"{type(exc).__name__}: {exc}"[:300]
        done.append(Experiment(id=spec.id, target=target, params=params,
                               description=spec.description, measured=measured, error=error))
    return done
