"""Model ceiling, efficiency and trust flags (docs/DESIGN.md, Ceilings): pure arithmetic, unit-tested."""

from __future__ import annotations

import math

MACHINE_CPU_LIMIT = 90.0   # % of all cores
LOCUST_CPU_LIMIT = 80.0    # % of one core (one Locust process)
# Locust processes for a load: one per this share of a core (locust_processes), below the limit
# as gevent's loop is late before it is full (the calibration at 1,600 users, 5/500 ms: one process
# at 78 % of a core, 0.82 of Little's law).
LOCUST_PLAN_PCT = 70.0
# A level gets more Locust processes than the level below it used only where that level's Locust CPU
# x the users ratio predicts past this (one process that saturates anyway is measured again with
# more, compare.with_locust_room). The straight line over-predicts (start-up CPU; a loop serves more
# answers per wake-up as the load grows), and a second process is no gain where latency is short: two
# gevent loops and the upstream then share 2 cores (docs/DESIGN.md, Measurement window).
LOCUST_PREDICT_PCT = 150.0
PROCESS_CPU_LIMIT = 90.0   # % of one core for any single target process
FAILURE_LIMIT = 0.01       # share of requests
CENSOR_LIMIT = 0.15        # mean latency vs Little's law W, relative to W
# The calibration (Locust straight at the upstream, no framework) at every level `bench capacity`
# climbs: rps at least this share of users / L1, Little's law for a closed loop with no think time.
CALIBRATION_MIN = 0.95
# Memory is read in MiB (2^20 bytes, bench/probe.py); a claim in MB (10^6 bytes) is this many MiB.
MIB_PER_MB = 1e6 / 2**20


def ceiling_rps(users: int, capacity: int | None, l1_s: float | None, db_pool: int | None,
                db_ms: int) -> float | None:
    """What the model allows: min(users, capacity) / L1, or db_pool / db_ms where that is lower.

    L1 is the target's own median latency at 1 user, measured in the same run.
    """
    if not l1_s or l1_s <= 0:
        return None
    in_flight = users if capacity is None else min(users, capacity)
    ceiling = in_flight / l1_s
    if db_ms > 0 and db_pool:
        ceiling = min(ceiling, db_pool / (db_ms / 1000.0))
    return ceiling


def locust_processes(cpu_pct: float | None, scale: float, cpus: int) -> int:
    """Locust processes for a load `scale` x that of a measured level where Locust used `cpu_pct`
    (% of one core, all its processes): enough that each is predicted under LOCUST_PLAN_PCT, one
    per core at most; 1 where one process is enough (or nothing was measured)."""
    if not cpu_pct or scale <= 0:
        return 1
    return max(1, min(cpus, math.ceil(cpu_pct * scale / LOCUST_PLAN_PCT)))


def efficiency(rps: float, ceiling: float | None) -> float | None:
    return rps / ceiling if ceiling else None


def littles_w_ms(users: int, rps: float) -> float | None:
    """W = users / rps (Little's law), in ms: in a closed loop with no think time every user has
    exactly one request in the system, so this is the mean time a request spends there, queue
    included. None when nothing was served."""
    return round(1000 * users / rps, 1) if rps > 0 and users > 0 else None


def in_flight(rps: float, mean_ms: float | None, w_ms: float | None = None) -> float:
    """Requests in the system on average: Little's L = rps x the mean time each spends there (the
    mean latency, or W where there is none)."""
    return rps * (mean_ms or w_ms or 0) / 1000


def mb_per_in_flight(peak: float | None, idle: float | None, rps: float, mean_ms: float | None,
                     w_ms: float | None = None) -> float | None:
    """What one request in flight costs in memory: the growth from idle to the peak under load over
    the requests in the system (Little's L). None without an idle reading or below one request."""
    load = in_flight(rps, mean_ms, w_ms)
    if peak is None or not idle or load < 1:
        return None
    return (peak - idle) / load


def latency_censored(mean_ms: float | None, w_ms: float | None, p50_ms: float | None = None
                     ) -> float | None:
    """How far the measured mean latency (or p50) is from W, relative to W, when either is over
    CENSOR_LIMIT (else None).

    A mean well below W means the latencies missed the long waits: requests still queued when the
    measurement stopped, or users an unfair queue starved through the whole window (they start no
    request there), or the load generator spent much of each cycle outside the request. A p50 far
    from W with an honest mean is a skewed distribution, which the row's p50 alone would misstate.
    """
    if not w_ms:
        return None
    gaps = [abs(v - w_ms) / w_ms for v in (mean_ms, p50_ms) if v is not None]
    gap = max(gaps, default=0.0)
    return gap if gap > CENSOR_LIMIT else None


def flags(*, machine_cpu: float | None, locust_cpu: float | None,
          max_process_cpu: float | None, failures: int, requests: int,
          mean_ms: float | None = None, w_ms: float | None = None, answered: int = 0,
          p50_ms: float | None = None, users: int | None = None, starved: int = 0,
          locust_processes: int = 1) -> list[str]:
    """Why a result must not be read as a framework result (empty = trustworthy).

    `locust_cpu` is the busiest Locust process's (one of `locust_processes` workers, with
    --processes). `requests` and `failures` are the requests started in the window that finished;
    `answered` the valid answers that arrived in it (a request started before the window counts there).
    """
    out = []
    if machine_cpu is not None and machine_cpu >= MACHINE_CPU_LIMIT:
        out.append(f"machine-cpu-bound ({machine_cpu:.0f}% of all cores)")
    if locust_cpu is not None and locust_cpu >= LOCUST_CPU_LIMIT:
        many = f", the busiest of {locust_processes} Locust processes" if locust_processes > 1 else ""
        out.append(f"locust-bound ({locust_cpu:.0f}% of a core{many})")
    if max_process_cpu is not None and max_process_cpu >= PROCESS_CPU_LIMIT:
        out.append(f"target-process-cpu-bound ({max_process_cpu:.0f}% of a core)")
    # Locust's request count includes the failed requests.
    if requests and failures / requests > FAILURE_LIMIT:
        out.append(f"failures {100 * failures / requests:.1f}%")
    elif requests == 0 and not answered:
        out.append("no requests completed")
    if latency_censored(mean_ms, w_ms, p50_ms) is not None:
        measured = ", ".join(f"{k} {v:.0f} ms" for k, v in (("mean", mean_ms), ("p50", p50_ms))
                             if v is not None)
        starving = (f"; {starved} of {users} users got no answer in the whole window"
                    if starved and users else "")
        out.append(f"latency-censored ({measured} vs W = users / rps {w_ms:.0f} ms{starving})")
    elif mean_ms is None and starved and users:  # nothing started in the window to measure at all
        out.append(f"latency-censored (no request started in the window: {starved} of {users} users "
                   "got no answer in the whole window)")
    return out
