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
import socket
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import psycopg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench import docker, probe
from bench import infra as infra_mod
from bench.compare import warm_up
from bench.compose import DB_NAME, DB_PASSWORD, DB_USER, PUBLISH_HOST, UPSTREAM_PORT, UPSTREAM_TIMEOUT_ENV
from bench.load import CANARY_ROW, LoadSpec, Sample, ledger_path, read_ledger, start_locust
from bench.manifest import ResolvedTarget, Target
from bench.procs import Proc, wait_http
from bench.results import FaultResult, FaultTarget, Run, Scenario, SoakResult, new_run
from bench.targets import TargetUnavailable, running

ROW = "/recommendation/[id]"
USERS, DB_MS, LLM_MS = 20, 50, 200  # steady load: every model serves it without a long queue
UPSTREAM_TIMEOUT_S = 2.0  # the targets' client timeout here, so a hang is seen in seconds
# (quick, full), like Fault.hold_s: the quick run keeps every fault within ~10 min for 15 targets;
# 2 s of recovery is still ~150 requests at 20 users, many times every pool's size.
BASELINE_S = (2.0, 3.0)  # steady load before the first fault
RECOVERY_S = (2.0, 4.0)  # watched after each fault is cleared
LOAD_BACKSTOP_S = 600  # Locust's own --run-time: the harness stops it long before
ANSWER_LIMIT_MS = 1000  # a 503 while the DB is down comes at once, never after a pool wait
OVERLOAD_MAX_USERS = 400  # what Locust drives from one core here
NO_ANSWER = "no HTTP answer"
IDLE_CONNECTIONS = 1000
MEMORY_BOUND = 2.0  # overload: peak memory within this factor of the memory before it
SOLO_FAULTS = ("overload", "idle-connections", "sigterm")  # each with its own load, after the timeline
FINDINGS = ("idle-connections",)  # measured and shown; what happens is the model's, not a verdict
QUICK_FAULTS = ("pg-restart", "pg-stop", "upstream-500", "upstream-hang", "upstream-kill", "worker-kill",
                "sigterm")
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
                     frozenset(UNIFORM_DB), (3.0, 10.0)),
    "upstream-500": Fault("the upstream answers 500",
                          "502 upstream_error while it lasts; 0 failures after", frozenset(UNIFORM_UPSTREAM),
                          (2.0, 5.0)),
    "upstream-hang": Fault("the upstream hangs (no answer)",
                           f"504 upstream_timeout within the client timeout ({UPSTREAM_TIMEOUT_S:g} s) "
                           "+ 1 s per round of the model's queue; no DB connection busy meanwhile; "
                           "0 failures after",
                           frozenset({"504 upstream_timeout"}), (3.0, 5.0)),
    "upstream-kill": Fault("the upstream process killed, restarted 2 s later",
                           "fast 502 upstream_error; 0 failures after", frozenset(UNIFORM_UPSTREAM),
                           (2.0, 2.0)),
    "worker-kill": Fault("one worker process SIGKILLed",
                         "only that worker's requests in flight fail; the master replaces it; "
                         "0 failures after",
                         frozenset({NO_ANSWER})),
    "overload": Fault("overload: 10 × the model's capacity in users",
                      "no crash, no error: the queue grows and is shown (the canary's wait), memory stays "
                      "bounded (peak within 2 × before), and it serves normally after",
                      frozenset(), (10.0, 20.0)),
    "idle-connections": Fault(f"{IDLE_CONNECTIONS:,} idle keep-alive connections opened, then the load",
                              "a finding, not a pass/fail: which models still serve while the connections "
                              "sit open (a sync worker is held by a connection that sends nothing)",
                              frozenset({"504 upstream_timeout", NO_ANSWER}), (10.0, 20.0)),
    "sigterm": Fault("graceful stop: SIGTERM to the server",
                     "every request in flight completes; exit within the manifest's graceful_s",
                     frozenset()),
}


# --- analysis: a fault's figures from the ledger --------------------------------------------

