"""`bench compare`: infra once, then per target: start, ready, idle memory, warm up, load, stop.

Results are written after every measured cell, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bench import infra as infra_mod
from bench import metrics, probe
from bench.load import CANARY_RATE, CANARY_ROW, SCENARIOS, LoadSpec, read_failures, read_stats, start_locust
from bench.manifest import REPO_ROOT, ResolvedTarget, Target
from bench.results import Cpu, Latency, Machine, Memory, ProcessMemory, Result, Run, Scenario
from bench.targets import TargetUnavailable, label, running

RESULTS_DIR = REPO_ROOT / "results"
STARTUP_ESTIMATE_S = 8  # start + ready + warm-up, for the progress bar's ETA only


@dataclass
class CompareOptions:
    targets: list[Target]
    users: list[int]
    duration_s: float = 20
    db_ms: int = 50
    llm_ms: int = 500
    scenario: str = "recommendation"
    tokens: int = 16
    cpu_n: int = 100000
    sweep: dict[str, list[int]] = field(default_factory=dict)
    upstream_timeout_s: float = 30
    results_dir: Path = RESULTS_DIR

    def levels(self) -> list[int]:
        """Users levels, always starting at 1: the 1-user median is each target's own L1."""
        return sorted({1, *self.users})

    def combos(self) -> list[dict[str, int]]:
        """Parameter combinations of a sweep (`--set workers=4,8,16`): one target run each."""
        if not self.sweep:
            return [{}]
        keys = list(self.sweep)
        return [dict(zip(keys, values, strict=False)) for values in itertools.product(*self.sweep.values())]


def machine_info() -> Machine:
    go = shutil.which("go")
    go_version = None
    if go:
        out = subprocess.run([go, "version"], capture_output=True, text=True, check=False)
        go_version = out.stdout.split()[2] if out.returncode == 0 else None
    return Machine(cpus=os.cpu_count() or 1, mem_gb=round(psutil.virtual_memory().total / 1e9, 1),
                   python=platform.python_version(), go=go_version)


def git_rev() -> str | None:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or None


def warm_up(base_url: str, opts: CompareOptions, concurrency: int = 8, rounds: int = 2) -> float:
    """A few requests in parallel so pools, imports and connections exist before we measure."""
    started = time.monotonic()
    path = f"/recommendation/{{uid}}?db_ms={opts.db_ms}&llm_ms={min(opts.llm_ms, 200)}"
    with httpx.Client(base_url=base_url, timeout=60) as client:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda i: client.get(path.format(uid=1 + i)),
                          range(concurrency * rounds)))
    return time.monotonic() - started


@dataclass
class Cell:
    """One (target, params) run to measure at every users level."""
    target: Target
    combo: dict[str, int]


def plan(opts: CompareOptions) -> Iterator[Cell]:
    for target in opts.targets:
        for combo in opts.combos():
            yield Cell(target, combo)


def run_compare(opts: CompareOptions, console: Console | None = None,
                run_id: str | None = None) -> Path:
    console = console or Console()
    started = dt.datetime.now(dt.UTC)
    run_id = run_id or started.strftime("%Y%m%d-%H%M%S")
    run_dir = opts.results_dir / run_id
    raw_dir = run_dir / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    run = Run(run_id=run_id, started_at=started.isoformat(timespec="seconds"), git_rev=git_rev(),
              machine=machine_info(),
              scenario=Scenario(name=opts.scenario, db_ms=opts.db_ms, llm_ms=opts.llm_ms,
                                duration_s=opts.duration_s))
    run.save(run_dir)
    point_latest(run_dir)
    cells = list(plan(opts))
    total_s = len(cells) * (len(opts.levels()) * opts.duration_s + STARTUP_ESTIMATE_S)

    with infra_mod.start(raw_dir) as infra, Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
            transient=False) as progress:
        task = progress.add_task("starting infra", total=total_s)
        for cell in cells:
            _measure_cell(cell, opts, infra, run, run_dir, progress, task, console)
        progress.update(task, completed=total_s, description="done")
    from bench.report import write_reports
    write_reports(run_dir)
    return run_dir


def point_latest(run_dir: Path) -> None:
    latest = run_dir.parent / "latest"
    tmp = run_dir.parent / ".latest-tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, latest)


