"""`bench faults`: what each target does when PostgreSQL, the upstream or a worker fails.

One target at a time runs under steady Locust load (the lab's RecommendationUser, every request
written to the ledger with its status and error code). While the load runs, the faults are injected
one after another on a timeline: inject, hold, clear, watch the recovery. Each fault's figures come
from the requests started between its injection and the next fault (`analyse`, a pure function):

- answers by status and error code; the time to detect (first error) and to recover (the first 200
  of a request started after the fault was cleared);
- failed after recovery: errors among the requests started after that first 200 (a stale pooled
  connection shows here: the django-async row answered 503 to 14 requests after a restart);
- lost in flight: requests under way when the fault struck that got no HTTP answer at all.

The graceful stop comes last, with its own load of min(users, capacity): every request then is
in flight inside the server. Requests a model queues beyond its capacity wait in the kernel's
listen backlog, which a server's documented shutdown closes (they are refused, not lost in flight).

Native faults act on the lab's own processes (bench/infra.py): PostgreSQL is stopped with its fast
shutdown and started again on the same port and data, the upstream is SIGKILLed and started again,
its outages are the mock's timed faults (POST /mock/faults with for_s).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import psycopg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench import infra as infra_mod
from bench import probe
from bench.compare import warm_up
from bench.load import LoadSpec, Sample, ledger_path, read_ledger, start_locust
from bench.manifest import Target
from bench.procs import Proc, wait_http
from bench.results import FaultResult, FaultTarget, Run, Scenario, git_rev, machine_info
from bench.targets import TargetUnavailable, running

ROW = "/recommendation/[id]"
USERS, DB_MS, LLM_MS = 20, 50, 200  # steady load: every model serves it without a long queue
UPSTREAM_TIMEOUT_S = 2.0  # the targets' client timeout here, so a hang is seen in seconds
BASELINE_S = 3.0  # steady load before the first fault
RECOVERY_S = 4.0  # watched after each fault is cleared
LOAD_BACKSTOP_S = 600  # Locust's own --run-time: the harness stops it long before
ANSWER_LIMIT_MS = 1000  # a 503 while the DB is down comes at once, never after a pool wait
NO_ANSWER = "no HTTP answer"
UNIFORM_DB = {"503 database_unavailable"}
UNIFORM_UPSTREAM = {"502 upstream_error"}


@dataclass(frozen=True)
class Fault:
    title: str
    expect: str  # what a target must do, in words (the report's legend)
    allowed: frozenset[str]  # answers other than 200 that the fault may cause
    hold_s: tuple[float, float] = (0.0, 0.0)  # how long it lasts: (quick, full)


FAULTS: dict[str, Fault] = {
    "pg-restart": Fault("PostgreSQL restarted under load",
                        "503 database_unavailable while it is down; 0 failures after recovery",
                        frozenset(UNIFORM_DB)),
    "pg-stop": Fault("PostgreSQL stopped, then started",
                     "only 503 database_unavailable, each within 1 s more than the usual wait (never a pool "
                     "wait); 0 failures after",
                     frozenset(UNIFORM_DB), (5.0, 10.0)),
    "upstream-500": Fault("the upstream answers 500",
                          "502 upstream_error while it lasts; 0 failures after", frozenset(UNIFORM_UPSTREAM),
                          (3.0, 5.0)),
    "upstream-hang": Fault("the upstream hangs (no answer)",
                           f"504 upstream_timeout within the client timeout ({UPSTREAM_TIMEOUT_S:g} s) "
                           "+ 1 s per round of the model's queue; no DB connection busy meanwhile; "
                           "0 failures after",
                           frozenset({"504 upstream_timeout"}), (4.0, 5.0)),
    "upstream-kill": Fault("the upstream process killed, restarted 2 s later",
                           "fast 502 upstream_error; 0 failures after", frozenset(UNIFORM_UPSTREAM),
                           (2.0, 2.0)),
    "worker-kill": Fault("one worker process SIGKILLed",
                         "only that worker's requests in flight fail; the master replaces it; "
                         "0 failures after",
                         frozenset({NO_ANSWER})),
    "sigterm": Fault("graceful stop: SIGTERM to the server",
                     "every request in flight completes; exit within the manifest's graceful_s",
                     frozenset()),
}


# --- analysis: a fault's figures from the ledger --------------------------------------------

def answer(s: Sample) -> str:
    """How a request ended, as the faults table counts it."""
    if s.ok:
        return "200"
    if s.censored:
        return "unfinished"
    if not s.status:
        return NO_ANSWER
    return f"{s.status} {s.code}" if s.code else f"{s.status} non-uniform"


@dataclass
class Timeline:
    """When a fault was injected and cleared, and when the next one came (or the load ended)."""
    injected: float
    cleared: float
    until: float
    db_busy: int | None = None  # connections held inside a transaction while the upstream hung
    extra: dict = field(default_factory=dict)  # e.g. a note


def analyse(samples: list[Sample], name: str, target: str, users: int, tl: Timeline, *,
            in_flight_allowed: int = 0, limit_ms: float | None = None) -> FaultResult:
    """A fault's figures. A request counts where its answer came (its end): a request a queueing
    model took in before the fault but served during it saw the fault, not the calm before it."""
    fault = FAULTS[name]
    mine = sorted((s for s in samples if s.name == ROW), key=lambda s: s.t0)
    during = [s for s in mine if tl.injected <= s.end < tl.until]
    struck = [s for s in mine if s.t0 < tl.injected < s.end]
    failed = [s for s in during if not s.ok]
    by_status: dict[str, int] = {}
    for s in during:
        by_status[answer(s)] = by_status.get(answer(s), 0) + 1
    first_ok = next((s for s in during if s.ok and s.t0 >= tl.cleared), None)
    after = [s for s in during if first_ok and s.t0 >= first_ok.t0]
    errors_ms = [s.ms for s in failed if s.status]
    if name == "pg-stop" and limit_ms is not None:
        # While the database is down, every answer comes at once, a 503, never after waiting the
        # outage out in a pool: the wait from the fault (or the request, if later) to its answer.
        # Requests made in the outage's last `limit` may meet the database back: they are exempt.
        latest = tl.cleared - limit_ms / 1000
        errors_ms = [1000 * (s.end - max(s.t0, tl.injected)) for s in mine
                     if s.end >= tl.injected and s.t0 < latest]
    result = FaultResult(
        target=target, fault=name, users=users, injected_at=round(tl.injected, 3),
        lasted_s=round(tl.cleared - tl.injected, 2), requests=len(during),
        by_status=dict(sorted(by_status.items())),
        detect_ms=round((failed[0].end - tl.injected) * 1000, 1) if failed else None,
        recover_ms=round((first_ok.end - tl.cleared) * 1000, 1) if first_ok else None,
        failed_after_recovery=sum(not s.ok for s in after),
        lost_in_flight=sum(answer(s) == NO_ANSWER for s in struck),
        slowest_error_ms=round(max(errors_ms), 1) if errors_ms else None, limit_ms=limit_ms,
        db_busy_during=tl.db_busy, note=tl.extra.get("note", ""))
    result.problems = problems(result, fault, in_flight_allowed, [answer(s) for s in failed])
    return result


def problems(r: FaultResult, fault: Fault, in_flight_allowed: int, failures: list[str]) -> list[str]:
    found = []
    unexpected = sorted({a for a in failures if a not in fault.allowed and a != NO_ANSWER})
    if unexpected:
        found.append(f"answers outside the contract for this fault: {', '.join(unexpected)}")
    if r.lost_in_flight > in_flight_allowed:
        found.append(f"{r.lost_in_flight} requests in flight got no answer (allowed: {in_flight_allowed})")
    if r.recover_ms is None:
        found.append("never answered 200 again")
    if r.failed_after_recovery:
        found.append(f"{r.failed_after_recovery} requests failed after recovery")
    if r.limit_ms is not None and (r.slowest_error_ms or 0) > r.limit_ms:
        found.append(f"a request waited {r.slowest_error_ms:.0f} ms for its answer "
                     f"(limit {r.limit_ms:.0f} ms)")
    if r.db_busy_during:
        found.append(f"{r.db_busy_during} DB connections held in a transaction while the upstream hung")
    return found


def error_limit_ms(name: str, usual_ms: float, users: int, capacity: int | None) -> float | None:
    """How long an error answer may take, as the user sees it (queueing included).

    pg-stop: 1 s beyond the usual wait (a 503 comes at once, never after a pool wait). upstream-hang:
    the client timeout + 1 s for each round the model's capacity makes a user wait behind others
    (20 users on 4 sync workers: 5 rounds, each worker held for the whole timeout)."""
    if name == "pg-stop":
        return usual_ms + ANSWER_LIMIT_MS
    if name == "upstream-hang":
        rounds = -(-users // min(users, capacity or users))
        return (UPSTREAM_TIMEOUT_S * 1000 + 1000) * rounds
    return None


def clean_exit(code: int | None, log_tail: str) -> bool:
    """Exit status 0, or uvicorn's own re-raised SIGTERM after a complete shutdown (it re-raises the
    signal it caught so the exit status tells a supervisor why it stopped: 143 in Docker)."""
    return code == 0 or (code == -signal.SIGTERM and "Finished server process" in log_tail)


# --- the lab's processes and the database, as the faults need them ---------------------------

@dataclass
class NativeLab:
    infra: infra_mod.Infra

    def proc(self, name: str) -> Proc:
        found = next((p for p in self.infra.procs if p.name == name), None)
        if found is None:
            raise RuntimeError(f"{name} is not the lab's own process here (DATABASE_URL / UPSTREAM_URL "
                               "given): bench faults needs to stop and start it")
        return found

    def stop_postgres(self) -> None:
        self.proc("postgres").stop()

    def start_postgres(self) -> None:
        pg = self.proc("postgres")
        pg.restart()
        infra_mod.wait_pg(self.infra.database_url, pg)

    def kill_upstream(self) -> None:
        up = self.proc("upstream")
        os.killpg(up.pid, signal.SIGKILL)
        up.popen.wait(timeout=10)

    def start_upstream(self) -> None:
        up = self.proc("upstream")
        up.restart()
        wait_http(f"{self.infra.upstream_url}/healthz", up, timeout=30)

    def outage(self, **spec: object) -> None:
        httpx.post(f"{self.infra.upstream_url}/mock/faults", json=spec, timeout=5).raise_for_status()

    def end_outage(self) -> None:
        httpx.delete(f"{self.infra.upstream_url}/mock/faults", timeout=5).raise_for_status()

    def connections(self) -> tuple[int, int, int]:
        """The other clients' connections to the lab database: (all, busy in a query or a transaction,
        idle inside an open transaction: held by a request that is doing something else)."""
        with psycopg.connect(self.infra.database_url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE state <> 'idle'), "
                "count(*) FILTER (WHERE state LIKE 'idle in transaction%') FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'").fetchone()


# --- the run ---------------------------------------------------------------------------------

@dataclass
class FaultsOptions:
    targets: list[Target]
    faults: list[str]
    quick: bool = False
    users: int = USERS
    results_dir: Path = Path("results")
    invocation: tuple[list[str], str | None] | None = None


def hold(opts: FaultsOptions, name: str) -> float:
    return FAULTS[name].hold_s[0 if opts.quick else 1]


def run_faults(opts: FaultsOptions, console: Console, run_id: str) -> Path:
    run_dir = opts.results_dir / f"faults-{run_id}"
    raw = run_dir / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    command, make_target = opts.invocation or (None, None)
    run = Run(run_id=f"faults-{run_id}", started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), git_rev=git_rev(),
              command=command, make_target=make_target, machine=machine_info(),
              scenario=Scenario(name="faults", db_ms=DB_MS, llm_ms=LLM_MS, duration_s=0))
    run.save(run_dir)
    with infra_mod.start(raw) as infra, Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console) as progress:
        lab = NativeLab(infra)
        task = progress.add_task("faults", total=len(opts.targets) * len(opts.faults))
        for target in opts.targets:
            try:
                fault_target(target, lab, opts, run, run_dir, lambda text, t=target: progress.update(
                    task, description=f"{t.name}: {text}"), lambda: progress.advance(task))
            except TargetUnavailable as why:
                run.skipped[target.name] = str(why).splitlines()[0]
            except Exception as exc:  # one broken target must not lose the others' rows
                run.skipped[target.name] = f"failed: {type(exc).__name__}: {exc}".splitlines()[0]
                (raw / f"{target.name}.error.txt").write_text(f"{type(exc).__name__}: {exc}")
            run.save(run_dir)
    return run_dir


@contextlib.contextmanager
def load(host: str, users: int, csv_prefix: Path) -> Iterator[Callable[[], list[Sample]]]:
    """Locust at `users` with the ledger and no phases; yields a reader of what it recorded so far."""
    spec = LoadSpec(host=host, users=users, duration_s=0, db_ms=DB_MS, llm_ms=LLM_MS, drain_max_s=0,
                    run_time_s=LOAD_BACKSTOP_S)
    locust = start_locust(spec, csv_prefix)
    try:
        wait_for(lambda: ledger_path(csv_prefix).exists(), 30, "Locust did not start")
        yield lambda: read_ledger(ledger_path(csv_prefix)).samples
    finally:
        locust.stop()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError(what)
        time.sleep(0.1)
    return time.monotonic() - started


def fault_target(target: Target, lab: NativeLab, opts: FaultsOptions, run: Run, run_dir: Path,
                 say: Callable[[str], None], advance: Callable[[], None]) -> None:
    raw = run_dir / "raw"
    timeline_faults = [f for f in opts.faults if f != "sigterm"]
    say("starting")
    with running(target, lab.infra, raw, db_ms=DB_MS, llm_ms=LLM_MS,
                 upstream_timeout_s=UPSTREAM_TIMEOUT_S) as (resolved, proc):
        warm_up(resolved.base_url, DB_MS, LLM_MS)
        state = FaultTarget(target=target.name, db_pool=resolved.db_pool,
                            memory_before_mb=probe.memory_mb(proc.pid).get("pss"))
        timelines: dict[str, Timeline] = {}
        with load(resolved.base_url, opts.users, raw / f"{target.name}_faults") as recorded:
            started = time.time()
            time.sleep(BASELINE_S)
            usual_ms = usual_wait_ms(recorded(), opts.users, started, time.time())
            # Watch each recovery for long enough that a request queued behind the others (a
            # model's usual wait, e.g. 5 s for 20 users on the blocking anti-pattern) can end in it.
            recovery_s = max(RECOVERY_S, 1.5 * usual_ms / 1000 + 0.5)
            for name in timeline_faults:
                say(FAULTS[name].title)
                timelines[name] = inject(name, lab, proc, resolved.port, opts)
                time.sleep(recovery_s)
                advance()
            end = time.time()
            samples = recorded()
        for i, name in enumerate(timeline_faults):
            tl = timelines[name]
            tl.until = timelines[timeline_faults[i + 1]].injected if i + 1 < len(timeline_faults) else end
            allowed = worker_share(resolved.capacity, resolved.processes, opts.users) \
                if name == "worker-kill" else 0
            run.faults.append(analyse(
                samples, name, target.name, opts.users, tl, in_flight_allowed=allowed,
                limit_ms=error_limit_ms(name, usual_ms, opts.users, resolved.capacity)))
        # Requests whose Locust users are gone may still queue in the server: let it finish them,
        # so the pools are at rest here and the graceful stop below sees only its own requests.
        wait_idle(resolved.base_url)
        state.db_connections_after, state.db_busy_after, _ = lab.connections()
        state.memory_after_mb = probe.memory_mb(proc.pid).get("pss")
        run.fault_targets.append(state)
        run.save(run_dir)
        if "sigterm" in opts.faults:
            say(FAULTS["sigterm"].title)
            run.faults.append(graceful_stop(resolved, proc, opts, raw))
            advance()


def usual_wait_ms(samples: list[Sample], users: int, since: float, until: float) -> float:
    """The usual wait before any fault: the larger of the p95 and Little's W = users / rps (a model
    that queues has not shown its steady wait in a short baseline, W has)."""
    calm = sorted(s.ms for s in samples if s.name == ROW and s.ok and since <= s.end < until)
    if not calm:
        return 10_000.0
    p95 = calm[int(0.95 * (len(calm) - 1))]
    return max(p95, 1000 * users * (until - since) / len(calm))


def wait_idle(base_url: str, timeout_s: float = 90) -> None:
    """Until /healthz answers at once: nothing queued is left in the server."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=base_url, timeout=timeout_s) as client:
        while time.monotonic() < deadline:
            started = time.monotonic()
            with contextlib.suppress(httpx.HTTPError):
                client.get("/healthz")
                if time.monotonic() - started < 0.2:
                    return
            time.sleep(0.2)


