"""Idle memory of a target and of its bare variant, by one procedure: the framework's cost vs the app's.

A bare variant (`bare_of` in targets.toml; docs/DESIGN.md) is a framework's hello-world under the
same server and model settings as a benchmark target. Measuring both the same way separates what the
framework costs from what the app adds (the openai SDK, SQLAlchemy, pydantic-settings, redis, ...).

    measure_idle(target, infra, log_dir) -> dict      # start, settle, hit /healthz, read, stop
    idle_memory(pid) -> dict                          # just the reading, of a tree already running
    bare_variant(target) -> Target | None             # flask-sync -> flask-bare, ...

Both return the same plain dict (MiB; `processes` and `workers` are counts):

    {"processes": 5, "workers": 4,                    # processes in the tree; workers among them
     "pss": 98.1, "uss": 80.2, "rss": 160.3,          # the whole tree, summed
     "worker_pss": 21.0, "worker_uss": 17.9, "worker_rss": 37.5}   # median over the workers

Workers: the root's direct children when it has any (gunicorn and `uvicorn --workers` masters;
multiprocessing's resource tracker is not a worker), else the root itself (uvicorn with one process,
Go). The reading hits /healthz `hits` times first, on fresh connections, so the code a request
imports lazily is loaded in the workers that serve them (gunicorn spreads them as it accepts).
`bench compare`'s idle reading (probe.memory_mb one second after /readyz, no requests) reads the
same tree total but skips the hits; measure_idle is what bare and full rows should both come from.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import httpx
import psutil

from bench import manifest
from bench.infra import Infra
from bench.manifest import Target
from bench.probe import MB, tree
from bench.targets import running

SETTLE_S = 1.0
HITS = 20
KEYS = ("processes", "workers", "pss", "uss", "rss", "worker_pss", "worker_uss", "worker_rss")


def bare_variant(target: Target) -> Target | None:
    """The bare variant whose `bare_of` names this target (flask-sync -> flask-bare), if any."""
    return next((t for t in manifest.bare_targets().values() if t.bare_of == target.name), None)


def _is_worker(proc: psutil.Process) -> bool:
    try:
        return not any("resource_tracker" in part for part in proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def summarize(readings: list[tuple[bool, dict[str, float]]]) -> dict[str, float | int]:
    """The dict above from per-process readings (is_worker, {"pss", "uss", "rss"} in MiB)."""
    out: dict[str, float | int] = {"processes": len(readings)}
    workers = [r for is_worker, r in readings if is_worker]
    out["workers"] = len(workers)
    for key in ("pss", "uss", "rss"):
        out[key] = round(sum(r[key] for _, r in readings), 1)
    for key in ("pss", "uss", "rss"):
        out[f"worker_{key}"] = round(statistics.median(r[key] for r in workers), 1) if workers else 0.0
    return out


def idle_memory(pid: int) -> dict[str, float | int]:
    """Memory of the process tree rooted at `pid` right now, split into workers (see above)."""
    procs = tree(pid)
    children = {p.pid for p in procs[1:] if _ppid(p) == pid and _is_worker(p)}
    readings = []
    for proc in procs:
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        is_worker = proc.pid in children if children else proc.pid == pid
        readings.append((is_worker, {"pss": info.pss / MB, "uss": info.uss / MB, "rss": info.rss / MB}))
    return summarize(readings)


def _ppid(proc: psutil.Process) -> int | None:
    try:
        return proc.ppid()
    except psutil.NoSuchProcess:
        return None


def measure_idle(target: Target, infra: Infra, log_dir: Path, *, settle_s: float = SETTLE_S,
                 hits: int = HITS, overrides: dict[str, int] | None = None) -> dict[str, float | int]:
    """Start `target` (bare or full) with `running`, wait until /readyz answers, let it settle
    `settle_s`, GET /healthz `hits` times (each must be 200), read `idle_memory`, stop it.

    Raises bench.targets.TargetUnavailable when the target cannot run here (no Go toolchain).
    """
    with running(target, infra, log_dir, overrides=overrides) as (resolved, proc):
        time.sleep(settle_s)
        for _ in range(hits):
            # A new client per hit: a fresh connection, which a gunicorn sync worker closes anyway.
            with httpx.Client(base_url=resolved.base_url, timeout=10) as client:
                resp = client.get("/healthz")
            if resp.status_code != 200:
                raise RuntimeError(f"{target.name}: GET /healthz -> {resp.status_code}: {resp.text[:200]}")
        time.sleep(0.2)  # let the last worker go idle again
        if not proc.alive():
            raise RuntimeError(f"{target.name} exited:\n{proc.log_tail()}")
        return idle_memory(proc.pid)
