"""Web-UI swarms measured as `bench compare` measures a level (docs/DESIGN.md, Web-UI sessions).

Each swarm started from the web UI (or by the Comparison tab's Compare form) writes a request ledger
(locust/request_ledger.py) to the session's raw/ folder, and its rows run the harness's phases on it:
warm-up to steady state, the window, the drain that follows every request started in the window to
its end while the load goes on. The window closes at Stop (the swarm then stops once the drain is
over; Stop again cuts the drain short), after the form's "Record s", at the end of a Compare cell's
window, or when the users change (the next row starts its warm-up). bench/session.py counts the row
with bench/row.py, the code `bench compare` uses. With a master and workers (compose,
`--processes`) the workers forward their request records to the master, which writes the ledger and
decides the phases for all of them (request_ledger.Fleet).

The tab's routes and their guards are in web_routes.py.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import gevent
import psutil
from locust.runners import (
    STATE_CLEANUP,
    STATE_INIT,
    STATE_MISSING,
    STATE_STOPPED,
    STATE_STOPPING,
    MasterRunner,
    WorkerRunner,
)
from request_ledger import (
    RECORDING,
    WARMUP_MIN_S,
    Fleet,
    Ledger,
    RowControl,
    report_status,
    run_phases,
)

from locust import events

try:
    from bench import session as lab
    from bench.load import DRAIN_MAX_S, WARMUP_MIN_MAX_S, read_ledger
    from bench.row import Resources
except ImportError:  # a Locust install without the lab's bench package: no tab (web_routes.py)
    lab = None

TICK_S = 0.5  # Locust's own CPU is sampled this often over a window
FORWARD_S = 0.1  # a worker sends the request records it holds this often
RECORD_MSG = "lab_record"  # master -> workers: a swarm is recorded, forward its requests
ROW_MSG = "lab_row"  # master -> workers: the users changed, a new row's warm-up begins
RECORDS_MSG = "lab_records"  # worker -> master: request records for the ledger
CANARY_USERS = 1  # the Canary's fixed_count: a swarm of N users is N + 1 Locust users
READY_WAIT_S = 30.0  # a Compare cell waits this long for the runner (and its workers) to be ready
log = logging.getLogger(__name__)


@events.init_command_line_parser.add_listener
def add_session_arguments(parser) -> None:
    parser.add_argument("--record-s", type=float, default=0.0, env_var="LOCUST_RECORD_S",
                        include_in_web_ui=True,
                        help="seconds of window to record, then stop the swarm (0: until Stop)")
    parser.add_argument("--lab-targets", type=str, default="", env_var="LOCUST_LAB_TARGETS",
                        include_in_web_ui=False,
                        help="`bench up`'s file of the targets it started (URL, params): resolves the Host")
    parser.add_argument("--session-dir", type=str, default="", env_var="LOCUST_SESSION_DIR",
                        include_in_web_ui=False,
                        help="folder of this web UI session's rows (default: results/web-ui-<time>)")


def _scenario_users(runner) -> int:
    """The scenario users this runner runs (a master: its workers' reports), the canary left out."""
    counts = (runner.reported_user_classes_count if isinstance(runner, MasterRunner)
              else runner.user_classes_count) or {}
    return sum(n for name, n in counts.items() if name != "Canary")


def _locust_cpu_s() -> dict[int, float]:
    """CPU seconds so far of this Locust process and the workers it forked (`--processes`)."""
    out = {}
    me = psutil.Process()
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        out[proc.pid] = times.user + times.system
    return out


def _busy_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    times = psutil.cpu_times()
    total = sum(times)
    return total - times.idle - getattr(times, "iowait", 0.0), total


# --- a worker: forward the requests of a web-UI swarm -------------------------------------------

class Forwarder:
    """A web-UI worker's request records, sent to the master in batches (the master writes the
    swarm's ledger): a worker may run on another host, with no folder shared with the master."""

    def __init__(self, runner) -> None:
        self.runner, self.held = runner, []

    def add(self, record: dict) -> None:
        self.held.append(record)

    def flush(self) -> None:
        if self.held:
            batch, self.held = self.held, []
            self.runner.send_message(RECORDS_MSG, batch)

    def run(self, ledger: Ledger) -> None:
        while RECORDING.ledger is ledger:
            self.flush()
            gevent.sleep(FORWARD_S)
        self.flush()


@events.init.add_listener
def record_for_the_master(environment, runner=None, **_kw) -> None:
    if not isinstance(runner, WorkerRunner):
        return
    forwarder = Forwarder(runner)

    def start(environment, msg, **_kw) -> None:
        ledger = Ledger(forward=forwarder.add)
        RECORDING.ledger, RECORDING.fleet, RECORDING.window, RECORDING.web = ledger, None, None, True
        RECORDING.flush = forwarder.flush
        gevent.spawn(forwarder.run, ledger)
        gevent.spawn(report_status, RECORDING, ledger, runner.send_message,
                     lambda: _scenario_users(runner), gevent.sleep)

    def new_row(environment, msg, **_kw) -> None:
        if RECORDING.ledger is not None:
            RECORDING.ledger.new_row()
            RECORDING.window = None

    def stopped(**_kw) -> None:
        if RECORDING.web:  # the swarm is over: its last records go, and nothing more is recorded
            forwarder.flush()
            RECORDING.ledger, RECORDING.web = None, False

    runner.register_message(RECORD_MSG, start)
    runner.register_message(ROW_MSG, new_row)
    environment.events.test_stop.add_listener(stopped)


# --- the master (or a local runner): rows -------------------------------------------------------

@dataclass
class ComparePlan:
    """The Compare form's cells, run one after another: each a swarm of one target at one users
    level, recorded for `window_s` and drained, as `bench compare --targets ... --users ...` would."""
    cells: list[tuple[str, str, int]]  # (Host URL, target, users)
    window_s: float
    db_ms: int
    llm_ms: int
    done: int = 0
    current: str = ""
    cancelled: bool = False
    finished: bool = False
    problems: list[str] = field(default_factory=list)

    def status(self) -> dict:
        return {"cells": len(self.cells), "done": self.done, "current": self.current,
                "cancelled": self.cancelled, "finished": self.finished, "problems": self.problems,
                "window_s": self.window_s}


class Recorder:
    """Each swarm's ledger, each row's phases on it, and the row saved once its drain is over."""

    def __init__(self, environment, session, watch) -> None:
        self.env, self.session, self.watch = environment, session, watch
        self.ledger: Ledger | None = None
        self.ledger_path: Path | None = None
        self.control: RowControl | None = None
        self.swarm: lab.Swarm | None = None  # the row being recorded
        self.rows = None  # the greenlet running the rows' phases
        self.idle: dict[str, float] = {}  # memory before the swarm's load
        # the window's start: (monotonic time, the target's CPU s per process, Locust's, the machine's)
        self.cpu_base: tuple[float, dict[str, float], dict[int, float], tuple[float, float]] | None = None
        self.locust_cpu: list[float] = []
        self.resources = Resources()
        self.recorded = 0  # rows saved since Locust started
        self.plan: ComparePlan | None = None
        self.problem: str | None = None  # the last row that could not be saved: shown in the tab

    @property
    def runner(self):
        return self.env.runner

    def master(self) -> bool:
        return isinstance(self.runner, MasterRunner)

    def scenario(self) -> str:
        names = [cls.__name__ for cls in self.runner.user_classes or self.env.user_classes]
        return next((lab.SCENARIO_OF_CLASS[n] for n in names if n in lab.SCENARIO_OF_CLASS),
                    "recommendation")

    def window_s(self) -> float | None:
        if self.plan is not None and not self.plan.finished:
            return self.plan.window_s
        record_s = float(getattr(self.env.parsed_options, "record_s", 0) or 0)
        return record_s if record_s > 0 else None

    # --- a swarm ------------------------------------------------------------------------------

    def on_test_start(self, **_kw) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-%f")
        raw = self.session.run_dir / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        self.ledger_path = raw / f"swarm-{stamp}_requests.jsonl"
        self.ledger = Ledger(self.ledger_path)
        self.idle = self.memory_now()
        RECORDING.ledger, RECORDING.window, RECORDING.web = self.ledger, None, True
        RECORDING.fleet = None
        if self.master():
            workers = [c for c in self.runner.clients.all if c.state != STATE_MISSING]
            RECORDING.fleet = Fleet(self.ledger, len(workers), self.runner.send_message, gevent.sleep,
                                    forwarded=True)
            self.runner.send_message(RECORD_MSG)  # before the spawn messages, on the same connection
        self.rows = gevent.spawn(self.run_rows, self.ledger)

    def on_test_stop(self, **_kw) -> None:
        """The users are gone (Stop after the drain, Record s, Locust's own run time, Ctrl-C): a row
        still open is closed with what it has, its unfinished requests censored."""
        control, swarm = self.control, self.swarm
        if control is not None and not control.recorded and self.ledger is not None:
            self.finish_now(control, swarm)
        if self.ledger is not None:
            self.ledger.finish("stopped")
            self.ledger.close()
        if RECORDING.ledger is self.ledger:
            RECORDING.ledger, RECORDING.fleet, RECORDING.web = None, None, False
        self.ledger, self.control, self.swarm = None, None, None

    def on_test_stopping(self, **_kw) -> None:
        control = self.control
        if control is not None and control.phase in ("warm-up", "window", "drain"):
            control.close = control.close or "stop"
            control.cut = True  # the users are being stopped: nothing more will be answered

    def on_quitting(self, **_kw) -> None:
        self.on_test_stop()  # Ctrl-C mid-swarm: what the window has is kept
        self.session.discard_if_empty()

    def run_rows(self, ledger: Ledger) -> None:
        try:
            self._run_rows(ledger)
        except Exception as exc:  # a row that cannot be measured must not take the web UI down
            log.exception("web UI session recorder")
            self.problem = f"{type(exc).__name__}: {exc}"

    def _run_rows(self, ledger: Ledger) -> None:
        row = 0
        while self.ledger is ledger:
            row += 1
            window_s = self.window_s()
            control = RowControl(row=row, window_s=window_s, on_phase=self.on_phase)
            self.control = control
            opts = self.env.parsed_options
            self.swarm = lab.Swarm(
                host=self.env.host or "", users=0, scenario=self.scenario(), db_ms=int(opts.db_ms),
                llm_ms=int(opts.llm_ms), started=time.time(), closed=time.time(), idle=self.idle,
                runtime=self.watch.mode if self.watch else "native",
                jobs_endpoint=getattr(opts, "jobs_endpoint", None))
            warmup_max_s = max(window_s, WARMUP_MIN_MAX_S) if window_s else lab.WARMUP_MAX_S
            reason = run_phases(ledger, warmup_min_s=WARMUP_MIN_S, warmup_max_s=warmup_max_s,
                                drain_max_s=DRAIN_MAX_S, scenario_users=self.scenario_users,
                                sleep=gevent.sleep, stop=lambda: None, fleet=RECORDING.fleet,
                                control=control)
            if reason is None or control.recorded:  # the swarm ended from outside: on_test_stop saved it
                return
            if reason == "warm-up":
                if control.close == "users":  # the users changed before a window opened: warm up again
                    continue
                self.finish_now(control, self.swarm)  # stopped during the warm-up: a "too short" row
            else:
                self.save(control, self.swarm)
            if reason != "users":
                self.stop_runner()
                return

    def scenario_users(self) -> int:
        fleet = RECORDING.fleet
        return fleet.users() if fleet is not None else _scenario_users(self.runner)

    def stop_runner(self) -> None:
        if self.runner.state not in (STATE_STOPPING, STATE_STOPPED, STATE_CLEANUP):
            self.runner.stop()

    # --- a row's edges ------------------------------------------------------------------------

    def on_phase(self, phase: str) -> None:
        if self.swarm is None:
            return
        if phase == "window":  # the samplers start over: what the window costs
            self.swarm.window_opened = time.time()
            self.swarm.users = self.scenario_users()
            if self.watch:
                self.watch.reset_peak()
                self.watch.sample_once()
            cpu = self.watch.source.cpu_seconds() if self.watch else {}
            self.cpu_base, self.locust_cpu = (time.monotonic(), cpu, _locust_cpu_s(), _busy_cpu_s()), []
        elif phase == "drain":
            self.swarm.closed = time.time()
            self.resources = self.resources_now()

    def memory_now(self) -> dict[str, float]:
        if not self.watch:
            return {}
        row = self.watch.sample_once()
        if "working_set_mb" in row:
            return {"pss": row["working_set_mb"]}
        return {k: row[f"{k}_mb"] for k in ("pss", "rss", "uss") if f"{k}_mb" in row}

    def resources_now(self) -> Resources:
        """What the target, Locust and the machine used since the window opened."""
        peak: dict[str, float] = {}
        processes = 0
        if self.watch:
            self.watch.sample_once()
            peaks = self.watch.peaks
            if "working_set_mb" in peaks:
                peak = {"pss": peaks["working_set_mb"]}
            else:
                peak = {k: peaks[f"{k}_mb"] for k in ("pss", "rss", "uss") if f"{k}_mb" in peaks}
            # PSS moves as pages are shared: a peak a little under idle would read as memory given back
            peak = {k: max(v, self.idle.get(k, v)) for k, v in peak.items()}
            if self.watch.mode == "native":  # a container's PIDs count threads: the manifest's stands
                processes = int(self.watch.latest.get("processes") or 0)
        target_cpu = max_process_cpu = machine_cpu = locust = busiest = None
        workers = len(self.runner.clients.values()) if self.master() else 0
        if self.cpu_base is not None:
            t0, cpu0, locust0, (busy0, total0) = self.cpu_base
            elapsed = time.monotonic() - t0
            cpu1 = self.watch.source.cpu_seconds() if self.watch else {}
            deltas = [cpu1[k] - cpu0[k] for k in cpu1 if k in cpu0]
            if deltas and elapsed > 0:
                target_cpu, max_process_cpu = 100 * sum(deltas) / elapsed, 100 * max(deltas) / elapsed
            busy1, total1 = _busy_cpu_s()
            if total1 > total0:
                machine_cpu = 100 * (busy1 - busy0) / (total1 - total0)
            locust1 = _locust_cpu_s()
            mine = [locust1[p] - locust0[p] for p in locust1 if p in locust0]
            if elapsed > 0 and (not workers or len(mine) > 1):  # measured: every Locust process is here
                locust, busiest = 100 * sum(mine) / elapsed, 100 * max(mine) / elapsed
        if locust is None and self.locust_cpu:  # workers elsewhere (compose): as each reports its own
            locust = busiest = sum(self.locust_cpu) / len(self.locust_cpu)
        return Resources(peak=peak, target_cpu=target_cpu, max_process_cpu=max_process_cpu,
                         locust_cpu=locust, locust_busiest=busiest if workers else None,
                         locust_processes=workers, machine_cpu=machine_cpu, processes=processes)

    def tick(self) -> None:
        """Locust's CPU over the window where its workers run elsewhere (compose): each reports its
        own, and the busiest counts. Natively the process tree's CPU time is read instead."""
        if self.control is None or self.control.phase != "window" or not self.master():
            return
        self.locust_cpu.append(max((w.cpu_usage or 0.0 for w in self.runner.clients.values()), default=0.0))

    def run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:
                log.exception("web UI session recorder")
            gevent.sleep(TICK_S)

    # --- a row's end ---------------------------------------------------------------------------

    def finish_now(self, control: RowControl, swarm) -> None:
        """Close a row at once (no drain: the users are gone or going): the window ends now, its
        unfinished requests are censored, the row is saved."""
        if control.recorded or self.ledger is None:
            return
        ledger = self.ledger
        if control.phase == "warm-up":  # never steady: the whole warm-up is the (too short) row
            start = read_ledger(self.ledger_path, row=control.row).marks.get("start", {}).get("t")
            ledger.mark("window", steady=False, row=control.row, at=start)
            control.enter("window")
            swarm.window_opened = None
        if control.phase == "window":
            ledger.mark("drain", row=control.row)
            control.enter("drain")
        window = self.window_of(control)
        fleet = RECORDING.fleet
        if fleet is not None and fleet.reports:
            fleet.finish("stopped", window=window, end=False, row=control.row)
        else:
            ledger.finish("stopped", window=window, end=False, row=control.row)
        self.save(control, swarm)

    def window_of(self, control: RowControl) -> tuple[float, float] | None:
        marks = read_ledger(self.ledger_path, row=control.row).marks
        return (marks["window"]["t"], marks["drain"]["t"]) if "window" in marks and "drain" in marks else None

    def save(self, control: RowControl, swarm) -> None:
        if control.recorded or swarm is None:
            return
        control.recorded = True
        try:
            ledger = read_ledger(self.ledger_path, row=control.row)
            if not swarm.users:  # stopped while spawning: as far as it got
                swarm.users = self.scenario_users()
            if not swarm.users:
                return  # not one user started: nothing to record
            swarm.resources = self.resources
            self.session.add(ledger, swarm)
            self.recorded += 1
            self.problem = None
        except Exception as exc:  # a row that cannot be saved must not take the web UI down
            log.exception("could not record the swarm against %s", swarm.host)
            self.problem = f"the row against {swarm.host} could not be saved: {type(exc).__name__}: {exc}"

    # --- what the UI asks ----------------------------------------------------------------------

    def stop_asked(self) -> bool:
        """Stop: the window closes now and the swarm stops once its requests have finished (a second
        Stop cuts the drain short). False where Locust should stop at once itself."""
        control = self.control
        if control is None or self.rows is None or self.rows.dead or control.recorded:
            return False
        if self.plan is not None and not self.plan.finished:
            self.plan.cancelled = True
        if control.phase == "drain":
            control.cut = True
        else:
            control.close = control.close or "stop"
        return True

    def users_changing(self) -> None:
        """A /swarm while the swarm runs (the Edit form): the row closes; the next one warms up."""
        control = self.control
        if control is None or control.recorded or self.ledger is None:
            return
        control.close = control.close or "users"
        self.ledger.new_row()
        if self.master():
            self.runner.send_message(ROW_MSG)

    def recording(self) -> dict | None:
        control, swarm = self.control, self.swarm
        if control is None or swarm is None or control.recorded:
            return None
        opened = swarm.window_opened
        return {"host": swarm.host, "users": swarm.users or self.scenario_users(), "row": control.row,
                "phase": control.phase,
                "window_s": round((swarm.closed if control.phase != "window" else time.time()) - opened, 1)
                if opened else 0.0,
                "record_s": control.window_s or 0.0}

    # --- the Compare form ------------------------------------------------------------------------

    def compare(self, plan: ComparePlan) -> None:
        self.plan = plan
        gevent.spawn(self.run_plan, plan)

    def run_plan(self, plan: ComparePlan) -> None:
        try:
            for url, target, users in plan.cells:
                if plan.cancelled:
                    break
                plan.current = f"{target} @ {users} users"
                if not self.wait_ready():
                    plan.problems.append(f"{plan.current}: Locust was not ready to start")
                    break
                opts = self.env.parsed_options
                self.env.host, opts.db_ms, opts.llm_ms = url, plan.db_ms, plan.llm_ms
                before = self.recorded
                self.runner.start(users + CANARY_USERS, spawn_rate=users + CANARY_USERS)
                deadline = time.monotonic() + max(plan.window_s, WARMUP_MIN_MAX_S) * 2 + DRAIN_MAX_S + 60
                while (self.recorded == before and not plan.cancelled and self.problem is None
                       and time.monotonic() < deadline):
                    gevent.sleep(0.2)
                if self.recorded == before and not plan.cancelled:
                    plan.problems.append(f"{plan.current}: {self.problem or 'no row was recorded'}")
                    self.stop_runner()
                plan.done += 1
        except Exception as exc:
            log.exception("compare plan")
            plan.problems.append(f"{type(exc).__name__}: {exc}")
        finally:
            if plan.cancelled:
                self.stop_runner()
            plan.current, plan.finished = "", True

    def wait_ready(self) -> bool:
        """Until the runner can start a swarm (a master: its workers back from the last one)."""
        deadline = time.monotonic() + READY_WAIT_S
        while time.monotonic() < deadline:
            runner = self.runner
            idle = runner.state in (STATE_INIT, STATE_STOPPED) and self.control is None
            if idle and (not self.master() or (runner.clients.ready
                                               and len(runner.clients.ready) == len(runner.clients.all))):
                return True
            gevent.sleep(0.2)
        return False


def plan_from_form(body: object, hosts: list[dict], workload: tuple[int, int]) -> ComparePlan:
    """The Compare form's JSON: {"hosts": [URL, ...], "users": [N, ...], "window_s": S, "db_ms",
    "llm_ms"}. Every URL must be one the Host list offers; users 1 comes first, as in bench compare."""
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    offered = {h["url"]: h["target"] for h in hosts}
    chosen = body.get("hosts")
    if not isinstance(chosen, list) or not chosen or any(h not in offered for h in chosen):
        raise ValueError("hosts: pick one or more of the targets that are up")
    users = body.get("users")
    if (not isinstance(users, list) or not users
            or any(not isinstance(u, int) or isinstance(u, bool) or not 1 <= u <= 5000 for u in users)):
        raise ValueError("users: a list of whole numbers from 1 to 5000")
    window_s = body.get("window_s", 10)
    if not isinstance(window_s, int | float) or isinstance(window_s, bool) or not 3 <= window_s <= 600:
        raise ValueError("window_s: seconds from 3 to 600")
    db_ms, llm_ms = body.get("db_ms", workload[0]), body.get("llm_ms", workload[1])
    for name, value, top in (("db_ms", db_ms, 5000), ("llm_ms", llm_ms, 20000)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
            raise ValueError(f"{name}: whole milliseconds from 0 to {top}")
    levels = sorted({1, *users})  # the 1-user row is each target's own L1: its ceiling
    return ComparePlan([(url, offered[url], n) for url in dict.fromkeys(chosen) for n in levels],
                       float(window_s), db_ms, llm_ms)
