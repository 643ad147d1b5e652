"""Seed 002's demo endpoints (async_vs_sync_demo.py), at its exact paths, on every FastAPI target.

Each takes `?seconds=` (default 0.1, 0..5) and answers with how long it took, so seed 004's
experiment log can be re-run as written: fire 10 concurrent requests at each and compare totals
(async + time.sleep ~1.1 s, async + asyncio.sleep ~0.1 s, def + time.sleep ~0.12 s).

Three more, for the seeds' CPU statements (bench/experiments.py times them with a /healthz canary):
/sync/cpu (small CPU work in a `def` handler: the threadpool), /async/cpu-inline (the same work
inside `async def`: on the loop) and /cpu/numpy (a numpy matmul in a `def` handler: compiled code
that releases the GIL, the shape of ML inference).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from fastapi_app.common import ApiError, parse_int

router = APIRouter()

_SECONDS = re.compile(r"[0-9]{1,3}(\.[0-9]{1,6})?")


def parse_seconds(raw: str | None) -> float:
    if raw is None:
        return 0.1
    if not _SECONDS.fullmatch(raw) or float(raw) > 5:
        raise ApiError(400, "invalid_parameter", "seconds must be a number in 0..5")
    return float(raw)


def result(endpoint: str, pattern: str, seconds: float, started: float, **extra: Any) -> dict:
    return {"endpoint": endpoint, "pattern": pattern, "seconds": seconds, **extra,
            "elapsed_s": round(time.perf_counter() - started, 4)}


@router.get("/sync/noawait")
def sync_noawait(seconds: str | None = None) -> dict:
    # `def`: FastAPI runs it in the AnyIO threadpool, so the blocking sleep holds a thread only.
    s, t0 = parse_seconds(seconds), time.perf_counter()
    time.sleep(s)
    return result("/sync/noawait", "def + time.sleep (threadpool)", s, t0)


@router.get("/async/await-one")
async def await_one(seconds: str | None = None) -> dict:
    s, t0 = parse_seconds(seconds), time.perf_counter()
    await asyncio.sleep(s)  # yields to the event loop while waiting
    return result("/async/await-one", "async def + await asyncio.sleep", s, t0)


@router.get("/async/await-many")
async def await_many(seconds: str | None = None) -> dict:
    s, t0 = parse_seconds(seconds), time.perf_counter()
    durations = [round(s * k, 6) for k in (1.0, 1.5, 0.5)]  # seed 002's 1.0 / 1.5 / 0.5 pattern, scaled
    await asyncio.gather(*(asyncio.sleep(d) for d in durations))
    # Concurrent awaits: elapsed ~ max(durations), not their sum.
    return result("/async/await-many", "asyncio.gather of several sleeps", s, t0,
                  durations=durations, max_s=max(durations), sum_s=round(sum(durations), 6))


@router.get("/async/wrap-blocking")
async def wrap_blocking(seconds: str | None = None) -> dict:
    s, t0 = parse_seconds(seconds), time.perf_counter()
    await run_in_threadpool(time.sleep, s)  # blocking call moved off the loop onto a thread
    return result("/async/wrap-blocking", "async def + run_in_threadpool(time.sleep)", s, t0)


@router.get("/async/bad-blocking")
async def bad_blocking(seconds: str | None = None) -> dict:
    s, t0 = parse_seconds(seconds), time.perf_counter()
    # ANTI-PATTERN, on purpose: time.sleep inside `async def` freezes the whole event loop, so
    # concurrent requests (and /healthz) are served one after another.
    time.sleep(s)  # noqa: ASYNC251
    return result("/async/bad-blocking", "async def + time.sleep (blocks the event loop)", s, t0)


def _burn(seconds: float) -> int:
    """Pure-Python CPU work until this thread has used `seconds` of CPU (holds the GIL).

    Measured in thread CPU time, not wall time, so N concurrent calls cost N x seconds of CPU and
    the one GIL shows: they take turns instead of overlapping.
    """
    deadline, i, acc = time.thread_time() + seconds, 0, 0
    while time.thread_time() < deadline:
        for _ in range(1000):
            acc += math.isqrt(i)
            i += 1
    return i


@router.get("/async/cpu-bound")
async def cpu_bound(seconds: str | None = None) -> dict:
    s, t0 = parse_seconds(seconds), time.perf_counter()
    # Offloaded so the loop keeps serving; threads still share one GIL, so heavy CPU work wants
    # processes (uvicorn --workers, a process pool) for real parallelism.
    iterations = await run_in_threadpool(_burn, s)
    return result("/async/cpu-bound", "CPU work in run_in_threadpool", s, t0,
                  iterations=iterations)


@router.get("/sync/cpu")
def sync_cpu(seconds: str | None = None) -> dict:
    # `def`: the CPU work runs on a threadpool thread; the loop keeps its turns at the GIL, so
    # /healthz still answers (seed 002: "For small CPU tasks, offload to a threadpool").
    s, t0 = parse_seconds(seconds), time.perf_counter()
    iterations = _burn(s)
    return result("/sync/cpu", "def + pure-Python CPU work (threadpool)", s, t0, iterations=iterations)


@router.get("/async/cpu-inline")
async def cpu_inline(seconds: str | None = None) -> dict:
    s, t0 = parse_seconds(seconds), time.perf_counter()
    # ANTI-PATTERN, on purpose: CPU work inside `async def` never awaits, so it holds the event
    # loop for its whole duration and every other request (and /healthz) waits behind it.
    iterations = _burn(s)
    return result("/async/cpu-inline", "async def + pure-Python CPU work (on the loop)", s, t0,
                  iterations=iterations)


NUMPY_N_DEFAULT, NUMPY_N_MAX = 300, 1000


def matmul(n: int) -> int:
    """An n x n int64 matrix product, summed. numpy's own C loop (integer types never go to BLAS,
    so no BLAS thread pool of its own) runs with the GIL released: concurrent calls on threads can
    use every core, unlike pure-Python work. Imported here, not at module load: numpy costs memory,
    and only this endpoint needs it."""
    import numpy as np

    a = (np.arange(n * n, dtype=np.int64) % 7).reshape(n, n)
    return int((a @ a).sum())


@router.get("/cpu/numpy")
def cpu_numpy(n: str | None = None) -> dict:
    value = parse_int("n", n, 1, NUMPY_N_MAX, NUMPY_N_DEFAULT)
    return {"n": value, "result": matmul(value)}
