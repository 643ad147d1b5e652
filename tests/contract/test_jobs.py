"""The jobs contract (docs/CONTRACT.md, "Background jobs") on every target with `jobs = true`.

Submit -> 202 + Location, poll -> queued/running/done with exactly the /recommendation body; the
same 400s before anything is queued; failures recorded with the synchronous endpoint's code; the
record's TTL; the web answering while jobs run; and, on fastapi-celery, a worker process killed
mid-job: that job ends `failed` (`worker_lost`), never `running` forever, and the next job is done.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest
import redis

from bench.targets import running
from tests.conftest import ALL_TARGETS, expected_recommendation
from tests.errors import assert_error

JOB_TARGETS = [t for t in ALL_TARGETS if t.jobs]
pytestmark = pytest.mark.parametrize("target", JOB_TARGETS, indirect=True, ids=lambda t: t.name)

FAST = "db_ms=0&llm_ms=0"
JOB_ID_LEN = 32


@pytest.fixture
def store(lab):
    if not lab.redis_url:
        pytest.skip(f"no Redis here: {lab.redis_unavailable}")
    with redis.Redis.from_url(lab.redis_url) as client:
        yield client


def submit(client: httpx.Client, user_id: int, query: str = FAST) -> str:
    resp = client.post(f"/jobs/recommendation/{user_id}?{query}")
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert list(body) == ["job_id", "status"] and body["status"] == "queued"
    job_id = body["job_id"]
    assert len(job_id) == JOB_ID_LEN and int(job_id, 16) >= 0
    assert resp.headers["location"] == f"/jobs/{job_id}"
    return job_id


def wait_for(client: httpx.Client, job_id: str, timeout: float = 30) -> tuple[dict, set[str]]:
    """Poll every 50 ms until done or failed: (the final body, every status seen)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = client.get(f"/jobs/{job_id}")
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["job_id"] == job_id and body["status"] in ("queued", "running", "done", "failed")
        seen.add(body["status"])
        if body["status"] in ("done", "failed"):
            return body, seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {sorted(seen)} after {timeout} s")


def test_job_result_is_the_recommendation_body(client, target, db):
    job_id = submit(client, 7, "db_ms=10&llm_ms=300")
    body, seen = wait_for(client, job_id)
    assert body == {"job_id": job_id, "status": "done",
                    "result": expected_recommendation(db, 7, target.name)}
    assert "queued" in seen or "running" in seen  # 300 ms of work: the poll saw it in progress
    # Exactly the synchronous endpoint's bytes (key order included) once serialised.
    sync = client.get(f"/recommendation/7?{FAST}")
    assert json.dumps(body["result"], separators=(",", ":")).encode() == sync.content


@pytest.mark.parametrize("path", ["/jobs/recommendation/0", "/jobs/recommendation/abc",
                                  "/jobs/recommendation/1?db_ms=5001", "/jobs/recommendation/1?llm_ms=x"])
def test_bad_input_is_400_and_queues_nothing(client, store, path):
    before = set(store.scan_iter("job:*"))
    assert_error(client.post(path), 400, "invalid_parameter")
    assert set(store.scan_iter("job:*")) == before


@pytest.mark.parametrize("job_id", ["0" * 32, "nope", "A" * 32, "0" * 33])
def test_unknown_job_is_404(client, job_id):
    assert_error(client.get(f"/jobs/{job_id}"), 404, "not_found")


def test_wrong_method_is_405(client):
    assert_error(client.get("/jobs/recommendation/1"), 405, "method_not_allowed")


def test_record_has_a_ttl(client, store):
    job_id = submit(client, 3)
    wait_for(client, job_id)
    ttl = store.ttl(f"job:{job_id}")
    assert 0 < ttl <= 3600


def test_unknown_user_fails_with_not_found(client):
    body, _ = wait_for(client, submit(client, 2_000_000_000))
    assert body["status"] == "failed" and body["error"] == {"code": "not_found", "message": "user not found"}
    assert "result" not in body


def test_upstream_500_fails_with_upstream_error(client, upstream):
    upstream.post("/mock/faults", json={"status": 500, "count": 1}).raise_for_status()
    try:
        body, _ = wait_for(client, submit(client, 3))
    finally:
        upstream.delete("/mock/faults")
    assert body["status"] == "failed"
    assert body["error"] == {"code": "upstream_error", "message": "the upstream failed"}  # as the sync 502
    assert wait_for(client, submit(client, 3))[0]["status"] == "done"


