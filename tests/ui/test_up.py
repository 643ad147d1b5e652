"""`bench up fastapi-async` as a user runs it: serves the target, prints the Locust command,
and on Ctrl-C stops everything it started (exit 0, port free, no child left)."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

from bench.manifest import REPO_ROOT
from bench.procs import port_is_free
from bench.session import read_registry

BENCH = Path(sys.executable).parent / "bench"


def _lines(proc: subprocess.Popen) -> tuple[queue.Queue, threading.Thread]:
    """The process's output lines, read by a thread so waits can be bounded."""
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    return lines, reader


def _read_until(lines: queue.Queue, pattern: str, timeout: float) -> tuple[re.Match, str]:
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen += line
        if match := re.search(pattern, line):
            return match, seen
    raise AssertionError(f"no line matching {pattern!r} within {timeout:.0f}s; output:\n{seen}")


def test_bench_up_serves_the_target_and_ctrl_c_stops_everything(lab):
    # The session's PostgreSQL and upstream: bench up then starts only the target.
    env = {**os.environ, **lab.env(), "COLUMNS": "250"}
    proc = subprocess.Popen([str(BENCH), "up", "fastapi-async"], cwd=REPO_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines, reader = _lines(proc)
    try:
        row, _ = _read_until(lines, r"fastapi-async\s*│\s*(http://127\.0\.0\.1:(\d+))\s*│\s*(\d+)", 90)
        url, port, pid = row.group(1), int(row.group(2)), int(row.group(3))
        command, _ = _read_until(lines, r"^\S*locust -f .* -H (\S+) --lab-targets (\S+) .*", 10)
        assert command.group(1) == url
        # The Comparison tab resolves the Host through the registry: this target, at this URL.
        assert read_registry(REPO_ROOT / command.group(2)) == {url: ("fastapi-async", {"pool_size": 15})}
        children = psutil.Process(proc.pid).children(recursive=True)
        assert pid in {c.pid for c in children}

        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.get("/healthz").json() == {"status": "ok"}
            resp = client.get("/recommendation/1", params={"db_ms": 0, "llm_ms": 0})
            assert resp.status_code == 200 and resp.json()["served_by"] == "fastapi-async"

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        _read_until(lines, r"^stopped fastapi-async", 5)
        _, alive = psutil.wait_procs(children, timeout=5)
        assert not alive, f"left running: {alive}"
        assert port_is_free(port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)  # EOF once bench exits; then the pipe can be closed
        proc.stdout.close()


def test_port_check():
    # (--set parsing, shared with bench compare: tests/harness/test_manifest.py)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert not port_is_free(busy.getsockname()[1])
