"""Render a run's results.json into report.md, report.html and the console table. Never runs load.

Both files are rendered from the same `Table`s built here, so they always show the same numbers;
the HTML adds the charts of bench/charts.py as inline SVG.
"""

from __future__ import annotations

import logging
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from rich.console import Console
from rich.table import Table as RichTable

from bench import charts
from bench.comparison import (  # noqa: F401 - report's names for the shared rows and tables
    CALIBRATION,
    CHARTS_JS,
    FLAGS_COLUMN,
    LATENCY_COLUMNS,
    SCENARIO_ORDER,
    SCENARIO_TITLES,
    Column,
    Row,
    Table,
    TableRow,
    _mem,
    by_scenario,
    chart_points,
    comparison_csv,
    comparison_json,
    comparison_table,
    fmt,
    highest_level,
    is_calibration,
    latency_cells,
    locust_cpu,
    memory_source,
    params_text,
    pct,
    resources_table,
    rows,
    rps_text,
    scenario_title,
    throughput_table,
    varying_params,
)
from bench.load import JOBS_SYNC_TARGETS
from bench.metrics import (
    CALIBRATION_MIN,
    CENSOR_LIMIT,
    FAILURE_LIMIT,
    LOCUST_CPU_LIMIT,
    MACHINE_CPU_LIMIT,
    PROCESS_CPU_LIMIT,
)
from bench.results import MIN_TAIL_SAMPLES, FaultResult, ProcessMemory, Profile, Result, Run, write_atomic
from bench.session import MIN_WINDOW_S, WARMUP_MAX_S

TEMPLATES = Path(__file__).parent / "templates"
MAX_WORKER_ROWS = 8  # per-process table: more workers than this become one averaged row
PSS_NOTE = ("Memory is PSS: RSS double-counts the pages that forked workers share (interpreter, "
            "imported modules), so summing RSS over a gunicorn tree overstates it; PSS splits each "
            "shared page between the processes that map it.")
WORKING_SET_NOTE = (
    "Rows measured in Docker show the container's working set instead: the memory charged to its "
    "cgroup minus inactive file cache (what `docker stats` shows), with no PSS/RSS/USS split. "
    "It counts every page the container uses once, like a PSS sum over the tree, but it also "
    "holds active page cache and kernel memory (page tables, socket buffers) and leaves out "
    "file pages the kernel has marked inactive, and the image's interpreter, libraries and "
    "binaries are not the host's, so the two figures differ for the same code, in either direction.")
RUNTIMES_NOTE = (
    "The same targets measured natively and under docker compose in one run, on the same machine, "
    "each at its highest users level. Memory differs in kind: natively it is the PSS of the "
    "process tree (each shared page split between the processes that map it, processes outside "
    "the target included), in Docker the container's working set (cgroup usage minus inactive "
    "file cache, so page cache and kernel memory count, and nothing is shared with the host). "
    "The code is the same but the runtime is not: the Docker images run their own interpreter "
    "build (see `bench docker-lab`) and a stripped Go binary.")
CEILING_NOTE = ("Ceiling = min(users, capacity) / L1 (or db_pool / db_ms where lower), with L1 the "
                "target's own 1-user median; efficiency = rps / ceiling.")
LATENCY_NOTE = (
    "Latency is measured over the requests started in each level's window, each followed to its "
    "end after a warm-up to steady state and a drain (a request still waiting when the drain limit "
    "came counts with its wait so far, as unfinished); n is how many samples every percentile of "
    f"the row rests on, and a p95 or p99 of fewer than {MIN_TAIL_SAMPLES} is not printed. "
    "W = users / rps is Little's law: with no think time each user always has one request in the "
    "system, so W is the mean time a request spends there, queue included. A mean latency more "
    f"than {100 * CENSOR_LIMIT:.0f} % away from W is flagged latency-censored. Rows from older "
    "runs (no mean) counted only the requests that finished inside the window: where their p50 is "
    "far below W, read W.")
WEB_UI_LATENCY_NOTE = (
    "Swarms recorded from the Locust web UI, each row measured as bench compare measures a level: its "
    "window opens once every user has had an answer and closes at Stop, after Record s, at the end of a "
    "Compare cell's window or when the users change; then the drain follows its requests to their end.")
IDLE_NOTE = (
    "At rest, after 20 requests to /healthz: each target beside its framework's bare hello-world "
    "(no DB, no upstream, no SDK imports) under the same server and worker settings, read the same "
    "way (bench/bare.py). The difference is what the app imports: the openai SDK, SQLAlchemy and "
    "its driver, pydantic-settings, redis, the seed routers.")
CALIBRATION_NOTE = ("Locust straight at the mock upstream, no framework in between, with the same "
                    "total latency: the load generator's own ceiling on this machine. Framework rows "
                    "near this rate may be limited by Locust, not by the framework.")
FLAG_MEANINGS = {
    "machine-cpu-bound": f"the machine was ≥ {MACHINE_CPU_LIMIT:.0f} % busy: Locust and the target "
                         "competed for the cores",
    "locust-bound": f"Locust used ≥ {LOCUST_CPU_LIMIT:.0f} % of a core (its busiest process, with "
                    "several): the load generator may be the limit",
    "load generator below Little's law": f"the calibration (Locust straight at the upstream) answered "
                                         f"less than {CALIBRATION_MIN:.2f} x users / L1 at this level: the "
                                         "load generator, not a framework, is the limit here",
    "target-process-cpu-bound": f"one target process used ≥ {PROCESS_CPU_LIMIT:.0f} % of a core: the "
                                "model is CPU-bound here, not waiting on I/O",
    "failures": f"more than {100 * FAILURE_LIMIT:.0f} % of requests failed (errors never count as "
                "throughput)",
    "no requests completed": "not a single request succeeded",
    "latency-censored": f"the mean latency and W = users / rps (Little's law) differ by more than "
                        f"{100 * CENSOR_LIMIT:.0f} %: the percentiles miss waits that had not ended when "
                        "the measurement stopped (or Locust spent much of each cycle outside the "
                        "request); read W as the mean wait, not the row's percentiles",
    "too short": f"a web-UI swarm stopped before its window opened or after less than "
                 f"{MIN_WINDOW_S:.0f} s of it: no steady state to publish",
    "not steady": f"a web-UI swarm's warm-up reached its {WARMUP_MAX_S:.0f} s limit before every user "
                  "had an answer: the window began in the ramp-up",
}

