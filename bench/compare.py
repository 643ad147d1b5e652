"""`bench compare`: infra once, then per target: start, ready, idle memory, warm up, load, stop.

Results are written after every measured cell, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import psutil
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bench import docker, experiments, metrics, probe
from bench import infra as infra_mod
from bench.load import (
    DRAIN_MAX_S,
    SCENARIOS,
    LoadSpec,
    ledger_path,
    read_failures,
    read_ledger,
    start_locust,
)
from bench.manifest import REPO_ROOT, ResolvedTarget, Target
from bench.procs import Proc
from bench.results import (
    IdleMemory,
    ProcessMemory,
    Result,
    Run,
    Scenario,
    Spread,
    new_run,
)
from bench.row import Measured, Resources, row_from_ledger
from bench.targets import TargetUnavailable, label, running

RESULTS_DIR = REPO_ROOT / "results"
CALIBRATION = "calibration"
TARGET_SCENARIOS = [name for name in SCENARIOS if name != CALIBRATION]  # what a framework target serves
CALIBRATION_REFUSED = (
    "--scenario calibration is Locust straight at the mock upstream, not a load for framework targets "
    "(they serve no /v1/chat/completions): it runs as the `calibration` row of every compare "
    f"(--calibration, on by default); pick a target scenario: {', '.join(TARGET_SCENARIOS)}")
RUNTIMES = ("native", "docker")
STARTUP_ESTIMATE_S = 8  # start + ready + warm-up, for the progress bar's ETA only
IDLE_ESTIMATE_S = 10  # two starts (app and bare) with their idle readings, for the ETA only
PHASES_ESTIMATE_S = 4  # Locust's warm-up + drain per level when nothing queues, for the ETA only


@dataclass
class CompareOptions:
    targets: list[Target]
    users: list[int]
    duration_s: float = 20  # the measured window per users level (warm-up and drain come on top)
    db_ms: int = 50
    llm_ms: int = 500
    scenario: str = "recommendation"
    tokens: int = 16
    cpu_n: int = 100000
    sweep: dict[str, list[int]] = field(default_factory=dict)
    upstream_timeout_s: float = 30
    warmup_max_s: float | None = None  # Locust's warm-up limit (None: as long as the window, >= 5 s)
    warmup_min_s: float | None = None  # its floor (None: the locustfile's, 2 s)
    drain_max_s: float = DRAIN_MAX_S  # how long the window's requests may take to finish
    results_dir: Path = RESULTS_DIR
    calibration: bool = True  # Locust straight at the upstream: the load generator's own ceiling
    claims: bool = True  # the extra cells and experiments the claims table needs
    quick: bool = False
    # --quick leaves out the claims' costlier cells and experiments (the full run has them);
    # all_claims puts them back at quick levels (`make compare-claims`).
    all_claims: bool = False
    docker: bool = False  # targets through docker compose only, memory from `docker stats`
    # Where targets run: ("native",), ("docker",) or both, measured side by side in one run.
    runtimes: tuple[str, ...] = ()
    invocation: tuple[list[str], str | None] | None = None  # results.invocation(): argv, make target
    # Each level measured this many times in a row (a fresh start where segments() asks for one):
    # the row is the median repeat, with the spread of all (Result.spread; Run.repeats keeps each).
    repeat: int = 1
    # Locust processes per level (`locust --processes N` beyond 1); None: auto, as many as the level
    # needs (locust_plan, with_locust_room), one per core at most.
    locust_processes: int | None = 1

    def __post_init__(self) -> None:
        if self.scenario == CALIBRATION:
            raise ValueError(CALIBRATION_REFUSED)
        self.runtimes = self.runtimes or (("docker",) if self.docker else ("native",))
        if unknown := set(self.runtimes) - set(RUNTIMES):
            raise ValueError(f"unknown runtime {', '.join(sorted(unknown))}: use {' or '.join(RUNTIMES)}")
        self.docker = "docker" in self.runtimes

    @property
    def every_claim(self) -> bool:
        """Every claim's cells and experiments: the full run, or --quick --all-claims."""
        return not self.quick or self.all_claims

    def levels(self) -> list[int]:
        """Users levels, always starting at 1: the 1-user median is each target's own L1."""
        return sorted({1, *self.users})

    def combos(self) -> list[dict[str, int]]:
        """Parameter combinations of a sweep (`--set workers=4,8,16`): one target run each."""
        if not self.sweep:
            return [{}]
        keys = list(self.sweep)
        return [dict(zip(keys, values, strict=False)) for values in itertools.product(*self.sweep.values())]


