"""Web-UI sessions: every swarm started from the Locust web UI becomes a results.json row.

locust/web_session.py watches the swarms (Locust's events) and hands this module plain figures;
this module turns them into `Result` rows with `source = "web-ui"` in a session folder,
`results/web-ui-<time>/results.json`: the file `bench compare` writes, so `bench report` renders a
session like any run, charts and claims included (the claims its rows allow; the rest "not run").

A swarm's row (docs/DESIGN.md, Web-UI sessions):
- the target comes from the Host, through the manifests: a compose service name
  (http://fastapi-async:8021) or a port on this machine (http://127.0.0.1:8021), with its params;
- the window opens after the ramp-up: once the users are spawned and as many requests have
  completed as there are users (each has had time for an answer), at least WARMUP_MIN_S, at most
  WARMUP_MAX_S. Locust's statistics restart there (as Locust's own --reset-stats does), so the row's
  rates and percentiles are the ones Locust's /stats shows for the same window. The window closes at
  Stop, after the "record s" the form asked for, or when the users, the Host or the workload
  change (the next row starts its own warm-up);
- a swarm stopped before its window opened, or after less than MIN_WINDOW_S of it, is still
  recorded, flagged "too short";
- Locust counts the requests that finished: the row's W = users / rps shows where that censors a
  queue, and the flag says so (metrics.flags), as in `bench compare`.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from bench import manifest, metrics
from bench.load import SCENARIOS
from bench.results import Cpu, Latency, Memory, Phases, Result, Run, Scenario, git_rev, machine_info

WARMUP_MIN_S = 2.0
WARMUP_MAX_S = 60.0
MIN_WINDOW_S = 5.0
SESSION_PREFIX = "web-ui-"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "0.0.0.0", "::1"}
# Locust user class -> the scenario it measures, and the stats row that carries its numbers.
SCENARIO_OF_CLASS = {user_class: name for name, (user_class, _) in SCENARIOS.items()}
ROW_OF_SCENARIO = {name: row for name, (_, row) in SCENARIOS.items()}


def _base_url(host: str) -> str:
    url = urlparse(host or "")
    return f"{url.scheme or 'http'}://{url.hostname}:{url.port}" if url.hostname and url.port else ""


def write_registry(path: Path, started: list[manifest.ResolvedTarget]) -> Path:
    """What `bench up` started, where and with which params (it may move a target off a busy port
    or `--set` its params): Locust's `--lab-targets FILE` resolves the Host through it."""
    entries = [{"url": r.base_url, "target": r.name, "params": r.params} for r in started]
    path.write_text(json.dumps(entries, indent=2) + "\n")
    return path


def read_registry(path: Path | str | None) -> dict[str, tuple[str, dict[str, int]]]:
    """base URL -> (target, params) from a `write_registry` file; {} when there is none."""
    if not path or not Path(path).exists():
        return {}
    return {_base_url(e["url"]): (e["target"], e["params"]) for e in json.loads(Path(path).read_text())}


def resolve_host(host: str, registry: dict[str, tuple[str, dict[str, int]]] | None = None
                 ) -> manifest.ResolvedTarget | None:
    """The target a Host URL names, with its params: a registered URL (`bench up`), a compose
    service (its name), else a local port of a manifest; None when it names none of them."""
    url = urlparse(host or "")
    name, port = url.hostname or "", url.port
    targets = manifest.load_targets()
    if (known := (registry or {}).get(_base_url(host))) and known[0] in targets:
        return targets[known[0]].resolve(known[1], host=name, port=port)
    if name in targets:
        return targets[name].resolve(host=name, port=port)
    if name in LOCAL_HOSTS:
        for target in targets.values():
            if target.port == port:
                return target.resolve(host=name)
    return None


