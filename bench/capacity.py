"""`bench capacity`: how far each target goes on this machine before latency breaks, and what each
request in flight costs.

For each workload and target: L1 (1 user), then users x2 from `start_users` up to `max_users`
until a level breaks the SLO (p95 > 1.5 x L1; where the latency is censored, the higher of p95 and
W), fails more than 1 % of its requests, or reaches a limit: the target's CPU (90 % of a core for a
process that runs on one core at a time, 90 % of the machine for the whole target), Locust's CPU
(80 % of its core) or the machine's. Where `start_users` is already past the knee, the search goes
down instead: to the model's capacity (workers x threads) where it has one, then /2. The **knee**
is the highest level within the SLO that reached no limit; its row gives rps, rps per core, MiB per
request in flight, CPU ms per request, and the level above it says what stopped it.

Rows go to results.json like `bench compare`'s (scenario "recommendation", each with its workload),
knees to `capacity[]`; the calibration (Locust straight at the upstream) climbs the same levels, and
each of its levels must reach metrics.CALIBRATION_MIN (0.95) of Little's law, rps / (users / L1):
below it the load generator is the limit there (flagged, and it stops the calibration's climb).

The load generator must not be the limit: a level runs from as many Locust processes as the level
below it, more where that level's CPU x the users ratio predicts past LOCUST_PREDICT_PCT (1.5 cores);
a level that saturates Locust (80 % of a core) is measured once more with a process per
LOCUST_PLAN_PCT (70 %) of the CPU it showed, one per core at most (bench/compare.py, locust_plan and
with_locust_room).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from bench import infra as infra_mod
from bench import metrics
from bench.compare import (
    CALIBRATION,
    Cell,
    CompareOptions,
    Subject,
    calibration_subject,
    locust_plan,
    measure_level,
    warm_up,
    with_locust_room,
)
from bench.manifest import Target
from bench.results import Knee, Result, Run, Scenario, machine_info, new_run
from bench.targets import TargetUnavailable, running

# (db_ms, llm_ms): the LLM-bound request, and a short-I/O one where sync often wins. db_ms 5 with
# pools of 15 (3,000 queries/s per process) keeps the database from being the silent limit.
WORKLOADS = ((5, 500), (5, 20))
SLO_FACTOR = 1.5  # p95 within 1.5 x L1
# The warm-up's floor (compare runs keep the locustfile's 2 s): past it, every user spawned (Locust
# starts them all within 1 s) and answered once decides. Two seconds at the short-I/O workload is
# 70 cycles nobody measures, and the capacity run has some 160 levels to fit in 30 minutes.
WARMUP_MIN_S = 1.0
# The open-model pass: arrivals at this share of the knee's rps, from paced users with room for
# latencies up to OPEN_HEADROOM x the knee's before the pacing (and so the arrival rate) slips.
OPEN_SHARE = 0.8
OPEN_HEADROOM = 2.0
# Runtimes whose one process runs code on every core at once (goroutines); the others run one
# thread of code at a time per process (the GIL, Ruby's GVL, one event loop).
PARALLEL_FRAMEWORKS = frozenset({"go"})


@dataclass
class CapacityOptions:
    targets: list[Target]
    workloads: tuple[tuple[int, int], ...] = WORKLOADS
    start_users: int = 50
    max_users: int = 3200
    duration_s: float = 5.0  # the measured window per level (warm-up and drain on top)
    calibration: bool = True
    open_model: bool = True  # after each knee: a fixed arrival rate at OPEN_SHARE of it
    results_dir: Path = Path("results")
    invocation: tuple[list[str], str | None] | None = None
    cpus: int = field(default_factory=lambda: machine_info().cpus)

    def compare_options(self, db_ms: int, llm_ms: int) -> CompareOptions:
        return CompareOptions(targets=self.targets, users=[1], duration_s=self.duration_s, db_ms=db_ms,
                              llm_ms=llm_ms, calibration=False, claims=False, quick=True,
                              warmup_min_s=WARMUP_MIN_S, results_dir=self.results_dir)


def littles_shortfall(r: Result) -> str | None:
    """A calibration level (closed loop, after L1) below metrics.CALIBRATION_MIN of Little's law: what is
    wrong with it, else None. Its efficiency is rps / (users / L1), level_result's ceiling without a
    model capacity."""
    if r.users <= 1 or r.arrival_rps or r.efficiency is None or r.efficiency >= metrics.CALIBRATION_MIN:
        return None
    return (f"load generator below Little's law ({r.efficiency:.2f} of users / L1 = "
            f"{r.ceiling_rps or 0:.0f} rps)")


def stop_reason(r: Result, l1_ms: float, framework: str, cpus: int) -> str | None:
    """Why this level is past the knee (None: within the SLO and no limit reached)."""
    if r.cpu_pct.machine is not None and r.cpu_pct.machine >= metrics.MACHINE_CPU_LIMIT:
        return f"machine CPU ({r.cpu_pct.machine:.0f} % of all cores)"
    locust = r.cpu_pct.locust_process()
    if locust is not None and locust >= metrics.LOCUST_CPU_LIMIT:
        many = r.cpu_pct.locust_processes or 1
        return f"load generator (Locust at {locust:.0f} % of its core" + (
            f", the busiest of {many} processes)" if many > 1 else ")")
    if r.requests and r.failures / r.requests > metrics.FAILURE_LIMIT:
        return f"errors ({100 * r.failures / r.requests:.1f} % failed)"
    if framework == CALIBRATION and (short := littles_shortfall(r)):
        return short
    if framework != CALIBRATION:
        tree = r.cpu_pct.target or 0.0
        one = max((p.cpu_pct for p in r.per_process), default=0.0)
        if tree >= metrics.PROCESS_CPU_LIMIT * cpus:
            return f"CPU ({tree:.0f} % of a core over {cpus} cores)"
        if framework not in PARALLEL_FRAMEWORKS and one >= metrics.PROCESS_CPU_LIMIT:
            return f"CPU (a process at {one:.0f} % of its one core)"
    # A censored p95 misses the longest waits, so it can only be too low: W (the mean wait, from
    # Little's law) is then the other lower bound, and the higher of the two is judged.
    censored = any(f.startswith("latency-censored") for f in r.flags)
    tails = {"p95": r.latency_ms.p95, **({"W": r.w_ms()} if censored else {})}
    what, tail = max(((k, v) for k, v in tails.items() if v is not None), key=lambda kv: kv[1],
                     default=(None, None))
    if tail is None:
        return "latency (nothing answered)"
    if tail > SLO_FACTOR * l1_ms:
        return f"latency ({what} {tail:.0f} ms > {SLO_FACTOR:g} x L1 {l1_ms:.0f} ms)"
    return None


def knee_of(levels: list[tuple[Result, str | None]], l1: Result, subject: Subject, cpus: int) -> Knee:
    """The highest-rps level within the SLO, and what stopped the climb (the level above it)."""
    within = [r for r, why in levels if why is None]
    best = max(within, key=lambda r: r.rps, default=None)
    above = next((why for r, why in sorted(levels, key=lambda x: x[0].users)
                  if why is not None and (best is None or r.users > best.users)), None)
    knee = Knee(target=subject.name, framework=subject.framework, model=subject.model,
                db_ms=l1.db_ms or 0, llm_ms=l1.llm_ms or 0, l1_ms=l1.latency_ms.p50,
                tried=[r.users for r, _ in levels],
                locust_processes=[r.cpu_pct.locust_processes or 1 for r, _ in levels],
                littles=[r.efficiency for r, _ in levels] if subject.name == CALIBRATION else [],
                stopped_by=above or f"none up to {max(r.users for r, _ in levels)} users")
    if best is None:
        return knee
    cores = (best.cpu_pct.target or 0) / 100
    in_flight = metrics.in_flight(best.rps, best.latency_ms.mean, best.w_ms())
    per_request = metrics.mb_per_in_flight(best.memory_mb.peak_pss, subject.idle.get("pss"), best.rps,
                                           best.latency_ms.mean, best.w_ms())
    return knee.model_copy(update={
        "users": best.users, "rps": best.rps, "p95_ms": best.latency_ms.p95,
        "p50_ms": best.latency_ms.p50, "p99_ms": best.latency_ms.p99,
        "rps_per_core": round(best.rps / cores, 1) if cores > 0 else None,
        "in_flight": round(in_flight, 1),
        "mb_per_in_flight": round(per_request, 3) if per_request is not None else None,
        "cpu_ms_per_request": best.cpu_ms_per_request, "peak_pss": best.memory_mb.peak_pss})


def climb(start, subject_name: str, framework: str, opts: CapacityOptions, copts: CompareOptions,
          run: Run, run_dir: Path, progress: Progress, task) -> Knee | None:
    """L1, then the levels up (or down) from start_users; a fresh start after a level past the knee
    (its queue would eat into the next level's time)."""
    cell_target = next((t for t in opts.targets if t.name == subject_name), None)
    cell = Cell(cell_target, {}, "recommendation" if cell_target else CALIBRATION, [1],
                workload=(copts.db_ms, copts.llm_ms))
    levels: list[tuple[Result, str | None]] = []
    l1: Result | None = None

    def measure(subject: Subject, users: int, pace_rps: float = 0.0, processes: int = 1) -> Result:
        """One level, closed loop or (pace_rps) the open model, from `processes` Locust processes and
        once more with more where they saturated (a calibration level below Little's law is flagged);
        its row is saved at once."""
        what = (f"open model, {pace_rps * users:.0f} req/s from {users} paced users" if pace_rps
                else f"@ {users} users")
        prefix = run_dir / "raw" / (f"{subject_name}_db{copts.db_ms}_llm{copts.llm_ms}_"
                                    + ("open" if pace_rps else f"u{users}"))
        l1_s = l1.latency_ms.p50 / 1000 if l1 and l1.latency_ms.p50 else None

        def once(n: int) -> Result:
            progress.update(task, description=f"{subject_name} ({copts.db_ms}/{copts.llm_ms} ms) {what}"
                            + (f", {n} Locust processes" if n > 1 else ""))
            return measure_level(subject, cell, users, copts, prefix, l1_s, progress, task,
                                 pace_rps=pace_rps, processes=n)

        def saturated(r: Result) -> bool:
            return l1 is not None and (stop_reason(r, l1.latency_ms.p50, framework, opts.cpus) or ""
                                       ).startswith("load generator")

        r = with_locust_room(once, processes, opts.cpus, saturated)
        if framework == CALIBRATION and (short := littles_shortfall(r)):
            r = r.model_copy(update={"flags": [*r.flags, short]})
        run.results.append(r)
        run.save(run_dir)
        progress.advance(task)
        return r

    users, step_up = opts.start_users, True
    capacity = cell_target.resolve().capacity if cell_target else None
    with contextlib.ExitStack() as stack:
        subject = stack.enter_context(start())
        l1 = measure(subject, 1)
        if not l1.latency_ms.p50:
            return None
        while 1 <= users <= opts.max_users:
            r = measure(subject, users, processes=locust_plan(None, levels[-1][0] if levels else None,
                                                              users, opts.cpus))
            why = stop_reason(r, l1.latency_ms.p50, framework, opts.cpus)
            levels.append((r, why))
            if step_up and why is None:
                users *= 2
                continue
            if step_up and why is not None and len(levels) > 1:
                break  # the level above the knee
            if why is None:
                break  # going down: the first level within the SLO is the knee
            # Past the knee already (a queue, or a CPU limit at this level): down to where the model
            # stops queueing, its capacity (workers x threads) when it has one and that is lower,
            # else half.
            step_up, users = False, min(users // 2, capacity or users)
            stack.close()  # a fresh start: the queue of a level past the knee stays behind
            subject = stack.enter_context(start())
        if not levels:
            return None
        knee = knee_of(levels, l1, subject, opts.cpus)
        at_knee = next((r for r, _ in levels if knee.users is not None and r.users == knee.users), None)
        if at_knee is None or not opts.open_model:
            return knee
        stack.close()  # a fresh start after the level past the knee
        subject = stack.enter_context(start())
        rate = OPEN_SHARE * at_knee.rps
        wait_s = (at_knee.latency_ms.mean or at_knee.latency_ms.p50 or 0) / 1000
        # Enough paced users that each waits between its requests even at twice the knee's latency:
        # the arrivals then keep their rate whatever the responses do (an open model).
        users = max(at_knee.users, math.ceil(OPEN_HEADROOM * rate * wait_s))
        # Locust's work follows the requests per second: OPEN_SHARE of the knee's.
        processes = metrics.locust_processes(at_knee.cpu_pct.locust, OPEN_SHARE, opts.cpus)
        r = measure(subject, users, pace_rps=rate / users, processes=processes)
        return knee.model_copy(update={
            "open_arrival_rps": round(rate, 1), "open_rps": r.rps, "open_users": users,
            "open_p50_ms": r.latency_ms.p50, "open_p95_ms": r.latency_ms.p95,
            "open_p99_ms": r.latency_ms.p99})


def run_capacity(opts: CapacityOptions, console: Console | None = None, run_id: str | None = None) -> Path:
    console = console or Console()
    first = opts.workloads[0]
    # not results/latest: that is the latest comparison, which `bench readme` renders
    run, run_dir = new_run(opts.results_dir, "capacity-", run_id, Scenario(
        name="capacity", db_ms=first[0], llm_ms=first[1], duration_s=opts.duration_s), opts.invocation)
    names = ([CALIBRATION] if opts.calibration else []) + [t.name for t in opts.targets]
    with contextlib.ExitStack() as stack:
        infra = stack.enter_context(infra_mod.start(run_dir / "raw"))
        progress = stack.enter_context(Progress(
            TextColumn("[bold]{task.description}"), BarColumn(),
            TextColumn("{task.completed}/{task.total} levels"), TimeElapsedColumn(), console=console))
        # A level budget for the bar: L1 and about four steps per (workload, target).
        task = progress.add_task("starting infra", total=len(opts.workloads) * len(names) * 5)
        for db_ms, llm_ms in opts.workloads:
            copts = opts.compare_options(db_ms, llm_ms)
            for name in names:
                try:
                    knee = climb(_starter(name, opts, copts, infra, run_dir), name,
                                 CALIBRATION if name == CALIBRATION else _target(opts, name).framework,
                                 opts, copts, run, run_dir, progress, task)
                except TargetUnavailable as why:
                    run.skipped[f"{name} ({db_ms}/{llm_ms} ms)"] = str(why)
                    knee = None
                except Exception as exc:  # one broken target must not lose the rest of the run
                    why = f"failed: {type(exc).__name__}: {exc}"
                    run.skipped[f"{name} ({db_ms}/{llm_ms} ms)"] = why[:500]
                    knee = None
                if knee is not None:
                    run.capacity.append(knee)
                run.save(run_dir)
        progress.update(task, description="done", completed=progress.tasks[task].total)
    return run_dir


def _target(opts: CapacityOptions, name: str) -> Target:
    return next(t for t in opts.targets if t.name == name)


def _starter(name: str, opts: CapacityOptions, copts: CompareOptions, infra, run_dir: Path):
    """A context manager factory that brings the subject up, warm (or the upstream, for calibration)."""
    @contextlib.contextmanager
    def start():
        if name == CALIBRATION:
            upstream = next((p for p in infra.procs if p.name == "upstream"), None)
            # no idle reading: the knee's MiB per request in flight is a target's figure
            yield calibration_subject(infra.upstream_url, upstream, idle=False)
            return
        target = _target(opts, name)
        with running(target, infra, run_dir / "raw", db_ms=copts.db_ms, llm_ms=copts.llm_ms,
                     upstream_timeout_s=copts.upstream_timeout_s) as (resolved, proc):
            subject = Subject.of(resolved, "recommendation", pid=proc.pid)
            warmup_s = warm_up(resolved.base_url, copts.db_ms, copts.llm_ms)
            yield replace(subject, warmup_s=round(warmup_s, 2))
    return start
