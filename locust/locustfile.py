"""Concurrency Lab load: one user class per scenario plus a fixed-rate canary (docs/DESIGN.md, Load).

No host is baked in: `-H http://127.0.0.1:8001` (or the web UI's Host field) picks the target.
Every response is validated — status, JSON keys and the requested user — so an error never counts
as throughput. Users run closed-loop (no think time): N users = N requests in flight.

    locust -f locust/locustfile.py -H http://127.0.0.1:8021 --db-ms 50 --llm-ms 500 \
        RecommendationUser Canary

The web UI also gets a live "Target memory" tab (live_memory.py): `--memory-pid PID` (default: the
process listening on the host's port) or, in compose, the swarmed service's cgroup (`--memory-cgroup`).

Every swarm started from the web UI is recorded as a results.json row and shown in its
"Comparison" tab (web_session.py, bench/session.py).

The harness (bench/load.py) adds `--ledger FILE --window-s N`: every request is written to FILE with
its start time, and the run goes warm-up -> N s window -> drain, so the requests started in the
window are measured to the end, queueing included (request_ledger.py). Without them, nothing changes.
With `--processes N` each worker writes its own ledger and the master decides the phases once, from
the workers' reports (request_ledger.Fleet).
"""

from __future__ import annotations

import contextlib
import gc
import json
import random
import time
from collections.abc import Iterator

import gevent
import live_memory  # noqa: F401 - registers the web UI's "Target memory" tab (no-op when headless)
import web_routes  # noqa: F401 - after live_memory: the "Comparison" tab (web_session.py records the swarms)
from locust.runners import MasterRunner, WorkerRunner
from request_ledger import (
    RECORDING,
    WARMUP_MIN_S,
    Fleet,
    Ledger,
    error_code,
    report_status,
    run_phases,
    worker_ledger,
)

from locust import FastHttpUser, constant, constant_throughput, events, task

JOBS_ENDPOINTS = ["jobs", "sync"]
JOB_RESULT = "job result"  # the jobs scenario's row: submit to result (bench.load.SCENARIOS)
POLL_S = 0.1
RECOMMENDATION_KEYS = {"user_id", "name", "budget_cents", "spent_cents", "transactions",
                       "top_category", "advice", "served_by"}


# A request's objects live for one upstream latency: they outlast the default young generation
# (700 allocations), get promoted, and each collection then stalls the gevent loop with hundreds of
# answers waiting, lining the users up in bunches that queue again: the calibration's shortfall from
# Little's law at 1,600 users (docs/DESIGN.md, Measurement window). Cycles are still collected, in
# fewer passes.
GC_THRESHOLDS = (100_000, 50, 100)


@events.init.add_listener
def fewer_gc_pauses(**_) -> None:
    gc.freeze()  # what start-up allocated (Locust, gevent, this file) is never scanned again
    gc.set_threshold(*GC_THRESHOLDS)


