"""fastapi_app/celery_stack.py: two children started together, stopped together, never left behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil
import pytest

from bench.manifest import REPO_ROOT


def launch(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fastapi_app.celery_stack", *argv], cwd=REPO_ROOT)


def children_of(proc: subprocess.Popen, count: int = 2) -> list[psutil.Process]:
    deadline = time.monotonic() + 10
    while len(found := psutil.Process(proc.pid).children()) < count:
        assert time.monotonic() < deadline, found
        time.sleep(0.05)
    return found


def gone(processes: list[psutil.Process]) -> bool:
    _, alive = psutil.wait_procs(processes, timeout=5)
    return not alive


def test_sigterm_stops_both_and_exits_0():
    proc = launch("sleep", "30", "--", "sleep", "31")
    children = children_of(proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    assert gone(children)


def test_a_child_that_exits_stops_the_other_and_fails():
    proc = launch("sleep", "30", "--", sys.executable, "-c", "import time; time.sleep(0.5)")
    children = children_of(proc)
    assert proc.wait(timeout=10) == 1
    assert gone(children)


def test_killed_launcher_leaves_no_child():
    proc = launch("sleep", "30", "--", "sleep", "31")
    children = children_of(proc)
    proc.kill()
    proc.wait(timeout=5)
    assert gone(children)


@pytest.mark.parametrize("argv", [(), ("sleep", "1"), ("--", "sleep", "1"), ("sleep", "1", "--")])
def test_usage_error_is_2(argv):
    assert launch(*argv).wait(timeout=10) == 2
