"""results.json (schema version 1, described in docs/DESIGN.md): models, atomic writes, loading.

Fields added since version 1 first shipped are optional, so every older results.json still loads.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import psutil
from pydantic import BaseModel, Field

from bench import metrics


class Machine(BaseModel):
    cpus: int
    mem_gb: float
    python: str
    go: str | None = None


class Scenario(BaseModel):
    name: str = "recommendation"
    db_ms: int = 50
    llm_ms: int = 500
    duration_s: float = 20
    # Older files only: the last cell's warm-up, overwritten by every cell. Now Result.warmup_s.
    warmup_s: float | None = None


MIN_TAIL_SAMPLES = 20  # a p95 or p99 resting on fewer samples is not printed ("n<20")


class Latency(BaseModel):
    """Latency in ms. Since issue 11 (drained windows): over the requests STARTED in the measured
    window, each followed to its end; older files: Locust's, over the requests that finished."""
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    mean: float | None = None  # None: an older file (percentiles only)
    n: int | None = None  # samples every percentile rests on (None: older file, see Result.latency_n)
    censored: int | None = None  # of those, still unfinished at the end: counted with their wait so far

    def text(self, name: str, n: int | None = None) -> str:
        """One figure for a table: "—" when missing, "n<20" for a tail resting on too few samples.

        `n` stands in for `self.n` where an older file did not record it."""
        value = getattr(self, name)
        samples = self.n if self.n is not None else n
        if value is None:
            return "—"
        if name in ("p95", "p99") and samples is not None and samples < MIN_TAIL_SAMPLES:
            return f"n<{MIN_TAIL_SAMPLES}"
        return f"{value:.0f}"


class Phases(BaseModel):
    """How a level's Locust run went (locust/request_ledger.py): warm-up, window, drain."""
    warmup_s: float  # load before the window
    window_s: float  # the measured window: its requests are the row's figures
    drain_s: float | None = None  # after the window, until its requests had all finished
    steady: bool = True  # every user had completed a request before the window (else: warm-up limit)
    drained: bool = True  # every request started in the window finished (else: some are censored)


class Memory(BaseModel):
    idle_pss: float | None = None
    peak_rss: float | None = None
    peak_pss: float | None = None
    peak_uss: float | None = None


class Cpu(BaseModel):
    target: float | None = None  # % of one core, whole process tree
    locust: float | None = None  # % of one core, every Locust process together
    machine: float | None = None  # % of all cores
    # `locust --processes N` (a master and N workers): N, and its busiest process, % of one core.
    # None: one Locust process (and older files), which `locust` is alone.
    locust_processes: int | None = None
    locust_busiest: float | None = None

    def locust_process(self) -> float | None:
        """The busiest Locust process, % of its one core: what the load generator's limit is about."""
        return self.locust_busiest if self.locust_busiest is not None else self.locust


class ProcessMemory(BaseModel):
    pid: int
    role: str
    peak_rss: float
    peak_pss: float
    peak_uss: float
    cpu_pct: float
    threads: int | None = None  # the most OS threads seen at once (None: older file)


class Spread(BaseModel):
    """A cell measured `n` times (`bench compare --repeat N`): the lowest and highest of a figure
    across its repeats. The row carrying it is the repeat with the median rps."""
    n: int
    rps: tuple[float, float]
    w_ms: tuple[float, float] | None = None  # Little's law W of each repeat
    peak_pss: tuple[float, float] | None = None

    def rps_pct(self, median: float) -> float | None:
        """max - min of rps over the median, in %: what a change must exceed to be more than noise."""
        return round(100 * (self.rps[1] - self.rps[0]) / median, 1) if median > 0 else None


