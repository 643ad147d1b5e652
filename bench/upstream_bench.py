"""Prove the mock upstream is never the bottleneck: >= 3,000 req/s on ONE core at 500 in flight.

The upstream (uvicorn, exactly as the lab runs it) is pinned to one CPU and the Go closed-loop
load generator (bench/loadgen) to another, so the two never compete for a core. The figures, with
the machine and the command line, go to a snapshot (docs/upstream-bench.json by default) that
`bench readme` renders into README.md's upstream-bench block.

    .venv/bin/bench upstream-bench [--concurrency 500] [--duration 10] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from bench.procs import free_port, spawn, wait_http
from bench.results import Machine, invocation

REPO_ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = REPO_ROOT / "docs" / "upstream-bench.json"
LOADGEN_DIR = REPO_ROOT / "bench" / "loadgen"
LOADGEN_BIN = LOADGEN_DIR / "bin" / "loadgen"
TARGET_RPS = 3000
# What the targets send (CONTRACT.md step 3), with a typical prompt.
CHAT_BODY = json.dumps({
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a concise personal-finance assistant."},
        {"role": "user", "content": "User 42 spent 61234 of a 150000 cent budget over 20 transactions; "
                                    "top category: groceries. One tip?"},
    ],
})


class Figures(BaseModel):
    """What one run measured: the loadgen's numbers plus the upstream's CPU."""
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    concurrency: int
    duration_s: float
    latency_ms: int
    upstream_cpu_pct: float
    upstream_cpu_ms_per_request: float
    machine_cpu_pct: float
    target_rps: int
    passed: bool


class Snapshot(BaseModel):
    """docs/upstream-bench.json: one run of this benchmark, as README.md quotes it."""
    schema_: int = Field(1, alias="schema")
    started_at: str
    git_rev: str | None = None
    command: list[str] | None = None
    make_target: str | None = None
    machine: Machine
    result: Figures

    model_config = {"populate_by_name": True}

    def save(self, path: Path) -> Path:
        path.write_text(self.model_dump_json(by_alias=True, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: Path = SNAPSHOT) -> Snapshot:
        return cls.model_validate_json(path.read_text())


def two_cpus() -> tuple[int, int]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("need 2 CPUs: one for the upstream, one for the load generator")
    return cpus[0], cpus[1]


def pinned(cpu: int, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv]


def build_loadgen() -> Path:
    subprocess.run(["go", "build", "-o", str(LOADGEN_BIN), "."], cwd=LOADGEN_DIR, check=True)
    return LOADGEN_BIN


def run(concurrency: int = 500, duration_s: float = 10, latency_ms: int = 50) -> dict:
    """Benchmark POST /v1/chat/completions; returns the loadgen figures plus upstream CPU %."""
    up_cpu, load_cpu = two_cpus()
    loadgen = build_loadgen()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    upstream = spawn("upstream", pinned(up_cpu, [
        sys.executable, "-m", "uvicorn", "upstream.app:app", "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log", "--loop", "uvloop", "--http", "httptools"]), cwd=REPO_ROOT)
    try:
        wait_http(url + "/healthz", upstream, timeout=15)
        argv = [str(loadgen), "-url", url + "/v1/chat/completions", "-c", str(concurrency),
                "-header", f"X-Mock-Latency-Ms: {latency_ms}", "-body", CHAT_BODY]
        # Warm up (connections opened, code paths hot) before the measured run.
        subprocess.run(pinned(load_cpu, [*argv, "-d", "1s"]), check=True, capture_output=True)
        ps = psutil.Process(upstream.pid)
        psutil.cpu_percent()  # starts the machine-wide window: shows whether others shared the cores
        cpu0, t0 = ps.cpu_times(), time.monotonic()
        out = subprocess.run(pinned(load_cpu, [*argv, "-d", f"{duration_s}s"]), check=True,
                             capture_output=True, text=True, timeout=duration_s + 60).stdout
        cpu1, t1 = ps.cpu_times(), time.monotonic()
        machine_pct = psutil.cpu_percent()
    finally:
        upstream.stop()
    result = json.loads(out.strip().splitlines()[-1])
    busy = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    result.update(concurrency=concurrency, duration_s=duration_s, latency_ms=latency_ms,
                  upstream_cpu_pct=round(100 * busy / (t1 - t0), 1),
                  upstream_cpu_ms_per_request=round(1000 * busy / max(result["requests"], 1), 3),
                  machine_cpu_pct=machine_pct,
                  target_rps=TARGET_RPS, passed=result["rps"] >= TARGET_RPS and result["errors"] == 0)
    return result


def snapshot(result: dict, started_at: str,
             command: tuple[list[str], str | None] | None = None) -> Snapshot:
    from bench.results import git_rev, machine_info
    argv, make_target = command or invocation()
    return Snapshot(started_at=started_at, git_rev=git_rev(), command=argv, make_target=make_target,
                    machine=machine_info(), result=Figures(**result))


def main(argv: list[str] | None = None, command: tuple[list[str], str | None] | None = None) -> int:
    """Run, print the table, write the snapshot; `command` is the command line to record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--duration", type=float, default=10, help="seconds")
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--snapshot", type=Path, default=SNAPSHOT, help="where the JSON snapshot goes")
    args = parser.parse_args(argv)
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    result = run(args.concurrency, args.duration, args.latency_ms)
    table = Table(title="mock upstream, 1 core: POST /v1/chat/completions")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, str(value))
    console = Console()
    console.print(table)
    path = snapshot(result, started_at, command).save(args.snapshot)
    console.print(f"snapshot: {path}; `bench readme` puts it into README.md", soft_wrap=True,
                  highlight=False)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