@events.init_command_line_parser.add_listener
def add_lab_arguments(parser) -> None:
    # Locust's own parser (not an argument group) knows include_in_web_ui.
    parser.add_argument("--db-ms", type=int, default=50, env_var="LOCUST_DB_MS",
                       include_in_web_ui=True, help="pg_sleep per request, ms (0..5000)")
    parser.add_argument("--llm-ms", type=int, default=500, env_var="LOCUST_LLM_MS",
                       include_in_web_ui=True, help="mock upstream latency, ms (0..20000)")
    parser.add_argument("--user-ids", type=str, default="1-10000", env_var="LOCUST_USER_IDS",
                       include_in_web_ui=True, help="range of user ids to request, e.g. 1-10000")
    parser.add_argument("--tokens", type=int, default=16, env_var="LOCUST_TOKENS",
                       include_in_web_ui=True, help="tokens per stream (stream scenario)")
    parser.add_argument("--cpu-n", type=int, default=100000, env_var="LOCUST_CPU_N",
                       include_in_web_ui=True, help="n for /cpu (cpu scenario)")
    parser.add_argument("--jobs-endpoint", choices=JOBS_ENDPOINTS, default="jobs",
                        env_var="LOCUST_JOBS_ENDPOINT", include_in_web_ui=True,
                        help="jobs scenario: submit + poll the job endpoints (jobs), or the same "
                             "request answered synchronously by GET /recommendation (sync)")
    # The harness's measurement (request_ledger.py); off by default, so interactive runs are as before.
    parser.add_argument("--ledger", type=str, default="", include_in_web_ui=False,
                        help="write every request (start time, latency, outcome) to this JSONL file")
    parser.add_argument("--window-s", type=float, default=0, include_in_web_ui=False,
                        help="with --ledger: warm-up, then a window of this many seconds, then drain")
    parser.add_argument("--warmup-min-s", type=float, default=WARMUP_MIN_S, include_in_web_ui=False,
                        help="shortest warm-up: every user spawned and answered once decides after it")
    parser.add_argument("--warmup-max-s", type=float, default=15, include_in_web_ui=False,
                        help="longest warm-up before the window (steady state usually comes sooner)")
    parser.add_argument("--drain-max-s", type=float, default=150, include_in_web_ui=False,
                        help="longest wait for the window's requests to finish; the rest are censored")
    parser.add_argument("--pace-rps", type=float, default=0, include_in_web_ui=False,
                        help="each user starts a request every 1 / this seconds (at once after one that ran "
                             "longer): with users well beyond rps x latency the arrivals keep their rate "
                             "whatever the latency, an open model (bench capacity); 0: a closed loop")


@events.test_start.add_listener
def open_ledger(environment, **_) -> None:
    """The harness's ledger (--ledger FILE): every request of the run, and its phases."""
    opts = environment.parsed_options
    if not getattr(opts, "ledger", "") or RECORDING.web:
        return
    runner = environment.runner

    def scenario_users() -> int:
        return scenario_users_of(runner)

    if isinstance(runner, WorkerRunner):  # --processes: this worker's requests, in a file of its own
        RECORDING.ledger = Ledger(worker_ledger(opts.ledger, runner.worker_index))
        if opts.window_s > 0:
            gevent.spawn(report_status, RECORDING, RECORDING.ledger, runner.send_message, scenario_users,
                         gevent.sleep)
        return
    RECORDING.ledger = Ledger(opts.ledger)
    if opts.window_s > 0:
        if isinstance(runner, MasterRunner):
            # --processes: the master runs no users and decides the phases once, from the workers'
            # reports: one warm-up that waits for every worker's users, one window (the master's
            # marks, in the clock the workers stamp their requests with: the same machine's), one
            # drain that waits for every worker's window requests. Phases per worker would be N windows.
            RECORDING.fleet = Fleet(RECORDING.ledger, opts.expect_workers, runner.send_message, gevent.sleep)
        fleet = RECORDING.fleet
        gevent.spawn(run_phases, RECORDING.ledger, window_s=opts.window_s, warmup_min_s=opts.warmup_min_s,
                     warmup_max_s=opts.warmup_max_s, drain_max_s=opts.drain_max_s,
                     scenario_users=fleet.users if fleet else scenario_users,
                     sleep=gevent.sleep, stop=runner.quit, fleet=fleet)


def scenario_users_of(runner) -> int:
    """The scenario users this process runs (the canary is not one)."""
    return sum(isinstance(g.args[0], LabUser) for g in list(runner.user_greenlets) if g.args)


@events.init.add_listener
def exchange_phases(environment, runner=None, **_) -> None:
    """--processes, and a web-UI master's workers: the workers report to the master's Fleet; the
    master tells them the window and when to end (a web-UI row: maybe only that row's window)."""
    if isinstance(runner, MasterRunner):
        runner.register_message("lab_status", lambda msg, **_: RECORDING.fleet
                                and RECORDING.fleet.update(msg.node_id, msg.data))
        runner.register_message("lab_ended", lambda msg, **_: RECORDING.fleet
                                and RECORDING.fleet.ended(msg.node_id, msg.data))
    elif isinstance(runner, WorkerRunner):
        def on_window(msg, **_) -> None:
            RECORDING.window = tuple(msg.data["window"])

        def on_finish(msg, **_) -> None:
            data, ledger = msg.data, RECORDING.ledger
            window = tuple(data["window"]) if data["window"] else None
            unfinished = ledger.finish(data["reason"], window, end=data.get("end", True),
                                       row=data.get("row")) if ledger else 0
            RECORDING.flush()  # the censored records reach the master before the answer
            runner.send_message("lab_ended", unfinished)

        runner.register_message("lab_window", on_window)
        runner.register_message("lab_finish", on_finish)