class Result(BaseModel):
    target: str
    framework: str
    model: str
    scenario: str = "recommendation"  # recommendation | stream | cpu | jobs | calibration
    # This row's workload when it is not the run's (Run.scenario), e.g. a DB-bound cell; None: the run's.
    db_ms: int | None = None
    llm_ms: int | None = None
    params: dict[str, int] = Field(default_factory=dict)
    users: int
    rps: float
    requests: int
    failures: int
    latency_ms: Latency
    canary_p95_ms: float | None = None
    ttft_ms: Latency | None = None  # stream scenario: time to the first token
    # The jobs scenario: latency_ms is the time from submit to result and rps the jobs completed per
    # second; "jobs" (submit + poll the job endpoints) or "sync" (GET /recommendation), the submit's
    # own latency, the polls per job (polls / jobs started in the window), and Redis's peak memory
    # beside the target's (its broker and job records: PSS natively, the redis container's working
    # set under --docker).
    jobs_endpoint: Literal["jobs", "sync"] | None = None
    submit_ms: Latency | None = None
    polls_per_job: float | None = None
    redis_mb: float | None = None
    canary_answered: int | None = None  # /healthz checks answered; a blocked loop answers few
    canary_expected: int | None = None
    canary_ms: Latency | None = None  # the canary's whole latency, with its sample count (newer files)
    # Little's law for a closed loop with no think time: the mean time a request spends in the
    # system is users / rps (ms). Latencies that disagree with it are censored (metrics.flags).
    littles_w_ms: float | None = None
    # Users whose request began before the window and was still unanswered after it (an unfair
    # queue starves some users; the window's samples cannot see them). None: older file.
    starved_users: int | None = None
    phases: Phases | None = None  # warm-up, window and drain of this level (None: older file)
    memory_mb: Memory
    processes: int
    capacity: int | None = None  # requests in flight the model allows (None = unbounded)
    db_pool: int | None = None
    cpu_pct: Cpu
    cpu_ms_per_request: float | None = None
    ceiling_rps: float | None = None
    efficiency: float | None = None
    flags: list[str] = Field(default_factory=list)
    per_process: list[ProcessMemory] = Field(default_factory=list)
    anti_pattern: bool = False
    failure_samples: list[str] = Field(default_factory=list)
    warmup_s: float | None = None  # the warm-up before this row's target start (None: none, or older file)
    # Where the target ran: "native" (process tree; memory is PSS) or "docker" (a compose
    # container; memory is the cgroup working set, stored in the pss/rss/uss fields alike).
    runtime: Literal["native", "docker"] = "native"
    # Who measured it: `bench compare`, or a swarm started from the Locust web UI (bench/session.py),
    # which records when its window closed (also the row's id in the web UI's Comparison tab).
    source: Literal["compare", "web-ui"] = "compare"
    recorded_at: str | None = None
    # `bench compare --repeat N`: in Run.results the median repeat, with the spread of all N; in
    # Run.repeats each repeat's own row, numbered from 0. None: measured once.
    spread: Spread | None = None
    repeat: int | None = None
    # `bench capacity`'s open-model level: the arrival rate offered (paced users, not a closed loop);
    # its latency has no coordinated omission, and no Little's-law W. None: a closed loop.
    arrival_rps: float | None = None

    @property
    def latency_n(self) -> int:
        """Samples the latency percentiles rest on (older files: Locust's, every finished request)."""
        return self.latency_ms.n if self.latency_ms.n is not None else self.requests

    def memory_parts(self) -> dict[str, float]:
        """The whole system's peak PSS by part: the web process(es), the Celery workers, Redis.

        Under --docker `docker stats` sees containers, not processes: "web" is then the target's
        whole container (fastapi-celery's web and workers together) and "Redis" the redis service's."""
        parts: dict[str, float] = {}
        for p in self.per_process:
            part = "workers" if p.role == "celery" else "web"
            parts[part] = parts.get(part, 0.0) + p.peak_pss
        if not parts and self.memory_mb.peak_pss is not None:  # --docker: the container as a whole
            parts["web"] = self.memory_mb.peak_pss
        if self.redis_mb is not None:
            parts["Redis"] = self.redis_mb
        return parts

    def group(self) -> str:
        """Which rows may be ranked together: the scenario, and the workload where it is not the run's."""
        if self.db_ms is None and self.llm_ms is None:
            return self.scenario
        return f"{self.scenario} db_ms={self.db_ms} llm_ms={self.llm_ms}"

    def w_ms(self) -> float | None:
        """W = users / rps in ms (Little's law); computed for older files, which did not store it."""
        if self.littles_w_ms is not None:
            return self.littles_w_ms
        if self.arrival_rps is not None:  # paced users: not a closed loop, no W
            return None
        return round(1000 * self.users / self.rps, 1) if self.rps > 0 else None

    def samples_text(self) -> str:
        """The latency's sample count, with the censored ones (still waiting at the end)."""
        censored = self.latency_ms.censored
        return f"{self.latency_n}" + (f" ({censored} unfinished)" if censored else "")

    @property
    def canary_n(self) -> int | None:
        """Samples the canary p95 rests on (older files: the checks answered, when recorded)."""
        return self.canary_ms.n if self.canary_ms and self.canary_ms.n is not None else self.canary_answered

    def canary_p95_trusted(self) -> float | None:
        """The canary p95, or None when it rests on fewer than MIN_TAIL_SAMPLES checks."""
        n = self.canary_n
        return None if n is not None and n < MIN_TAIL_SAMPLES else self.canary_p95_ms

    def canary_text(self) -> str:
        """Canary p95 and the checks it rests on ("n<20" instead of a p95 of too few checks)."""
        if self.canary_p95_ms is None:  # not one check started in the window came back
            return f"— (0/{self.canary_expected} answered)" if self.canary_expected else "—"
        n = self.canary_n
        few = n is not None and n < MIN_TAIL_SAMPLES
        text = f"n<{MIN_TAIL_SAMPLES}" if few else f"{self.canary_p95_ms:.0f}"
        if self.canary_expected:
            count = f"{self.canary_answered or 0}/{self.canary_expected} answered"
        elif n is not None:
            count = f"n={n}"
        else:
            return text  # an older file without the count
        censored = self.canary_ms.censored if self.canary_ms else None
        return f"{text} ({count}{f', {censored} unfinished' if censored else ''})"

    @property
    def memory_source(self) -> str:
        """What the memory figures are: "PSS" natively, "working set" in Docker."""
        return "working set" if self.runtime == "docker" else "PSS"

    def rps_per_gb(self) -> float | None:
        """Throughput bought per GiB of the target's peak memory (PSS natively, working set in Docker)."""
        return self.rps * 1024 / self.memory_mb.peak_pss if self.memory_mb.peak_pss else None

    def mb_per_request_in_flight(self) -> float | None:
        """MiB per request in flight: (peak - idle) / Little's L, as bench capacity's knees
        (metrics.mb_per_in_flight)."""
        return metrics.mb_per_in_flight(self.memory_mb.peak_pss, self.memory_mb.idle_pss, self.rps,
                                self.latency_ms.mean, self.w_ms())


