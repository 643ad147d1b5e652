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
shutdown and started again on the same port and data, or hung with SIGSTOP, the upstream is
SIGKILLed and started again, its outages are the mock's timed faults (POST /mock/faults with for_s).

The server is checked after each fault: one that died is marked in that fault's row and started
again for the rest (fault_target), so one crash is one broken row. `--repeat` runs the whole plan
several times per target (fault_plan).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import psycopg
import redis as redis_client
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench import docker, probe
from bench import infra as infra_mod
from bench.compare import warm_up
from bench.compose import (
    DB_NAME,
    DB_PASSWORD,
    DB_TIMEOUT_ENV,
    DB_USER,
    LAB_DB_TIMEOUT_ENV,
    PUBLISH_HOST,
    REDIS_FRAMEWORKS,
    UPSTREAM_PORT,
    UPSTREAM_TIMEOUT_ENV,
)
from bench.load import CANARY_ROW, LoadSpec, Sample, ledger_path, read_ledger, start_locust
from bench.manifest import ResolvedTarget, Target
from bench.procs import Proc, wait_http
from bench.results import FaultResult, FaultTarget, Run, Scenario, SoakResult, new_run
from bench.targets import TargetUnavailable, running

ROW = "/recommendation/[id]"
USERS, DB_MS, LLM_MS = 20, 50, 200  # steady load: every model serves it without a long queue
UPSTREAM_TIMEOUT_S = 2.0  # the targets' client timeout here, so a hang is seen in seconds
DB_TIMEOUT_S = 2.0  # the targets' DB connect/statement timeout here (DB_TIMEOUT_ENV), likewise
# (quick, full), like Fault.hold_s: the quick run keeps `make faults` near 12 min for 15 targets;
# 1.5 s of recovery still holds many times every pool's size in requests at 20 users (a model that
# queues is watched longer: run_timeline).
BASELINE_S = (2.0, 3.0)  # steady load before the first fault
RECOVERY_S = (1.5, 4.0)  # watched after each fault is cleared
LOAD_BACKSTOP_S = 600  # Locust's own --run-time: the harness stops it long before
ANSWER_LIMIT_MS = 1000  # a 503 while the DB is down comes at once, never after a pool wait
OVERLOAD_MAX_USERS = 400  # what Locust drives from one core here
NO_ANSWER = "no HTTP answer"
IDLE_CONNECTIONS = 1000
SLOWLORIS_SEND_S = 1.0  # each half-sent request gets one more header line this often
MEMORY_BOUND = 2.0  # overload: peak memory within this factor of the memory before it
MAX_CLIENTS = 2000  # pg-exhausted stops opening connections here if the server never refuses
DRIP_S = UPSTREAM_TIMEOUT_S + 3  # each dribbled answer lasts this long: past the timeout + margin
REDIS_RECOVERY_S = 15.0  # how long redis-down waits for the Redis endpoints to serve again
LOG_LINES = 5  # of a dead server's log, in its row
SOLO_FAULTS = ("overload", "idle-connections", "slowloris", "sigterm")  # each with its own load, last
FINDINGS = ("idle-connections", "slowloris")  # measured and shown; what happens is the model's
# The answer to every request made while the database hangs or is down is timed, a 200 after a
# wait included: such a wait is what these faults look for.
WAIT_FAULTS = ("pg-stop", "pg-hang")
# `make faults` (--quick): one run of each on the 15 targets fills its 12 min on 2 cores; the full
# run adds pg-exhausted, redis-down and the upstream's 429, broken and dribbled answers, overload
# and the two findings.
QUICK_FAULTS = ("pg-restart", "pg-stop", "pg-hang", "upstream-500", "upstream-hang", "upstream-kill",
                "worker-kill", "sigterm")
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
    "pg-hang": Fault("PostgreSQL hangs: it accepts connections and never answers (SIGSTOP)",
                     "only 503 database_unavailable, every answer within the DB timeout "
                     f"({DB_TIMEOUT_S:g} s, {DB_TIMEOUT_ENV}) + 1 s per round of the model's queue; "
                     "0 failures after",
                     frozenset(UNIFORM_DB), (4.0, 8.0)),
    "pg-exhausted": Fault("PostgreSQL's max_connections used up by other clients",
                          "new connections refused: only 503 database_unavailable (pooled connections may "
                          "still serve), each within 1 s more than the usual wait; 0 failures after",
                          frozenset(UNIFORM_DB), (3.0, 5.0)),
    "redis-down": Fault("Redis stopped, then started",
                        "the pub/sub streams 503 database_unavailable and the job submissions 503 "
                        "queue_unavailable while it is down, each at once, and serve again after; "
                        "the recommendation never notices",
                        frozenset(), (3.0, 5.0)),
    "upstream-500": Fault("the upstream answers 500",
                          "502 upstream_error while it lasts; 0 failures after", frozenset(UNIFORM_UPSTREAM),
                          (2.0, 5.0)),
    "upstream-429": Fault("the upstream rate-limits: 429 with Retry-After",
                          "502 upstream_error at once (max_retries=0: no retry, no wait); 0 failures after",
                          frozenset(UNIFORM_UPSTREAM), (2.0, 5.0)),
    "upstream-malformed": Fault("the upstream answers 200 with truncated JSON",
                                "502 upstream_error (never a 500); 0 failures after",
                                frozenset(UNIFORM_UPSTREAM), (2.0, 5.0)),
    "upstream-hang": Fault("the upstream hangs (no answer)",
                           f"504 upstream_timeout within the client timeout ({UPSTREAM_TIMEOUT_S:g} s) "
                           "+ 1 s per round of the model's queue; no DB connection busy meanwhile; "
                           "0 failures after",
                           frozenset({"504 upstream_timeout"}), (3.0, 5.0)),
    "upstream-drip": Fault("the upstream dribbles its answer past the client timeout",
                           "504 upstream_timeout: no client reads the dribble beyond the timeout "
                           f"({UPSTREAM_TIMEOUT_S:g} s) + 1 s, and no answer takes longer than "
                           "upstream-hang's limit; 0 failures after",
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
    "slowloris": Fault(f"{IDLE_CONNECTIONS:,} half-sent requests kept open (a header line a second), "
                       "then the load",
                       "a finding, not a pass/fail: which models still serve while requests trickle in, "
                       "and which close them (a header timeout)",
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
    if name in WAIT_FAULTS and limit_ms is not None:
        # While the database is down or hangs, every answer comes within the limit, a 503, never
        # after waiting the outage out in a pool: the wait from the fault (or the request, if later)
        # to its answer. Requests made in the outage's last `limit` may meet the database back: exempt.
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
    if name == "pg-hang" and tl.cleared - tl.injected > DB_TIMEOUT_S + 1 and not failed:
        # Requests met the hung server for longer than the timeout, yet none was answered 503.
        result.problems.append(f"no 503 although the database hung {tl.cleared - tl.injected:.1f} s: "
                               f"the requests waited it out (no DB timeout of {DB_TIMEOUT_S:g} s)")
    result.problems += tl.extra.get("problems", [])  # what the injection itself found
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


def error_limit_ms(name: str, usual_ms: float, users: int, capacity: int | None,
                   db_pool: int | None = None) -> float | None:
    """How long an error answer may take, as the user sees it (queueing included).

    pg-stop, pg-exhausted: 1 s beyond the usual wait (a 503 comes at once, never after a pool wait).
    upstream-hang and -drip, pg-hang: the client's (or the DB's) timeout + 1 s for each round the
    model's capacity makes a user wait behind others (20 users on 4 sync workers: 5 rounds, each
    worker held for the whole timeout). Under pg-hang the DB pool is a queue too: a request waiting
    for a pooled connection gets one when a statement in the frozen server times out, and then its
    own connection waits out the timeout (20 users on a pool of 15: 2 rounds)."""
    if name in ("pg-stop", "pg-exhausted"):
        return usual_ms + ANSWER_LIMIT_MS
    timeout_s = {"upstream-hang": UPSTREAM_TIMEOUT_S, "upstream-drip": UPSTREAM_TIMEOUT_S,
                 "pg-hang": DB_TIMEOUT_S}.get(name)
    if timeout_s is not None:
        slots = min(users, capacity or users, (db_pool or users) if name == "pg-hang" else users)
        rounds = -(-users // slots)
        return (timeout_s * 1000 + 1000) * rounds
    return None


def clean_exit(code: int | None, log_tail: str) -> bool:
    """Exit status 0, or uvicorn's own re-raised SIGTERM after a complete shutdown (it re-raises the
    signal it caught so the exit status tells a supervisor why it stopped: 143 in Docker)."""
    return code == 0 or (code == -signal.SIGTERM and "Finished server process" in log_tail)


# --- the lab's processes and the database, as the faults need them ---------------------------

def redis_answers(url: str) -> bool:
    try:
        with redis_client.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1) as client:
            return bool(client.ping())
    except redis_client.RedisError:
        return False


def wait_redis(url: str, timeout_s: float = 30) -> None:
    wait_for(lambda: redis_answers(url), timeout_s, f"Redis at {url} did not answer PING again")


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
    exit_status: Callable[[], int | None] = lambda: None  # the server's status once it has died

    def died(self) -> int | None:
        """Its exit status if the server has died (a restarted container counts), else None."""
        return self.exit_status()


class Lab:
    """PostgreSQL, the upstream and the targets, reached from this host (`database_url`,
    `upstream_url`); subclasses stop, kill and start them."""
    database_url: str
    upstream_url: str
    redis_url: str | None = None

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

    def mock_stats(self) -> dict:
        return httpx.get(f"{self.upstream_url}/mock/stats", timeout=5).raise_for_status().json()

    def restore(self) -> None:
        """After a fault that failed midway: PostgreSQL answering, Redis and the upstream up, no
        outage left."""
        with contextlib.suppress(Exception):
            self.resume_postgres()
        try:
            self.connections()
        except psycopg.Error:
            self.start_postgres()
        try:
            self.end_outage()
        except httpx.HTTPError:
            self.start_upstream()
        if self.redis_url and not redis_answers(self.redis_url):
            self.start_redis()

    def wait_postgres(self, proc: Proc | None = None) -> None:
        infra_mod.wait_pg(self.database_url, proc, timeout=60)


@dataclass
class NativeLab(Lab):
    """The lab's own processes (bench/infra.py), stopped and started by PID."""
    infra: infra_mod.Infra

    def __post_init__(self) -> None:
        self.database_url, self.upstream_url = self.infra.database_url, self.infra.upstream_url
        self.redis_url = self.infra.redis_url

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

    def postgres_tree(self) -> list[psutil.Process]:
        """The postmaster and its children (backends, background workers)."""
        postmaster = psutil.Process(self.proc("postgres").pid)
        return [postmaster, *postmaster.children(recursive=True)]

    def hang_postgres(self) -> None:
        # The postmaster first: no new backend is forked while the running ones are stopped. The
        # kernel still completes TCP handshakes into the listen backlog: connections "open".
        for proc in self.postgres_tree():
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGSTOP)

    def resume_postgres(self) -> None:
        for proc in reversed(self.postgres_tree()):
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGCONT)

    def stop_redis(self) -> None:
        self.proc("redis").stop()

    def start_redis(self) -> None:
        redis = self.proc("redis")
        if not redis.alive():
            redis.restart()
        wait_redis(self.infra.redis_url)

    @contextlib.contextmanager
    def serve(self, target: Target, raw: Path) -> Iterator[Server]:
        timeouts = {"upstream_timeout_s": UPSTREAM_TIMEOUT_S, DB_TIMEOUT_ENV.lower(): DB_TIMEOUT_S}
        with running(target, self.infra, raw, db_ms=DB_MS, llm_ms=LLM_MS, **timeouts) as (resolved, proc):
            def wait(timeout: float) -> int | None:
                try:
                    return proc.popen.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    return None
            yield Server(resolved, resolved.base_url, proc.pid, wait, lambda: proc.log_tail(50),
                         lambda: probe.memory_mb(proc.pid).get("pss"), proc.popen.poll)


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
        self.redis_url = docker.published_url("redis", 6379, "redis") + "/0"

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

    def hang_postgres(self) -> None:
        docker.run(docker.compose_argv("pause", "postgres"))  # the cgroup freezer: SIGSTOP for all

    def resume_postgres(self) -> None:
        docker.run(docker.compose_argv("unpause", "postgres"))

    def stop_redis(self) -> None:
        docker.run(docker.compose_argv("kill", "redis"))

    def start_redis(self) -> None:
        docker.run(docker.compose_argv("start", "redis"))
        self.refresh()
        wait_redis(self.redis_url)

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

            def exit_status() -> int | None:
                """The exit status once the server died: a new PID is the restart policy's doing."""
                fields = "{{.State.Pid}} {{.State.ExitCode}} {{.RestartCount}}"
                try:
                    state = docker.run(["docker", "inspect", "--format", fields, container]).split()
                except docker.DockerError:
                    return -1  # the container itself is gone: its status is lost with it
                now, code, restarts = (int(x) for x in state)
                return None if now == pid and not restarts else code

            try:
                yield Server(target.resolve(host=PUBLISH_HOST), base_url, pid, wait, log_tail,
                             lambda: docker.memory_mb(container).get("pss"), exit_status)
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
    repeat: int = 1  # each fault this many times per target


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
        task = progress.add_task("faults", total=len(opts.targets) * len(opts.faults) * opts.repeat)
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
    # compose reads these (bench/compose.py) when it creates a target's container
    timeouts = {UPSTREAM_TIMEOUT_ENV: f"{UPSTREAM_TIMEOUT_S:g}", LAB_DB_TIMEOUT_ENV: f"{DB_TIMEOUT_S:g}"}
    previous = {key: os.environ.get(key) for key in timeouts}
    os.environ.update(timeouts)
    try:
        docker.compose_up(["postgres", "upstream", "redis"])
        yield DockerLab()
    finally:
        with contextlib.suppress(docker.DockerError):
            docker.compose_down()
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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