def warm_up(base_url: str, db_ms: int, llm_ms: int, concurrency: int = 8, rounds: int = 2) -> float:
    """A few requests in parallel so pools, imports and connections exist before we measure."""
    started = time.monotonic()
    path = f"/recommendation/{{uid}}?db_ms={db_ms}&llm_ms={min(llm_ms, 200)}"
    with httpx.Client(base_url=base_url, timeout=60) as client:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda i: client.get(path.format(uid=1 + i)),
                          range(concurrency * rounds)))
    return time.monotonic() - started


def warm_up_jobs(base_url: str, db_ms: int, llm_ms: int, concurrency: int = 8, rounds: int = 2,
                 timeout_s: float = 60) -> float:
    """warm_up through a job target's job endpoints: jobs submitted in parallel and polled until
    done, so the workers that run them (a Celery worker still starting, a threadpool, their DB
    pools) are serving before we measure. A job that fails or never ends fails the start."""
    started = time.monotonic()
    path = f"/jobs/recommendation/{{uid}}?db_ms={db_ms}&llm_ms={min(llm_ms, 200)}"

    def one(client: httpx.Client, uid: int) -> None:
        resp = client.post(path.format(uid=uid))
        if resp.status_code != 202:
            raise RuntimeError(f"warm-up job not accepted: HTTP {resp.status_code}: {resp.text[:200]}")
        job = f"/jobs/{resp.json()['job_id']}"
        while time.monotonic() - started < timeout_s:
            status = client.get(job).json().get("status")
            if status == "done":
                return
            if status == "failed":
                raise RuntimeError(f"warm-up job failed: {client.get(job).text[:200]}")
            time.sleep(0.05)
        raise RuntimeError(f"warm-up job not done after {timeout_s:.0f} s")

    with httpx.Client(base_url=base_url, timeout=timeout_s) as client:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda i: one(client, 1 + i), range(concurrency * rounds)))
    return time.monotonic() - started


# What the job targets leave in Redis (docs/CONTRACT.md, Background jobs): Celery's queue and its
# reserved messages, its result backend and the job records. Kept in a Redis the run shares.
JOB_QUEUE_KEYS = ("celery", "unacked", "unacked_index", "unacked_mutex")
JOB_KEY_PATTERNS = ("job:*", "celery-task-meta-*")


def clear_jobs(redis_url: str) -> int:
    """Before a job target starts: the jobs a previous start left queued (its Locust users gone)
    would be done first, ahead of every job of the level measured next, and the records of its
    jobs would count in Redis's memory. The keys deleted are the job targets' own; returns how many."""
    import redis
    with redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5) as client:
        keys = [*JOB_QUEUE_KEYS, *(key for pattern in JOB_KEY_PATTERNS
                                   for key in client.scan_iter(match=pattern, count=1000))]
        return int(client.delete(*keys))


def warm_up_cell(cell: Cell, base_url: str, opts: CompareOptions) -> float:
    """The warm-up of what the cell measures: the job endpoints of a job target in the jobs
    scenario, the recommendation otherwise."""
    jobs = cell.scenario == "jobs" and cell.jobs_endpoint == "jobs"
    return (warm_up_jobs if jobs else warm_up)(base_url, opts.db_ms, opts.llm_ms)


@dataclass
class Cell:
    """One (target, params, scenario) run, measured at each of its users levels."""
    target: Target | None  # None: the calibration row (Locust straight at the upstream)
    combo: dict[str, int]
    scenario: str
    levels: list[int]
    experiments: bool = False  # run bench/experiments.py's bursts while the target is up
    cpu_n: int | None = None
    runtime: str = "native"  # or "docker": the target's compose service
    # Another workload than the run's (db_ms, llm_ms), e.g. the DB-bound one of seed 001's claims.
    workload: tuple[int, int] | None = None
    duration_s: float | None = None  # another measured window than the run's

    def options(self, opts: CompareOptions) -> CompareOptions:
        """The run's options with this cell's workload and window."""
        if self.workload is not None:
            opts = replace(opts, db_ms=self.workload[0], llm_ms=self.workload[1])
        return opts if self.duration_s is None else replace(opts, duration_s=self.duration_s)

    @property
    def jobs_endpoint(self) -> str:
        """The jobs scenario through a job target's job endpoints, or any other's GET /recommendation."""
        return "jobs" if self.target is not None and self.target.jobs else "sync"

    @property
    def capacity(self) -> int | None:
        return None if self.target is None else scenario_capacity(self.target.resolve(self.combo),
                                                                   self.scenario)

    @property
    def name(self) -> str:
        base = CALIBRATION if self.target is None else label(self.target, self.combo)
        base = base if self.scenario in ("recommendation", "calibration") else f"{base}-{self.scenario}"
        if self.workload is not None:
            base += f"-db{self.workload[0]}-llm{self.workload[1]}"
        return base if self.runtime == "native" else f"{base}@{self.runtime}"