@events.spawning_complete.add_listener
def all_spawned(**_) -> None:
    if RECORDING.ledger:
        RECORDING.ledger.spawned = True


@events.request.add_listener
def record_request(name, response_time, exception=None, start_time=None, response=None, **_) -> None:
    if ledger := RECORDING.ledger:
        status = getattr(response, "status_code", None) if exception is not None else None
        ledger.record(gevent.getcurrent(), name, response_time or 0, exception is None, start_time,
                      status=status or 0 if exception is not None else None,
                      code=error_code(getattr(response, "text", None)) if status else None)


@events.test_stopping.add_listener
def censor_unfinished(**_) -> None:
    # Stopped before the phases ended (the --run-time backstop): what is in flight is censored. A
    # web-UI master's rows end their ledgers themselves (web_session.py).
    if RECORDING.ledger and not RECORDING.web:
        fleet = RECORDING.fleet
        RECORDING.ledger.finish("stopped", unfinished=fleet.unfinished() if fleet else None)
        RECORDING.flush()


@events.quitting.add_listener
def close_ledger(**_) -> None:
    if RECORDING.ledger:
        RECORDING.ledger.close()


def tracked(user, name: str) -> contextlib.AbstractContextManager:
    """Around one request: the ledger knows it is in flight (and its wait, if the run ends first)."""
    if RECORDING.ledger is None:
        return contextlib.nullcontext()
    return RECORDING.ledger.track(gevent.getcurrent(), name, scenario=isinstance(user, LabUser))


def _user_id_range(spec: str) -> tuple[int, int]:
    low, _, high = spec.partition("-")
    return int(low), int(high or low)


def first_delay_s(latency_s: float, pace_rps: float) -> float:
    """A user's random wait before its first request. Locust starts the users in one burst, and a
    fixed latency would keep them in waves for the whole run (a window then catches part of a wave: the
    calibration read 0.91 of Little's law at 800 users). A closed-loop user waits within one nominal
    latency, at most 1 s, well inside the harness's warm-up (a 10 s request must not hold a user back
    10 s). A paced user (the open model) waits within its whole period, 1 / pace_rps: spread over one
    latency only, about half of it, the arrivals came in bursts at twice their rate."""
    return random.uniform(0, 1 / pace_rps if pace_rps > 0 else min(1.0, latency_s))


class LabUser(FastHttpUser):
    abstract = True
    wait_time = constant(0)
    # A queued sync worker can hold a request for many seconds; that is a result, not an error.
    network_timeout = 120.0
    connection_timeout = 120.0

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        self.db_ms, self.llm_ms = opts.db_ms, opts.llm_ms
        self.ids = _user_id_range(opts.user_ids)
        pace_rps = getattr(opts, "pace_rps", 0)
        gevent.sleep(first_delay_s((self.db_ms + self.llm_ms) / 1000, pace_rps))
        if pace_rps > 0:  # paced: the instance's wait_time replaces constant(0)
            self.period_s, self.start_at = 1 / pace_rps, time.perf_counter()
            self.wait_time = self.paced_wait

    def paced_wait(self) -> float:
        """The open model's pacing: the next request one period after the last one started, or at once
        when that one ran past it (the schedule then restarts from now). Not Locust's
        constant_throughput: its clock starts when the user is created, so the first delay counted as
        the first request's run time, and every user whose first delay and answer fitted in one period
        sent its second request at the same instant, one period after spawning."""
        now = time.perf_counter()
        self.start_at = max(self.start_at + self.period_s, now)
        return self.start_at - now

    def pick_user(self) -> int:
        return random.randint(*self.ids)