class RowRef(BaseModel):
    """A result row (or an experiment) a claim's verdict rests on: the row's keys, its role and its
    flags. The subject is what the sentence speaks of (a flagged subject row never lets it hold);
    a baseline is what it is measured against, or context."""
    role: Literal["subject", "baseline"]
    target: str
    scenario: str = "recommendation"  # the row's scenario; "experiment" for an experiment
    params: dict[str, int] = Field(default_factory=dict)
    users: int | None = None  # None: an experiment
    workload: tuple[int, int] | None = None  # (db_ms, llm_ms) when not the run's
    runtime: str = "native"
    experiment: str | None = None  # the experiment's id
    flags: list[str] = Field(default_factory=list)

    def flag_names(self) -> list[str]:
        """The flags without their figures: "latency-censored", "machine-cpu-bound", ..."""
        return [f.split(" (")[0] for f in self.flags]

    def text(self, params: Sequence[str] = ()) -> str:
        """Compact: "subject flask-sync workers=16 @100 db_ms=200 llm_ms=0 ⚑ latency-censored";
        `params`: the ones worth showing (those that vary between the target's rows)."""
        shown = "".join(f" {k}={self.params[k]}" for k in params if k in self.params)
        where = (f" experiment {self.experiment}" if self.experiment
                 else f" @{self.users}" + (f" {self.scenario}" if self.scenario != "recommendation" else ""))
        load = f" db_ms={self.workload[0]} llm_ms={self.workload[1]}" if self.workload else ""
        docker = " (docker)" if self.runtime == "docker" else ""
        flags = f" ⚑ {', '.join(self.flag_names())}" if self.flags else ""
        return f"{self.role} {self.target}{shown}{where}{load}{docker}{flags}"