@dataclass(frozen=True)
class Step:
    name: str
    repeat: int  # which run of the fault, from 1


def fault_plan(faults: list[str], repeat: int) -> list[Step]:
    """Each repeat runs every fault once: the timeline's first, then the solo ones (sigterm last)."""
    timeline = [f for f in faults if f not in SOLO_FAULTS]
    solo = [f for f in SOLO_FAULTS if f in faults]
    return [Step(name, r) for r in range(1, repeat + 1) for name in [*timeline, *solo]]


@dataclass
class TargetRun:
    """One target's faults under way: the steps still to run, and where their rows go."""
    target: Target
    lab: Lab
    opts: FaultsOptions
    run: Run
    raw: Path
    say: Callable[[str], None]
    advance: Callable[[], None]
    pending: deque[Step]
    state: FaultTarget | None = None
    starts: int = 0

    def prefix(self, kind: str, repeat: int = 1) -> Path:
        """Where a load's CSVs and ledger go: one file set per load, never reused."""
        return self.raw / f"{self.target.name}_{kind}" if repeat == 1 else \
            self.raw / f"{self.target.name}_{kind}_{repeat}"

    def title(self, step: Step) -> str:
        runs = f" (run {step.repeat} of {self.opts.repeat})" if self.opts.repeat > 1 else ""
        return FAULTS[step.name].title + runs


