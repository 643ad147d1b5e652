"""The sampler on a real process tree that the test starts (parent + 2 children)."""

from __future__ import annotations

import subprocess
import sys
import time

from bench.probe import TreeSampler, memory_mb, tree

# Each child holds 40 MB of private memory; the parent burns CPU for a while.
SCRIPT = """
import subprocess, sys, time
kids = [subprocess.Popen([sys.executable, "-c",
        "b = bytearray(40 * 1024 * 1024)\\nfor i in range(0, len(b), 4096): b[i] = 1\\n"
        "import time; time.sleep(30)"]) for _ in range(2)]
end = time.time() + 1.5
while time.time() < end: pass
time.sleep(30)
"""


def test_sampler_sees_whole_tree():
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT])
    try:
        deadline = time.time() + 10
        while len(tree(proc.pid)) < 3 and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        with TreeSampler(proc.pid, interval=0.2) as sampler:
            time.sleep(1.2)
        assert len(sampler.procs) == 3
        assert [s.role for s in sampler.procs.values()].count("main") == 1
        # 2 × 40 MB private pages: USS and PSS of the tree must see them; RSS ≥ PSS ≥ USS.
        assert sampler.peak["uss"] > 80
        assert sampler.peak["rss"] >= sampler.peak["pss"] >= sampler.peak["uss"]
        assert 30 < sampler.max_process_cpu_pct() <= 110  # the parent was spinning
        now = memory_mb(proc.pid)
        assert now["pss"] > 80
    finally:
        for p in reversed(tree(proc.pid)):
            p.kill()
        proc.wait()


def test_celery_worker_processes_are_told_apart_from_the_web():
    """fastapi-celery's tree (fastapi_app/celery_stack.py): only the worker's command lines are
    Celery's, though "celery" is in the launcher's and the web server's too."""
    from bench.probe import is_celery
    python, bin_ = "/lab/.venv/bin/python", "/lab/.venv/bin"
    launcher = [python, "-m", "fastapi_app.celery_stack", "celery", "-A", "fastapi_app.celery_worker",
                "worker", "--", "uvicorn", "fastapi_app.celery_app:app"]
    web = [python, f"{bin_}/uvicorn", "fastapi_app.celery_app:app", "--port", "8026"]
    worker = [python, f"{bin_}/celery", "-A", "fastapi_app.celery_worker", "worker", "--pool", "prefork"]
    assert not is_celery(launcher) and not is_celery(web) and not is_celery([])
    assert is_celery(worker)  # Celery's main process, and its prefork children (forked, same argv)
    assert is_celery(["celery", "-A", "x", "worker"]) and is_celery([python, "-m", "celery", "worker"])
    assert is_celery(["[celeryd: celery@lab:ForkPoolWorker-1]"])  # the title setproctitle would set
