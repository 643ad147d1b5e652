"""The Docker side of `bench compare --docker`: compose up/down and memory from `docker stats`.

The harness runs its own compose project (HARNESS_PROJECT, its fixed ports made ephemeral by
HARNESS_ENV_FILE), so neither its containers nor its final `down --volumes` touch the user's
interactive stack (PROJECT) or its database.

Everything goes through the docker CLI (`docker compose ...`, `docker stats ...`), run by an
injectable `runner` (argv → stdout), so tests replay recorded output without an engine.

Memory is `docker stats`' MemUsage: the container's cgroup usage minus its inactive page cache
(the CLI subtracts `inactive_file`), i.e. the working set — never host memory or page cache. A
cgroup has no PSS/USS split, so StatsSampler reports that one number as rss, pss and uss alike.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.compose import COMPOSE_FILE, HARNESS_PROJECT, PROJECT
from bench.manifest import REPO_ROOT, Target
from bench.probe import PeriodicSampler

Runner = Callable[[Sequence[str]], str]
MB = 1024 * 1024  # as bench/probe.py: MB means MiB
STATS_FORMAT = "{{json .}}"
_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
HARNESS_ENV_FILE = Path(__file__).parent / "compose-harness.env"
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*")


class DockerError(RuntimeError):
    """A docker command failed, or printed something we cannot read."""


def run(argv: Sequence[str]) -> str:
    """The real runner: run argv, return stdout; DockerError with stderr when it fails."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DockerError(f"{' '.join(argv)}: {exc}") from None
    if done.returncode != 0:
        raise DockerError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done.stdout


def engine_problem(runner: Runner = run) -> str | None:
    """Why `--docker` cannot run here (no CLI, no compose plugin, no engine), or None."""
    for argv, what in ((["docker", "compose", "version"], "the docker compose plugin"),
                       (["docker", "info", "--format", "{{.ServerVersion}}"], "a Docker engine")):
        try:
            runner(argv)
        except DockerError as exc:
            return f"{what} is not available: {str(exc).splitlines()[0]}"
    return None


def compose_argv(*args: str, profiles: Iterable[str] = (), project: str = HARNESS_PROJECT) -> list[str]:
    """`docker compose` for the lab's file, whatever the current directory: the harness's own
    project by default, the user's interactive one with `project=PROJECT`."""
    argv = ["docker", "compose", "--project-name", project, "--project-directory", str(REPO_ROOT),
            "--file", str(COMPOSE_FILE)]
    if project != PROJECT:
        argv += ["--env-file", str(HARNESS_ENV_FILE)]
    for profile in profiles:
        argv += ["--profile", profile]
    return [*argv, *args]


def compose_up(services: Sequence[str], profiles: Iterable[str] = (), *, build: bool = True,
               wait_timeout_s: int = 300, runner: Runner = run) -> None:
    """Start services (and their dependencies), returning once all of them are healthy."""
    args = ["up", "--detach", "--wait", "--wait-timeout", str(wait_timeout_s)]
    if build:
        args.append("--build")
    runner(compose_argv(*args, *services, profiles=profiles))


def compose_stop(services: Sequence[str], runner: Runner = run) -> None:
    """Stop and remove some services' containers (a measured target), leaving the rest up."""
    runner(compose_argv("rm", "--stop", "--force", *services))


def compose_down(profiles: Iterable[str] = ("all",), runner: Runner = run) -> None:
    """Remove the project's containers, network and anonymous volumes (the seeded database)."""
    runner(compose_argv("down", "--volumes", "--remove-orphans", profiles=profiles))


@contextlib.contextmanager
def running(target: Target, *, build: bool = True, runner: Runner = run) -> Iterator[tuple[str, str]]:
    """The docker counterpart of bench.targets.running: start the target's service (with what it
    depends on) at its manifest defaults, wait until healthy, yield (base_url, container name),
    remove the service on exit. Dependencies stay up for the next target; compose_down ends them.
    """
    compose_up([target.name], [target.framework], build=build, runner=runner)
    try:
        # Published on an ephemeral port in the harness's project: ask compose which.
        yield published_url(target.name, target.port, "http", runner), container_for(target.name, runner)
    finally:
        compose_stop([target.name], runner=runner)


def published_url(service: str, port: int, scheme: str, runner: Runner = run,
                  project: str = HARNESS_PROJECT) -> str:
    """`scheme://host:port` where the host reaches a service's container port (`docker compose port`)."""
    address = runner(compose_argv("port", service, str(port), project=project)).strip().splitlines()
    if not address or ":" not in address[0]:
        raise DockerError(f"{service}:{port} is not published")
    host, _, host_port = address[0].rpartition(":")
    return f"{scheme}://{host}:{host_port}"


