"""One measured row from a request ledger: the code every `bench compare` cell and every web-UI
swarm goes through (docs/DESIGN.md, Measurement window), so the two can never disagree on how a
row is counted.

The caller says what was measured (`Measured`: the target as its manifest resolves it) and what the
samplers saw (`Resources`); the ledger holds the requests. Light imports only: the Locust image
runs this too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench import metrics
from bench.load import (
    CANARY_RATE,
    CANARY_ROW,
    POLL_ROW,
    SCENARIOS,
    SUBMIT_ROW,
    TTFT_ROW,
    LedgerRun,
    window_stats,
)
from bench.results import Cpu, Memory, ProcessMemory, Result


@dataclass(frozen=True)
class Measured:
    """What a row measures: a target (as resolved from its manifest) under one scenario and workload."""
    name: str
    framework: str
    model: str
    params: dict[str, int]
    scenario: str
    capacity: int | None = None
    db_pool: int | None = None
    anti_pattern: bool = False
    runtime: str = "native"
    # Another workload than the run's (None: the run's): stored on the row, and the one the
    # ceiling's DB bound uses.
    workload: tuple[int, int] | None = None
    jobs_endpoint: str | None = None  # the jobs scenario: "jobs" or "sync"
    processes: int | None = None  # the manifest's count, where the sampler saw none
    idle: dict[str, float] = field(default_factory=dict)  # memory at rest before the load, MiB
    warmup_s: float | None = None


@dataclass(frozen=True)
class Resources:
    """What the samplers saw while the ledger's requests ran. CPU in % of one core (machine: of all
    cores), memory in MiB (PSS natively, the container's working set under Docker)."""
    peak: dict[str, float] = field(default_factory=dict)  # rss / pss / uss
    target_cpu: float | None = None
    max_process_cpu: float | None = None  # the busiest single process of the target
    locust_cpu: float | None = None  # every Locust process together
    locust_busiest: float | None = None  # with several Locust processes: the busiest one
    locust_processes: int = 0  # Locust worker processes (0: one process, no master)
    machine_cpu: float | None = None
    processes: int = 0  # as counted by the sampler
    per_process: list[ProcessMemory] = field(default_factory=list)
    redis_mb: float | None = None


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def row_from_ledger(ledger: LedgerRun, what: Measured, users: int, res: Resources, *,
                    run_db_ms: int, l1_s: float | None = None, paced: bool = False,
                    failure_samples: list[str] | None = None) -> Result:
    """The row of one users level: the requests started in the ledger's window, drained (latency,
    n, censored), the valid answers that arrived in it (rps), W = users / rps, the canary, and the
    flags that keep a limited row from being read as a framework result.

    `l1_s` (the target's own 1-user latency) gives the ceiling; `run_db_ms` is the run's db_ms,
    which the DB pool's bound uses unless the row has a workload of its own."""
    phases = ledger.phases()
    _, row_name = SCENARIOS[what.scenario]
    row = window_stats(ledger, row_name)
    canary = window_stats(ledger, CANARY_ROW)
    first_token = window_stats(ledger, TTFT_ROW) if what.scenario == "stream" else None
    job_endpoints = what.scenario == "jobs" and what.jobs_endpoint == "jobs"
    submit = window_stats(ledger, SUBMIT_ROW) if job_endpoints else None
    # polls started in the window per job started in it (steady state: the polls a job takes)
    polls = window_stats(ledger, POLL_ROW).latency.n if job_endpoints else None
    # Paced users wait between requests: users / rps is then not the time in the system (no W).
    w_ms = None if paced else metrics.littles_w_ms(users, row.rps)
    db_ms = what.workload[0] if what.workload else run_db_ms
    pool = None if what.scenario == "cpu" else what.db_pool  # /cpu never touches the DB
    ceiling = metrics.ceiling_rps(users, what.capacity, l1_s, pool, db_ms)
    workers = res.locust_processes
    locust_limit = res.locust_busiest if workers else res.locust_cpu
    return Result(
        target=what.name, framework=what.framework, model=what.model, scenario=what.scenario,
        params=what.params, users=users, rps=round(row.rps, 2),
        db_ms=what.workload[0] if what.workload else None,
        llm_ms=what.workload[1] if what.workload else None,
        requests=row.requests, failures=row.failures, latency_ms=row.latency, littles_w_ms=w_ms,
        starved_users=row.starved, canary_p95_ms=canary.latency.p95, canary_ms=canary.latency,
        ttft_ms=first_token.latency if first_token and first_token.latency.n else None,
        submit_ms=submit.latency if submit and submit.latency.n else None,
        polls_per_job=round(polls / row.latency.n, 1) if polls is not None and row.latency.n else None,
        redis_mb=_round(res.redis_mb),
        jobs_endpoint=what.jobs_endpoint if what.scenario == "jobs" else None,
        canary_answered=canary.requests, canary_expected=round(CANARY_RATE * phases.window_s),
        phases=phases,
        memory_mb=Memory(idle_pss=_round(what.idle.get("pss")), peak_rss=_round(res.peak.get("rss")),
                         peak_pss=_round(res.peak.get("pss")), peak_uss=_round(res.peak.get("uss"))),
        processes=res.processes or what.processes or 0,
        capacity=what.capacity, db_pool=what.db_pool,
        cpu_pct=Cpu(target=_round(res.target_cpu), locust=_round(res.locust_cpu),
                    machine=_round(res.machine_cpu), locust_processes=workers or None,
                    locust_busiest=_round(res.locust_busiest) if workers else None),
        cpu_ms_per_request=(round(10 * res.target_cpu / row.rps, 2)
                            if row.rps > 0 and res.target_cpu is not None else None),
        ceiling_rps=round(ceiling, 2) if ceiling else None,
        efficiency=round(metrics.efficiency(row.rps, ceiling), 3) if ceiling else None,
        flags=metrics.flags(machine_cpu=res.machine_cpu, locust_cpu=locust_limit,
                            locust_processes=workers or 1, max_process_cpu=res.max_process_cpu,
                            failures=row.failures, requests=row.requests, answered=row.answered,
                            mean_ms=row.latency.mean, p50_ms=row.latency.p50, w_ms=w_ms,
                            users=users, starved=row.starved),
        per_process=res.per_process, anti_pattern=what.anti_pattern,
        runtime="docker" if what.runtime == "docker" else "native",
        failure_samples=failure_samples or [], warmup_s=what.warmup_s,
    )
