"""Run the real upstream (uvicorn, as the lab runs it) on a free 127.0.0.1 port for the session."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bench.procs import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def upstream_url(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("upstream") / "uvicorn.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "upstream.app:app", "--host", "127.0.0.1", "--port", str(port),
             "--no-access-log", "--loop", "uvloop", "--http", "httptools"],
            cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                pytest.fail(f"upstream exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"upstream not healthy after 15 s:\n{log.read_text()}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(autouse=True)
def _no_leftover_faults(upstream_url):
    """A failed fault test must not leave queued faults for the next test."""
    yield
    httpx.delete(upstream_url + "/mock/faults")