def recommendation_problem(body: object, uid: int) -> str | None:
    """What is wrong with a /recommendation body (or a job's result), None when it is valid."""
    if not isinstance(body, dict) or set(body) != RECOMMENDATION_KEYS:
        return f"unexpected keys {sorted(body) if isinstance(body, dict) else type(body).__name__}"
    if body["user_id"] != uid:
        return f"asked for user {uid}, got {body['user_id']}"
    return None if body["advice"] else "empty advice"


def submit_problem(resp) -> str | None:
    """What is wrong with a 202 to POST /jobs/recommendation (docs/CONTRACT.md, Background jobs):
    a body {"job_id", "status": "queued"} and `Location: /jobs/<job_id>`. None when it is valid."""
    try:
        body = resp.json()
    except (ValueError, TypeError):
        return "body is not JSON"
    if not isinstance(body, dict) or not isinstance(body.get("job_id"), str) or not body["job_id"]:
        return "no job_id"
    if body.get("status") != "queued":
        return f"status {body.get('status')!r}, not 'queued'"
    location = (resp.headers or {}).get("Location") or (resp.headers or {}).get("location")
    if location != f"/jobs/{body['job_id']}":
        return f"Location {location!r}, not /jobs/{body['job_id']}"
    return None


class RecommendationUser(LabUser):
    """The endpoint under comparison: one DB read plus one external call."""

    @task
    def recommendation(self) -> None:
        uid = self.pick_user()
        with tracked(self, "/recommendation/[id]"), self.client.get(
                f"/recommendation/{uid}?db_ms={self.db_ms}&llm_ms={self.llm_ms}",
                name="/recommendation/[id]", catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:120]}")
                return
            try:
                problem = recommendation_problem(resp.json(), uid)
            except (ValueError, TypeError):
                problem = "body is not JSON"
            if problem:
                resp.failure(problem)