log = logging.getLogger(__name__)


@dataclass
class Chart:
    key: str
    title: str
    caption: str
    svg: str | None = None
    missing: str | None = None  # why the chart is not drawn ("not in this run")
    error: str | None = None



JOBS_NOTE = (
    "The jobs scenario: each user submits a job (POST /jobs/recommendation/{id}, 202 at once) and polls "
    "GET /jobs/{id} every 100 ms until it is done; its latency is the time from the submit to the poll "
    "that saw the result (so up to 100 ms of polling is in it), measured like every row: the jobs "
    "submitted in the window, each followed to its result (W = users / jobs done per second, and the "
    "latency-censored flag, as in the main table), and its throughput is jobs completed per second. "
    "Endpoint `sync`: the same request answered by GET /recommendation (the recommendation rows of "
    f"{', '.join(JOBS_SYNC_TARGETS[:-1])} and {JOBS_SYNC_TARGETS[-1]}), for comparison. The "
    "ceiling is the jobs in progress at once (background threads, Celery worker processes) / its own "
    "1-user time to result. /healthz: the web's canary meanwhile (p95 with the checks it rests on). "
    "Memory: the web process(es), the Celery workers and Redis, peak PSS each (Redis also holds the "
    "broker queue and the job records). Under --docker `docker stats` sees containers only: web is "
    "then the target's whole container (fastapi-celery's web and workers together) and Redis the "
    "redis service's container, working sets.")


def calibration_table(group: list[Row]) -> Table:
    t = Table("throughput calibration", [Column("load generator"), *(Column(n, numeric=True) for n in (
        "users", "rps", *LATENCY_COLUMNS, "failures", "ceiling rps", "efficiency",
        "CPU Locust %", "CPU machine %")), FLAGS_COLUMN])
    for row in group:
        r = row.result
        t.add(row.label, r.users, rps_text(r), *latency_cells(r), pct(r.failures, r.requests),
              fmt(r.ceiling_rps, 1), fmt(r.efficiency, 2), locust_cpu(r.cpu_pct), fmt(r.cpu_pct.machine),
              "; ".join(r.flags) or "—", marks=row.marks)
    return t


def runtimes_table(all_rows: list[Row]) -> Table | None:
    """Docker vs native for the targets a run measured both ways: each at its highest users level."""
    pairs: dict[tuple, dict[str, Row]] = defaultdict(dict)
    for row in all_rows:
        r = row.result
        if not is_calibration(r):
            pairs[(r.target, r.group(), params_text(r.params), r.users)][r.runtime] = row
    top: dict[tuple[str, str, str], dict[str, Row]] = {}
    for (target, scenario, params, users), got in pairs.items():
        key = (target, scenario, params)
        if len(got) == 2 and (key not in top or users > top[key]["native"].result.users):
            top[key] = got
    if not top:
        return None
    t = Table("runtimes", [Column("target"), *(Column(n, numeric=True) for n in (
        "users", "rps native", "rps docker", "p50 ms native", "p50 ms docker", "efficiency native",
        "efficiency docker", "peak PSS MiB native", "peak working set MiB docker"))])
    for (_, scenario, _), got in top.items():
        n, d = got["native"].result, got["docker"].result
        name = got["native"].name + ("" if scenario == "recommendation" else f" ({scenario})")
        t.add(name, n.users, f"{n.rps:.1f}", f"{d.rps:.1f}", fmt(n.latency_ms.p50), fmt(d.latency_ms.p50),
              fmt(n.efficiency, 2), fmt(d.efficiency, 2), fmt(n.memory_mb.peak_pss, 1),
              fmt(d.memory_mb.peak_pss, 1))
    return t


def per_process_table(groups: dict[str, list[Row]]) -> Table:
    t = Table("per-process", [Column("target"), Column("users", numeric=True), Column("process"),
                              *(Column(n, numeric=True) for n in (
                                  "pid", "peak PSS MiB", "peak RSS MiB", "peak USS MiB", "CPU %",
                                  "threads"))])
    for scenario, group in groups.items():
        for row in highest_level(group):
            r = row.result
            name = row.name + ("" if scenario == "recommendation" else f" ({scenario})")
            for role, pid, procs in _process_rows(r.per_process):
                t.add(name, r.users, role, pid, *(fmt(statistics.mean(getattr(p, key) for p in procs), 1)
                                                  for key in ("peak_pss", "peak_rss", "peak_uss")),
                      fmt(statistics.mean(p.cpu_pct for p in procs)),
                      _threads(procs), marks=row.marks)
    return t


def jobs_rows(groups: dict[str, list[Row]]) -> list[Row]:
    """The Background jobs table's rows: the jobs scenario's, then the synchronous answers."""
    return groups.get("jobs", []) + sync_answers(groups)


def sync_answers(groups: dict[str, list[Row]]) -> list[Row]:
    """The recommendation rows of JOBS_SYNC_TARGETS at the jobs rows' users levels: the same request
    answered synchronously, beside the job fixes."""
    levels = {row.result.users for row in groups.get("jobs", [])}
    return [row for row in groups.get("recommendation", [])
            if row.result.target in JOBS_SYNC_TARGETS and row.result.users in levels
            and row.label == row.result.target]  # not a sweep cell