def count_answers(samples: list[Sample]) -> dict[str, int]:
    """Answers by status and code (`answer`), sorted by name."""
    return dict(sorted(Counter(answer(s) for s in samples).items()))


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
        by_status=count_answers(during),
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
class Server:
    """A running target as the faults need it: natively its process tree, under compose its
    container (`pid`: the server's main process as the host sees it)."""
    resolved: ResolvedTarget
    base_url: str
    pid: int
    wait: Callable[[float], int | None]  # its exit status within the timeout (-N: signal N), else None
    log_tail: Callable[[], str]
    memory_mb: Callable[[], float | None]  # PSS of the tree, or the container's working set


class Lab:
    """PostgreSQL, the upstream and the targets, reached from this host (`database_url`,
    `upstream_url`); subclasses stop, kill and start them."""
    database_url: str
    upstream_url: str

    def outage(self, **spec: object) -> None:
        httpx.post(f"{self.upstream_url}/mock/faults", json=spec, timeout=5).raise_for_status()

    def end_outage(self) -> None:
        httpx.delete(f"{self.upstream_url}/mock/faults", timeout=5).raise_for_status()

    def connections(self) -> tuple[int, int, int]:
        """The other clients' connections to the lab database: (all, busy in a query or a transaction,
        idle inside an open transaction: held by a request that is doing something else)."""
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE state <> 'idle'), "
                "count(*) FILTER (WHERE state LIKE 'idle in transaction%') FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'").fetchone()

    def restore(self) -> None:
        """After a target that failed mid-fault: PostgreSQL and the upstream up, no outage left."""
        try:
            self.connections()
        except psycopg.Error:
            self.start_postgres()
        try:
            self.end_outage()
        except httpx.HTTPError:
            self.start_upstream()

    def wait_postgres(self, proc: Proc | None = None) -> None:
        infra_mod.wait_pg(self.database_url, proc, timeout=60)


@dataclass
class NativeLab(Lab):
    """The lab's own processes (bench/infra.py), stopped and started by PID."""
    infra: infra_mod.Infra

    def __post_init__(self) -> None:
        self.database_url, self.upstream_url = self.infra.database_url, self.infra.upstream_url

    def proc(self, name: str) -> Proc:
        found = next((p for p in self.infra.procs if p.name == name), None)
        if found is None:
            raise RuntimeError(f"{name} is not the lab's own process here (DATABASE_URL / UPSTREAM_URL "
                               "given): bench faults needs to stop and start it")
        return found

    def stop_postgres(self) -> None:
        self.proc("postgres").stop()  # SIGINT: PostgreSQL's fast shutdown

    def start_postgres(self) -> None:
        pg = self.proc("postgres")
        pg.restart()
        self.wait_postgres(pg)

    def kill_upstream(self) -> None:
        up = self.proc("upstream")
        os.killpg(up.pid, signal.SIGKILL)
        up.popen.wait(timeout=10)

    def start_upstream(self) -> None:
        up = self.proc("upstream")
        up.restart()
        wait_http(f"{self.upstream_url}/healthz", up, timeout=30)

    @contextlib.contextmanager
    def serve(self, target: Target, raw: Path) -> Iterator[Server]:
        with running(target, self.infra, raw, db_ms=DB_MS, llm_ms=LLM_MS,
                     upstream_timeout_s=UPSTREAM_TIMEOUT_S) as (resolved, proc):
            def wait(timeout: float) -> int | None:
                try:
                    return proc.popen.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    return None
            yield Server(resolved, resolved.base_url, proc.pid, wait, lambda: proc.log_tail(50),
                         lambda: probe.memory_mb(proc.pid).get("pss"))