class Claim(BaseModel):
    id: str
    source: str  # seed file, e.g. "001_bee04df1af4bf523.txt"
    text: str  # the quote
    check: str = ""  # how the lab checks it, in words
    # not_testable: the run has the measurement, but this machine cannot show the effect at the
    # seed's scale (e.g. a parallel speed-up on 2 cores shared with the load generator).
    verdict: Literal["holds", "fails", "partly", "not_run", "not_testable"]
    evidence: str
    # `bench compare --repeat N`: the verdict judged on each repeat alone (the verdict above is the
    # medians'). None: a run measured once.
    repeat_verdicts: list[Literal["holds", "fails", "partly", "not_run", "not_testable"]] | None = None
    # The rows (and experiments) the verdict rests on, each with its role and flags. None: an older
    # file, which did not record them.
    rests_on: list[RowRef] | None = None

    def verdict_text(self) -> str:
        """The verdict, and how the repeats agree with it: "holds (3/3 repeats)"."""
        if not self.repeat_verdicts:
            return self.verdict
        same = sum(v == self.verdict for v in self.repeat_verdicts)
        if same == len(self.repeat_verdicts):
            return f"{self.verdict} ({same}/{same} repeats)"
        return f"{self.verdict} (repeats: {', '.join(self.repeat_verdicts)})"


class Experiment(BaseModel):
    """A small timed experiment run against a live target (e.g. 10 concurrent requests)."""
    id: str
    target: str
    params: dict[str, int] = Field(default_factory=dict)
    description: str
    measured: dict[str, float | int | list[float] | None] = Field(default_factory=dict)
    error: str | None = None


class Knee(BaseModel):
    """`bench capacity`: how far one target went under one workload (bench/capacity.py). The knee
    is its highest-rps level within the SLO (p95 <= 1.5 x L1, <= 1 % errors, no CPU or load
    generator limit); null figures where no level was within it."""
    target: str
    framework: str
    model: str
    db_ms: int
    llm_ms: int
    l1_ms: float | None = None
    tried: list[int] = Field(default_factory=list)  # users levels measured after L1, in order
    # Per level tried: Locust's processes (`locust --processes N`; empty: older files, one each) and,
    # for the calibration only, its rps / (users / L1), Little's law (bench.metrics.CALIBRATION_MIN).
    locust_processes: list[int] = Field(default_factory=list)
    littles: list[float | None] = Field(default_factory=list)
    stopped_by: str  # what the level above the knee hit: latency, errors, CPU, load generator, ...
    users: int | None = None
    rps: float | None = None
    p95_ms: float | None = None
    rps_per_core: float | None = None  # rps / the target's CPU in cores at the knee
    in_flight: float | None = None  # requests in the system at the knee: rps x mean latency
    mb_per_in_flight: float | None = None  # (peak PSS - idle PSS) / in_flight
    cpu_ms_per_request: float | None = None
    peak_pss: float | None = None
    p50_ms: float | None = None  # the closed loop's, at the knee
    p99_ms: float | None = None
    # The open-model pass: a fixed arrival rate (OPEN_SHARE of the knee's rps) from paced users, so
    # a slow answer does not hold the next request back (no coordinated omission).
    open_arrival_rps: float | None = None
    open_rps: float | None = None  # answered per second (below the arrivals: the pacing slipped)
    open_users: int | None = None
    open_p50_ms: float | None = None
    open_p95_ms: float | None = None
    open_p99_ms: float | None = None


class Profile(BaseModel):
    """`bench profile`: where one cell's CPU went (bench/profile.py). The cell's own row is in
    `results`; here the profiler's samples of its window, by layer, and the files beside results.json."""
    target: str
    users: int
    language: str  # python, go or node: which LAYER_RULES classified the frames
    tool: str  # what sampled, with its version: "py-spy 0.4.3", "pprof, go1.26.8", ...
    rate_hz: float  # samples per second per running thread
    window_s: float  # how long it sampled: the measured window
    samples: int  # every sample that was not idle, all processes and threads
    layers: dict[str, float] = Field(default_factory=dict)  # layer -> share of the samples, %
    layer_samples: dict[str, int] = Field(default_factory=dict)  # layer -> samples
    cpu_ms_per_request: float | None = None  # the row's (process-tree sampler), which the shares split
    files: list[str] = Field(default_factory=list)  # the tool's own profile(s): speedscope opens them
    folded: str | None = None  # folded stacks ("frame;frame;frame count"): the report's flame graph
    flame_graph: str | None = None  # the SVG `bench report` draws from them