def jobs_table(group: list[Row]) -> Table:
    """Seed 000's job fixes beside the synchronous answers: jobs completed per second, time to
    result, the submit's own latency, the web's canary and the memory of each part of the system."""
    t = Table("jobs", [Column("target"), Column("endpoint"), *(Column(n, numeric=True) for n in (
        "users", "jobs done /s", "ceiling", "time to result p50 ms", "p95 ms", "p99 ms", "W ms",
        "submit p50 ms", "polls / job", "/healthz p50 ms", "/healthz p95 ms", "web MiB", "workers MiB",
        "Redis MiB")), FLAGS_COLUMN])
    for row in group:
        r = row.result
        lat, n = r.latency_ms, r.latency_n
        parts = r.memory_parts()
        web = fmt(parts.get("web")) + (" (container)" if r.runtime == "docker" and "web" in parts else "")
        t.add(row.name, r.jobs_endpoint or "sync", r.users, fmt(r.rps, 1), fmt(r.ceiling_rps, 1),
              lat.text("p50", n), lat.text("p95", n), lat.text("p99", n), fmt(r.w_ms()),
              fmt(r.submit_ms.p50, 1) if r.submit_ms else "—", fmt(r.polls_per_job, 1),
              fmt(r.canary_ms.p50) if r.canary_ms else "—", r.canary_text(),
              web, *(fmt(parts.get(k)) for k in ("workers", "Redis")),
              "; ".join(r.flags) or "—", marks=row.marks)
    return t


def jobs_chart(group: list[Row], colors: dict[str, str]) -> Chart:
    """Time to result against jobs completed per second, one line per row label (1 → 100 users)."""
    lines: dict[str, list[Result]] = defaultdict(list)
    for row in group:
        lines[row.name + ("" if row.result.jobs_endpoint == "jobs" else " (sync)")].append(row.result)
    lines = {name: sorted(rs, key=lambda r: r.users) for name, rs in lines.items()}
    return _chart("jobs", "Background jobs: time to result against jobs completed per second",
                  "One line per target from 1 to 100 users (log axes): a fix that scales moves right "
                  "at the same height; one that queues moves up. Circles: submitted and polled; "
                  "squares: answered synchronously. Time to result p50, with its p95 as the bar.",
                  group, lambda: charts.time_to_result(lines, colors))


def _threads(procs: list[ProcessMemory]) -> str:
    """OS threads at most, per process ("4–9" across averaged workers); "—" in older files."""
    counts = [p.threads for p in procs if p.threads is not None]
    if not counts:
        return "—"
    return str(counts[0]) if min(counts) == max(counts) else f"{min(counts)}–{max(counts)}"


def _process_rows(procs: list[ProcessMemory]) -> list[tuple[str, str, list[ProcessMemory]]]:
    """(role, pid, processes) per table row: each process, or one averaged row for many workers."""
    # The tree's root is gunicorn's master / uvicorn's supervisor when it has workers.
    named = [("master" if p.role == "main" and len(procs) > 1 else p.role, p) for p in procs]
    workers = [p for role, p in named if role == "worker"]
    if len(workers) <= MAX_WORKER_ROWS:
        return [(role, str(p.pid), [p]) for role, p in named]
    return [*((role, str(p.pid), [p]) for role, p in named if role != "worker"),
            (f"{len(workers)} workers, mean of each", "—", workers)]


def targets_table(all_rows: list[Row]) -> Table:
    t = Table("targets", [Column("target"), Column("framework"), Column("concurrency model"),
                          Column("params"), Column("capacity", numeric=True),
                          Column("DB pool", numeric=True)])
    seen = set()
    for row in all_rows:
        r = row.result
        if is_calibration(r) or row.label in seen:
            continue
        seen.add(row.label)
        t.add(row.name, r.framework, r.model, params_text(r.params),
              "∞" if r.capacity is None else r.capacity, fmt(r.db_pool), marks=row.marks)
    return t


def claims_table(run: Run) -> Table:
    t = Table("claims", [Column("claim"), Column("source"), Column("how checked"),
                         Column("verdict", strong=True), Column("evidence"), Column("rests on")])
    shown = varying_params(run.results)  # a row's params worth naming: those its target varies
    for c in run.claims:
        rests = "; ".join(ref.text(shown.get(ref.target, ())) for ref in c.rests_on or []) or "—"
        t.add(c.text, c.source, c.check or "—", c.verdict_text().replace("_", " "), c.evidence, rests,
              marks=(f"verdict-{c.verdict}",))
    return t


def measured_text(measured: dict) -> str:
    """Compact `key=value` pairs; long lists become their count, min, median and max."""
    parts = []
    for key, value in measured.items():
        if isinstance(value, list):
            nums = [v for v in value if v is not None]
            if len(value) <= 4:
                text = "[" + ", ".join(_num(v) for v in value) + "]"
            elif nums:
                text = (f"[{len(value)} values: min {_num(min(nums))}, median "
                        f"{_num(statistics.median(nums))}, max {_num(max(nums))}]")
            else:
                text = f"[{len(value)} values]"
        else:
            text = _num(value)
        parts.append(f"{key}={text}")
    return "; ".join(parts) or "—"


def _num(value: float | int | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, int) or abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def experiments_table(run: Run) -> Table:
    t = Table("experiments", [Column("id"), Column("target"), Column("description"), Column("measured")])
    for e in run.experiments:
        target = e.target + (f" {params_text(e.params)}" if e.params else "")
        measured = "; ".join(filter(None, [measured_text(e.measured) if e.measured else "",
                                           f"error: {e.error}" if e.error else ""])) or "—"
        t.add(e.id, target, e.description, measured, marks=("flagged",) if e.error else ())
    return t