# Extra cells for the claims table (seeds 001 and 004), added when their targets are selected.
CLAIM_USERS = 100
CLAIM_SWEEP = ("flask-sync", "workers", {True: (16,), False: (8, 16, 32)})  # quick → values
# Threads vs processes: 1 process x 40 threads vs 4 gunicorn sync workers. Not uvicorn --workers:
# an idle uvicorn worker accepts every pending connection at once, so a burst of keep-alive clients
# can all land on one worker and the other processes never see a request.
CLAIM_CPU_TARGETS = ("fastapi-threadpool", "flask-sync", "fastapi-procpool")
CLAIM_CPU_USERS = [1, os.cpu_count() or 2]  # 1 vs one request per core
CLAIM_CPU_N = 300_000  # ~15 ms of pure Python per request: long against Locust's overhead
# Seed 001's "16+ workers" and "pool_size=15" speak of DB-bound requests: judged on that workload
# too, where the connections (not the upstream wait) are what a request holds. 200 ms of query and
# no upstream call: 16 workers and a pool of 15 both cap near 80 rps, with CPU to spare.
CLAIM_DB_BOUND = (200, 0)  # (db_ms, llm_ms)
CLAIM_DB_BOUND_CELLS = {True: (("flask-sync", {"workers": 16}), ("fastapi-async", {})),  # quick
                        False: (("flask-sync", {}), ("flask-sync", {"workers": 16}),
                                ("flask-sync", {"workers": 32}), ("fastapi-async", {}))}
# Seed 004's "Workers <= CPU cores" for CPU-bound work: a workers sweep in the cpu scenario, with
# enough users to keep the most workers busy (full run only: four more cells).
CLAIM_CPU_WORKERS = ("flask-sync", "workers", (1, 2, 4, 8))
# Seed 000's job fixes: every selected job target in the jobs scenario. The synchronous answers to
# the same request (JOBS_SYNC_TARGETS) are their recommendation rows: the same requests under the
# same workload, so not measured twice. Seed 004's "best for models taking >1 second" adds
# fastapi-celery at 1 user with llm_ms 1000.
JOBS_USERS = [1, CLAIM_USERS]
JOBS_SLOW_MODEL = ("fastapi-celery", 1000)  # (target, llm_ms)
# --quick: the claims' extra cells (sweep, cpu, jobs) measure an 8 s window, not the run's: their
# rows rest on hundreds of samples even so, and the quick run stays within its 15 minutes.
QUICK_EXTRA_WINDOW_S = 8.0
# Seeds 001's "~30 MB per worker" and "~50 MB": each framework's bare hello-world beside the app,
# idle, measured the same way (bench/bare.py), so the memory claims see the framework's own cost.
CLAIM_IDLE_TARGETS = ("flask-sync", "django-sync", "fastapi-async", "go-gin")
# Seed 000's "goroutines: no special config needed": go-gin with pgx's default pool size
# (max(4, cores)) instead of the manifest's 15, measured rather than computed.
CLAIM_DEFAULT_POOL = ("go-gin", "pool_size", lambda cpus: max(4, cpus))


def plan(opts: CompareOptions) -> Iterator[Cell]:
    by_name = {t.name: t for t in opts.targets}
    if opts.calibration:
        yield Cell(None, {}, CALIBRATION, opts.levels())
    extras = opts.claims and not opts.sweep and opts.scenario == "recommendation"
    # The claims' experiments and extra cells run once: natively when the run has both runtimes.
    claims_runtime = opts.runtimes[0]
    for target in (t for t in opts.targets if t.measured_in(opts.scenario)):
        for combo in opts.combos():
            for runtime in opts.runtimes:
                yield Cell(target, combo, opts.scenario, opts.levels(), runtime=runtime,
                           experiments=extras and not combo and runtime == claims_runtime)
    if not extras:
        return
    window = QUICK_EXTRA_WINDOW_S if opts.quick else None
    name, param, values = CLAIM_SWEEP
    if name in by_name and claims_runtime == "native":  # compose runs the manifest defaults only
        default = by_name[name].params[param]
        for value in values[opts.quick]:
            if value != default:
                yield Cell(by_name[name], {param: value}, "recommendation", [1, CLAIM_USERS],
                           duration_s=window)
    for name in CLAIM_CPU_TARGETS:
        if name in by_name:
            yield Cell(by_name[name], {}, "cpu", CLAIM_CPU_USERS, cpu_n=CLAIM_CPU_N,
                       runtime=claims_runtime, duration_s=window)
    for target in opts.targets:
        if target.jobs:
            yield Cell(target, {}, "jobs", JOBS_USERS, runtime=claims_runtime, duration_s=window)
    name, llm_ms = JOBS_SLOW_MODEL
    if name in by_name and opts.llm_ms != llm_ms:
        yield Cell(by_name[name], {}, "jobs", [1], runtime=claims_runtime, duration_s=window,
                   workload=(opts.db_ms, llm_ms))
    if claims_runtime != "native":  # compose runs the manifest defaults and the run's workload only
        return
    name, param, values = CLAIM_CPU_WORKERS
    if name in by_name and not opts.quick:
        for value in values:
            yield Cell(by_name[name], {param: value}, "cpu", [1, max(values)], cpu_n=CLAIM_CPU_N)
    if not opts.every_claim:
        return
    name, param, default_pool = CLAIM_DEFAULT_POOL
    if name in by_name:
        yield Cell(by_name[name], {param: default_pool(os.cpu_count() or 1)}, "recommendation",
                   [1, CLAIM_USERS])
    for name, combo in CLAIM_DB_BOUND_CELLS[opts.quick]:
        if name in by_name and (opts.db_ms, opts.llm_ms) != CLAIM_DB_BOUND:
            yield Cell(by_name[name], combo, "recommendation", [1, CLAIM_USERS],
                       workload=CLAIM_DB_BOUND)