class IdleMemory(BaseModel):
    """Idle memory of a target and of its bare variant (bench/bare.py: one procedure for both), MiB.

    The bare variant is the framework's hello-world under the same server settings, so the pair
    separates what the framework costs from what the app adds (SDKs, ORM, settings, routers)."""
    target: str  # the benchmark target
    bare: str  # its bare variant
    app: dict[str, float] = Field(default_factory=dict)  # bench.bare.KEYS -> value, for the target
    framework: dict[str, float] = Field(default_factory=dict)  # the same, for the bare variant


class FaultResult(BaseModel):
    """One fault injected into one target under steady load (`bench faults`, bench/faults.py)."""
    target: str
    fault: str  # a bench.faults.FAULTS key, e.g. "pg-restart"
    runtime: str = "native"
    users: int
    injected_at: float | None = None  # when it struck, seconds since the epoch (the ledger's clock)
    lasted_s: float  # from injecting the fault to clearing it
    requests: int  # answered while it lasted and in the recovery after it (sigterm: those in flight)
    by_status: dict[str, int] = Field(default_factory=dict)  # "200", "503 database_unavailable", ...
    detect_ms: float | None = None  # from the injection to the first error answer
    recover_ms: float | None = None  # from clearing it to the first 200 of a request started after
    failed_after_recovery: int = 0  # errors among requests started after that first 200
    lost_in_flight: int = 0  # requests under way when it struck that got no HTTP answer
    # The longest an error answer took; for pg-stop, the longest wait for any answer from the
    # moment the database went down (a 200 after a wait in the pool is the hang it looks for).
    slowest_error_ms: float | None = None
    limit_ms: float | None = None  # what it may take for this fault and model (bench.faults.error_limit_ms)
    db_busy_during: int | None = None  # held idle inside a transaction while the upstream hung
    exit_code: int | None = None  # graceful stop: the server's exit status
    stop_s: float | None = None  # graceful stop: from SIGTERM to the process gone
    problems: list[str] = Field(default_factory=list)  # what broke the fault's expectations
    note: str = ""
    repeat: int = 1  # which run of this fault on this target (`bench faults --repeat`)
    died: bool = False  # the server died during this fault (or its recovery); restarted after it

    @property
    def ok(self) -> bool:
        return not self.problems


class SoakResult(BaseModel):
    """One target under steady load for minutes (`bench soak`): errors and the memory's slope."""
    target: str
    runtime: str = "native"
    users: int
    minutes: float
    requests: int  # answered (any status) during the soak
    by_status: dict[str, int] = Field(default_factory=dict)
    rps: float  # valid answers per second
    memory_mb: list[tuple[float, float]] = Field(default_factory=list)  # (seconds since start, MiB)
    slope_mb_per_min: float | None = None  # least squares over the samples after the first minute
    problems: list[str] = Field(default_factory=list)


class FaultTarget(BaseModel):
    """A target's state around its faults: connections and memory before and after."""
    target: str
    runtime: str = "native"
    memory_before_mb: float | None = None  # PSS of the process tree, idle after warm-up
    memory_after_mb: float | None = None  # the same after the last fault but the stop
    db_connections_after: int | None = None  # the target's connections to PostgreSQL, at rest
    db_busy_after: int | None = None  # of those, still in a query or transaction (should be 0)
    db_pool: int | None = None  # what its pools may hold in all
    restarts: int = 0  # times the harness started it again after it died in a fault