CAPACITY_NOTE = (
    "bench capacity: per workload and target, L1 (1 user), then users x2 from 50 (where 50 is already "
    "past the knee: down to the model's capacity, workers x threads, then /2) until a level's p95 "
    "passes 1.5 x L1 (where the latency is censored, the higher of p95 and W = users / rps), more "
    "than 1 % fail, or a limit is reached: the target's CPU (90 % of a core for a process that runs "
    "one thread of code at a time, 90 % of the machine for the whole target), Locust's (80 % of its "
    "core, its busiest process's) or the machine's. A level that saturates Locust is measured again "
    "from `locust --processes N` (a process per 70 % of a core it used, one per core at most; as many "
    "as the level below used, or more where that one's CPU x the users ratio predicts past 1.5 cores): "
    "`1600 (Locust ×2)` in `levels tried`. "
    "The knee is the highest-rps level within the SLO; `stopped by` is what the "
    "level above it hit. rps per core = rps / the target's CPU in cores; in flight = rps x mean latency "
    "(Little's law); MiB per request in flight = (peak - idle PSS) / in flight. A knee at 0.9x the "
    "calibration row's rps or more is the lab's ceiling (load generator or upstream), not the target's. "
    "The calibration must answer 0.95 x users / L1 (Little's law) at every level: its `levels tried` "
    "gives rps / (users / L1) at each, `!` below 0.95, where the load generator is the limit (flagged, "
    "and it stops the calibration's climb). "
    "Open model: after the knee, a fresh start serves a fixed arrival rate of 0.8x the knee's rps from "
    "paced users (each at most one request per users / rate seconds, with room for twice the knee's "
    "latency), so a slow answer does not hold the next request back as it does in the closed loop "
    "(coordinated omission); answered below arrivals means the pacing slipped.")


def _percentiles(*ms: float | None) -> str:
    return " / ".join(fmt(x) for x in ms) if any(x is not None for x in ms) else "—"


def capacity_table(run: Run) -> Table:
    """One row per (workload, target) knee, the workloads in turn, highest rps first; beside the
    closed loop's percentiles at the knee, the open model's at OPEN_SHARE of its rate."""
    t = Table("capacity", [Column("target"), Column("workload ms"), *(Column(n, numeric=True) for n in (
        "L1 ms", "knee users", "rps", "p50 / p95 / p99 ms", "rps per core", "in flight",
        "MiB per request in flight", "CPU ms / request", "peak MiB")), Column("stopped by"),
        *(Column(n, numeric=True) for n in ("open model: arrivals → answered /s",
                                             "open p50 / p95 / p99 ms")), Column("levels tried")])
    ceiling = {(k.db_ms, k.llm_ms): k.rps for k in run.capacity if k.target == CALIBRATION and k.rps}
    for k in sorted(run.capacity, key=lambda k: (run_order(run, k), -(k.rps or 0))):
        at_ceiling = (k.target != CALIBRATION and k.rps and (lab := ceiling.get((k.db_ms, k.llm_ms)))
                      and k.rps >= 0.9 * lab)
        below = [u for u, e in zip(k.tried, k.littles, strict=False) if e is not None and e < CALIBRATION_MIN]
        note = ("; at the lab's ceiling" if at_ceiling else "") + (
            f"; load generator below Little's law at {', '.join(map(str, below))} users" if below
            and not k.stopped_by.startswith("load generator below") else "")
        t.add(k.target, f"{k.db_ms} / {k.llm_ms}", fmt(k.l1_ms), fmt(k.users), fmt(k.rps, 1),
              _percentiles(k.p50_ms, k.p95_ms, k.p99_ms), fmt(k.rps_per_core), fmt(k.in_flight, 1),
              fmt(k.mb_per_in_flight, 2), fmt(k.cpu_ms_per_request, 1), fmt(k.peak_pss), k.stopped_by + note,
              f"{fmt(k.open_arrival_rps, 1)} → {fmt(k.open_rps, 1)}" if k.open_arrival_rps else "—",
              _percentiles(k.open_p50_ms, k.open_p95_ms, k.open_p99_ms), levels_tried(k),
              marks=("flagged",) if at_ceiling or below else ())
    return t


def levels_tried(k) -> str:
    """Each level a climb measured after L1: `1600 (Locust ×2)` where Locust ran as several processes,
    and the calibration's rps / (users / L1) at each, `!` below Little's law's CALIBRATION_MIN."""
    out = []
    for i, users in enumerate(k.tried):
        text = str(users)
        processes = k.locust_processes[i] if i < len(k.locust_processes) else 1
        if processes > 1:
            text += f" (Locust ×{processes})"
        littles = k.littles[i] if i < len(k.littles) else None
        if littles is not None:
            text += f": {littles:.2f}" + (" !" if littles < CALIBRATION_MIN else "")
        out.append(text)
    return " → ".join(out)


def run_order(run: Run, knee) -> int:
    """The workloads in the order the run measured them."""
    order = list(dict.fromkeys((k.db_ms, k.llm_ms) for k in run.capacity))
    return order.index((knee.db_ms, knee.llm_ms))


def capacity_charts(run: Run) -> list[Chart]:
    """rps against users per target, one chart per workload, the knees starred."""
    out = []
    for db_ms, llm_ms in dict.fromkeys((k.db_ms, k.llm_ms) for k in run.capacity):
        results = [r for r in run.results if (r.db_ms, r.llm_ms) == (db_ms, llm_ms) and r.users > 1]
        lines: dict[str, list[Result]] = defaultdict(list)
        for r in results:
            lines[r.target].append(r)
        knees = {k.target: (k.users, k.rps) for k in run.capacity
                 if (k.db_ms, k.llm_ms) == (db_ms, llm_ms) and k.users and k.rps}
        colors = charts.palette(list(lines))
        out.append(_chart(f"capacity-{db_ms}-{llm_ms}",
                          f"Capacity, db_ms {db_ms} / llm_ms {llm_ms}: rps against users",
                          "Every level each target was measured at after L1 (log axes); "
                          "the star is its knee.",
                          results, lambda lines=lines, knees=knees, colors=colors, key=f"{db_ms}-{llm_ms}":
                          charts.capacity(lines, knees, colors, key)))
    return out