@dataclass(frozen=True)
class Subject:
    """What one cell measures: a target's process tree, or the upstream for calibration."""
    name: str
    framework: str
    model: str
    params: dict[str, int]
    base_url: str
    pid: int | None
    capacity: int | None
    db_pool: int | None
    anti_pattern: bool = False
    idle: dict[str, float] = field(default_factory=dict)  # memory before any load, MiB
    container: str | None = None  # --docker: memory and CPU come from `docker stats`
    processes: int | None = None
    warmup_s: float | None = None  # the warm-up after this start (None: not warmed, e.g. calibration)

    # The jobs scenario: Redis (broker, job records) is measured too, as the infra's redis-server
    # process natively, or the compose redis service's container under --docker.
    redis_pid: int | None = None
    redis_container: str | None = None

    @classmethod
    def of(cls, resolved: ResolvedTarget, scenario: str, *, pid: int | None = None,
           container: str | None = None, base_url: str | None = None,
           redis_pid: int | None = None, redis_container: str | None = None) -> Subject:
        """A running target: its process tree (pid), or its container in --docker mode."""
        idle = docker.memory_mb(container) if container else probe.memory_mb(pid)
        jobs = scenario == "jobs" and resolved.target.jobs
        return cls(resolved.name, resolved.target.framework, resolved.model, resolved.params,
                   base_url or resolved.base_url, pid, scenario_capacity(resolved, scenario),
                   resolved.db_pool, resolved.target.anti_pattern, idle, container=container,
                   processes=resolved.processes, redis_pid=redis_pid if jobs else None,
                   redis_container=redis_container if jobs else None)

    def sampler(self) -> contextlib.AbstractContextManager | None:
        """The process tree's sampler, or the container's in --docker mode (None: unmeasured)."""
        if self.container:
            return docker.StatsSampler(self.container)
        return probe.TreeSampler(self.pid) if self.pid else None

    def redis_sampler(self) -> contextlib.AbstractContextManager | None:
        """Redis's sampler in the jobs scenario: its process (PSS) or its container (working set)."""
        if self.redis_container:
            return docker.StatsSampler(self.redis_container)
        return probe.TreeSampler(self.redis_pid) if self.redis_pid else None


def scenario_capacity(resolved: ResolvedTarget, scenario: str) -> int | None:
    """What bounds the work in progress: a job target's jobs at once in the jobs scenario (its
    `job_capacity`), the requests in flight otherwise."""
    return resolved.job_capacity if scenario == "jobs" and resolved.target.jobs else resolved.capacity


def cell_db_pool(cell: Cell, subject: Subject) -> int | None:
    """The DB pool bounds the ceiling only where requests use the DB (/cpu never does)."""
    return None if cell.scenario == "cpu" else subject.db_pool


def cell_budget_s(cell: Cell, opts: CompareOptions) -> float:
    levels = repeated(cell.levels, opts.repeat)
    starts = len(segments(levels, cell.capacity))
    return (len(levels) * (opts.duration_s + PHASES_ESTIMATE_S) + starts * STARTUP_ESTIMATE_S
            + (20 if cell.experiments else 0))


def repeated(levels: list[int], repeat: int) -> list[int]:
    """Each level `repeat` times in a row: [1, 100] x 3 -> [1, 1, 1, 100, 100, 100]."""
    return [users for users in levels for _ in range(repeat)]


