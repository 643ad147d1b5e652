"""The web UI's "Comparison" tab: every swarm started from the web UI is recorded and compared.

Each swarm becomes a results.json row (bench/session.py says how: the window, the flags) in a
session folder, `results/web-ui-<time>/` (`--session-dir` or LOCUST_SESSION_DIR to choose one;
bind-mounted under compose, so it survives `down`). The tab shows the session's rows in report.md's
tables, grouped by scenario and workload; a row can be deleted, the session cleared, and
results.json, report.md and report.html downloaded (`bench report` renders the same folder).

Locust's web UI extension points (as in live_memory.py) give the tab; its content and the Host
field's list of the targets that are up come from web_ui.js, which the index page loads. The form
also gets "Record s": close the row and stop the swarm after that many seconds of window.

Only the process with the web UI records (a master, or a local runner): headless runs and
workers are untouched, so `bench compare` is unaffected.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import gevent
import psutil
from flask import Response, jsonify, make_response, request, send_file
from locust.runners import (
    STATE_MISSING,
    STATE_RUNNING,
    STATE_SPAWNING,
    STATE_STOPPED,
    MasterRunner,
    WorkerRunner,
)

from locust import events

try:
    from bench import session as lab
except ImportError:  # a Locust install without the lab's bench package: no tab (add_comparison_tab)
    lab = None

HERE = Path(__file__).resolve().parent
TAB = "comparison"
TICK_S = 0.5
STOP_WAIT_S = 10.0  # a master waits this long for its workers' last statistics
HOSTS_CACHE_S = 5.0
RESET_MSG, RESET_ACK = "lab_reset_stats", "lab_reset_stats_done"
FLUSH_MSG, FLUSH_ACK = "lab_send_stats", "lab_send_stats_done"
ACK_WAIT_S = 3.0  # a worker without the handlers (another locustfile) is not waited for longer
CANARY = ("/healthz", "GET")
TTFT = ("/stream first token", "TTFT")
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


def _entry(stats, name: str, method: str | None = None):
    for (entry_name, entry_method), entry in stats.entries.items():
        if entry_name == name and (method is None or entry_method == method):
            return entry
    return None


def figures(entry):
    """A Locust statistics row as bench.session.Figures: the numbers /stats/requests shows."""
    if entry is None or not entry.num_requests:
        return lab.Figures(0, 0)
    return lab.Figures(requests=entry.num_requests, failures=entry.num_failures,
                   p50=entry.median_response_time, p95=entry.get_response_time_percentile(0.95),
                   p99=entry.get_response_time_percentile(0.99), max=entry.max_response_time,
                   mean=entry.avg_response_time)


def _busy_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    times = psutil.cpu_times()
    total = sum(times)
    return total - times.idle - getattr(times, "iowait", 0.0), total


class Recorder:
    """Follows the runner: warm-up, window, close; one bench.session.Swarm per row."""

    def __init__(self, environment, session, watch) -> None:
        self.env, self.session, self.watch = environment, session, watch
        self.swarm = None  # the row being recorded
        self.base_requests = 0  # completed requests when the users were all spawned
        self.spawned_at: float | None = None
        self.cpu_base: tuple[float, dict[str, float], tuple[float, float]] | None = None
        self.locust_cpu: list[float] = []
        self.resetting = False
        self.stopping = False
        self.acks_pending: set[str] = set()  # workers yet to confirm their statistics restarted
        self.flush_pending: set[str] = set()  # workers yet to send their last statistics
        self.window_asked: float | None = None

    # --- the swarm's life -----------------------------------------------------------------

    def scenario_users(self) -> int:
        runner = self.env.runner
        # A master runs no users itself: its workers report theirs.
        counts = (runner.reported_user_classes_count if isinstance(runner, MasterRunner)
                  else runner.user_classes_count) or {}
        return sum(n for name, n in counts.items() if name != "Canary")

    def scenario(self) -> str:
        names = [cls.__name__ for cls in self.env.runner.user_classes or self.env.user_classes]
        return next((lab.SCENARIO_OF_CLASS[n] for n in names if n in lab.SCENARIO_OF_CLASS),
                    "recommendation")

    def begin(self, idle: dict[str, float] | None = None) -> None:
        opts = self.env.parsed_options
        self.window_asked, self.acks_pending = None, set()
        self.swarm = lab.Swarm(host=self.env.host or "", users=0, scenario=self.scenario(),
                           db_ms=int(opts.db_ms), llm_ms=int(opts.llm_ms), started=time.time(),
                           closed=time.time(), runtime=self.watch.mode if self.watch else "native",
                           jobs_endpoint=getattr(opts, "jobs_endpoint", None))
        self.swarm.idle = idle if idle is not None else self.memory_now()
        self.spawned_at, self.cpu_base, self.locust_cpu = None, None, []

    def memory_now(self) -> dict[str, float]:
        if not self.watch:
            return {}
        row = self.watch.sample_once()
        if "working_set_mb" in row:
            return {"pss": row["working_set_mb"]}
        return {k: row[f"{k}_mb"] for k in ("pss", "rss", "uss") if f"{k}_mb" in row}

    def on_test_start(self, **_kw) -> None:
        self.close()  # a swarm still open (started again without a stop) ends here
        self.stopping = False
        self.begin()

    def on_test_stopping(self, **_kw) -> None:
        if self.swarm and not self.stopping:
            self.stopping = True
            self.swarm.closed = time.time()
            gevent.spawn(self._close_when_stopped)

    def _close_when_stopped(self) -> None:
        runner = self.env.runner
        deadline = time.monotonic() + STOP_WAIT_S
        while runner.state != STATE_STOPPED and time.monotonic() < deadline:
            gevent.sleep(0.2)
        if isinstance(runner, MasterRunner):
            # A stopped worker still holds the requests it finished since its last report (every
            # 3 s): ask each for them, and close once all have answered (the answer follows the
            # report on the same connection).
            self.flush_pending = {c.id for c in runner.clients.all if c.state != STATE_MISSING}
            runner.send_message(FLUSH_MSG)
            flush_deadline = time.monotonic() + ACK_WAIT_S
            while self.flush_pending and time.monotonic() < flush_deadline:
                gevent.sleep(0.05)
        self.close(at=self.swarm.closed if self.swarm else None)

    def on_flush_ack(self, environment, msg, **_kw) -> None:
        self.flush_pending.discard(msg.node_id)

    def on_reset_stats(self, **_kw) -> None:
        """The user pressed Reset: the window starts again from here."""
        if self.swarm and self.swarm.window_opened and not self.resetting:
            self._open_window(reset=False)

    def on_quitting(self, **_kw) -> None:
        self.close()  # Ctrl-C mid-swarm: what the window has is kept
        self.session.discard_if_empty()

    def tick(self) -> None:
        swarm, runner = self.swarm, self.env.runner
        if swarm is None or self.stopping or runner.state not in (STATE_SPAWNING, STATE_RUNNING):
            return
        users = self.scenario_users()
        opts = self.env.parsed_options
        changed = (users, self.env.host or "", int(opts.db_ms), int(opts.llm_ms)) != (
            swarm.users, swarm.host, swarm.db_ms, swarm.llm_ms)
        if swarm.users and changed:  # the Edit form changed the load: a new row
            idle = swarm.idle
            self.close()
            self.begin(idle)
            return
        if runner.state == STATE_RUNNING and self.spawned_at is None:
            self.spawned_at, swarm.users = time.time(), users
            self.base_requests = runner.stats.total.num_requests
        if self.spawned_at is None:
            return
        if self.cpu_base is not None:
            self.locust_cpu.append(self._locust_cpu_now())
        waited = time.time() - self.spawned_at
        if swarm.window_opened is None:
            answered = runner.stats.total.num_requests - self.base_requests >= swarm.users
            if self.window_asked is not None:
                if time.monotonic() - self.window_asked > ACK_WAIT_S:
                    log.warning("workers %s did not confirm the statistics reset", self.acks_pending)
                    self._open_window(reset=True)
            elif (answered and waited >= lab.WARMUP_MIN_S) or waited >= lab.WARMUP_MAX_S:
                swarm.steady = answered
                self._ask_for_window()
        record_s = float(getattr(self.env.parsed_options, "record_s", 0) or 0)
        if swarm.window_opened and record_s > 0 and time.time() - swarm.window_opened >= record_s:
            runner.stop()

    def _ask_for_window(self) -> None:
        """Open the window now, or on a master once every worker has restarted its statistics.

        A worker reports the requests of the last few seconds at once; were only the master's
        statistics reset, its next report would carry requests from before the window. So each
        worker resets first and confirms; the confirmation comes on the same connection after any
        report sent before the reset, so once all are in, the master resets too: the window then
        holds only requests that finished inside it."""
        runner = self.env.runner
        workers = ({c.id for c in runner.clients.all if c.state != STATE_MISSING}
                   if isinstance(runner, MasterRunner) else set())
        if not workers:
            self._open_window(reset=True)
            return
        self.acks_pending, self.window_asked = workers, time.monotonic()
        runner.send_message(RESET_MSG)

    def on_reset_ack(self, environment, msg, **_kw) -> None:
        self.acks_pending.discard(msg.node_id)
        if self.window_asked is not None and not self.acks_pending and self.swarm:
            self._open_window(reset=True)

    def _open_window(self, reset: bool) -> None:
        self.window_asked, self.acks_pending = None, set()
        if reset:  # what the web UI's Reset does: Locust's statistics (and the memory peaks) restart
            self.resetting = True
            try:
                self.env.events.reset_stats.fire()
                self.env.runner.stats.reset_all()
            finally:
                self.resetting = False
        self.swarm.window_opened = time.time()
        if self.watch:
            self.watch.sample_once()  # fresh figures at the window's edge (Docker's come from samples)
        cpu = self.watch.source.cpu_seconds() if self.watch else {}
        self.cpu_base = (time.monotonic(), cpu, _busy_cpu_s())
        self.locust_cpu = []

    def _locust_cpu_now(self) -> float:
        runner = self.env.runner
        if isinstance(runner, MasterRunner):  # the workers make the load; each reports its CPU
            return max((w.cpu_usage or 0.0 for w in runner.clients.values()), default=0.0)
        return float(getattr(runner, "current_cpu_usage", 0.0) or 0.0)

    def close(self, at: float | None = None) -> None:
        """The row of the swarm being recorded, saved now (nothing when none is open)."""
        swarm, self.swarm = self.swarm, None
        if swarm is None:
            return
        swarm.closed = at or time.time()
        swarm.users = swarm.users or self.scenario_users()  # stopped while spawning: as far as it got
        if not swarm.users:
            return  # not one user started: nothing to record
        stats = self.env.runner.stats
        swarm.row = figures(_entry(stats, lab.ROW_OF_SCENARIO[swarm.scenario]))
        swarm.canary = figures(_entry(stats, *CANARY))
        swarm.ttft = figures(_entry(stats, *TTFT)) if swarm.scenario == "stream" else None
        if self.watch:
            self.watch.sample_once()
            peaks = self.watch.peaks
            if "working_set_mb" in peaks:
                swarm.peak = {"pss": peaks["working_set_mb"]}
            else:
                swarm.peak = {k: peaks[f"{k}_mb"] for k in ("pss", "rss", "uss") if f"{k}_mb" in peaks}
            # the idle sample is one of this swarm's samples too (taken before the peaks restart):
            # PSS moves as pages are shared, and a peak 0.1 MB under idle read as memory given back
            swarm.peak = {k: max(v, swarm.idle.get(k, v)) for k, v in swarm.peak.items()}
            if self.watch.mode == "native":  # a container's PIDs count threads: the manifest's count stands
                swarm.processes = int(self.watch.latest.get("processes") or 0)
        if self.cpu_base is not None:
            t0, cpu0, (busy0, total0) = self.cpu_base
            elapsed = time.monotonic() - t0
            cpu1 = self.watch.source.cpu_seconds() if self.watch else {}
            deltas = [cpu1[k] - cpu0[k] for k in cpu1 if k in cpu0]
            if deltas and elapsed > 0:
                swarm.target_cpu = 100 * sum(deltas) / elapsed
                swarm.max_process_cpu = 100 * max(deltas) / elapsed
            busy1, total1 = _busy_cpu_s()
            if total1 > total0:
                swarm.machine_cpu = 100 * (busy1 - busy0) / (total1 - total0)
            if self.locust_cpu:
                swarm.locust_cpu = sum(self.locust_cpu) / len(self.locust_cpu)
        try:
            self.session.add(swarm)
        except Exception:  # a row that cannot be saved must not take the web UI down
            log.exception("could not record the swarm against %s", swarm.host)

    def run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:
                log.exception("web UI session recorder")
            gevent.sleep(TICK_S)


def _inject_script(response: Response) -> Response:
    """The index page loads web_ui.js (the Comparison tab's content, the Host field's list)."""
    if response.mimetype == "text/html" and not response.direct_passthrough:
        html = response.get_data(as_text=True)
        if "</body>" in html and "lab/web-ui.js" not in html:
            response.set_data(html.replace("</body>", '<script src="./lab/web-ui.js"></script>\n</body>', 1))
    return response


def _keep_polling_while_stopping(response: Response) -> Response:
    """The web UI polls /stats/requests only while a swarm spawns or runs. When the server stops a
    swarm itself (Record s) a master passes through "stopping" while its workers stop, and a UI
    that saw it would stop polling and show "STOPPING" for good; so that brief state reads as
    "running" here and the UI polls on until "stopped"."""
    body = response.get_json()
    if body.get("state") == "stopping":
        body["state"] = "running"
        response.set_data(jsonify(body).get_data())
    return response


@events.init.add_listener
def reset_when_the_master_asks(environment, runner=None, **_kw) -> None:
    """A worker restarts its statistics when a web-UI swarm's window opens (Recorder._ask_for_window)
    and reports at once when it closes (Recorder._close_when_stopped)."""
    if not isinstance(runner, WorkerRunner):
        return

    def reset(environment, msg, **_kw) -> None:
        environment.runner.stats.reset_all()
        environment.runner.send_message(RESET_ACK)

    def send_stats(environment, msg, **_kw) -> None:
        environment.runner._send_stats()  # the report a worker sends every 3 s, now (as on "quit")
        environment.runner.send_message(FLUSH_ACK)

    runner.register_message(RESET_MSG, reset)
    runner.register_message(FLUSH_MSG, send_stats)


@events.init.add_listener
def add_comparison_tab(environment, web_ui=None, **_kw) -> None:
    if web_ui is None:  # headless or worker: no UI, nothing to record
        return
    if lab is None:
        log.warning("no Comparison tab: the lab's bench package is not importable")
        return
    from bench.report import render_comparison  # matplotlib and jinja2: only where there is a UI
    opts = environment.parsed_options
    workload = (int(opts.db_ms), int(opts.llm_ms))  # the command line's: the session's own workload
    registry = Path(opts.lab_targets) if opts.lab_targets else None
    session = (lab.Session(Path(opts.session_dir), workload, registry) if opts.session_dir
               else lab.Session.new(Path("results"), workload, registry))
    compose = bool(getattr(opts, "memory_container", None))
    recorder = Recorder(environment, session, getattr(environment, "target_memory", None))
    environment.events.test_start.add_listener(recorder.on_test_start)
    environment.events.test_stopping.add_listener(recorder.on_test_stopping)
    environment.events.reset_stats.add_listener(recorder.on_reset_stats)
    environment.events.quitting.add_listener(recorder.on_quitting)
    if isinstance(environment.runner, MasterRunner):
        environment.runner.register_message(RESET_ACK, recorder.on_reset_ack)
        environment.runner.register_message(FLUSH_ACK, recorder.on_flush_ack)
    gevent.spawn(recorder.run)
    web_ui.template_args.setdefault("extended_tabs", []).append({"title": "Comparison", "key": TAB})
    auth = web_ui.auth_required_if_enabled
    hosts_cache: dict[str, object] = {"at": 0.0, "hosts": []}

    @web_ui.app.after_request
    def inject(response):
        if request.path.endswith("/stats/requests") and response.is_json:
            return _keep_polling_while_stopping(response)
        return _inject_script(response) if request.path.endswith("/") else response

    @web_ui.app.route("/lab/web-ui.js")
    def web_ui_js():
        return send_file(HERE / "web_ui.js", mimetype="text/javascript", max_age=0)

    @web_ui.app.route("/lab/hosts")
    @auth
    def hosts():
        if time.monotonic() - hosts_cache["at"] > HOSTS_CACHE_S:
            hosts_cache.update(at=time.monotonic(), hosts=lab.hosts_up(compose, lab.read_registry(registry)))
        return jsonify(hosts_cache["hosts"])

    @web_ui.app.route("/lab/session")
    @auth
    def session_info():
        swarm = recorder.swarm
        recording = None if swarm is None else {
            "host": swarm.host, "users": swarm.users,
            "phase": "window" if swarm.window_opened else "warm-up",
            "window_s": round(time.time() - swarm.window_opened, 1) if swarm.window_opened else 0.0,
            "record_s": float(getattr(environment.parsed_options, "record_s", 0) or 0)}
        return jsonify({"run_id": session.run_dir.name, "dir": str(session.run_dir),
                        "rows": len(session.run.results), "recording": recording})

    @web_ui.app.route("/lab/comparison")
    @auth
    def comparison():
        return render_comparison(session.run)

    @web_ui.app.route("/lab/comparison", methods=["DELETE"])
    @auth
    def clear():
        session.clear()
        return jsonify({"rows": 0})

    @web_ui.app.route("/lab/comparison/rows/<path:recorded_at>", methods=["DELETE"])
    @auth
    def delete(recorded_at: str):
        if not session.delete(recorded_at):
            return make_response(jsonify({"error": {"code": "not_found",
                                                    "message": f"no row recorded at {recorded_at}"}}), 404)
        return jsonify({"rows": len(session.run.results)})

    @web_ui.app.route("/lab/session/<any('results.json', 'report.md', 'report.html'):name>")
    @auth
    def download(name: str):
        if name != "results.json" or not (session.run_dir / name).exists():
            session.report()  # judges the claims and renders both reports from the rows
        as_attachment = name != "report.html"
        return send_file(session.run_dir.resolve() / name, as_attachment=as_attachment, max_age=0,
                         download_name=f"{session.run_dir.name}-{name}")