def _answers(host: str, port: int, timeout_s: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def hosts_up(compose: bool, registry: dict[str, tuple[str, dict[str, int]]] | None = None,
             timeout_s: float = 0.5, targets: list[manifest.Target] | None = None) -> list[dict[str, str]]:
    """The targets that accept connections, as the Host field's choices: by service name under
    compose (the Locust container reaches them by name), else the registered URLs (`bench up`) and
    127.0.0.1 at each manifest port."""
    targets = list(manifest.load_targets().values()) if targets is None else targets
    known = {t.name: t for t in targets}
    candidates = {url: (name, params) for url, (name, params) in (registry or {}).items() if name in known}
    for t in targets:
        candidates.setdefault(f"http://{t.name if compose else '127.0.0.1'}:{t.port}", (t.name, {}))
    urls = list(candidates)
    with ThreadPoolExecutor(max(len(urls), 1)) as pool:
        up = list(pool.map(lambda u: _answers(urlparse(u).hostname, urlparse(u).port, timeout_s), urls))
    listed = [(u, *candidates[u]) for u, ok in zip(urls, up, strict=True) if ok]
    return [{"target": name, "url": u, "model": known[name].resolve(params).model}
            for u, name, params in listed]


@dataclass(frozen=True)
class Figures:
    """One Locust statistics row over the window (locust/web_session.py reads them from Locust)."""
    requests: int  # finished, failures included
    failures: int
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    mean: float | None = None

    def latency(self) -> Latency:
        if not self.requests:
            return Latency(n=0)
        return Latency(p50=self.p50, p95=self.p95, p99=self.p99, max=self.max,
                       mean=None if self.mean is None else round(self.mean, 1), n=self.requests)


@dataclass
class Swarm:
    """What one web-UI swarm did, as locust/web_session.py saw it (times in epoch seconds)."""
    host: str
    users: int
    scenario: str
    db_ms: int
    llm_ms: int
    started: float  # the swarm (or this user count) began
    closed: float  # the window (or the warm-up, when it never opened) ended
    window_opened: float | None = None
    steady: bool = True  # the window opened after every user's first answer (not at WARMUP_MAX_S)
    row: Figures = field(default_factory=lambda: Figures(0, 0))
    canary: Figures | None = None
    ttft: Figures | None = None
    idle: dict[str, float] = field(default_factory=dict)  # rss/pss/uss natively, working set in docker
    peak: dict[str, float] = field(default_factory=dict)
    processes: int = 0
    target_cpu: float | None = None  # % of one core over the window
    max_process_cpu: float | None = None
    locust_cpu: float | None = None
    machine_cpu: float | None = None
    runtime: str = "native"
    jobs_endpoint: str | None = None  # the jobs scenario: "jobs" (submit + poll) or "sync"

    @property
    def window_s(self) -> float:
        return self.closed - self.window_opened if self.window_opened else 0.0


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def swarm_result(swarm: Swarm, session_workload: tuple[int, int],
                 registry: dict[str, tuple[str, dict[str, int]]] | None = None) -> Result:
    """A swarm's row; `session_workload` is the session's own (db_ms, llm_ms), stored as None."""
    resolved = resolve_host(swarm.host, registry)
    too_short = None
    if not swarm.window_opened:
        too_short = "too short: stopped during the warm-up, so no steady window (figures: the whole swarm)"
    elif swarm.window_s < MIN_WINDOW_S:
        too_short = f"too short: a {swarm.window_s:.1f} s window (under {MIN_WINDOW_S:.0f} s)"
    span = swarm.window_s if swarm.window_opened else swarm.closed - swarm.started
    answered = swarm.row.requests - swarm.row.failures
    rps = answered / span if span > 0 else 0.0
    w_ms = metrics.littles_w_ms(swarm.users, rps)
    latency = swarm.row.latency()
    flags = metrics.flags(machine_cpu=swarm.machine_cpu, locust_cpu=swarm.locust_cpu,
                          max_process_cpu=swarm.max_process_cpu, failures=swarm.row.failures,
                          requests=swarm.row.requests, answered=answered, mean_ms=latency.mean,
                          p50_ms=latency.p50, w_ms=w_ms, users=swarm.users)
    if not swarm.steady and swarm.window_opened:
        flags.append(f"not steady: the window opened at the {WARMUP_MAX_S:.0f} s warm-up limit")
    canary = swarm.canary.latency() if swarm.canary else None
    workload = (swarm.db_ms, swarm.llm_ms)
    own = workload != session_workload
    # as bench compare: a job target's jobs through its job endpoints are bounded by job_capacity
    endpoint = (swarm.jobs_endpoint or "jobs") if swarm.scenario == "jobs" else None
    job_capacity = endpoint == "jobs" and resolved is not None and resolved.target.jobs
    return Result(
        target=resolved.name if resolved else swarm.host,
        framework=resolved.target.framework if resolved else "—",
        model=resolved.model if resolved else "not a target of the manifests",
        scenario=swarm.scenario, db_ms=swarm.db_ms if own else None, llm_ms=swarm.llm_ms if own else None,
        params=resolved.params if resolved else {}, users=swarm.users, rps=round(rps, 2),
        requests=swarm.row.requests, failures=swarm.row.failures, latency_ms=latency, littles_w_ms=w_ms,
        canary_p95_ms=canary.p95 if canary else None, canary_ms=canary,
        canary_answered=swarm.canary.requests - swarm.canary.failures if swarm.canary else None,
        ttft_ms=swarm.ttft.latency() if swarm.ttft and swarm.ttft.requests else None,
        phases=Phases(warmup_s=round((swarm.window_opened or swarm.closed) - swarm.started, 2),
                      window_s=round(swarm.window_s, 2), steady=swarm.steady and bool(swarm.window_opened)),
        memory_mb=Memory(idle_pss=_r(swarm.idle.get("pss")), peak_rss=_r(swarm.peak.get("rss")),
                         peak_pss=_r(swarm.peak.get("pss")), peak_uss=_r(swarm.peak.get("uss"))),
        processes=swarm.processes or (resolved.processes if resolved else 0),
        capacity=(resolved.job_capacity if job_capacity else resolved.capacity) if resolved else None,
        db_pool=resolved.db_pool if resolved else None, jobs_endpoint=endpoint,
        cpu_pct=Cpu(target=_r(swarm.target_cpu), locust=_r(swarm.locust_cpu), machine=_r(swarm.machine_cpu)),
        cpu_ms_per_request=(round(10 * swarm.target_cpu / rps, 2)
                            if rps > 0 and swarm.target_cpu is not None else None),
        flags=([too_short] if too_short else []) + flags,
        anti_pattern=resolved.target.anti_pattern if resolved else False,
        runtime="docker" if swarm.runtime == "docker" else "native",
        source="web-ui", recorded_at=dt.datetime.fromtimestamp(swarm.closed, dt.UTC).isoformat(
            timespec="milliseconds"),
    )


def fill_ceilings(run: Run) -> None:
    """Ceiling and efficiency of every row whose target has a 1-user row in the session (its L1):
    the same arithmetic as `bench compare` (metrics.ceiling_rps), recomputed as rows come and go."""
    def key(r: Result) -> tuple:
        return r.target, r.group(), r.runtime, tuple(sorted(r.params.items()))

    l1 = {key(r): r.latency_ms.p50 / 1000 for r in run.results
          if r.users == 1 and r.latency_ms.p50 and not r.flags}
    for r in run.results:
        db_ms = run.scenario.db_ms if r.db_ms is None else r.db_ms
        pool = None if r.scenario == "cpu" else r.db_pool
        ceiling = metrics.ceiling_rps(r.users, r.capacity, l1.get(key(r)), pool, db_ms)
        r.ceiling_rps = round(ceiling, 2) if ceiling else None
        r.efficiency = round(metrics.efficiency(r.rps, ceiling), 3) if ceiling else None


class Session:
    """A session folder, created with its first row; every change is saved at once (atomically)."""

    def __init__(self, run_dir: Path, workload: tuple[int, int], registry: Path | None = None) -> None:
        self.run_dir = run_dir
        self.workload = workload
        self.registry = registry  # `bench up`'s targets file, read at every row (it may change)
        if (run_dir / "results.json").exists():  # the same folder again: go on with its rows
            self.run = Run.load(run_dir)
        else:
            started = dt.datetime.now(dt.UTC)
            self.run = Run(run_id=run_dir.name, started_at=started.isoformat(timespec="seconds"),
                           git_rev=git_rev(), command=["locust", "web UI"], machine=machine_info(),
                           scenario=Scenario(name="recommendation", db_ms=workload[0], llm_ms=workload[1],
                                             duration_s=0))

    @classmethod
    def new(cls, results_dir: Path, workload: tuple[int, int], registry: Path | None = None) -> Session:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        return cls(results_dir / f"{SESSION_PREFIX}{stamp}", workload, registry)

    def _save(self) -> None:
        fill_ceilings(self.run)
        self.run.claims = []  # stale as soon as the rows change; `report()` judges them again
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run.save(self.run_dir)

    def add(self, swarm: Swarm) -> Result:
        result = swarm_result(swarm, self.workload, read_registry(self.registry))
        self.run.results.append(result)
        self._save()
        return result

    def delete(self, recorded_at: str) -> bool:
        before = len(self.run.results)
        self.run.results = [r for r in self.run.results if r.recorded_at != recorded_at]
        if len(self.run.results) == before:
            return False
        self._save()
        return True

    def clear(self) -> None:
        self.run.results = []
        self._save()
        for name in ("report.md", "report.html"):
            (self.run_dir / name).unlink(missing_ok=True)

    def discard_if_empty(self) -> None:
        """At exit: a folder made for this session (docker-entrypoint.sh) that got no row goes."""
        if self.run_dir.is_dir() and not any(self.run_dir.iterdir()):
            self.run_dir.rmdir()

    def report(self) -> Run:
        """results.json with the claims judged, report.md and report.html (as `bench report`)."""
        from bench.report import finalize
        self._save()
        self.run = finalize(self.run_dir)
        return self.run