def median_of_repeats(results: list[Result]) -> Result:
    """The repeat with the median rps (the upper one of an even count), carrying the spread of all."""
    ranked = sorted(results, key=lambda r: r.rps)
    ws = [w for r in results if (w := r.w_ms()) is not None]
    pss = [r.memory_mb.peak_pss for r in results if r.memory_mb.peak_pss is not None]
    spread = Spread(n=len(results), rps=(ranked[0].rps, ranked[-1].rps),
                    w_ms=(min(ws), max(ws)) if ws else None, peak_pss=(min(pss), max(pss)) if pss else None)
    return ranked[len(ranked) // 2].model_copy(update={"spread": spread})


def run_compare(opts: CompareOptions, console: Console | None = None,
                run_id: str | None = None) -> Path:
    console = console or Console()
    if opts.docker and (problem := docker.engine_problem()):
        raise docker.DockerError(f"--docker needs Docker: {problem}")
    scenario = Scenario(name=opts.scenario, db_ms=opts.db_ms, llm_ms=opts.llm_ms, duration_s=opts.duration_s)
    run, run_dir = new_run(opts.results_dir, "", run_id, scenario, opts.invocation)
    raw_dir = run_dir / "raw"
    point_latest(run_dir)
    cells = list(plan(opts))
    total_s = sum(cell_budget_s(cell, opts) for cell in cells) + IDLE_ESTIMATE_S * len(idle_plan(opts))

    with contextlib.ExitStack() as stack:
        if opts.docker:  # compose runs its own postgres, redis and upstream
            stack.callback(docker.compose_down)
        infra = stack.enter_context(infra_mod.start(raw_dir)) if "native" in opts.runtimes else None
        progress = stack.enter_context(Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
            transient=False))
        task = progress.add_task("starting infra", total=total_s)
        for cell in cells:
            start_mark = progress.tasks[task].completed
            copts = cell.options(opts)
            try:
                if cell.target is None:
                    _measure_calibration(cell, copts, infra, run, run_dir, progress, task)
                elif cell.runtime == "docker":
                    _measure_docker_cell(cell, copts, run, run_dir, progress, task)
                else:
                    _measure_cell(cell, copts, infra, run, run_dir, progress, task)
            except TargetUnavailable as why:
                _not_measured(run, run_dir, cell, str(why), console, "yellow")
            except Exception as exc:  # one broken cell must not lose the rest of the run
                _not_measured(run, run_dir, cell, f"failed: {type(exc).__name__}: {exc}", console, "red")
            finally:
                progress.update(task, completed=start_mark + cell_budget_s(cell, opts))
        for name in idle_plan(opts):
            progress.update(task, description=f"{name}: idle memory, app vs bare framework")
            try:
                run.idle.append(measure_idle_pair(by_name(opts, name), infra, raw_dir))
            except Exception as exc:  # context rows: a failure is recorded, never fatal
                _not_measured(run, run_dir, Cell(by_name(opts, name), {}, "idle", []),
                              f"failed: {type(exc).__name__}: {exc}", console, "red")
            run.save(run_dir)
        progress.update(task, completed=total_s, description="done")
    return run_dir


def idle_plan(opts: CompareOptions) -> list[str]:
    """The targets whose idle memory is read beside their bare variant's (native runs, with claims)."""
    if not (opts.claims and opts.every_claim and "native" in opts.runtimes and not opts.sweep):
        return []
    chosen = {t.name for t in opts.targets}
    return [name for name in CLAIM_IDLE_TARGETS if name in chosen]


def by_name(opts: CompareOptions, name: str) -> Target:
    return next(t for t in opts.targets if t.name == name)


def measure_idle_pair(target: Target, infra: infra_mod.Infra, raw_dir: Path) -> IdleMemory:
    from bench import bare
    variant = bare.bare_variant(target)
    if variant is None:
        raise RuntimeError(f"{target.name} has no bare variant")
    return IdleMemory(target=target.name, bare=variant.name,
                      app=bare.measure_idle(target, infra, raw_dir),
                      framework=bare.measure_idle(variant, infra, raw_dir))


def _not_measured(run: Run, run_dir: Path, cell: Cell, why: str, console: Console, color: str) -> None:
    first = why.strip().splitlines()[0] if why.strip() else why
    console.print(f"[{color}]{cell.name} not measured: {first}[/]")
    (run_dir / "raw" / f"{cell.name}.error.txt").write_text(why)
    run.skipped[cell.name] = first
    run.save(run_dir)


def point_latest(run_dir: Path) -> None:
    latest = run_dir.parent / "latest"
    tmp = run_dir.parent / ".latest-tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, latest)


def segments(levels: list[int], capacity: int | None) -> list[list[int]]:
    """Users levels grouped by target start: a fresh start follows every level that queued more
    requests than the model serves at once. Those requests (their Locust clients are gone) stay
    in the server's accept queue or event loop and would eat into the next level's time."""
    groups: list[list[int]] = [[]]
    for users in levels:
        if groups[-1] and capacity is not None and groups[-1][-1] > capacity:
            groups.append([])
        groups[-1].append(users)
    return groups


Started = Callable[[], contextlib.AbstractContextManager[tuple[Subject, Callable[[], bool]]]]