class JobUser(LabUser):
    """Seed 000's job fixes: submit, then poll every 100 ms until the job is done.

    Its row, "job result", is the time from the submit to the poll that saw the result (the
    submit and the polls have rows of their own). `--jobs-endpoint sync` sends the same request to
    GET /recommendation instead, reported as "job result" too, so the synchronous targets stand in
    the same table."""

    @task
    def job(self) -> None:
        uid = self.pick_user()
        query = f"db_ms={self.db_ms}&llm_ms={self.llm_ms}"
        started, started_at = time.perf_counter(), time.time()
        with tracked(self, JOB_RESULT):
            if self.environment.parsed_options.jobs_endpoint == "sync":
                problem = self._sync(uid, query)
            else:
                problem = self._submit_and_poll(uid, query, started)
            self.environment.events.request.fire(
                request_type="JOB", name=JOB_RESULT, response_time=(time.perf_counter() - started) * 1000,
                response_length=0, exception=RuntimeError(problem) if problem else None, context={},
                start_time=started_at)

    def _sync(self, uid: int, query: str) -> str | None:
        with self.client.get(f"/recommendation/{uid}?{query}", name="/recommendation/[id]",
                             catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
                return f"HTTP {resp.status_code}: {(resp.text or '')[:120]}"
            try:
                return recommendation_problem(resp.json(), uid)
            except (ValueError, TypeError):
                return "body is not JSON"

    def _submit_and_poll(self, uid: int, query: str, started: float) -> str | None:
        with self.client.post(f"/jobs/recommendation/{uid}?{query}", name="/jobs/recommendation/[id]",
                              catch_response=True) as resp:
            if resp.status_code != 202:
                resp.failure(f"HTTP {resp.status_code}")
                return f"submit: HTTP {resp.status_code}: {(resp.text or '')[:120]}"
            problem = submit_problem(resp)
            if problem:
                resp.failure(problem)
                return f"submit: {problem}"
            job_id = resp.json()["job_id"]
        while time.perf_counter() - started < self.network_timeout:
            gevent.sleep(POLL_S)
            with self.client.get(f"/jobs/{job_id}", name="/jobs/[id]", catch_response=True) as resp:
                try:
                    body = resp.json()
                except (ValueError, TypeError):
                    body = None
                if resp.status_code != 200 or not isinstance(body, dict):
                    resp.failure(f"HTTP {resp.status_code}")
                    return f"poll: HTTP {resp.status_code}: {(resp.text or '')[:120]}"
            if body.get("status") == "done":
                return recommendation_problem(body.get("result"), uid)
            if body.get("status") == "failed":
                return f"job failed: {body.get('error')}"
        return f"no result after {self.network_timeout:.0f} s"


def sse_lines(resp) -> Iterator[bytes]:
    """An SSE body's lines as they arrive.

    FastResponse.iter_content(n) waits until n bytes are buffered, which holds small token events
    back until the stream ends (time to first token would equal the whole stream); the HTTP
    parser's own readline returns each line as soon as it is complete.
    """
    raw = resp._response
    while line := raw.readline(b"\n"):
        yield line


class StreamUser(LabUser):
    """Concurrent SSE streams; also reports time to first token as its own row."""

    @task
    def stream(self) -> None:
        uid = self.pick_user()
        tokens = self.environment.parsed_options.tokens
        url = f"/stream/{uid}?db_ms={self.db_ms}&llm_ms={self.llm_ms}&tokens={tokens}"
        started, started_at = time.perf_counter(), time.time()
        first_token_ms = None
        received = 0
        with tracked(self, "/stream/[id]"), self.client.get(url, name="/stream/[id]", stream=True,
                                                            catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
                return
            done = False
            try:
                for line in sse_lines(resp):
                    data = line.strip().removeprefix(b"data: ")
                    if not data:
                        continue  # the blank line between events
                    if data == b"[DONE]":
                        done = True
                    else:
                        json.loads(data)["token"]
                        received += 1
                        if first_token_ms is None:
                            first_token_ms = (time.perf_counter() - started) * 1000
            except (ValueError, KeyError) as exc:
                resp.failure(f"bad SSE event: {exc!r}")
                return
            # With stream=True Locust times only the headers; the row should show the whole stream.
            resp.request_meta["response_time"] = (time.perf_counter() - started) * 1000
            if not done or received != tokens:
                resp.failure(f"stream ended after {received}/{tokens} tokens (done={done})")
                return
        self.environment.events.request.fire(
            request_type="TTFT", name="/stream first token", response_time=first_token_ms,
            response_length=0, exception=None, context={}, start_time=started_at)


class CpuUser(LabUser):
    """Pure CPU in the target's language: shows the GIL (1 process vs N)."""

    @task
    def cpu(self) -> None:
        n = self.environment.parsed_options.cpu_n
        with tracked(self, "/cpu"), self.client.get(f"/cpu?n={n}", name="/cpu",
                                                    catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
            elif resp.json().get("n") != n:
                resp.failure("wrong n in response")


class CalibrationUser(LabUser):
    """Locust straight at the mock upstream with the targets' total latency (db_ms + llm_ms).

    No framework in between, so throughput should be users / latency (Little's law): the row
    shows how close this machine's load generator gets to a perfect model.
    """

    @task
    def completion(self) -> None:
        body = {"model": "mock", "messages": [{"role": "user", "content": "calibration"}]}
        headers = {"X-Mock-Latency-Ms": str(self.db_ms + self.llm_ms)}
        with tracked(self, "/v1/chat/completions"), self.client.post(
                "/v1/chat/completions", json=body, headers=headers, name="/v1/chat/completions",
                catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
                return
            try:
                content = resp.json()["choices"][0]["message"]["content"]
            except (ValueError, TypeError, KeyError, IndexError):
                resp.failure("not a chat.completion")
                return
            if not content:
                resp.failure("empty completion")


class Canary(FastHttpUser):
    """One user at a fixed low rate on /healthz: its latency exposes a blocked event loop."""

    fixed_count = 1
    wait_time = constant_throughput(4)  # bench.load.CANARY_RATE

    @task
    def healthz(self) -> None:
        with tracked(self, "/healthz"), self.client.get("/healthz", name="/healthz",
                                                       catch_response=True) as resp:
            if resp.status_code != 200 or resp.json() != {"status": "ok"}:
                resp.failure(f"HTTP {resp.status_code}")
