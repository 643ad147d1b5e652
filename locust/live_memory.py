"""A "Target memory" tab in Locust's web UI: the target's memory, live, while the swarm runs.

Uses Locust's web UI extension hooks (as in Locust's examples/extend_web_ui.py): `extended_tabs` /
`extended_tables` in the UI's template args, and an `extended_stats` entry appended to the
/stats/requests JSON the UI polls every 2 s while a swarm runs. A greenlet samples every second,
so the peak does not depend on a browser watching; `GET /memory` returns the latest sample as JSON.

Sources:
- native (default): psutil over the target's whole process tree (bench.probe: RSS, PSS, USS; PSS is
  the headline). The root PID is `--memory-pid`, or else the process listening on the host's port
  (so changing Host in the start form follows the new target).
- `--memory-cgroup ROOT` (env LOCUST_MEMORY_CGROUP; compose mounts the host's /sys/fs/cgroup there,
  read-only): the container of the compose service the Host names (http://fastapi-async:8021 →
  fastapi-async), from its cgroup files (CgroupSource): the same "working set" `docker stats` shows,
  cgroup usage minus inactive file pages. No Docker socket.

Nothing happens without a web UI (headless runs, workers): `bench compare` is unaffected.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from urllib.parse import urlparse

import gevent
import psutil
from flask import jsonify, request

from locust import events

TAB = "memory"
INTERVAL_S = 1.0
LOCAL_HOSTS = {"127.0.0.1", "localhost", "0.0.0.0", "::1", "[::1]"}
MB = 1024 * 1024
log = logging.getLogger(__name__)

COLUMNS = {
    "native": [("source", "Process tree"), ("pss_mb", "PSS MiB"), ("rss_mb", "RSS MiB"),
               ("uss_mb", "USS MiB"), ("processes", "Processes"), ("peak_pss_mb", "Peak PSS MiB"),
               ("sampled_at", "Sampled at")],
    "docker": [("source", "Container"), ("working_set_mb", "Working set MiB"),
               ("usage_mb", "cgroup usage MiB"), ("limit_mb", "Limit MiB"), ("processes", "PIDs"),
               ("peak_working_set_mb", "Peak working set MiB"), ("sampled_at", "Sampled at")],
}


@events.init_command_line_parser.add_listener
def add_memory_arguments(parser) -> None:
    parser.add_argument("--memory-pid", type=int, default=None, include_in_web_ui=False,
                        help="root PID of the target's process tree for the web UI's memory tab "
                             "(default: the process listening on the host's port)")
    parser.add_argument("--memory-cgroup", type=str, default=None, include_in_web_ui=False,
                        env_var="LOCUST_MEMORY_CGROUP",
                        help="the host's cgroup tree, mounted read-only (compose): the memory shown is "
                             "that of the compose service the Host names")
    parser.add_argument("--cgroup-prefix", type=str, default="concurrency_lab", include_in_web_ui=False,
                        env_var="LOCUST_CGROUP_PREFIX",
                        help="the compose project's cgroup parents: <prefix>_<service>.slice")


def _listens(proc: psutil.Process, port: int) -> bool:
    try:
        return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                   for c in proc.net_connections("tcp"))
    except psutil.Error:
        return False


def _listener_root(port: int) -> int | None:
    """The top process listening on a local port (a gunicorn master, not one of its workers).

    psutil.net_connections() names one process per socket, which for a socket its workers
    inherited may be a worker: so climb to the parents that hold the same listening socket."""
    pids = {c.pid for c in psutil.net_connections("tcp")
            if c.pid and c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port}
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            while (parent := proc.parent()) is not None and _listens(parent, port):
                proc = parent
            return proc.pid
        except psutil.NoSuchProcess:
            continue
    return None


class NativeSource:
    headline = "pss_mb"

    def __init__(self, pid: int | None, environment) -> None:
        from bench.probe import memory_mb, tree  # the harness's own sampler (repo root is on sys.path)
        self._memory_mb, self._tree = memory_mb, tree
        self.pid, self.environment = pid, environment
        self._found: tuple[int, int] | None = None  # (port, pid) discovered from the host

    def _root(self) -> tuple[int | None, str]:
        if self.pid:
            return self.pid, f"pid {self.pid}"
        url = urlparse(self.environment.host or "")
        if url.hostname not in LOCAL_HOSTS:
            return None, f"set --memory-pid: host {url.hostname or '(none)'} is not local"
        port = url.port or (443 if url.scheme == "https" else 80)
        if not self._found or self._found[0] != port or not psutil.pid_exists(self._found[1]):
            pid = _listener_root(port)
            self._found = (port, pid) if pid else None
        if not self._found:
            return None, f"no process listens on port {port}"
        return self._found[1], f"pid {self._found[1]} (port {port})"

    def sample(self) -> dict:
        pid, label = self._root()
        procs = self._tree(pid) if pid else []
        if not procs:
            return {"source": label if pid is None else f"{label}: not running"}
        mem = self._memory_mb(pid)
        return {"source": label, "pss_mb": mem["pss"], "rss_mb": mem["rss"], "uss_mb": mem["uss"],
                "processes": len(procs)}

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) of each process of the tree so far: a web-UI swarm's CPU
        (web_session.py) is the difference over its window."""
        pid, _ = self._root()
        out = {}
        for proc in self._tree(pid) if pid else []:
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            out[str(proc.pid)] = times.user + times.system
        return out