def _measure_levels(cell: Cell, start: Started, capacity: int | None, opts: CompareOptions, run: Run,
                    run_dir: Path, progress: Progress, task,
                    finally_up: Callable[[Subject], None] | None = None) -> None:
    """Each users level in turn; L1 (the 1-user median) sets the ceiling of the levels after it.

    `start()` brings the subject up (and warm); `finally_up` runs while the last start is still up.
    """
    l1_s = None
    groups = segments(repeated(cell.levels, opts.repeat), capacity)
    done: dict[int, list[Result]] = defaultdict(list)  # users -> its repeats so far
    previous: Result | None = None  # the level measured last: its Locust CPU plans the next one's
    cpus = os.cpu_count() or 1
    for n, group in enumerate(groups, 1):
        with start() as (subject, alive):
            for users in group:
                i = len(done[users])
                progress.update(task, description=f"{cell.name} @ {users} users"
                                + (f" ({i + 1}/{opts.repeat})" if opts.repeat > 1 else ""))
                prefix = run_dir / "raw" / (f"{cell.name}_u{users}" + (f"_r{i}" if opts.repeat > 1 else ""))

                def once(processes: int, users=users, prefix=prefix, subject=subject, l1_s=l1_s) -> Result:
                    return measure_level(subject, cell, users, opts, prefix, l1_s, progress, task,
                                         processes=processes)

                planned = locust_plan(opts.locust_processes, previous, users, cpus)
                result = once(planned) if opts.locust_processes else with_locust_room(once, planned, cpus)
                previous = result
                if users == 1 and result.latency_ms.p50:
                    ceiling = metrics.ceiling_rps(1, subject.capacity, result.latency_ms.p50 / 1000,
                                                  cell_db_pool(cell, subject), opts.db_ms)
                    result.ceiling_rps = round(ceiling, 2)
                    result.efficiency = round(metrics.efficiency(result.rps, ceiling), 3)
                done[users].append(result)
                if opts.repeat > 1:
                    run.repeats.append(result.model_copy(update={"repeat": i}))
                if len(done[users]) == opts.repeat:
                    row = done[users][0] if opts.repeat == 1 else median_of_repeats(done[users])
                    if users == 1 and row.latency_ms.p50:  # L1: the 1-user median (of the repeats')
                        l1_s = row.latency_ms.p50 / 1000
                    run.results.append(row)
                run.save(run_dir)
                if not alive():
                    raise RuntimeError(f"{cell.name} died during the run")
            if n == len(groups) and finally_up:
                finally_up(subject)


def calibration_subject(url: str, upstream: Proc | None, *, idle: bool = True) -> Subject:
    """Locust straight at the mock upstream (`upstream`, its process when it is ours): the load
    generator's ceiling on this machine. `idle`: read the upstream's memory at rest first."""
    return Subject(CALIBRATION, "locust", "Locust straight at the mock upstream (latency db_ms + llm_ms, "
                   "no framework): the load generator's ceiling", {}, url, upstream.pid if upstream else None,
                   None, None, idle=probe.memory_mb(upstream.pid) if upstream and idle else {})


def _measure_calibration(cell: Cell, opts: CompareOptions, infra: infra_mod.Infra | None, run: Run,
                         run_dir: Path, progress: Progress, task) -> None:
    """Locust straight at the upstream: what this machine's load generator can reach.

    It measures the machine, not a container, so in --docker mode it uses a native upstream too.
    """

    @contextlib.contextmanager
    def start():
        with contextlib.ExitStack() as stack:
            if infra is None:
                url, upstream = stack.enter_context(infra_mod.upstream(run_dir / "raw"))
            else:
                url = infra.upstream_url
                upstream = next((p for p in infra.procs if p.name == "upstream"), None)
            yield calibration_subject(url, upstream), lambda: upstream is None or upstream.alive()

    _measure_levels(cell, start, None, opts, run, run_dir, progress, task)


def _measure_docker_cell(cell: Cell, opts: CompareOptions, run: Run, run_dir: Path,
                         progress: Progress, task) -> None:
    """One target through compose at its manifest defaults; memory is the cgroup working set."""
    resolved = cell.target.resolve()

    @contextlib.contextmanager
    def start():
        progress.update(task, description=f"{cell.name}: docker compose up")
        jobs = cell.scenario == "jobs" and resolved.target.jobs
        if jobs:  # compose's redis outlives the targets: a previous start's queue is still in it
            with contextlib.suppress(docker.DockerError):
                clear_jobs(docker.published_url("redis", 6379, "redis") + "/0")
        with docker.running(cell.target) as (base_url, container):
            # compose's redis service is up (a job target depends on it): its container is measured
            redis = docker.container_for("redis") if jobs else None
            subject = Subject.of(resolved, cell.scenario, container=container, base_url=base_url,
                                 redis_container=redis)
            progress.update(task, description=f"{cell.name}: warming up")
            warmup_s = warm_up_cell(cell, base_url, opts)
            yield replace(subject, warmup_s=round(warmup_s, 2)), lambda: True

    def run_experiments(subject: Subject) -> None:
        progress.update(task, description=f"{cell.name}: experiments")
        # Seed 003's pub/sub messages are published from here, to compose's Redis on its host port.
        redis_url = docker.published_url("redis", 6379, "redis") + "/0"
        run.experiments.extend(experiments.run_for(resolved.name, resolved.params, subject.base_url,
                                                   db_ms=opts.db_ms, redis_url=redis_url,
                                                   quick=opts.quick, every=opts.every_claim))
        run.save(run_dir)

    _measure_levels(cell, start, cell.capacity, opts, run, run_dir, progress, task,
                    finally_up=run_experiments if cell.experiments else None)