def _measure_cell(cell: Cell, opts: CompareOptions, infra: infra_mod.Infra, run: Run,
                  run_dir: Path, progress: Progress, task, console: Console) -> None:
    name = label(cell.target, cell.combo)
    raw_dir = run_dir / "raw"
    budget = len(opts.levels()) * opts.duration_s + STARTUP_ESTIMATE_S
    start_mark = progress.tasks[task].completed
    progress.update(task, description=f"{name}: building/starting")
    try:
        with running(cell.target, infra, raw_dir, overrides=cell.combo, db_ms=opts.db_ms,
                     llm_ms=opts.llm_ms, upstream_timeout_s=opts.upstream_timeout_s) as (resolved, proc):
            time.sleep(1.0)  # let the workers settle before the idle reading
            idle = probe.memory_mb(proc.pid)
            progress.update(task, description=f"{name}: warming up")
            run.scenario.warmup_s = round(warm_up(resolved.base_url, opts), 2)
            progress.update(task, completed=start_mark + STARTUP_ESTIMATE_S)
            l1_s = None
            for users in opts.levels():
                progress.update(task, description=f"{name} @ {users} users")
                result = _measure_level(resolved, users, opts, proc.pid, idle,
                                        raw_dir / f"{name}_u{users}", l1_s, progress, task)
                if users == 1 and result.latency_ms.p50:
                    l1_s = result.latency_ms.p50 / 1000
                    ceiling = metrics.ceiling_rps(1, resolved.capacity, l1_s, resolved.db_pool,
                                                  opts.db_ms)
                    result.ceiling_rps = round(ceiling, 2)
                    result.efficiency = round(metrics.efficiency(result.rps, ceiling), 3)
                run.results.append(result)
                run.save(run_dir)
                if not proc.alive():
                    raise RuntimeError(f"{name} died during the run:\n{proc.log_tail()}")
    except TargetUnavailable as why:
        console.print(f"[yellow]skipping {name}: {str(why).splitlines()[0]}[/]")
        run.skipped[name] = str(why).splitlines()[0]
        run.save(run_dir)
    finally:
        progress.update(task, completed=start_mark + budget)


def _measure_level(resolved: ResolvedTarget, users: int, opts: CompareOptions, pid: int,
                   idle: dict[str, float], csv_prefix: Path, l1_s: float | None,
                   progress: Progress, task) -> Result:
    spec = LoadSpec(host=resolved.base_url, users=users, duration_s=opts.duration_s,
                    scenario=opts.scenario, db_ms=opts.db_ms, llm_ms=opts.llm_ms,
                    tokens=opts.tokens, cpu_n=opts.cpu_n)
    psutil.cpu_percent()  # resets the machine-wide counter
    base = progress.tasks[task].completed
    locust = start_locust(spec, csv_prefix)
    try:
        with probe.TreeSampler(pid) as target_s, probe.TreeSampler(locust.pid, memory=False) as locust_s:
            deadline = time.monotonic() + opts.duration_s + 60
            t0 = time.monotonic()
            while locust.alive():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"locust did not finish:\n{locust.log_tail()}")
                progress.update(task, completed=base + min(time.monotonic() - t0, opts.duration_s))
                time.sleep(0.25)
        machine_cpu = psutil.cpu_percent()
    finally:
        locust.stop()
    if not Path(f"{csv_prefix}_stats.csv").exists():
        raise RuntimeError(f"Locust wrote no statistics:\n{locust.log_tail()}")
    stats = read_stats(csv_prefix)
    _, row_name = SCENARIOS[opts.scenario]
    row = stats.get(row_name)
    if row is None:
        raise RuntimeError(f"no '{row_name}' row in Locust's CSV:\n{locust.log_tail()}")
    canary = stats.get(CANARY_ROW)
    served = max(row.requests - row.failures, 0)
    cpu_s = target_s.cpu_seconds()
    ceiling = metrics.ceiling_rps(users, resolved.capacity, l1_s, resolved.db_pool, opts.db_ms)
    return Result(
        target=resolved.name, framework=resolved.target.framework, model=resolved.model,
        params=resolved.params, users=users, rps=round(row.rps, 2), requests=row.requests,
        failures=row.failures,
        latency_ms=Latency(p50=row.p50, p95=row.p95, p99=row.p99, max=row.max),
        canary_p95_ms=canary.p95 if canary else None,
        canary_answered=canary.requests if canary else 0,
        canary_expected=int(CANARY_RATE * opts.duration_s),
        memory_mb=Memory(idle_pss=round(idle["pss"], 1), peak_rss=round(target_s.peak["rss"], 1),
                         peak_pss=round(target_s.peak["pss"], 1),
                         peak_uss=round(target_s.peak["uss"], 1)),
        processes=len(target_s.procs), capacity=resolved.capacity, db_pool=resolved.db_pool,
        cpu_pct=Cpu(target=round(target_s.cpu_pct(), 1), locust=round(locust_s.cpu_pct(), 1),
                    machine=round(machine_cpu, 1)),
        cpu_ms_per_request=round(1000 * cpu_s / served, 2) if served else None,
        ceiling_rps=round(ceiling, 2) if ceiling else None,
        efficiency=round(metrics.efficiency(row.rps, ceiling), 3) if ceiling else None,
        flags=metrics.flags(machine_cpu=machine_cpu, locust_cpu=locust_s.cpu_pct(),
                            max_process_cpu=target_s.max_process_cpu_pct(),
                            failures=row.failures, requests=row.requests),
        per_process=[ProcessMemory(pid=p, role=s.role, peak_rss=round(s.peak_rss, 1),
                                   peak_pss=round(s.peak_pss, 1), peak_uss=round(s.peak_uss, 1),
                                   cpu_pct=round(100 * (s.last_cpu - s.first_cpu)
                                                 / target_s.elapsed, 1))
                     for p, s in target_s.procs.items()],
        anti_pattern=resolved.target.anti_pattern,
        failure_samples=read_failures(csv_prefix),
    )
