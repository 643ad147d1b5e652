"""locust/locustfile.py's checks of an answer, run in a subprocess: importing Locust monkey-patches
the interpreter with gevent, which this test process must not get."""

from __future__ import annotations

import subprocess
import sys

from bench.manifest import REPO_ROOT

CHECKS = """
import sys
sys.path.insert(0, "locust")
from locustfile import submit_problem

class Resp:
    def __init__(self, body, location):
        self.body, self.headers = body, {"Location": location} if location else {}
    def json(self):
        if self.body is None:
            raise ValueError("not JSON")
        return self.body

job = "a" * 32
print(submit_problem(Resp({"job_id": job, "status": "queued"}, f"/jobs/{job}")))
print(submit_problem(Resp({"job_id": job, "status": "queued"}, None)))
print(submit_problem(Resp({"job_id": job, "status": "queued"}, "/jobs/other")))
print(submit_problem(Resp({"job_id": job, "status": "done"}, f"/jobs/{job}")))
print(submit_problem(Resp({"status": "queued"}, f"/jobs/{job}")))
print(submit_problem(Resp(None, None)))
"""


def test_a_submit_needs_its_job_id_queued_status_and_location():
    out = subprocess.run([sys.executable, "-c", CHECKS], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=60, check=True).stdout.splitlines()
    job = "a" * 32
    assert out == ["None", f"Location None, not /jobs/{job}", f"Location '/jobs/other', not /jobs/{job}",
                   "status 'done', not 'queued'", "no job_id", "body is not JSON"]


PACING = """
import sys, time
from types import SimpleNamespace
sys.path.insert(0, "locust")
from locustfile import LabUser, first_delay_s

print(max(first_delay_s(0.505, 0) for _ in range(2000)) <= 0.505,
      max(first_delay_s(10.0, 0) for _ in range(2000)) <= 1.0,
      1.9 < max(first_delay_s(0.505, 0.5) for _ in range(2000)) <= 2.0)
on_time = SimpleNamespace(period_s=1.0, start_at=time.perf_counter() - 0.3)
wait = LabUser.paced_wait(on_time)
print(0.65 < wait <= 0.7, abs(on_time.start_at - (time.perf_counter() + wait)) < 0.01)
late = SimpleNamespace(period_s=1.0, start_at=time.perf_counter() - 2.5)
print(LabUser.paced_wait(late) == 0, abs(late.start_at - time.perf_counter()) < 0.01)
"""


def test_paced_users_start_spread_over_their_period_and_keep_it():
    """A paced user's first delay spans its whole period (a closed-loop user's one latency, at most
    1 s); then each request starts a period after the one before, or at once after a late one."""
    out = subprocess.run([sys.executable, "-c", PACING], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=60, check=True).stdout.splitlines()
    assert out == ["True True True", "True True", "True True"]