def _measure_cell(cell: Cell, opts: CompareOptions, infra: infra_mod.Infra, run: Run,
                  run_dir: Path, progress: Progress, task) -> None:
    raw_dir = run_dir / "raw"

    @contextlib.contextmanager
    def start():
        progress.update(task, description=f"{cell.name}: building/starting")
        if cell.scenario == "jobs" and cell.target.jobs and infra.redis_url:
            clear_jobs(infra.redis_url)  # the run's Redis outlives the targets
        with running(cell.target, infra, raw_dir, overrides=cell.combo, db_ms=opts.db_ms,
                     llm_ms=opts.llm_ms, upstream_timeout_s=opts.upstream_timeout_s) as (resolved, proc):
            time.sleep(1.0)  # let the workers settle before the idle reading
            redis = next((p for p in infra.procs if p.name == "redis"), None)
            subject = Subject.of(resolved, cell.scenario, pid=proc.pid,
                                 redis_pid=redis.pid if redis else None)
            progress.update(task, description=f"{cell.name}: warming up")
            warmup_s = warm_up_cell(cell, resolved.base_url, opts)
            yield replace(subject, warmup_s=round(warmup_s, 2)), proc.alive
            if not proc.alive():
                raise RuntimeError(f"{cell.name} died during the run:\n{proc.log_tail()}")

    def run_experiments(subject: Subject) -> None:
        progress.update(task, description=f"{cell.name}: experiments")
        run.experiments.extend(experiments.run_for(
            subject.name, subject.params, subject.base_url, db_ms=opts.db_ms,
            redis_url=getattr(infra, "redis_url", None), quick=opts.quick, every=opts.every_claim))
        run.save(run_dir)

    _measure_levels(cell, start, cell.capacity, opts, run, run_dir, progress, task,
                    finally_up=run_experiments if cell.experiments else None)


def locust_plan(fixed: int | None, previous: Result | None, users: int, cpus: int) -> int:
    """Locust processes for a level: `fixed` (--locust-processes N), or auto (None): as many as the
    level measured before it used, and more only where its Locust CPU x the users ratio (a closed
    loop's requests per second grow with its users at most in proportion) passes
    metrics.LOCUST_PREDICT_PCT; a search going down plans from that line alone; 1 without a level
    before. Not from L1: at one user Locust's CPU is mostly its own start-up."""
    if fixed is not None:
        return fixed
    if previous is None or previous.users <= 1 or previous.arrival_rps:
        return 1
    scale, cpu = users / previous.users, previous.cpu_pct.locust or 0.0
    have = previous.cpu_pct.locust_processes or 1
    if scale >= 1 and cpu * scale <= metrics.LOCUST_PREDICT_PCT:
        return have
    needed = metrics.locust_processes(cpu, scale, cpus)
    return needed if scale < 1 else max(have, needed)


def locust_bound(r: Result) -> bool:
    return any(f.startswith("locust-bound") for f in r.flags)


def with_locust_room(measure: Callable[[int], Result], processes: int, cpus: int,
                     saturated: Callable[[Result], bool] = locust_bound) -> Result:
    """A level measured with `processes` Locust processes, and once more with as many as its CPU says
    it needs when the load generator saturated after all (the second row stands; both leave raw files)."""
    r = measure(processes)
    more = metrics.locust_processes(r.cpu_pct.locust, 1.0, cpus)
    return measure(more) if more > processes and saturated(r) else r