def worker_share(capacity: int | None, processes: int, users: int) -> int:
    """What one worker of a multi-process server can hold in flight (its requests may be lost)."""
    workers = max(processes - 1, 1)
    return -(-(capacity or users) // workers)


def server_workers(pid: int, port: int, exclude: int | None = None) -> list[psutil.Process]:
    """The server's worker processes: its children serving the listening socket (not, e.g.,
    multiprocessing's resource tracker), the killed one (a zombie until reaped) left out."""
    found = []
    for child in psutil.Process(pid).children():
        with contextlib.suppress(psutil.Error):
            if child.pid != exclude and child.status() != psutil.STATUS_ZOMBIE and any(
                    c.status == psutil.CONN_LISTEN and c.laddr.port == port
                    for c in child.net_connections("tcp")):
                found.append(child)
    return found


def inject(name: str, lab: NativeLab, proc: Proc, port: int, opts: FaultsOptions) -> Timeline:
    seconds = hold(opts, name)
    injected = time.time()
    extra: dict = {}
    busy = None
    if name == "pg-restart":
        lab.stop_postgres()
        lab.start_postgres()
    elif name == "pg-stop":
        lab.stop_postgres()
        time.sleep(seconds)
        lab.start_postgres()
    elif name == "upstream-500":
        lab.outage(status=500, for_s=seconds)
        time.sleep(seconds)
    elif name == "upstream-hang":
        lab.outage(mode="hang", for_s=seconds)
        busy = 0
        time.sleep(min(1.0, seconds / 2))  # the first requests are waiting on it now
        while time.time() < injected + seconds:
            # New requests run their own DB step meanwhile (active); a connection held across the
            # upstream call sits idle inside its transaction. (The contract suite checks the strict
            # form: no DB work at all while a fixed set of requests waits on the upstream.)
            busy = max(busy, lab.connections()[2])
            time.sleep(0.25)
        lab.end_outage()
    elif name == "upstream-kill":
        lab.kill_upstream()
        time.sleep(seconds)
        lab.start_upstream()
    elif name == "worker-kill":
        workers = server_workers(proc.pid, port)
        if not workers:
            extra["note"] = "one process: no worker to kill (the server itself is the worker)"
        else:
            count, victim = len(workers), workers[0]
            victim.send_signal(signal.SIGKILL)
            took = wait_for(lambda: len(server_workers(proc.pid, port, exclude=victim.pid)) >= count, 30,
                            "the master did not replace the killed worker")
            extra["note"] = f"replaced in {took:.1f} s"
    else:
        raise ValueError(f"unknown fault {name!r}")
    return Timeline(injected, time.time(), 0.0, db_busy=busy, extra=extra)


def graceful_stop(resolved, proc: Proc, opts: FaultsOptions, raw: Path) -> FaultResult:
    """SIGTERM with every user's request inside the server: each must complete, then a clean exit."""
    users = min(opts.users, resolved.capacity or opts.users)
    graceful_s = resolved.target.graceful_s
    with load(resolved.base_url, users, raw / f"{resolved.name}_sigterm") as recorded:
        time.sleep(BASELINE_S)
        injected = time.time()
        os.kill(proc.pid, signal.SIGTERM)  # the server's own process, as `docker stop` does
        try:
            code = proc.popen.wait(timeout=(graceful_s or 30) + 10)
        except subprocess.TimeoutExpired:  # still running: recorded; `running` stops it
            code = None
        stopped = time.time()
        time.sleep(0.5)
        samples = recorded()
    struck = [s for s in samples if s.name == ROW and s.t0 < injected < s.end]
    by_status: dict[str, int] = {}
    for s in struck:
        by_status[answer(s)] = by_status.get(answer(s), 0) + 1
    result = FaultResult(target=resolved.name, fault="sigterm", users=users, injected_at=round(injected, 3),
                         lasted_s=0, requests=len(struck), by_status=dict(sorted(by_status.items())),
                         lost_in_flight=sum(not s.ok for s in struck), exit_code=code,
                         stop_s=round(stopped - injected, 2))
    if result.lost_in_flight:
        result.problems.append(f"{result.lost_in_flight} of {len(struck)} requests in flight "
                               "did not complete")
    if not clean_exit(code, proc.log_tail(50)):
        result.problems.append(f"did not exit cleanly (exit status {code})")
    if graceful_s is not None and result.stop_s > graceful_s + 1:
        result.problems.append(f"took {result.stop_s:.1f} s to stop (graceful_s {graceful_s:g})")
    return result