def fault_target(target: Target, lab: Lab, opts: FaultsOptions, run: Run, run_dir: Path,
                 say: Callable[[str], None], advance: Callable[[], None]) -> None:
    """Every step of the plan on this target. A server that died in a fault is marked in that
    fault's row and started (and warmed) again for the next one, so one crash is one row."""
    tr = TargetRun(target, lab, opts, run, run_dir / "raw", say, advance,
                   deque(fault_plan(opts.faults, opts.repeat)))
    while tr.pending:
        say("starting" if not tr.starts else "starting again")
        with lab.serve(target, tr.raw) as server:
            tr.starts += 1
            warm_up(server.base_url, DB_MS, LLM_MS)
            if tr.state is None:
                tr.state = FaultTarget(target=target.name, runtime=opts.runtime,
                                       db_pool=server.resolved.db_pool, memory_before_mb=server.memory_mb())
                run.fault_targets.append(tr.state)
            serve_steps(tr, server)
        run.save(run_dir)


def serve_steps(tr: TargetRun, server: Server) -> None:
    """The pending steps on one running server, until they are done, it died, or it was stopped."""
    while tr.pending:
        if tr.pending[0].name not in SOLO_FAULTS:
            if not run_timeline(tr, server):
                return
            settle(tr, server)
        while tr.pending and tr.pending[0].name in SOLO_FAULTS:
            step = tr.pending.popleft()
            tr.say(tr.title(step))
            result = SOLO_MEASURES[step.name](server, tr.opts, tr.prefix(step.name, step.repeat))
            result.runtime, result.repeat = tr.opts.runtime, step.repeat
            tr.run.faults.append(result)
            tr.advance()
            if step.name == "sigterm":
                return  # stopped by design: the next repeat starts it again
            if (code := server.died()) is not None:
                mark_death(tr, result, code, server.log_tail())
                return
            wait_idle(server.base_url)