class Run(BaseModel):
    schema_: int = Field(1, alias="schema")
    run_id: str
    started_at: str
    git_rev: str | None = None
    command: list[str] | None = None  # the command line that produced the run (None: older file)
    make_target: str | None = None  # the make target that ran that command, e.g. "compare"
    machine: Machine
    scenario: Scenario
    results: list[Result] = Field(default_factory=list)
    experiments: list[Experiment] = Field(default_factory=list)
    claims: list[Claim] = Field(default_factory=list)
    idle: list[IdleMemory] = Field(default_factory=list)  # framework vs app, at rest (native runs)
    faults: list[FaultResult] = Field(default_factory=list)  # `bench faults`
    fault_targets: list[FaultTarget] = Field(default_factory=list)
    soaks: list[SoakResult] = Field(default_factory=list)  # `bench soak`
    skipped: dict[str, str] = Field(default_factory=dict)  # target -> why it was not measured
    # `bench compare --repeat N`: every repeat's row (Result.repeat = 0..N-1); `results` holds the
    # median of each cell. Empty when each cell was measured once.
    repeats: list[Result] = Field(default_factory=list)
    capacity: list[Knee] = Field(default_factory=list)  # `bench capacity`: one knee per target and workload
    profiles: list[Profile] = Field(default_factory=list)  # `bench profile`: where the CPU went

    def repeat_runs(self) -> list[Run]:
        """One Run per repeat (its rows of every cell), to judge the claims on each; [] unless
        the run was repeated."""
        indexes = sorted({r.repeat for r in self.repeats if r.repeat is not None})
        once = [r for r in self.results if r.spread is None]  # a cell measured once is in every repeat
        return [self.model_copy(update={"results": [*once, *(r for r in self.repeats if r.repeat == i)],
                                        "repeats": []}) for i in indexes]

    model_config = {"populate_by_name": True}

    def save(self, run_dir: Path) -> Path:
        """Write results.json atomically, so an interrupted run keeps what it measured."""
        return write_atomic(run_dir / "results.json", self.model_dump_json(by_alias=True, indent=2))

    @classmethod
    def load(cls, run_dir: Path) -> Run:
        return cls.model_validate_json((run_dir / "results.json").read_text())


def write_atomic(path: Path, text: str) -> Path:
    """Write a file whole or not at all (a reader, or an interrupted writer, never sees half of it),
    readable by everyone as a plain file would be (mkstemp's files are the owner's only)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


MAKE_TARGET_ENV = "LAB_MAKE_TARGET"  # the Makefile's recipes set it: `LAB_MAKE_TARGET=$@ bench ...`


def invocation(argv: Sequence[str] | None = None,
               env: Mapping[str, str] | None = None) -> tuple[list[str], str | None]:
    """The command line as typed (`bench compare --quick`) and the make target that ran it, if any.

    The make target counts only under make itself (MAKELEVEL is set), so a stray exported
    LAB_MAKE_TARGET in a shell is not mistaken for a make run.
    """
    argv = list(sys.argv if argv is None else argv)
    env = os.environ if env is None else env
    command = [Path(argv[0]).name, *argv[1:]] if argv else []
    make_target = env.get(MAKE_TARGET_ENV) or None
    return command, make_target if make_target and "MAKELEVEL" in env else None


def command_text(command: Sequence[str] | None, make_target: str | None) -> str | None:
    """How to write the recorded command in prose: `make compare`, else the command line."""
    if make_target:
        return f"make {make_target}"
    return shlex.join(command) if command else None


def machine_info() -> Machine:
    go = shutil.which("go")
    go_version = None
    if go:
        out = subprocess.run([go, "version"], capture_output=True, text=True, check=False)
        go_version = out.stdout.split()[2] if out.returncode == 0 else None
    return Machine(cpus=os.cpu_count() or 1, mem_gb=round(psutil.virtual_memory().total / 1e9, 1),
                   python=platform.python_version(), go=go_version)


def new_run(results_dir: Path, prefix: str, run_id: str | None, scenario: Scenario,
            invocation: tuple[list[str], str | None] | None) -> tuple[Run, Path]:
    """A run's folder, results_dir/<run_id> (default <prefix><time>) with its raw/, and its first
    results.json: when it started, at which commit, by which command, on which machine."""
    started = dt.datetime.now(dt.UTC)
    run_id = run_id or prefix + started.strftime("%Y%m%d-%H%M%S")
    run_dir = results_dir / run_id
    (run_dir / "raw").mkdir(parents=True, exist_ok=True)
    command, make_target = invocation or (None, None)
    run = Run(run_id=run_id, started_at=started.isoformat(timespec="seconds"), git_rev=git_rev(),
              command=command, make_target=make_target, machine=machine_info(), scenario=scenario)
    run.save(run_dir)
    return run, run_dir


def git_rev() -> str | None:
    """The checkout's short commit; None outside a git checkout or without git (the Locust image)."""
    if shutil.which("git") is None:
        return None
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent.parent,
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or None
