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