def test_jobs_run_as_many_at_once_as_the_model_allows(client, target):
    """8 jobs of 400 ms: all done in ceil(8 / job_capacity) rounds of one job's time to result.

    A wide margin: the polls (50 ms) and the queue hop add to each job's time."""
    def time_to_result(user_id: int) -> float:
        with httpx.Client(base_url=target.base_url, timeout=30) as own:
            started = time.monotonic()
            body, _ = wait_for(own, submit(own, user_id, "db_ms=0&llm_ms=400"))
            assert body["status"] == "done"
            return time.monotonic() - started

    time_to_result(1)  # warm: every worker's clients and connections
    single = min(time_to_result(2) for _ in range(2))
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(time_to_result, range(10, 18)))
    rounds = (time.monotonic() - started) / single
    expected = math.ceil(8 / min(8, target.job_capacity))
    assert 0.6 * expected <= rounds < expected + 1.2, f"{rounds:.2f} rounds, expected ~{expected}"


QUEUE_MAX = 2


@pytest.mark.usefixtures("store")  # skips without Redis
def test_a_full_queue_refuses_with_retry_after_and_records_nothing(target, lab, tmp_path):
    """JOB_QUEUE_MAX jobs waiting behind one worker: the next submission is a 503 queue_full with
    a Retry-After and no record; once the queue has drained, a job is accepted again."""
    one_worker = {k: 1 for k in ("threads", "celery_workers") if k in target.params}
    # A Redis database of its own: the session's fastapi-celery would take this one's jobs.
    own_redis = lab.redis_url.rsplit("/", 1)[0] + "/1"
    with running(target.target, dataclasses.replace(lab, redis_url=own_redis), tmp_path,
                 overrides=one_worker, db_ms=0, llm_ms=0, job_queue_max=QUEUE_MAX) as (resolved, _), \
            httpx.Client(base_url=resolved.base_url, timeout=30) as c, redis.Redis.from_url(own_redis) as own:
        accepted, refused = 0, None
        while refused is None and accepted < 10:
            before = set(own.scan_iter("job:*"))
            resp = c.post("/jobs/recommendation/1?db_ms=0&llm_ms=1500")
            if resp.status_code == 202:
                accepted += 1
                time.sleep(0.3)  # the worker takes what it can before the next one
            else:
                refused, after = resp, set(own.scan_iter("job:*"))
        assert refused is not None, f"{accepted} jobs accepted behind one worker, none refused"
        assert_error(refused, 503, "queue_full", "the job queue is full")
        assert int(refused.headers["retry-after"]) >= 1
        assert after == before, "the refused job left a record"
        # the one running, the one a Celery worker process reserves, and QUEUE_MAX waiting
        assert QUEUE_MAX < accepted <= QUEUE_MAX + 2, accepted
        deadline = time.monotonic() + 30
        while (resp := c.post(f"/jobs/recommendation/2?{FAST}")).status_code == 503:
            assert time.monotonic() < deadline, "the queue never drained"
            time.sleep(0.5)
        assert resp.status_code == 202, resp.text
        assert wait_for(c, resp.json()["job_id"])[0]["status"] == "done"


def test_web_answers_while_jobs_run(client, target):
    """The point of both fixes: the web's loop is free while the jobs wait on the upstream."""
    for user_id in range(20, 28):
        submit(client, user_id, "db_ms=0&llm_ms=1000")
    time.sleep(0.3)
    started = time.monotonic()
    assert client.get("/healthz").status_code == 200
    assert time.monotonic() - started < 0.1


def pool_processes(target) -> list[psutil.Process]:
    """fastapi-celery's prefork pool: the children of Celery's main process in this target's tree."""
    launcher = next(p for p in psutil.process_iter(["cmdline"])
                    if "fastapi_app.celery_stack" in (p.info["cmdline"] or [])
                    and str(target.port) in (p.info["cmdline"] or []))
    mains = [p for p in launcher.children() if "worker" in p.cmdline()]
    assert len(mains) == 1, mains
    return mains[0].children()


def test_killed_worker_fails_its_job_and_the_next_job_runs(client, target):
    if target.name != "fastapi-celery":
        pytest.skip("runs its jobs in the web process: a kill ends the target (docs/CONTRACT.md)")
    job_id = submit(client, 5, "db_ms=0&llm_ms=3000")
    deadline = time.monotonic() + 10
    while client.get(f"/jobs/{job_id}").json()["status"] != "running":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    workers = pool_processes(target)
    assert len(workers) == target.job_capacity
    for worker in workers:  # the one running the job is among them
        os.kill(worker.pid, signal.SIGKILL)
    body, _ = wait_for(client, job_id, timeout=15)
    assert body["status"] == "failed", body
    assert body["error"] == {"code": "worker_lost", "message": "the worker process running the job died"}
    # Celery's main process forks new pool processes: the next job is done.
    assert wait_for(client, submit(client, 5), timeout=30)[0]["status"] == "done"
