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