def run_timeline(tr: TargetRun, server: Server) -> bool:
    """The timeline faults at the head of the plan, under one steady load; False if the server died
    (checked after each fault's recovery: the rest of the plan waits for a new server)."""
    opts, resolved = tr.opts, server.resolved
    done: list[tuple[Step, Timeline]] = []
    code = None
    with load(server.base_url, opts.users, tr.prefix("faults", tr.starts)) as recorded:
        started = time.time()
        time.sleep(quick_or_full(opts, BASELINE_S))
        usual_ms = usual_wait_ms(recorded(), opts.users, started, time.time())
        # Watch each recovery for long enough that a request queued behind the others (a
        # model's usual wait, e.g. 5 s for 20 users on the blocking anti-pattern) can end in it.
        recovery_s = max(quick_or_full(opts, RECOVERY_S), 1.5 * usual_ms / 1000 + 0.5)
        while tr.pending and tr.pending[0].name not in SOLO_FAULTS:
            step = tr.pending.popleft()
            tr.say(tr.title(step))
            done.append((step, strike_safely(step.name, tr.lab, server, opts)))
            time.sleep(recovery_s)
            tr.advance()
            if (code := server.died()) is not None:
                break
        end = time.time()
        samples = recorded()
    for i, (step, tl) in enumerate(done):
        tl.until = done[i + 1][1].injected if i + 1 < len(done) else end
        allowed = worker_share(resolved.capacity, resolved.processes, opts.users) \
            if step.name == "worker-kill" else 0
        result = analyse(samples, step.name, resolved.name, opts.users, tl, in_flight_allowed=allowed,
                         limit_ms=error_limit_ms(step.name, usual_ms, opts.users, resolved.capacity,
                                                 resolved.db_pool))
        result.runtime, result.repeat = opts.runtime, step.repeat
        tr.run.faults.append(result)
    if code is not None:
        mark_death(tr, tr.run.faults[-1], code, server.log_tail())
        return False
    return True