@dataclass
class DockerLab(Lab):
    """The compose project's services (postgres and upstream published on loopback ports), stopped,
    killed and started with the docker CLI; a target's server is its container's main process."""

    def __post_init__(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        """A restarted container may be published on another ephemeral port."""
        address = docker.published_url("postgres", 5432, "postgresql").split("://", 1)[1]
        self.database_url = f"postgresql://{DB_USER}:{DB_PASSWORD}@{address}/{DB_NAME}"
        self.upstream_url = docker.published_url("upstream", UPSTREAM_PORT, "http")

    def stop_postgres(self) -> None:
        docker.run(docker.compose_argv("kill", "--signal", "SIGINT", "postgres"))  # fast shutdown
        container = docker.run(docker.compose_argv("ps", "--all", "--quiet", "postgres")).split()
        subprocess.run(["docker", "wait", *container], capture_output=True, timeout=60, check=False)

    def start_postgres(self) -> None:
        docker.run(docker.compose_argv("start", "postgres"))
        self.refresh()
        self.wait_postgres()

    def kill_upstream(self) -> None:
        docker.run(docker.compose_argv("kill", "upstream"))  # SIGKILL

    def start_upstream(self) -> None:
        docker.run(docker.compose_argv("start", "upstream"))
        self.refresh()
        wait_http(f"{self.upstream_url}/healthz", timeout=30)

    @contextlib.contextmanager
    def serve(self, target: Target, raw: Path) -> Iterator[Server]:
        with docker.running(target) as (base_url, container):
            pid = int(docker.run(["docker", "inspect", "--format", "{{.State.Pid}}", container]).strip())

            def wait(timeout: float) -> int | None:
                try:
                    out = subprocess.run(["docker", "wait", container], capture_output=True, text=True,
                                         timeout=timeout, check=False).stdout.strip()
                except subprocess.TimeoutExpired:
                    return None
                code = int(out) if out.isdigit() else None
                return -(code - 128) if code is not None and code > 128 else code  # 143: SIGTERM

            def log_tail() -> str:
                return subprocess.run(["docker", "logs", "--tail", "50", container], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, check=False, timeout=30).stdout

            try:
                yield Server(target.resolve(host=PUBLISH_HOST), base_url, pid, wait, log_tail,
                             lambda: docker.memory_mb(container).get("pss"))
            finally:
                with contextlib.suppress(subprocess.SubprocessError, OSError):
                    logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True,
                                          check=False, timeout=30)
                    (raw / f"{target.name}.log").write_text(logs.stdout + logs.stderr)


# --- the run ---------------------------------------------------------------------------------

@dataclass
class FaultsOptions:
    targets: list[Target]
    faults: list[str]
    quick: bool = False
    users: int = USERS
    results_dir: Path = Path("results")
    invocation: tuple[list[str], str | None] | None = None
    runtime: str = "native"  # or "docker": the compose services


def faults_run(opts: FaultsOptions, kind: str, run_id: str, duration_s: float) -> tuple[Run, Path]:
    """results/<kind>-<run_id>/ with its raw/ folder and a first results.json."""
    return new_run(opts.results_dir, f"{kind}-", f"{kind}-{run_id}",
                   Scenario(name=kind, db_ms=DB_MS, llm_ms=LLM_MS, duration_s=duration_s), opts.invocation)


def quick_or_full(opts: FaultsOptions, seconds: tuple[float, float]) -> float:
    return seconds[0 if opts.quick else 1]


def hold(opts: FaultsOptions, name: str) -> float:
    return quick_or_full(opts, FAULTS[name].hold_s)


def run_faults(opts: FaultsOptions, console: Console, run_id: str) -> Path:
    run, run_dir = faults_run(opts, "faults", run_id, duration_s=0)
    raw = run_dir / "raw"
    with contextlib.ExitStack() as stack:
        lab = stack.enter_context(start_lab(opts.runtime, raw, opts.targets))
        progress = stack.enter_context(Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console))
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
                lab.restore()
            run.save(run_dir)
    return run_dir


@contextlib.contextmanager
def start_lab(runtime: str, raw: Path, targets: list[Target]) -> Iterator[Lab]:
    """Natively: the lab's own PostgreSQL, upstream and Redis. Under compose: the project's
    services, the targets started with the faults' upstream timeout, everything removed after."""
    if runtime == "native":
        with infra_mod.start(raw) as infra:
            yield NativeLab(infra)
        return
    if problem := docker.engine_problem():
        raise docker.DockerError(f"--docker needs Docker: {problem}")
    previous = os.environ.get(UPSTREAM_TIMEOUT_ENV)
    os.environ[UPSTREAM_TIMEOUT_ENV] = f"{UPSTREAM_TIMEOUT_S:g}"  # compose reads it (bench/compose.py)
    try:
        docker.compose_up(["postgres", "upstream", "redis"])
        yield DockerLab()
    finally:
        with contextlib.suppress(docker.DockerError):
            docker.compose_down()
        if previous is None:
            os.environ.pop(UPSTREAM_TIMEOUT_ENV, None)
        else:
            os.environ[UPSTREAM_TIMEOUT_ENV] = previous


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