PROFILE_NOTE = (
    "bench profile: one cell measured as bench compare measures it, its process tree profiled during the "
    "measured window (py-spy for Python, with idle threads left out; Go's pprof; V8's profiler in every Node "
    "process). Each sample counts for the layer of its innermost frame that belongs to one (walking from "
    "the leaf to the root, bench/profile.py's LAYER_RULES), so the standard library's json, ssl or socket "
    "work done for the openai SDK counts as HTTP client/SDK; a sample with no such frame (the runtime, GC, "
    "socket plumbing no layer's frame is above) counts as other. C code has no Python frame of its own, so "
    "py-spy counts it for the Python frame below it: uvloop's event loop (and asyncpg's Cython protocol it "
    "calls) counts for uvicorn, the server. py-spy judges a thread busy from its OS state, so on a busy "
    "machine its samples may stand for more CPU than the sampler measured. CPU ms per request is the "
    "row's (the process-tree sampler's CPU / requests), split by the shares. The tool's own "
    "file opens in https://www.speedscope.app (drag it in); the flame graph is drawn from the folded stacks.")


def profile_table(profile: Profile) -> Table:
    """The CPU share and CPU ms per request of each layer, and the samples behind them."""
    from bench.layers import layer_rows
    t = Table("profile", [Column("layer"), *(Column(n, numeric=True) for n in (
        "share of CPU", "CPU ms / request", "samples"))])
    for layer, share, ms, n in layer_rows(profile):
        t.add(layer, f"{share:.1f} %", fmt(ms, 2), n)
    t.add("all", "100 %", fmt(profile.cpu_ms_per_request, 2), profile.samples)
    return t


def profile_summary(run: Run, profile: Profile) -> str:
    """What was sampled, and how the samples compare with the process-tree sampler's CPU."""
    from bench.layers import profiled_cpu_pct
    row = next((r for r in run.results if r.target == profile.target and r.users == profile.users), None)
    measured = (f"; the process-tree sampler measured {fmt(row.cpu_pct.target)} % over the Locust run, "
                f"at {row.rps:.1f} rps" if row is not None and row.cpu_pct.target is not None else "")
    return (f"{profile.target} at {profile.users} users: {profile.tool} at {profile.rate_hz:g} Hz over "
            f"{profile.window_s:g} s of the measured window, {profile.samples} samples, "
            f"{fmt(profiled_cpu_pct(profile))} % of a core{measured}.")


def flame_graphs(run: Run, run_dir: Path | None) -> list[Chart]:
    """One flame graph per profile, from its folded stacks in run_dir (also written as its SVG file)."""
    from bench.layers import LAYERS, frame_layer, read_folded
    colors = {**charts.palette(LAYERS[:-1]), "other": "#9e9e9e"}
    out = []
    for p in run.profiles:
        folded = run_dir / p.folded if run_dir and p.folded else None
        stacks = read_folded(folded) if folded and folded.exists() else {}
        chart = _chart(f"flame-{p.target}", f"Flame graph: {p.target} @ {p.users} users",
                       "Each frame as wide as its samples, the root at the bottom, the widest first; in its "
                       "layer's colour, or its caller's where it has none (the layer its own time counts "
                       "for). Frames under 0.4 % of the samples are left out.", list(stacks),
                       lambda stacks=stacks, p=p: charts.flame_graph(
                           stacks, lambda frame, p=p: frame_layer(p.language, frame), colors, p.target))
        if not stacks:
            chart.missing = f"No folded stacks ({p.folded or 'none recorded'}) in this run's folder."
        elif chart.svg and p.flame_graph:
            (run_dir / p.flame_graph).write_text(chart.svg)
        out.append(chart)
    return out


def idle_table(run: Run) -> Table:
    """Each framework's own idle cost (its bare hello-world) beside the app's, same procedure."""
    t = Table("idle", [Column("target"), Column("bare variant"), *(Column(n, numeric=True) for n in (
        "processes", "app PSS MiB", "bare PSS MiB", "app PSS MiB per worker", "bare PSS MiB per worker",
        "app USS MiB per worker", "bare USS MiB per worker", "the app's share"))])
    for i in run.idle:
        app, bare = i.app, i.framework
        share = (1 - bare["pss"] / app["pss"]) if app.get("pss") and bare.get("pss") else None
        t.add(i.target, i.bare, fmt(app.get("processes")), fmt(app.get("pss"), 1), fmt(bare.get("pss"), 1),
              fmt(app.get("worker_pss"), 1), fmt(bare.get("worker_pss"), 1), fmt(app.get("worker_uss"), 1),
              fmt(bare.get("worker_uss"), 1), "—" if share is None else f"{100 * share:.0f}%")
    return t


def flag_legend(run: Run) -> list[tuple[str, str, int]]:
    """(flag, meaning, how many rows carry it) for every kind of flag."""
    counts = {name: sum(any(f.startswith(name) for f in r.flags) for r in run.results)
              for name in FLAG_MEANINGS}
    return [(name, meaning, counts[name]) for name, meaning in FLAG_MEANINGS.items()]


def sweeps(group: list[Row]) -> dict[str, dict[str, list[tuple[int, Result]]]]:
    """param → line (target + other varying params) → (value, result) at the target's top level.

    A sweep is one target measured with several values of one param at the same users level.
    """
    out: dict[str, dict[str, list[tuple[int, Result]]]] = defaultdict(lambda: defaultdict(list))
    by_target: dict[str, list[Result]] = defaultdict(list)
    for row in group:
        by_target[row.result.target].append(row.result)
    for target, results in by_target.items():
        top = max(r.users for r in results)
        at_top = [r for r in results if r.users == top]
        keys = {k for r in at_top for k in r.params}
        varying = sorted(k for k in keys if len({r.params.get(k) for r in at_top}) > 1)
        for key in varying:
            for r in at_top:
                if key in r.params:
                    others = [f"{k}={r.params.get(k)}" for k in varying if k != key]
                    out[key][" ".join([f"{target} @ {top} users", *others])].append((r.params[key], r))
    return {k: {line: pts for line, pts in lines.items() if len(pts) > 1} for k, lines in out.items()
            if any(len(pts) > 1 for pts in lines.values())}