def strike_safely(name: str, lab: Lab, server: Server, opts: FaultsOptions) -> Timeline:
    """inject(), or a row that says the injection itself failed (the lab put back as it was)."""
    injected = time.time()
    try:
        return inject(name, lab, server, opts)
    except Exception as exc:  # the next faults still run, on a lab restored
        lab.restore()
        return Timeline(injected, time.time(), 0.0, extra={
            "problems": [f"the injection failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"]})


def mark_death(tr: TargetRun, result: FaultResult, code: int, log_tail: str) -> None:
    """The fault's row says the server died (its exit status and last log lines)."""
    tail = " | ".join(line.strip() for line in log_tail.strip().splitlines()[-LOG_LINES:])
    result.died = True
    result.problems.append(f"the server died (exit status {code}); its log ends: {tail or '(empty)'}")
    if tr.pending:
        again = "the server was started again for the next fault"
        result.note = "; ".join(filter(None, [result.note, again]))
        if tr.state is not None:
            tr.state.restarts += 1


def settle(tr: TargetRun, server: Server) -> None:
    """At rest after the timeline: the connections the target still holds, and its memory."""
    # Requests whose Locust users are gone may still queue in the server: let it finish them,
    # so the pools are at rest here and the graceful stop below sees only its own requests.
    wait_idle(server.base_url)
    with contextlib.suppress(psycopg.Error):
        tr.state.db_connections_after, tr.state.db_busy_after, _ = tr.lab.connections()
    tr.state.memory_after_mb = server.memory_mb()


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