class CgroupSource:
    """A compose service's container, read from its cgroup files: the host's /sys/fs/cgroup mounted
    read-only at `root` (docker-compose.yml), so Locust needs no Docker Engine API, whose socket would
    be control of the host. bench/compose.py runs each target under a parent cgroup named after its
    service, `<prefix>_<service>.slice` (cgroup_parent), found here by name at any depth (a daemon in
    a container nests its memory cgroups under its own); the container is the slice's child. cgroup
    v1 (memory, cpuacct, pids controllers) and v2 (one unified tree) alike. The working set is what
    `docker stats` shows: usage minus inactive file pages."""

    headline = "working_set_mb"
    SEARCH_DEPTH = 6  # /sys/fs/cgroup/memory/<a daemon's own nesting>/<slice>: a few levels at most

    def __init__(self, root: str, prefix: str, environment) -> None:
        self.root, self.prefix, self.environment = Path(root), prefix, environment
        self._found: tuple[str, dict[str, Path]] | None = None  # (service, controller -> container dir)

    def slice_name(self, service: str) -> str:
        return f"{self.prefix}_{service.replace('-', '_')}.slice"

    def _find(self, base: Path, name: str) -> Path | None:
        for top, dirs, _ in os.walk(base):
            if len(Path(top).relative_to(base).parts) >= self.SEARCH_DEPTH:
                dirs.clear()
            if name in dirs:
                return Path(top) / name
        return None

    def _containers(self, service: str) -> dict[str, Path]:
        """controller -> the service's container's cgroup folder ("v2": the unified one)."""
        if self._found and self._found[0] == service and all(p.is_dir() for p in self._found[1].values()):
            return self._found[1]
        name, found = self.slice_name(service), {}
        unified = (self.root / "cgroup.controllers").exists()
        for controller in (["v2"] if unified else ["memory", "cpuacct", "pids"]):
            parent = self._find(self.root if unified else self.root / controller, name)
            children = sorted((d for d in parent.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime) \
                if parent else []
            if children:
                found[controller] = children[-1]  # a container recreated just now: the newest
        self._found = (service, found) if found else None
        return found

    @staticmethod
    def _read(path: Path) -> str:
        return path.read_text().strip()

    @staticmethod
    def _stat(path: Path) -> dict[str, int]:
        return {k: int(v) for k, v in (line.split() for line in path.read_text().splitlines())}

    def sample(self) -> dict:
        service = urlparse(self.environment.host or "").hostname or ""
        if not service:
            return {"source": "no Host: the memory of the service it names is shown"}
        dirs = self._containers(service)
        if "v2" in dirs:
            d = dirs["v2"]
            usage = int(self._read(d / "memory.current"))
            inactive = self._stat(d / "memory.stat")["inactive_file"]
            limit = self._read(d / "memory.max")
            cpu_s = self._stat(d / "cpu.stat")["usage_usec"] / 1e6
            pids = int(self._read(d / "pids.current"))
        elif "memory" in dirs:
            d = dirs["memory"]
            usage = int(self._read(d / "memory.usage_in_bytes"))
            inactive = self._stat(d / "memory.stat").get("total_inactive_file", 0)
            limit = self._read(d / "memory.limit_in_bytes")
            cpu_s = int(self._read(dirs["cpuacct"] / "cpuacct.usage")) / 1e9 if "cpuacct" in dirs else None
            pids = int(self._read(dirs["pids"] / "pids.current")) if "pids" in dirs else None
        else:
            return {"source": f"{service}: no container under cgroup {self.slice_name(service)}"}
        if cpu_s is not None:
            self._cpu = {service: cpu_s}
        limit_mb = int(limit) / MB if limit.isdigit() and int(limit) < 2**60 else None  # "max": none
        return {"source": service, "working_set_mb": (usage - min(inactive, usage)) / MB,
                "usage_mb": usage / MB, "limit_mb": limit_mb, "processes": pids}

    def cpu_seconds(self) -> dict[str, float]:
        """The container's CPU time so far (the cgroup's), as of the latest sample."""
        return dict(getattr(self, "_cpu", {}))


class MemoryWatch:
    """Samples one source every INTERVAL_S; keeps the latest row and the peaks since the swarm began
    (or since Locust's statistics were reset: a web-UI swarm's window starts there)."""

    MEMORY_KEYS = ("pss_mb", "rss_mb", "uss_mb", "working_set_mb")

    def __init__(self, source: NativeSource | CgroupSource) -> None:
        self.source = source
        self.mode = "docker" if isinstance(source, CgroupSource) else "native"
        self.latest: dict = {"source": "starting"}
        self.peak = 0.0
        self.peaks: dict[str, float] = {}  # every memory figure's peak (web_session.py's rows)
        self.samples = 0

    def reset_peak(self, **_kw) -> None:
        self.peak = 0.0
        self.peaks = {}

    def sample_once(self) -> dict:
        try:
            row = self.source.sample()
        except Exception as exc:  # a failed sample must not take the web UI down
            row = {"source": f"sampling failed: {type(exc).__name__}: {exc}"}
        for key in self.MEMORY_KEYS:
            if row.get(key) is not None:
                self.peaks[key] = max(self.peaks.get(key, 0.0), row[key])
        value = row.get(self.source.headline)
        if value is not None:
            self.peak = max(self.peak, value)
            row[f"peak_{self.source.headline}"] = self.peak
        self.samples += 1
        row = {k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}
        self.latest = {**row, "name": "memory", "sampled_at": time.strftime("%H:%M:%S"),
                       "samples": self.samples}
        return row

    def run(self) -> None:
        while True:
            self.sample_once()
            gevent.sleep(INTERVAL_S)


@events.init.add_listener
def add_memory_tab(environment, web_ui=None, **_kw) -> None:
    if web_ui is None:  # headless or worker: no UI to extend
        return
    opts = environment.parsed_options
    cgroups = getattr(opts, "memory_cgroup", None)
    try:
        if cgroups:
            mode, source = "docker", CgroupSource(cgroups, opts.cgroup_prefix, environment)
        else:
            mode, source = "native", NativeSource(getattr(opts, "memory_pid", None), environment)
    except ImportError as exc:  # e.g. a locust image without the repository's bench package
        log.warning("no Target memory tab: %s", exc)
        return
    watch = MemoryWatch(source)
    environment.events.test_start.add_listener(watch.reset_peak)
    environment.events.reset_stats.add_listener(watch.reset_peak)
    gevent.spawn(watch.run)
    environment.target_memory = watch  # web_session.py reads its figures into each swarm's row

    web_ui.template_args.setdefault("extended_tabs", []).append({"title": "Target memory", "key": TAB})
    web_ui.template_args.setdefault("extended_tables", []).append(
        {"key": TAB, "structure": [{"key": k, "title": t} for k, t in COLUMNS[mode]]})

    @web_ui.app.after_request
    def add_memory_stats(response):
        if request.path.endswith("/stats/requests") and response.is_json:
            body = response.get_json()
            body.setdefault("extended_stats", []).append({"key": TAB, "data": [watch.latest]})
            response.set_data(jsonify(body).get_data())
        return response

    @web_ui.app.route("/memory")
    def memory():
        return jsonify({**watch.latest, "mode": mode})
