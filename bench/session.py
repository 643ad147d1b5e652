"""Web-UI sessions: every swarm started from the Locust web UI, and every cell of its Compare form,
becomes a results.json row counted by the code that counts a `bench compare` level (bench/row.py).

locust/web_session.py runs each row's phases on the swarm's request ledger (warm-up, window, drain:
locust/request_ledger.py) and hands this module the ledger's row and what the samplers saw; this module
turns them into `Result` rows with `source = "web-ui"` in a session folder,
`results/web-ui-<time>/results.json`: the file `bench compare` writes, so `bench report` renders a
session like any run (the claims its rows allow; the rest "not run").

A row (docs/DESIGN.md, Web-UI sessions):
- the target comes from the Host, through the manifests: a compose service name
  (http://fastapi-async:8021) or a port on this machine (http://127.0.0.1:8021), with its params;
- the window opens once the users are spawned and each has had an answer (steady state), after at
  least WARMUP_MIN_S, at most WARMUP_MAX_S (the Record s or the Compare form's window when shorter,
  as `bench compare` does); it closes at Stop, after Record s, at the end of a Compare cell's window,
  or when the users change (the next row starts its own warm-up); then the drain follows every
  request started in the window to its end, the load going on, at most DRAIN_MAX_S;
- a swarm stopped before its window opened, or after less than MIN_WINDOW_S of it, is still
  recorded, flagged "too short".
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from bench import manifest, metrics
from bench.load import SCENARIOS, LedgerRun
from bench.results import Result, Run, Scenario, command_text, git_rev, machine_info
from bench.row import Measured, Resources, row_from_ledger

WARMUP_MIN_S = 2.0
WARMUP_MAX_S = 60.0  # a swarm with no set window (stopped by hand): how long its ramp-up may take
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


@dataclass
class Swarm:
    """What the recorder saw of one row of a web-UI swarm, besides its ledger (times in epoch seconds)."""
    host: str
    users: int
    scenario: str
    db_ms: int
    llm_ms: int
    started: float  # the row's warm-up began (the swarm started, or its users changed)
    closed: float  # the window (or the warm-up, when it never opened) ended
    window_opened: float | None = None
    resources: Resources = field(default_factory=Resources)
    idle: dict[str, float] = field(default_factory=dict)  # rss/pss/uss natively, working set in docker
    runtime: str = "native"
    jobs_endpoint: str | None = None  # the jobs scenario: "jobs" (submit + poll) or "sync"

    @property
    def window_s(self) -> float:
        return self.closed - self.window_opened if self.window_opened else 0.0


def measured(swarm: Swarm, session_workload: tuple[int, int],
             registry: dict[str, tuple[str, dict[str, int]]] | None = None) -> Measured:
    """The target a swarm's Host names, as its manifest resolves it (an unknown Host: its URL)."""
    resolved = resolve_host(swarm.host, registry)
    workload = (swarm.db_ms, swarm.llm_ms)
    own = workload if workload != session_workload else None
    endpoint = (swarm.jobs_endpoint or "jobs") if swarm.scenario == "jobs" else None
    if resolved is None:
        return Measured(name=swarm.host, framework="—", model="not a target of the manifests", params={},
                        scenario=swarm.scenario, runtime=swarm.runtime, workload=own,
                        jobs_endpoint=endpoint, idle=swarm.idle)
    # as bench compare: a job target's jobs through its job endpoints are bounded by job_capacity
    job_capacity = endpoint == "jobs" and resolved.target.jobs
    return Measured(name=resolved.name, framework=resolved.target.framework, model=resolved.model,
                    params=resolved.params, scenario=swarm.scenario,
                    capacity=resolved.job_capacity if job_capacity else resolved.capacity,
                    db_pool=resolved.db_pool, anti_pattern=resolved.target.anti_pattern,
                    runtime=swarm.runtime, workload=own, jobs_endpoint=endpoint,
                    processes=resolved.processes, idle=swarm.idle)