@dataclass
class Strike:
    """One fault being injected: what its injector needs, and what it notes for the row."""
    lab: Lab
    server: Server
    seconds: float  # how long the fault is held
    injected: float = field(default_factory=time.time)
    cleared: float | None = None  # when it was cleared, if not when the injector returned
    db_busy: int | None = None
    extra: dict = field(default_factory=dict)  # "note", "problems"

    def note(self, text: str) -> None:
        self.extra["note"] = "; ".join(filter(None, [self.extra.get("note"), text]))

    def problem(self, text: str) -> None:
        self.extra.setdefault("problems", []).append(text)


def inject(name: str, lab: Lab, server: Server, opts: FaultsOptions) -> Timeline:
    strike = Strike(lab, server, hold(opts, name))
    INJECTORS[name](strike)
    cleared = strike.cleared if strike.cleared is not None else time.time()
    return Timeline(strike.injected, cleared, 0.0, db_busy=strike.db_busy, extra=strike.extra)


def pg_restart(s: Strike) -> None:
    s.lab.stop_postgres()
    s.lab.start_postgres()


def pg_stop(s: Strike) -> None:
    s.lab.stop_postgres()
    time.sleep(s.seconds)
    s.lab.start_postgres()


def pg_hang(s: Strike) -> None:
    s.lab.hang_postgres()
    try:
        time.sleep(s.seconds)
    finally:
        s.lab.resume_postgres()


def pg_exhausted(s: Strike) -> None:
    """Connections opened until the server refuses one (`too many clients`), held, then closed."""
    held: list[psycopg.Connection] = []
    try:
        while len(held) < MAX_CLIENTS:
            try:
                held.append(psycopg.connect(s.lab.database_url, autocommit=True, connect_timeout=5))
            except psycopg.OperationalError as refused:
                why = "too many clients" if "too many clients" in str(refused) else str(refused).strip()[-80:]
                s.note(f"{len(held)} connections opened before the server refused one ({why})")
                break
        else:
            s.problem(f"the server never refused a connection ({MAX_CLIENTS} opened)")
        s.injected = time.time()  # exhausted from here on
        time.sleep(s.seconds)
    finally:
        for conn in held:
            with contextlib.suppress(psycopg.Error):
                conn.close()


def upstream_status(status: int) -> Callable[[Strike], None]:
    def outage(s: Strike) -> None:
        s.lab.outage(status=status, for_s=s.seconds)
        time.sleep(s.seconds)
    return outage


def upstream_malformed(s: Strike) -> None:
    s.lab.outage(mode="malformed", for_s=s.seconds)
    time.sleep(s.seconds)


def upstream_hang(s: Strike) -> None:
    s.lab.outage(mode="hang", for_s=s.seconds)
    s.db_busy = 0
    time.sleep(min(1.0, s.seconds / 2))  # the first requests are waiting on it now
    while time.time() < s.injected + s.seconds:
        # New requests run their own DB step meanwhile (active); a connection held across the
        # upstream call sits idle inside its transaction. (The contract suite checks the strict
        # form: no DB work at all while a fixed set of requests waits on the upstream.)
        s.db_busy = max(s.db_busy, s.lab.connections()[2])
        time.sleep(0.25)
    s.lab.end_outage()


def upstream_drip(s: Strike) -> None:
    """Every answer dribbled for DRIP_S; the mock reports how long the longest reader stayed."""
    s.lab.outage(mode="drip", for_s=s.seconds, drip_s=DRIP_S)
    time.sleep(s.seconds)
    s.cleared = time.time()
    time.sleep(DRIP_S)  # the last dribble (begun as the outage ended) is over: none leaks onward
    longest = s.lab.mock_stats().get("drip_longest_s", 0.0)
    limit = UPSTREAM_TIMEOUT_S + 1
    s.note(f"the longest client read the dribble {longest:.1f} s")
    if longest > limit:
        s.problem(f"a client read the dribbled answer for {longest:.1f} s (limit {limit:g} s): its timeout "
                  "bounds each read, not the whole call")