def build_charts(groups: dict[str, list[Row]], colors: dict[str, str]) -> list[Chart]:
    scenario = next(iter(groups), "recommendation")  # the charts show one scenario: the first
    group = groups.get(scenario, [])
    top = highest_level(group)
    levels = sorted({row.result.users for row in top})
    at = f"{levels[0]} users" if len(levels) == 1 else "each target's highest users level"
    lines: dict[str, list[Result]] = defaultdict(list)
    for row in group:
        lines[row.label].append(row.result)
    lines = {name: sorted(rs, key=lambda r: r.users) for name, rs in lines.items()}
    pairs = [(row.label, row.result) for row in top]
    out = [
        _chart("throughput", f"Throughput vs users ({scenario} scenario)",
               "Requests per second at each users level; log axes. A model that queues flattens early.",
               group, lambda: charts.throughput_vs_users(lines, colors)),
        _chart("memory", f"Memory per target at {at}",
               "Peak PSS (solid) vs peak RSS (pale) of the whole process tree. " + PSS_NOTE
               + (" " + WORKING_SET_NOTE if any(r.runtime == "docker" for _, r in pairs) else ""),
               top, lambda: charts.memory_bars(pairs, colors)),
        _chart("rps-memory", f"Throughput against memory at {at}",
               "One point per target: requests per second against peak memory (log axes); the "
               "dotted lines are equal rps per GiB, so up and to the left buys more throughput per "
               "megabyte. " + (WORKING_SET_NOTE if any(r.runtime == "docker" for _, r in pairs)
                               else "Memory is PSS."),
               top, lambda: charts.rps_vs_memory(pairs, colors)),
        _chart("latency", f"Latency percentiles at {at}",
               "p50, p95, p99 in ms (log axis).", top, lambda: charts.latency_bars(pairs, colors)),
    ]
    swept = sweeps(group)
    if not swept:
        out.append(Chart("sweep", "Parameter sweep", "", missing=(
            "Not in this run: no target was measured with several values of one parameter "
            "(e.g. bench compare --targets flask-sync --set workers=4,8,16,32).")))
    for param, param_lines in swept.items():
        out.append(_chart(f"sweep-{param}", f"Sweep of {param}",
                          f"Requests per second and peak PSS against {param}, at the same users level.",
                          group, lambda p=param, pl=param_lines: charts.sweep(p, pl, colors)))
    return out


def _chart(key: str, title: str, caption: str, data: list, draw) -> Chart:
    chart = Chart(key, title, caption)
    if not data:
        chart.missing = "Not in this run: no results to draw."
        return chart
    try:
        chart.svg = draw()
    except Exception as exc:  # a broken chart must not cost the report (results.json is what matters)
        log.exception("chart %s failed", key)
        chart.error = f"{type(exc).__name__}: {exc}"
    return chart


def latency_note(run: Run) -> str:
    """How the rows' latency was measured: the harness's drained windows, or web-UI swarms."""
    sources = {r.source for r in run.results}
    return (WEB_UI_LATENCY_NOTE + " " + LATENCY_NOTE) if "web-ui" in sources else LATENCY_NOTE


def context(run: Run) -> dict:
    """Everything both templates show."""
    all_rows = rows(run)
    groups = by_scenario(all_rows)
    calibration = [row for row in all_rows if is_calibration(row.result)]
    docker = any(row.result.runtime == "docker" for row in all_rows)
    return {
        "run": run,
        "notes": {"pss": PSS_NOTE + (" " + WORKING_SET_NOTE if docker else ""),
                  "ceiling": CEILING_NOTE, "calibration": CALIBRATION_NOTE, "latency": latency_note(run),
                  "runtimes": RUNTIMES_NOTE},
        "runtimes": runtimes_table(all_rows),
        "scenario_titles": {**{g: scenario_title(g) for g in groups}, **SCENARIO_TITLES},
        "targets": targets_table(all_rows),
        "throughput": {s: throughput_table(g) for s, g in groups.items()},
        # a web-UI session: the Comparison tab's one table and charts (bench/comparison.py)
        "web_ui": bool(run.results) and all(r.source == "web-ui" for r in run.results),
        "comparison": {s: comparison_table(g) for s, g in groups.items()},
        "calibration": calibration_table(calibration) if calibration else None,
        "resources": {s: resources_table(g) for s, g in groups.items()},
        "per_process": per_process_table(groups),
        "jobs": jobs_table(jobs_rows(groups)) if "jobs" in groups else None,
        "jobs_note": JOBS_NOTE,
        "idle": idle_table(run) if run.idle else None,
        "capacity": capacity_table(run) if run.capacity else None,
        "capacity_note": CAPACITY_NOTE,
        "profiles": [(p, profile_summary(run, p), profile_table(p)) for p in run.profiles],
        "profile_note": PROFILE_NOTE,
        "idle_note": IDLE_NOTE,
        "flags": flag_legend(run),
        "experiments": experiments_table(run) if run.experiments else None,
        "claims": claims_table(run) if run.claims else None,
        "failing": [row for row in all_rows if row.result.failure_samples],
        "groups": groups,
    }


def md_cell(text: str) -> str:
    """A table cell's text that cannot break a markdown table."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _env(html: bool) -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                      autoescape=select_autoescape(["html.j2"]) if html else False,
                      keep_trailing_newline=True)
    env.filters["md"] = md_cell
    return env


def render_markdown(run: Run) -> str:
    return _env(html=False).get_template("report.md.j2").render(**context(run))


def render_html(run: Run, run_dir: Path | None = None) -> str:
    """report.html; a `bench profile` run's flame graphs are drawn from the folded stacks in run_dir."""
    ctx = context(run)
    colors = charts.palette([row.result.target for group in ctx["groups"].values() for row in group])
    ctx["charts"] = [] if ctx["web_ui"] else build_charts(ctx["groups"], colors)
    ctx["jobs_chart"] = jobs_chart(jobs_rows(ctx["groups"]), colors) if ctx["jobs"] else None
    ctx["capacity_charts"] = capacity_charts(run) if run.capacity else []
    ctx["flame_graphs"] = flame_graphs(run, run_dir)
    ctx["chart_points"] = {s: chart_points(g) for s, g in ctx["groups"].items()}
    ctx["charts_js"] = CHARTS_JS.read_text()
    return _env(html=True).get_template("report.html.j2").render(**ctx)