def measure_level(subject: Subject, cell: Cell, users: int, opts: CompareOptions, csv_prefix: Path,
                  l1_s: float | None, progress: Progress, task, pace_rps: float = 0.0,
                  processes: int = 1, on_tick: Callable[[], None] | None = None) -> Result:
    """One users level: a closed loop, or with `pace_rps` each user paced (bench capacity's open model);
    with `processes` > 1 from that many Locust workers (raw files `<prefix>_p<N>_*`). `on_tick` is
    called every 0.25 s while Locust runs (bench profile watches for the window)."""
    spec = LoadSpec(host=subject.base_url, users=users, duration_s=opts.duration_s,
                    scenario=cell.scenario, db_ms=opts.db_ms, llm_ms=opts.llm_ms,
                    tokens=opts.tokens, cpu_n=cell.cpu_n or opts.cpu_n, jobs_endpoint=cell.jobs_endpoint,
                    warmup_max_s=opts.warmup_max_s, warmup_min_s=opts.warmup_min_s,
                    drain_max_s=opts.drain_max_s, pace_rps=pace_rps,
                    processes=processes)
    if processes > 1:
        csv_prefix = csv_prefix.with_name(f"{csv_prefix.name}_p{processes}")
    psutil.cpu_percent()  # resets the machine-wide counter
    base = progress.tasks[task].completed
    locust = start_locust(spec, csv_prefix)
    try:
        with contextlib.ExitStack() as stack:
            sampler = subject.sampler()
            target_s = stack.enter_context(sampler) if sampler else None
            locust_s = stack.enter_context(probe.TreeSampler(locust.pid, memory=False))
            redis = subject.redis_sampler()
            redis_s = stack.enter_context(redis) if redis else None
            deadline = time.monotonic() + spec.longest_s + 60
            t0 = time.monotonic()
            while locust.alive():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"locust did not finish:\n{locust.log_tail()}")
                progress.update(task, completed=base + min(time.monotonic() - t0,
                                                           opts.duration_s + PHASES_ESTIMATE_S))
                if on_tick is not None:
                    on_tick()
                time.sleep(0.25)
        machine_cpu = psutil.cpu_percent()
    finally:
        locust.stop()
    result = level_result(subject, cell, users, opts, csv_prefix, l1_s, target_s, locust_s, machine_cpu,
                          redis_s=redis_s, paced=pace_rps > 0)
    return result.model_copy(update={"arrival_rps": round(pace_rps * users, 2)}) if pace_rps > 0 else result


def level_result(subject: Subject, cell: Cell, users: int, opts: CompareOptions, csv_prefix: Path,
                 l1_s: float | None, target_s, locust_s, machine_cpu: float, redis_s=None,
                 paced: bool = False) -> Result:
    """A level's row from Locust's ledger (requests started in the window, drained) and the samplers
    (the target's, Locust's, and in the jobs scenario Redis's), through bench.row: the web UI's rows
    are counted by the same code.

    Target and Locust CPU are rates over the whole Locust run (warm-up and drain included: the load
    is the same throughout), so CPU per request is that rate divided by the window's throughput.
    Locust's limit is its busiest process's (one of N workers with --processes, the master beside them).
    """
    path = ledger_path(csv_prefix)
    log = csv_prefix.with_suffix(".log")
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else ""
    if not path.exists():
        raise RuntimeError(f"Locust wrote no request ledger:\n{tail}")
    try:
        ledger = read_ledger(path)
        ledger.phases()
    except ValueError as exc:
        raise RuntimeError(f"{exc}:\n{tail}") from None
    workers = ledger.marks.get("start", {}).get("workers", 0)
    what = Measured(name=subject.name, framework=subject.framework, model=subject.model,
                    params=subject.params, scenario=cell.scenario, capacity=subject.capacity,
                    db_pool=subject.db_pool, anti_pattern=subject.anti_pattern,
                    runtime="docker" if subject.container else "native", workload=cell.workload,
                    jobs_endpoint=cell.jobs_endpoint if cell.scenario == "jobs" else None,
                    processes=subject.processes, idle=subject.idle, warmup_s=subject.warmup_s)
    res = Resources(
        peak=target_s.peak if target_s else {}, target_cpu=target_s.cpu_pct() if target_s else None,
        max_process_cpu=target_s.max_process_cpu_pct() if target_s else None,
        locust_cpu=locust_s.cpu_pct(), locust_busiest=locust_s.max_process_cpu_pct() if workers else None,
        locust_processes=workers, machine_cpu=machine_cpu,
        processes=len(target_s.procs) if target_s else 0,
        per_process=[ProcessMemory(pid=p, role=s.role, peak_rss=round(s.peak_rss, 1),
                                   peak_pss=round(s.peak_pss, 1), peak_uss=round(s.peak_uss, 1),
                                   threads=s.peak_threads or None,
                                   cpu_pct=round(100 * (s.last_cpu - s.first_cpu) / target_s.elapsed, 1))
                     for p, s in (target_s.procs.items() if target_s else ())],
        redis_mb=redis_s.peak.get("pss") if redis_s is not None else None)
    return row_from_ledger(ledger, what, users, res, run_db_ms=opts.db_ms, l1_s=l1_s, paced=paced,
                           failure_samples=read_failures(csv_prefix))