def upstream_kill(s: Strike) -> None:
    s.lab.kill_upstream()
    time.sleep(s.seconds)
    s.lab.start_upstream()


def worker_kill(s: Strike) -> None:
    port = s.server.resolved.port
    workers = server_workers(s.server.pid, port)
    if not workers:
        s.note("one process: no worker to kill (the server itself is the worker)")
        return
    count, victim = len(workers), workers[0]
    victim.send_signal(signal.SIGKILL)
    took = wait_for(lambda: len(server_workers(s.server.pid, port, exclude=victim.pid)) >= count, 30,
                    "the master did not replace the killed worker")
    s.note(f"replaced in {took:.1f} s")


# The endpoints that need Redis (docs/CONTRACT.md) and what each answers while it is down.
PUBSUB_PROBE = ("GET", "/pubsub/async/lab-faults?timeout_s=0.2", "503 database_unavailable", 200)
JOB_PROBE = ("POST", f"/jobs/recommendation/1?db_ms=0&llm_ms={LLM_MS}", "503 queue_unavailable", 202)


def redis_probes(target: Target) -> list[tuple[str, str, str, int]]:
    """(method, path, the answer while Redis is down, the status once it is back) per endpoint."""
    return [*([PUBSUB_PROBE] if target.framework in REDIS_FRAMEWORKS else []),
            *([JOB_PROBE] if target.jobs else [])]


def probe_answer(client: httpx.Client, method: str, path: str) -> tuple[str, float]:
    """One request to a Redis endpoint: its answer as the faults table counts it, and its ms."""
    started = time.monotonic()
    try:
        resp = client.request(method, path)
    except httpx.HTTPError:
        return NO_ANSWER, 1000 * (time.monotonic() - started)
    ms = 1000 * (time.monotonic() - started)
    if resp.status_code < 300:
        return str(resp.status_code), ms
    try:
        code = resp.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = "non-uniform"
    return f"{resp.status_code} {code}", ms


def redis_down(s: Strike) -> None:
    """Redis stopped while the load runs: its endpoints probed meanwhile, then until they serve."""
    probes = redis_probes(s.server.resolved.target)
    if not s.lab.redis_url or not probes:
        # Nothing of the target uses Redis: the row checks that its recommendation serves on.
        s.note("no Redis in this lab: not injected" if probes else "no Redis endpoint: not injected")
        return
    s.lab.stop_redis()
    seen: Counter[str] = Counter()
    slowest = 0.0
    with httpx.Client(base_url=s.server.base_url, timeout=10) as client:
        try:
            while time.time() < s.injected + s.seconds:
                for method, path, expected, _ in probes:
                    got, ms = probe_answer(client, method, path)
                    seen[got] += 1
                    slowest = max(slowest, ms)
                    if got != expected:
                        s.problem(f"{method} {path.split('?')[0]} answered {got} while Redis was down "
                                  f"(expected {expected})")
                time.sleep(0.2)
        finally:
            s.lab.start_redis()
        s.cleared = time.time()
        s.note("Redis endpoints while down: " + ", ".join(f"{n}× {a}" for a, n in sorted(seen.items()))
               + f" (slowest {slowest:.0f} ms)")
        if slowest > ANSWER_LIMIT_MS:
            s.problem(f"a Redis endpoint took {slowest:.0f} ms to answer while Redis was down "
                      f"(limit {ANSWER_LIMIT_MS} ms)")
        for method, path, _, served in probes:
            back = wait_served(client, method, path, served, REDIS_RECOVERY_S)
            if back is None:
                s.problem(f"{method} {path.split('?')[0]} did not serve again within {REDIS_RECOVERY_S:g} s")
            else:
                s.note(f"{path.split('?')[0]} served again {back:.1f} s after Redis")


def wait_served(client: httpx.Client, method: str, path: str, status: int, timeout_s: float) -> float | None:
    """Seconds until the endpoint answers `status` again, or None."""
    started = time.time()
    while time.time() - started < timeout_s:
        if probe_answer(client, method, path)[0] == str(status):
            return time.time() - started
        time.sleep(0.2)
    return None