def fault_target(target: Target, lab: Lab, opts: FaultsOptions, run: Run, run_dir: Path,
                 say: Callable[[str], None], advance: Callable[[], None]) -> None:
    raw = run_dir / "raw"
    timeline_faults = [f for f in opts.faults if f not in SOLO_FAULTS]
    say("starting")
    with lab.serve(target, raw) as server:
        resolved = server.resolved
        warm_up(server.base_url, DB_MS, LLM_MS)
        state = FaultTarget(target=target.name, runtime=opts.runtime, db_pool=resolved.db_pool,
                            memory_before_mb=server.memory_mb())
        timelines: dict[str, Timeline] = {}
        with load(server.base_url, opts.users, raw / f"{target.name}_faults") as recorded:
            started = time.time()
            time.sleep(quick_or_full(opts, BASELINE_S))
            usual_ms = usual_wait_ms(recorded(), opts.users, started, time.time())
            # Watch each recovery for long enough that a request queued behind the others (a
            # model's usual wait, e.g. 5 s for 20 users on the blocking anti-pattern) can end in it.
            recovery_s = max(quick_or_full(opts, RECOVERY_S), 1.5 * usual_ms / 1000 + 0.5)
            for name in timeline_faults:
                say(FAULTS[name].title)
                timelines[name] = inject(name, lab, server, opts)
                time.sleep(recovery_s)
                advance()
            end = time.time()
            samples = recorded()
        for i, name in enumerate(timeline_faults):
            tl = timelines[name]
            tl.until = timelines[timeline_faults[i + 1]].injected if i + 1 < len(timeline_faults) else end
            allowed = worker_share(resolved.capacity, resolved.processes, opts.users) \
                if name == "worker-kill" else 0
            result = analyse(samples, name, target.name, opts.users, tl, in_flight_allowed=allowed,
                             limit_ms=error_limit_ms(name, usual_ms, opts.users, resolved.capacity))
            result.runtime = opts.runtime
            run.faults.append(result)
        # Requests whose Locust users are gone may still queue in the server: let it finish them,
        # so the pools are at rest here and the graceful stop below sees only its own requests.
        wait_idle(server.base_url)
        state.db_connections_after, state.db_busy_after, _ = lab.connections()
        state.memory_after_mb = server.memory_mb()
        run.fault_targets.append(state)
        run.save(run_dir)
        for name, measure in (("overload", overload), ("idle-connections", idle_connections),
                              ("sigterm", graceful_stop)):
            if name in opts.faults:
                say(FAULTS[name].title)
                result = measure(server, opts, raw)
                result.runtime = opts.runtime
                run.faults.append(result)
                run.save(run_dir)
                advance()
                if name != "sigterm":
                    wait_idle(server.base_url)


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
    """The server's worker processes: its children that hold the listening socket (not, e.g.,
    multiprocessing's resource tracker), the killed one (a zombie until reaped) left out. Read from
    /proc, so it works in a container's network namespace too (the host's view of its PIDs)."""
    found = []
    for child in psutil.Process(pid).children():
        with contextlib.suppress(psutil.Error, OSError):
            if child.pid != exclude and child.status() != psutil.STATUS_ZOMBIE and \
                    listening_inodes(child.pid, port) & socket_inodes(child.pid):
                found.append(child)
    return found