def swarm_result(ledger: LedgerRun, swarm: Swarm, session_workload: tuple[int, int],
                 registry: dict[str, tuple[str, dict[str, int]]] | None = None) -> Result:
    """A swarm's row from its ledger row (bench.row, as `bench compare`), as the web UI records it:
    `source` web-ui, when its window closed, and the "too short" flag. `session_workload` is the
    session's own (db_ms, llm_ms): a row of another workload carries its own."""
    result = row_from_ledger(ledger, measured(swarm, session_workload, registry), swarm.users,
                             swarm.resources, run_db_ms=session_workload[0])
    flags = list(result.flags)
    if not swarm.window_opened:
        flags.insert(0, "too short: stopped during the warm-up, so no steady window (figures: the "
                        "whole swarm)")
    elif swarm.window_s < MIN_WINDOW_S:
        flags.insert(0, f"too short: a {swarm.window_s:.1f} s window (under {MIN_WINDOW_S:.0f} s)")
    elif result.phases and not result.phases.steady:
        flags.append(f"not steady: the window opened at the warm-up limit ({WARMUP_MAX_S:.0f} s at most)")
    return result.model_copy(update={
        "flags": flags, "source": "web-ui",
        "recorded_at": dt.datetime.fromtimestamp(swarm.closed, dt.UTC).isoformat(timespec="milliseconds")})


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

    def save(self) -> None:
        fill_ceilings(self.run)
        self.run.claims = []  # stale as soon as the rows change; `report()` judges them again
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run.save(self.run_dir)

    def add(self, ledger: LedgerRun, swarm: Swarm) -> Result:
        """A swarm's row, saved at once."""
        result = swarm_result(ledger, swarm, self.workload, read_registry(self.registry))
        self.run.results.append(result)
        self.save()
        return result

    def delete(self, recorded_at: str) -> bool:
        before = len(self.run.results)
        self.run.results = [r for r in self.run.results if r.recorded_at != recorded_at]
        if len(self.run.results) == before:
            return False
        self.save()
        return True

    def clear(self) -> None:
        self.run.results = []
        self.save()
        for name in ("report.md", "report.html"):
            (self.run_dir / name).unlink(missing_ok=True)

    def discard_if_empty(self) -> None:
        """At exit: a folder made for this session (docker-entrypoint.sh) that got no row goes, with
        the ledgers of the swarms that never recorded one."""
        if not self.run_dir.is_dir() or (self.run_dir / "results.json").exists():
            return
        raw = self.run_dir / "raw"
        for ledger in raw.glob("swarm-*_requests.jsonl"):
            ledger.unlink()
        with contextlib.suppress(OSError):  # anything else in it stays, and so does the folder
            raw.rmdir()
            self.run_dir.rmdir()


@dataclass(frozen=True)
class RunEntry:
    """A run folder under a results folder, as the Comparison tab's session picker lists it."""
    run_id: str
    kind: str  # "web-ui", "compare", "capacity", "profile" (faults and soak runs have no rows)
    started_at: str
    rows: int
    command: str | None


def run_folder(results_dir: Path, run_id: str) -> Path | None:
    """results_dir/run_id when it is a run folder directly under results_dir; None for anything else
    (another folder's path, `..`, a link such as results/latest)."""
    if not run_id or "/" in run_id or "\\" in run_id or run_id in (".", ".."):
        return None
    folder = results_dir / run_id
    if folder.is_symlink() or not (folder / "results.json").is_file():
        return None
    return folder


def list_runs(results_dir: Path, current: str | None = None) -> list[dict]:
    """The runs with rows under results_dir, newest first: web-UI sessions and `bench compare`,
    `bench capacity` and `bench profile` runs (`current`: this session, listed even before its first row)."""
    out = []
    for folder in sorted(results_dir.glob("*/results.json"), reverse=True):
        run_dir = folder.parent
        if run_dir.is_symlink():
            continue
        try:
            run = Run.load(run_dir)
        except (OSError, ValueError):
            continue
        if not run.results and run_dir.name != current:
            continue
        kind = ("web-ui" if run_dir.name.startswith(SESSION_PREFIX) else
                next((k for k in ("capacity", "profile") if run_dir.name.startswith(k)), "compare"))
        out.append(RunEntry(run_dir.name, kind, run.started_at, len(run.results),
                            command_text(run.command, run.make_target)))
    out.sort(key=lambda e: e.started_at, reverse=True)
    return [dataclasses.asdict(e) for e in out]
