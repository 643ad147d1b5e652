"""A "Target memory" tab in Locust's web UI: the target's memory, live, while the swarm runs.

Uses Locust's web UI extension hooks (as in Locust's examples/extend_web_ui.py): `extended_tabs` /
`extended_tables` in the UI's template args, and an `extended_stats` entry appended to the
/stats/requests JSON the UI polls every 2 s while a swarm runs. A greenlet samples every second,
so the peak does not depend on a browser watching; `GET /memory` returns the latest sample as JSON.

Sources:
- native (default): psutil over the target's whole process tree (bench.probe: RSS, PSS, USS; PSS is
  the headline). The root PID is `--memory-pid`, or else the process listening on the host's port
  (so changing Host in the start form follows the new target).
- `--memory-container NAME` (env LOCUST_MEMORY_CONTAINER): the Docker Engine API over its Unix
  socket (`DOCKER_HOST=unix://...`, default /var/run/docker.sock; read-only is enough) with httpx,
  the same "working set" `docker stats` shows: cgroup usage minus inactive file pages. `auto` means
  the compose service the host names (http://fastapi-async:8021 → service fastapi-async).

Nothing happens without a web UI (headless runs, workers): `bench compare` is unaffected.
"""

from __future__ import annotations

import json
import logging
import os
import time
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
    parser.add_argument("--memory-container", type=str, default=None, include_in_web_ui=False,
                        env_var="LOCUST_MEMORY_CONTAINER",
                        help="Docker container (name, id, or 'auto' = the host's compose service) "
                             "whose memory the web UI shows")


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


class DockerSource:
    headline = "working_set_mb"

    def __init__(self, container: str, environment) -> None:
        import httpx  # only the compose path needs it

        socket = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")
        self.container, self.environment = container, environment
        self.client = httpx.Client(transport=httpx.HTTPTransport(uds=socket),
                                   base_url="http://docker", timeout=5.0)

    def _container(self) -> tuple[str, str]:
        """(what to ask the engine for, what to show): `auto` looks up the host's compose service."""
        if self.container != "auto":
            return self.container, self.container
        service = urlparse(self.environment.host or "").hostname or ""
        label = json.dumps({"label": [f"com.docker.compose.service={service}"]})
        found = self.client.get("/containers/json", params={"filters": label}).json()
        return (found[0]["Id"] if found else service), service  # else: maybe a plain container name

    def sample(self) -> dict:
        container, label = self._container()
        if not container:
            return {"source": "no host to look up (set --memory-container NAME)"}
        resp = self.client.get(f"/containers/{container}/stats",
                               params={"stream": "false", "one-shot": "true"})
        if resp.status_code != 200:
            return {"source": f"{label}: HTTP {resp.status_code}"}
        stats = resp.json()
        mem = stats.get("memory_stats") or {}
        if "usage" not in mem:
            return {"source": f"{label}: not running"}
        detail = mem.get("stats") or {}
        # What `docker stats` shows: cgroup v2 "inactive_file", v1 "total_inactive_file".
        inactive = detail.get("inactive_file", detail.get("total_inactive_file", 0))
        usage = mem["usage"]
        cpu_ns = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage", 0)
        self._cpu = {label: cpu_ns / 1e9}
        return {"source": label, "working_set_mb": (usage - min(inactive, usage)) / MB,
                "usage_mb": usage / MB, "limit_mb": mem.get("limit", 0) / MB,
                "processes": (stats.get("pids_stats") or {}).get("current")}

    def cpu_seconds(self) -> dict[str, float]:
        """The container's CPU time so far (the cgroup's), as of the latest sample."""
        return dict(getattr(self, "_cpu", {}))


class MemoryWatch:
    """Samples one source every INTERVAL_S; keeps the latest row and the peaks since the swarm began
    (or since Locust's statistics were reset: a web-UI swarm's window starts there)."""

    MEMORY_KEYS = ("pss_mb", "rss_mb", "uss_mb", "working_set_mb")

    def __init__(self, source: NativeSource | DockerSource) -> None:
        self.source = source
        self.mode = "docker" if isinstance(source, DockerSource) else "native"
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
    container = getattr(opts, "memory_container", None)
    try:
        if container:
            mode, source = "docker", DockerSource(container, environment)
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
