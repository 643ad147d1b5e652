"""Run Locust headless against one target; measure the requests started in a window, drained
(docs/DESIGN.md, Measurement window).

Locust's own CSV counts only the requests that finished before the run stopped: where a model
queues, the long waits are cut off (censored) and its percentiles show the lucky requests. So the
locustfile writes every request with its start time to a ledger (locust/request_ledger.py) and runs
warm-up -> window -> drain; `window_stats` reads the requests STARTED inside the window, each to its
end (still unfinished after the drain limit: censored, counted with its wait so far), and the valid
answers that arrived inside it (throughput). The CSV is still written (failure samples come from it).

`LoadSpec.processes` > 1 runs `locust --processes N`: a master and N forked workers, each worker on
a core of its own, for the levels where one Locust process would come near its limit, 80 % of a
core (bench/compare.py: locust_plan, with_locust_room). Each worker writes its own ledger beside the run's
(`<prefix>_requests.w<i>.jsonl`); the master decides the phases once for all of them and writes
the marks to the run's ledger, whose start mark says how many workers there were; `read_ledger`
merges the files into one run.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.manifest import REPO_ROOT
from bench.procs import Proc, free_port, spawn
from bench.results import Latency, Phases

LOCUSTFILE = REPO_ROOT / "locust" / "locustfile.py"
LOCUST = Path(sys.executable).parent / "locust"

# scenario -> (Locust user class, the stats row that carries its numbers)
SCENARIOS = {
    "recommendation": ("RecommendationUser", "/recommendation/[id]"),
    "stream": ("StreamUser", "/stream/[id]"),
    "cpu": ("CpuUser", "/cpu"),
    # Seed 000's job fixes: submit, poll every 100 ms; the row is the time to the result.
    "jobs": ("JobUser", "job result"),
    # Locust straight at the upstream: the load generator's own ceiling (target `calibration`).
    "calibration": ("CalibrationUser", "/v1/chat/completions"),
}
CANARY_ROW = "/healthz"
TTFT_ROW = "/stream first token"  # the locustfile's StreamUser reports time to first token here
SUBMIT_ROW = "/jobs/recommendation/[id]"  # the jobs scenario's submit (its own latency)
POLL_ROW = "/jobs/[id]"  # the jobs scenario's polls (GET /jobs/{id} every 100 ms until done)
# The synchronous answers the job fixes are shown beside (report, claims): the async fix, the
# threadpool (what BackgroundTasks runs a sync job in) and the app as the seed runs it (option 4).
# Their rows are the recommendation scenario's: the same request under the same workload.
JOBS_SYNC_TARGETS = ("fastapi-async", "fastapi-threadpool", "fastapi-blocking-w4")
CANARY_RATE = 4  # /healthz checks per second (locustfile's Canary)
WARMUP_MIN_MAX_S = 5.0  # the warm-up may always last this long, however short the window
# The window's requests may take this long to finish: more than Locust's 120 s network timeout
# (locustfile.LabUser), so every request started in the window ends, answered or failed, before it.
DRAIN_MAX_S = 150.0
BACKSTOP_S = 30.0  # Locust's own --run-time, beyond the phases: a stop if the locustfile's never came


@dataclass(frozen=True)
class LoadSpec:
    host: str
    users: int
    duration_s: float  # the measured window
    scenario: str = "recommendation"
    db_ms: int = 50
    llm_ms: int = 500
    tokens: int = 16
    cpu_n: int = 100000
    jobs_endpoint: str = "jobs"  # the jobs scenario: "jobs" (submit + poll) or "sync"
    warmup_max_s: float | None = None  # None: as long as the window (at least WARMUP_MIN_MAX_S)
    warmup_min_s: float | None = None  # None: the locustfile's (request_ledger.WARMUP_MIN_S)
    drain_max_s: float = DRAIN_MAX_S
    run_time_s: float | None = None  # no phases (duration_s 0): Locust runs until stopped, at most this
    pace_rps: float = 0.0  # per user (an open model when users >> rps x latency); 0: a closed loop
    processes: int = 1  # Locust worker processes (`--processes N`, a master beside them); 1: one process

    @property
    def warmup_limit_s(self) -> float:
        if self.warmup_max_s is not None:
            return self.warmup_max_s
        return max(self.duration_s, WARMUP_MIN_MAX_S)

    @property
    def longest_s(self) -> float:
        """How long Locust may run: warm-up, window and drain at their limits, plus the backstop."""
        if self.run_time_s is not None:
            return self.run_time_s
        return self.warmup_limit_s + self.duration_s + self.drain_max_s + BACKSTOP_S


@dataclass(frozen=True)
class RowStats:
    requests: int
    failures: int
    rps: float
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None


def ledger_path(csv_prefix: Path) -> Path:
    return Path(f"{csv_prefix}_requests.jsonl")


def worker_ledger_path(path: Path, index: int) -> Path:
    """Locust worker `index`'s ledger beside the run's (locust/request_ledger.py, worker_ledger)."""
    return path.with_name(f"{path.stem}.w{index}{path.suffix}")


def locust_argv(spec: LoadSpec, csv_prefix: Path, master_port: int | None = None) -> list[str]:
    """The headless Locust command; with spec.processes > 1 a master on 127.0.0.1:`master_port`
    and its forked workers (the users are shared between them, the canary runs on one)."""
    user_class, _ = SCENARIOS[spec.scenario]
    total = spec.users + 1  # + the fixed-count canary
    workers = []
    if spec.processes > 1:
        port = str(master_port or 5557)
        workers = ["--processes", str(spec.processes), "--master-bind-host", "127.0.0.1",
                   "--master-bind-port", port, "--master-port", port]
    return [
        str(LOCUST), "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        "-H", spec.host, "-u", str(total), "-r", str(total),
        # The locustfile ends the run after the drain; --run-time is only the backstop.
        "-t", f"{math.ceil(spec.longest_s)}s",
        "--csv", str(csv_prefix), "--loglevel", "WARNING", "--exit-code-on-error", "0",
        "--ledger", str(ledger_path(csv_prefix)), "--window-s", f"{spec.duration_s:g}",
        "--warmup-max-s", f"{spec.warmup_limit_s:g}", "--drain-max-s", f"{spec.drain_max_s:g}",
        "--db-ms", str(spec.db_ms), "--llm-ms", str(spec.llm_ms),
        "--tokens", str(spec.tokens), "--cpu-n", str(spec.cpu_n),
        "--jobs-endpoint", spec.jobs_endpoint, "--pace-rps", f"{spec.pace_rps:g}",
        *(["--warmup-min-s", f"{spec.warmup_min_s:g}"] if spec.warmup_min_s is not None else []),
        *workers, user_class, "Canary",
    ]


def start_locust(spec: LoadSpec, csv_prefix: Path) -> Proc:
    """Locust for one level (its master, and with spec.processes > 1 the workers it forks: one
    process group, stopped together)."""
    port = free_port() if spec.processes > 1 else None
    return spawn("locust", locust_argv(spec, csv_prefix, port), cwd=REPO_ROOT,
                 log_path=csv_prefix.with_suffix(".log"))


# --- the ledger: requests started in the window, drained ------------------------------------

@dataclass(frozen=True)
class Sample:
    name: str
    t0: float  # start, seconds since the epoch
    ms: float  # latency; for a censored request, its wait so far (a lower bound)
    ok: bool  # answered and valid (False: failed, or censored)
    censored: bool = False  # still unfinished when the run ended
    status: int | None = None  # a failure's HTTP status (0: no HTTP answer); None: ok or unknown
    code: str | None = None  # a failure's uniform error code; None: not a uniform error body

    @property
    def end(self) -> float:
        return self.t0 + self.ms / 1000


@dataclass(frozen=True)
class LedgerRun:
    samples: list[Sample]
    marks: dict[str, dict]  # phase -> its mark (the first of each)

    @property
    def window(self) -> tuple[float, float]:
        if "window" not in self.marks or "drain" not in self.marks:
            raise ValueError("the measurement window never closed (the run stopped during the "
                             f"{'warm-up' if 'window' not in self.marks else 'window'})")
        return self.marks["window"]["t"], self.marks["drain"]["t"]

    def phases(self) -> Phases:
        w0, w1 = self.window
        start, end = self.marks.get("start", {}).get("t", w0), self.marks.get("end", {})
        return Phases(warmup_s=round(w0 - start, 2), window_s=round(w1 - w0, 2),
                      drain_s=round(end["t"] - w1, 2) if end else None,
                      steady=bool(self.marks["window"].get("steady")),
                      drained=bool(end) and not end.get("unfinished"))


def read_ledger(path: Path, row: int | None = None) -> LedgerRun:
    """One run's ledger; after `locust --processes N` (its start mark says `workers: N`) the workers'
    files merged into it: their requests, under the master's marks (the workers' own end marks,
    written when the master told them to end, are not the run's). A web-UI master's start mark says
    `forwarded`: its workers sent their requests to it, and they are in its own file.

    `row`: one row of a web-UI swarm's ledger, which goes on across rows when the users change
    (request_ledger.RowControl): that row's marks, and its censored records; a request it censored
    at its end and that was answered later is left out as answered (it stays censored here)."""
    samples, marks, rows = _read_ledger_file(path, row)
    if row is not None:  # another row's censored records are that row's business
        samples = [s for s, tag in zip(samples, rows, strict=True) if tag in (None, row)]
    start = marks.get("start", {})
    for index in range(0 if start.get("forwarded") else start.get("workers", 0)):
        worker = worker_ledger_path(path, index)
        if not worker.exists():
            raise ValueError(f"Locust worker {index} wrote no request ledger ({worker.name})")
        samples += _read_ledger_file(worker)[0]
    if row is not None and all(m in marks for m in ("window", "drain", "end")):
        w0, w1, end = marks["window"]["t"], marks["drain"]["t"], marks["end"]["t"]
        samples = [s for s in samples if s.censored or not (w0 <= s.t0 < w1 and s.end > end)]
    return LedgerRun(samples, marks)


def _read_ledger_file(path: Path, row: int | None = None
                      ) -> tuple[list[Sample], dict[str, dict], list[int | None]]:
    """Samples, marks (the first of each phase; of `row` only, when given) and each sample's row tag
    (censored records of a web-UI row carry it)."""
    samples, marks, rows = [], {}, []
    with path.open() as fh:
        for line in fh:
            if not line.strip():
                continue
            rec = json.loads(line)
            if "mark" in rec:
                if row is None or rec.get("row") == row:
                    marks.setdefault(rec["mark"], rec)
            else:
                censored = bool(rec.get("cens"))
                samples.append(Sample(rec["n"], rec["t0"], rec["ms"], bool(rec.get("ok")) and not censored,
                                      censored, rec.get("st"), rec.get("ec")))
                rows.append(rec.get("row"))
    return samples, marks, rows


def percentile(ordered: list[float], p: float) -> float | None:
    """Nearest rank: the smallest sample with at least p of all samples at or below it."""
    if not ordered:
        return None
    return ordered[max(math.ceil(p * len(ordered)) - 1, 0)]


def latency_of(samples: list[Sample]) -> Latency:
    """Percentiles, mean and max over every sample (failed and censored ones included), with n."""
    ordered = sorted(s.ms for s in samples)
    if not ordered:
        return Latency(n=0, censored=0)

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 1)

    return Latency(p50=r(percentile(ordered, 0.50)), p95=r(percentile(ordered, 0.95)),
                   p99=r(percentile(ordered, 0.99)), max=r(ordered[-1]),
                   mean=r(sum(ordered) / len(ordered)), n=len(ordered),
                   censored=sum(s.censored for s in samples))


@dataclass(frozen=True)
class WindowStats:
    """One request name in the window.

    Latency, requests and failures: the requests STARTED inside the window, each followed to its
    end (censored ones are in latency.n, not in requests). Throughput: the valid answers that
    ARRIVED inside the window, per second; in steady state the same rate, but a request the drain
    limit cut off lowers only the latency's honesty (and is flagged), never the rps.
    """
    requests: int  # finished: answered or failed
    failures: int
    answered: int  # valid answers that arrived inside the window (from requests started any time)
    rps: float  # answered per second of window: an error never counts as throughput
    latency: Latency
    # Requests started before the window and still waiting after it: each is a user that got no
    # answer in the whole window (starved by an unfair queue), whom the window's samples miss.
    starved: int = 0


def window_stats(run: LedgerRun, name: str) -> WindowStats:
    w0, w1 = run.window
    mine = [s for s in run.samples if s.name == name]
    started = [s for s in mine if w0 <= s.t0 < w1]
    finished = [s for s in started if not s.censored]
    answered = sum(s.ok and w0 <= s.t0 + s.ms / 1000 < w1 for s in mine)
    starved = sum(s.t0 < w0 and s.t0 + s.ms / 1000 >= w1 for s in mine)
    span = w1 - w0
    return WindowStats(requests=len(finished), failures=sum(not s.ok for s in finished), answered=answered,
                       rps=answered / span if span > 0 else 0.0, latency=latency_of(started),
                       starved=starved)


def _num(value: str | None) -> float | None:
    if value in (None, "", "N/A"):
        return None
    return float(value)


def read_stats(csv_prefix: Path) -> dict[str, RowStats]:
    """Rows of `<prefix>_stats.csv` keyed by Name, parsed by column header (not position)."""
    path = Path(f"{csv_prefix}_stats.csv")
    rows: dict[str, RowStats] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            rows[row["Name"]] = RowStats(
                requests=int(row["Request Count"]), failures=int(row["Failure Count"]),
                rps=float(row["Requests/s"]), p50=_num(row.get("50%")), p95=_num(row.get("95%")),
                p99=_num(row.get("99%")), max=_num(row.get("Max Response Time")))
    return rows


def read_failures(csv_prefix: Path, limit: int = 5) -> list[str]:
    """The most frequent failure messages, for the report."""
    path = Path(f"{csv_prefix}_failures.csv")
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: -int(r["Occurrences"]))
    return [f"{r['Occurrences']}× {r['Name']}: {r['Error'][:160]}" for r in rows[:limit]]