INJECTORS: dict[str, Callable[[Strike], None]] = {
    "pg-restart": pg_restart, "pg-stop": pg_stop, "pg-hang": pg_hang, "pg-exhausted": pg_exhausted,
    "redis-down": redis_down, "upstream-500": upstream_status(500), "upstream-429": upstream_status(429),
    "upstream-malformed": upstream_malformed, "upstream-hang": upstream_hang, "upstream-drip": upstream_drip,
    "upstream-kill": upstream_kill, "worker-kill": worker_kill,
}


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


def overload(server: Server, opts: FaultsOptions, prefix: Path) -> FaultResult:
    """10 × capacity users (10 × the steady users where the model has no bound) for a while."""
    resolved = server.resolved
    users = min(10 * (resolved.capacity or opts.users), OVERLOAD_MAX_USERS)
    before = server.memory_mb()
    peak = before or 0.0
    with load(server.base_url, users, prefix) as recorded:
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


def server_address(server: Server) -> tuple[str, int]:
    """Where the host reaches the server (under compose, an ephemeral published port)."""
    url = httpx.URL(server.base_url)
    return url.host, url.port


def idle_connections(server: Server, opts: FaultsOptions, prefix: Path) -> FaultResult:
    """IDLE_CONNECTIONS connections opened and left silent, then the steady load: who still serves."""
    sockets = open_connections(server_address(server), IDLE_CONNECTIONS)
    try:
        with load(server.base_url, opts.users, prefix) as recorded:
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


def open_connections(address: tuple[str, int], count: int, first: bytes = b"") -> list[socket.socket]:
    """Up to `count` connections to the server (those refused are left out), each sent `first`."""
    sockets = []
    for _ in range(count):
        with contextlib.suppress(OSError):
            sock = socket.create_connection(address, timeout=2)
            if first:
                sock.sendall(first)
            sockets.append(sock)
    return sockets


def trickle(sockets: list[socket.socket], stop: threading.Event) -> None:
    """One more header line on each half-sent request every SLOWLORIS_SEND_S, never the blank line
    that ends the headers; a socket the server closed is dropped (and closed here)."""
    while not stop.wait(SLOWLORIS_SEND_S):
        for sock in list(sockets):
            try:
                sock.sendall(b"X-Lab-Slow: 1\r\n")
            except OSError:
                sockets.remove(sock)
                sock.close()


def slowloris(server: Server, opts: FaultsOptions, prefix: Path) -> FaultResult:
    """IDLE_CONNECTIONS requests left half-sent and trickling, then the steady load: who serves."""
    sockets = open_connections(server_address(server), IDLE_CONNECTIONS,
                               b"GET /healthz HTTP/1.1\r\nHost: lab\r\n")
    opened, stop = len(sockets), threading.Event()
    sender = threading.Thread(target=trickle, args=(sockets, stop), daemon=True)
    sender.start()
    try:
        with load(server.base_url, opts.users, prefix) as recorded:
            since = time.time()
            time.sleep(hold(opts, "slowloris"))
            until = time.time()
            samples = recorded()
    finally:
        stop.set()
        sender.join(timeout=10)
        for sock in sockets:
            sock.close()
    result = solo_result("slowloris", server, opts.users, samples, since, until)
    result.note = (f"{opened:,} half-sent requests, {opened - len(sockets):,} of them closed by the server; "
                   + result.note)
    return result  # a finding, as idle-connections


def graceful_stop(server: Server, opts: FaultsOptions, prefix: Path) -> FaultResult:
    """SIGTERM with every user's request inside the server: each must complete, then a clean exit."""
    resolved = server.resolved
    users = min(opts.users, resolved.capacity or opts.users)
    graceful_s = resolved.target.graceful_s
    with load(server.base_url, users, prefix) as recorded:
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


SOLO_MEASURES: dict[str, Callable[[Server, FaultsOptions, Path], FaultResult]] = {
    "overload": overload, "idle-connections": idle_connections, "slowloris": slowloris,
    "sigterm": graceful_stop,
}


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