def write_reports(run_dir: Path) -> Run:
    """(Re)write report.md and report.html from results.json; never runs load."""
    run = Run.load(run_dir)
    if is_faults_run(run):
        ctx = faults_context(run)
        write_atomic(run_dir / "report.md", _env(html=False).get_template("faults.md.j2").render(**ctx))
        html = _env(html=True).get_template("faults.html.j2").render(**ctx, charts=faults_charts(run))
        write_atomic(run_dir / "report.html", html)
        return run
    write_atomic(run_dir / "report.md", render_markdown(run))
    write_atomic(run_dir / "report.html", render_html(run, run_dir))
    return run


def is_faults_run(run: Run) -> bool:
    """A `bench faults` or `bench soak` run: fault or soak rows, no load-level results."""
    return run.scenario.name in ("faults", "soak") and not run.results


def console_table(run: Run) -> RichTable:
    table = RichTable(expand=False, title=f"Concurrency Lab {run.run_id}: {run.scenario.name}, "
                      f"db_ms={run.scenario.db_ms} llm_ms={run.scenario.llm_ms}")
    source = memory_source(run.results)
    for col in ("target", "users", "rps", "n", "mean ms", "W ms", "p50 ms", "p95 ms", "fail", "ceiling",
                "eff.", "canary p95 ms", f"{source or 'memory (PSS | working set)'} idle→peak MiB",
                "RSS peak MiB", "CPU %", "flags"):
        table.add_column(col, justify="left" if col in ("target", "flags") else "right",
                         no_wrap=col != "flags")
    for row in rows(run):
        r = row.result
        # in parentheses: square brackets would be read as Rich markup and vanish
        name = row.label + ("" if r.group() in ("recommendation", CALIBRATION) else f" ({r.group()})")
        table.add_row(
            name + (" ⚠" if r.anti_pattern else ""), str(r.users), f"{r.rps:.1f}",
            *latency_cells(r)[:5], pct(r.failures, r.requests),
            fmt(r.ceiling_rps, 1), fmt(r.efficiency, 2), r.canary_text(),
            f"{fmt(r.memory_mb.idle_pss)}→{fmt(r.memory_mb.peak_pss)}", _mem(r, r.memory_mb.peak_rss, 0),
            fmt(r.cpu_pct.target), "; ".join(r.flags) or "—")
    return table


def print_table(run: Run, console: Console | None = None) -> None:
    console = console or Console()
    if not console.is_terminal:  # CI logs and pipes: don't squeeze the table into 80 columns
        console = Console(width=200)
    console.print(console_table(run))


def finalize(run_dir: Path) -> Run:
    """Claims verdicts from the measured results, then report.md and report.html."""
    from bench.claims import evaluate
    run = Run.load(run_dir)
    if is_faults_run(run):
        return write_reports(run_dir)
    # capacity and profile runs measure none of the claims' cells
    if not run.capacity and not run.profiles and run.scenario.name != "profile":
        run.claims = evaluate(run)
    run.save(run_dir)
    return write_reports(run_dir)


# --- `bench faults` runs ---------------------------------------------------------------------

FAULT_COLUMNS = [Column("target"), Column("fault"), Column("answers while it lasted and after"),
                 Column("detect ms", numeric=True), Column("recover ms", numeric=True),
                 Column("failed after recovery", numeric=True), Column("lost in flight", numeric=True),
                 Column("slowest error ms (limit)", numeric=True), Column("verdict", strong=True)]


def fault_groups(run: Run) -> list[list[FaultResult]]:
    """The rows of a faults run: one per (target, fault), holding each repeat's result."""
    groups: dict[tuple[str, str, str], list[FaultResult]] = {}
    for f in run.faults:
        groups.setdefault((f.target, f.fault, f.runtime), []).append(f)
    return list(groups.values())


def broken_rows(run: Run) -> int:
    """Rows (target, fault) where the expectation broke in some run, plus soak rows with errors."""
    return sum(not all(f.ok for f in group) for group in fault_groups(run)) + sum(bool(r.problems)
                                                                                 for r in run.soaks)


def fault_verdict(group: list[FaultResult]) -> str:
    """ok / fails / finding, and in how many of the runs the expectation held when there were several."""
    from bench.faults import FINDINGS
    held, runs = sum(f.ok for f in group), len(group)
    if held == runs and group[0].fault in FINDINGS:
        return "finding" + (f" ({runs} runs)" if runs > 1 else "")
    counted = f" (held {held}/{runs})" if runs > 1 else ""
    if held == runs:
        return "ok" + counted
    return f"fails{counted}: " + "; ".join(dict.fromkeys(p for f in group for p in f.problems))


def _median(values: list[float | None]) -> float | None:
    present = sorted(v for v in values if v is not None)
    return statistics.median(present) if present else None


def faults_table(run: Run) -> Table:
    """One row per (target, fault): what the users saw (summed over the runs; detect and recover
    ms their median, the slowest error the slowest of all), and whether it met the expectation."""
    table = Table("faults", FAULT_COLUMNS)
    for group in fault_groups(run):
        first = group[0]
        by_status: dict[str, int] = {}
        for f in group:
            for status, count in f.by_status.items():
                by_status[status] = by_status.get(status, 0) + count
        answers = ", ".join(f"{count}× {status}" for status, count in sorted(by_status.items())) or "—"
        if first.fault == "sigterm":
            exits = "/".join(dict.fromkeys(str(f.exit_code) for f in group))
            stop_s = max(f.stop_s or 0 for f in group)
            answers = f"in flight: {answers}; exit {exits} after {fmt(stop_s, 1)} s"
        notes = "; ".join(dict.fromkeys(f.note for f in group if f.note))
        slowest = max((f.slowest_error_ms for f in group if f.slowest_error_ms is not None), default=None)
        limit = max((f.limit_ms for f in group if f.limit_ms is not None), default=None)
        ok = all(f.ok for f in group)
        table.add(first.target, first.fault, answers + (f" ({notes})" if notes else ""),
                  fmt(_median([f.detect_ms for f in group])), fmt(_median([f.recover_ms for f in group])),
                  sum(f.failed_after_recovery for f in group), sum(f.lost_in_flight for f in group),
                  fmt(slowest) + (f" ({fmt(limit)})" if limit is not None else ""),
                  fault_verdict(group), marks=() if ok else ("verdict-fails",))
    return table