def listening_inodes(pid: int, port: int) -> set[str]:
    """Inodes of the sockets listening on `port` in the network namespace of process `pid`."""
    inodes = set()
    for name in ("tcp", "tcp6"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/net/{name}") as fh:
            for line in list(fh)[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    inodes.add(fields[9])
    return inodes


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process `pid` has open."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                found.add(link[8:-1])
    return found


def inject(name: str, lab: Lab, server: Server, opts: FaultsOptions) -> Timeline:
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
        port = server.resolved.port
        workers = server_workers(server.pid, port)
        if not workers:
            extra["note"] = "one process: no worker to kill (the server itself is the worker)"
        else:
            count, victim = len(workers), workers[0]
            victim.send_signal(signal.SIGKILL)
            took = wait_for(lambda: len(server_workers(server.pid, port, exclude=victim.pid)) >= count, 30,
                            "the master did not replace the killed worker")
            extra["note"] = f"replaced in {took:.1f} s"
    else:
        raise ValueError(f"unknown fault {name!r}")
    return Timeline(injected, time.time(), 0.0, db_busy=busy, extra=extra)


def solo_result(name: str, server: Server, users: int, samples: list[Sample], since: float,
                until: float) -> FaultResult:
    """A fault measured with its own load: the answers of the requests that ended in [since, until)."""
    mine = [s for s in samples if s.name == ROW and since <= s.end < until]
    canary = sorted(s.ms for s in samples if s.name == CANARY_ROW and since <= s.end < until)
    ok = sorted(s.ms for s in mine if s.ok)
    served = f"{len(ok) / (until - since):.1f} rps served"
    note = served + (f"; p50 {ok[len(ok) // 2]:.0f} ms" if ok else "") + (
        f"; canary /healthz p95 {canary[int(0.95 * (len(canary) - 1))]:.0f} ms (n={len(canary)})"
        if canary else "; canary /healthz: no answer")
    return FaultResult(target=server.resolved.name, fault=name, users=users, injected_at=round(since, 3),
                       lasted_s=round(until - since, 2), requests=len(mine),
                       by_status=count_answers(mine), note=note)


def overload(server: Server, opts: FaultsOptions, raw: Path) -> FaultResult:
    """10 × capacity users (10 × the steady users where the model has no bound) for a while."""
    resolved = server.resolved
    users = min(10 * (resolved.capacity or opts.users), OVERLOAD_MAX_USERS)
    before = server.memory_mb()
    peak = before or 0.0
    with load(server.base_url, users, raw / f"{resolved.name}_overload") as recorded:
        since = time.time()
        while time.time() < since + hold(opts, "overload"):
            peak = max(peak, server.memory_mb() or 0.0)
            time.sleep(0.5)
        until = time.time()
        samples = recorded()
    result = solo_result("overload", server, users, samples, since, until)
    result.note = f"{users} users; " + result.note + f"; memory {before or 0:.0f} → peak {peak:.0f} MiB"
    failed = {k: v for k, v in result.by_status.items() if k != "200"}
    if failed:
        result.problems.append("errors under overload: " + ", ".join(f"{v}× {k}" for k, v in failed.items()))
    if before and peak > MEMORY_BOUND * before:
        result.problems.append(f"memory grew from {before:.0f} to {peak:.0f} MiB (> {MEMORY_BOUND:g} ×)")
    try:
        wait_idle(server.base_url, timeout_s=120)
        after = httpx.get(f"{server.base_url}/recommendation/1?db_ms=0&llm_ms=0", timeout=30)
        alive = after.status_code == 200
    except httpx.HTTPError:
        alive = False
    if not alive:
        result.problems.append("did not serve normally after the overload")
    return result


def idle_connections(server: Server, opts: FaultsOptions, raw: Path) -> FaultResult:
    """IDLE_CONNECTIONS connections opened and left silent, then the steady load: who still serves."""
    host, port = server.resolved.host, server.resolved.port
    sockets = []
    try:
        for _ in range(IDLE_CONNECTIONS):
            with contextlib.suppress(OSError):
                sockets.append(socket.create_connection((host, port), timeout=2))
        with load(server.base_url, opts.users, raw / f"{server.resolved.name}_idle") as recorded:
            since = time.time()
            time.sleep(hold(opts, "idle-connections"))
            until = time.time()
            samples = recorded()
    finally:
        for sock in sockets:
            sock.close()
    result = solo_result("idle-connections", server, opts.users, samples, since, until)
    result.note = f"{len(sockets):,} connections open; " + result.note
    return result  # a finding: sync workers held by silent connections are the model, not a bug


def graceful_stop(server: Server, opts: FaultsOptions, raw: Path) -> FaultResult:
    """SIGTERM with every user's request inside the server: each must complete, then a clean exit."""
    resolved = server.resolved
    users = min(opts.users, resolved.capacity or opts.users)
    graceful_s = resolved.target.graceful_s
    with load(server.base_url, users, raw / f"{resolved.name}_sigterm") as recorded:
        time.sleep(quick_or_full(opts, BASELINE_S))
        injected = time.time()
        os.kill(server.pid, signal.SIGTERM)  # the server's own process, as `docker stop` does
        code = server.wait((graceful_s or 30) + 10)  # None: still running; the context stops it
        stopped = time.time()
        time.sleep(0.5)
        samples = recorded()
    struck = [s for s in samples if s.name == ROW and s.t0 < injected < s.end]
    result = FaultResult(target=resolved.name, fault="sigterm", users=users, injected_at=round(injected, 3),
                         lasted_s=0, requests=len(struck), by_status=count_answers(struck),
                         lost_in_flight=sum(not s.ok for s in struck), exit_code=code,
                         stop_s=round(stopped - injected, 2))
    if result.lost_in_flight:
        result.problems.append(f"{result.lost_in_flight} of {len(struck)} requests in flight "
                               "did not complete")
    if not clean_exit(code, server.log_tail()):
        result.problems.append(f"did not exit cleanly (exit status {code})")
    if graceful_s is not None and result.stop_s > graceful_s + 1:
        result.problems.append(f"took {result.stop_s:.1f} s to stop (graceful_s {graceful_s:g})")
    return result


# --- `bench soak`: minutes of steady load, errors and the memory's slope ---------------------

SOAK_SAMPLE_S = 5.0
SOAK_SETTLE_S = 60.0  # the slope leaves out the first minute: pools, caches and imports filling


def memory_slope(points: list[tuple[float, float]], settle_s: float = SOAK_SETTLE_S) -> float | None:
    """MiB per minute: the least-squares slope of the memory samples after `settle_s`."""
    later = [(t, mb) for t, mb in points if t >= settle_s] if points and points[-1][0] > 2 * settle_s \
        else points
    if len(later) < 3:
        return None
    slope = statistics.linear_regression([t for t, _ in later], [mb for _, mb in later]).slope
    return round(60 * slope, 3)


def run_soak(opts: FaultsOptions, minutes: float, console: Console, run_id: str) -> Path:
    run, run_dir = faults_run(opts, "soak", run_id, duration_s=60 * minutes)
    raw = run_dir / "raw"
    with contextlib.ExitStack() as stack:
        lab = stack.enter_context(start_lab(opts.runtime, raw, opts.targets))
        progress = stack.enter_context(Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(), console=console))
        task = progress.add_task("soak", total=len(opts.targets) * 60 * minutes)
        for target in opts.targets:
            progress.update(task, description=f"{target.name}: {opts.users} users for {minutes:g} min")
            try:
                run.soaks.append(soak_target(target, lab, opts, minutes, raw,
                                             lambda seconds: progress.advance(task, seconds)))
            except TargetUnavailable as why:
                run.skipped[target.name] = str(why).splitlines()[0]
            except Exception as exc:  # one broken target must not lose the others' rows
                run.skipped[target.name] = f"failed: {type(exc).__name__}: {exc}".splitlines()[0]
            run.save(run_dir)
    return run_dir


def soak_target(target: Target, lab: Lab, opts: FaultsOptions, minutes: float, raw: Path,
                advance: Callable[[float], None]) -> SoakResult:
    with lab.serve(target, raw) as server:
        warm_up(server.base_url, DB_MS, LLM_MS)
        points: list[tuple[float, float]] = []
        with load(server.base_url, opts.users, raw / f"{target.name}_soak") as recorded:
            started = time.time()
            while (elapsed := time.time() - started) < 60 * minutes:
                points.append((round(elapsed, 1), round(server.memory_mb() or 0.0, 1)))
                time.sleep(SOAK_SAMPLE_S)
                advance(SOAK_SAMPLE_S)
            until = time.time()
            samples = recorded()
    mine = [s for s in samples if s.name == ROW and started <= s.end < until]
    by_status = count_answers(mine)
    failed = {k: v for k, v in by_status.items() if k != "200"}
    return SoakResult(target=target.name, runtime=opts.runtime, users=opts.users, minutes=minutes,
                      requests=len(mine), by_status=by_status,
                      rps=round(by_status.get("200", 0) / (until - started), 1), memory_mb=points,
                      slope_mb_per_min=memory_slope(points),
                      problems=[", ".join(f"{v}× {k}" for k, v in failed.items())] if failed else [])