def parse_ps(output: str) -> list[dict[str, Any]]:
    """`docker compose ps --format json`: a JSON array (compose < 2.21) or one object per line."""
    text = output.strip()
    if not text:
        return []
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise DockerError(f"cannot read `docker compose ps` output: {exc}") from None
    return parsed if isinstance(parsed, list) else [parsed]


def container_for(service: str, runner: Runner = run, project: str = HARNESS_PROJECT) -> str:
    """The name of the service's running container."""
    rows = parse_ps(runner(compose_argv("ps", "--format", "json", service, project=project)))
    running = [row for row in rows if row.get("Service") == service and row.get("State") == "running"]
    if not running:
        states = ", ".join(f"{r.get('Name')}: {r.get('State')}" for r in rows) or "no container"
        raise DockerError(f"service {service} is not running ({states})")
    return running[0]["Name"]


def parse_size(text: str) -> int:
    """'115.2MiB', '796 KiB', '1.045GiB', '512kB', '0B' → bytes (binary and decimal units)."""
    match = _SIZE.fullmatch(text)
    unit = match and _UNITS.get((match.group(2) or "B").lower())
    if not match or unit is None:
        raise DockerError(f"not a size: {text!r}")
    return round(float(match.group(1)) * unit)


def parse_stats(json_line: str) -> dict[str, Any]:
    """One `docker stats --format '{{json .}}'` line → {"name", "mem_mb", "cpu_pct", "pids"}.

    MemUsage is "<working set> / <limit>"; only the first part is used. CPUPerc is % of one
    core (it exceeds 100 on several cores), like bench/probe.py's numbers.
    """
    try:
        row = json.loads(json_line)
        used = row["MemUsage"].split("/")[0]
        cpu = row["CPUPerc"].strip().rstrip("%")
        pids = row.get("PIDs", "0")
        return {"name": row["Name"], "mem_mb": parse_size(used) / MB, "cpu_pct": float(cpu),
                "pids": int(pids) if pids.isdigit() else 0}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DockerError(f"cannot read docker stats line {json_line!r}: {exc}") from None


def stats(container: str, runner: Runner = run) -> dict[str, Any]:
    """One reading of a container (the CLI waits about a second to compute CPU %)."""
    out = runner(["docker", "stats", "--no-stream", "--format", STATS_FORMAT, container])
    lines = [line for line in out.splitlines() if line.strip()]
    if not lines:
        raise DockerError(f"docker stats printed nothing for {container}")
    return parse_stats(lines[0])


def memory_mb(container: str, runner: Runner = run) -> dict[str, float]:
    """The container's working set now, as bench/probe.memory_mb's {"rss", "pss", "uss"}."""
    mem = stats(container, runner)["mem_mb"]
    return {"rss": mem, "pss": mem, "uss": mem}


@dataclass
class StatsSampler(PeriodicSampler):
    """Background `docker stats` sampler of one container; stands in for probe.TreeSampler.

    Same interface as far as compare uses it: `.peak` {"rss", "pss", "uss"} (all three the
    working set: docker has no PSS/USS split), `.samples`, `.elapsed`, `cpu_pct()`,
    `cpu_seconds()`. Differences: `docker stats` reports CPU as a rate, so cpu_pct() is the mean
    of the readings (each averaged by the CLI over ~1 s) and cpu_seconds() is derived from it; a
    container's processes are not visible one by one, so `.procs` is empty and
    max_process_cpu_pct() is None ("unknown", which metrics.flags accepts). Each reading takes
    the CLI about a second, so readings come every `interval` + ~1 s.
    """

    container: str
    interval: float = 0.5
    runner: Runner = run
    peak: dict[str, float] = field(default_factory=lambda: {"rss": 0.0, "pss": 0.0, "uss": 0.0})
    samples: list[dict[str, float]] = field(default_factory=list)
    procs: dict[int, Any] = field(default_factory=dict)
    max_pids: int = 0
    elapsed: float = 0.0

    def _sample(self) -> None:
        try:
            now = stats(self.container, self.runner)
        except DockerError:
            return  # the container is gone or stopping: keep what was measured
        mem = now["mem_mb"]
        for key in self.peak:
            self.peak[key] = max(self.peak[key], mem)
        self.max_pids = max(self.max_pids, now["pids"])
        self.samples.append({"t": time.monotonic() - self.started, "rss": mem, "pss": mem,
                             "uss": mem, "cpu_pct": now["cpu_pct"]})

    def cpu_pct(self) -> float:
        """Mean CPU of the container over the sampled time, % of one core."""
        return sum(s["cpu_pct"] for s in self.samples) / len(self.samples) if self.samples else 0.0

    def cpu_seconds(self) -> float:
        return self.cpu_pct() / 100.0 * self.elapsed

    def max_process_cpu_pct(self) -> float | None:
        return None