def fault_targets_table(run: Run) -> Table:
    table = Table("fault-targets", [Column("target"), Column("PSS before → after MiB", numeric=True),
                                    Column("DB connections after (busy)", numeric=True),
                                    Column("DB pool", numeric=True)])
    for t in run.fault_targets:
        table.add(t.target, f"{fmt(t.memory_before_mb)} → {fmt(t.memory_after_mb)}",
                  f"{fmt(t.db_connections_after)} ({fmt(t.db_busy_after)})", fmt(t.db_pool))
    return table


def soak_table(run: Run) -> Table:
    table = Table("soak", [Column("target"), Column("users", numeric=True), Column("minutes", numeric=True),
                           Column("rps", numeric=True), Column("answers"),
                           Column("memory first → last MiB", numeric=True),
                           Column("memory slope MiB/min", numeric=True), Column("verdict", strong=True)])
    for r in run.soaks:
        answers = ", ".join(f"{count}× {status}" for status, count in r.by_status.items()) or "—"
        first, last = (r.memory_mb[0][1], r.memory_mb[-1][1]) if r.memory_mb else (None, None)
        table.add(r.target, r.users, fmt(r.minutes, 1), fmt(r.rps, 1), answers, f"{fmt(first)} → {fmt(last)}",
                  fmt(r.slope_mb_per_min, 2), "ok" if not r.problems else "fails: " + "; ".join(r.problems),
                  marks=() if not r.problems else ("verdict-fails",))
    return table


def faults_charts(run: Run) -> list[Chart]:
    targets = list(dict.fromkeys([*(f.target for f in run.faults), *(r.target for r in run.soaks)]))
    colors = charts.palette(targets)
    recovery: dict[str, dict[str, float]] = {}
    for f in run.faults:
        if f.recover_ms:
            recovery.setdefault(f.target, {})[f.fault] = f.recover_ms
    found = []
    if recovery:
        found.append(_chart("recovery", "Time to recover after each fault",
                            "From clearing the fault to the first 200 of a request started after it "
                            "(log scale).",
                            recovery, lambda: charts.recovery_bars(recovery, colors)))
    if run.soaks:
        series = {r.target: r.memory_mb for r in run.soaks if r.memory_mb}
        found.append(_chart("soak-memory", "Memory under steady load",
                            "Each target's memory (PSS of the process tree, or the container's working set) "
                            "sampled every 5 s.", series, lambda: charts.memory_over_time(series, colors)))
    return found


def faults_context(run: Run) -> dict:
    from bench.faults import DB_TIMEOUT_S, FAULTS, LLM_MS, UPSTREAM_TIMEOUT_S
    users = sorted({f.users for f in run.faults if f.fault not in ("sigterm", "overload")}
                   | {r.users for r in run.soaks})
    return {"run": run, "faults": faults_table(run), "targets": fault_targets_table(run),
            "soak": soak_table(run),
            "legend": [(name, FAULTS[name]) for name in dict.fromkeys(f.fault for f in run.faults)],
            "users": users, "llm_ms": LLM_MS, "timeout_s": UPSTREAM_TIMEOUT_S,
            # older runs started the targets without one
            "db_timeout_s": DB_TIMEOUT_S if any(f.fault == "pg-hang" for f in run.faults) else None,
            "repeats": max((f.repeat for f in run.faults), default=1),
            "failing": broken_rows(run), "rows": len(fault_groups(run)) + len(run.soaks)}


def capacity_console_table(run: Run) -> RichTable:
    return rich_table(capacity_table(run),
                      f"Concurrency Lab {run.run_id}: capacity (the knee of each target)")


def profile_console_tables(run: Run) -> list[RichTable]:
    return [rich_table(profile_table(p), f"Concurrency Lab {run.run_id}: where the CPU goes, {p.target} @ "
                                         f"{p.users} users ({p.tool})") for p in run.profiles]


def rich_table(t: Table, title: str) -> RichTable:
    """A report Table on the console: flagged rows in yellow."""
    table = RichTable(title=title)
    for col in t.columns:
        table.add_column(col.name, justify="right" if col.numeric else "left", no_wrap=col.name == "target")
    for row in t.rows:
        table.add_row(*row.cells, style="yellow" if "flagged" in row.marks else None)
    return table


def faults_console_table(run: Run) -> RichTable:
    table = RichTable(title=f"Concurrency Lab {run.run_id}: faults under load")
    for col in FAULT_COLUMNS:
        table.add_column(col.name, justify="right" if col.numeric else "left",
                         no_wrap=col.name in ("target", "fault"))
    for row in faults_table(run).rows:
        table.add_row(*row.cells, style="red" if "verdict-fails" in row.marks else None)
    if run.soaks:  # a soak run: its own columns
        soak = soak_table(run)
        table = RichTable(title=f"Concurrency Lab {run.run_id}: soak")
        for col in soak.columns:
            table.add_column(col.name, justify="right" if col.numeric else "left")
        for row in soak.rows:
            table.add_row(*row.cells, style="red" if "verdict-fails" in row.marks else None)
    return table


if __name__ == "__main__":  # `python -m bench.report RUN_DIR`: the web UI renders in its own process
    import sys
    finalize(Path(sys.argv[1]))
