"""fastapi-celery's web process: fastapi-async's app, plus job routes that only enqueue.

`POST /jobs/recommendation/{id}` writes the queued record and publishes a Celery task (task id =
job id) for the worker processes (celery_worker.py); the web process itself never runs a job.
`GET /jobs/{id}` reads the record, and for a job still queued or running also asks Celery's result
backend, where a worker process that died mid-job left FAILURE (WorkerLostError): that job is
answered `failed` / `worker_lost`, never `running` forever.
"""

from __future__ import annotations

from fastapi import BackgroundTasks, Request

from fastapi_app import async_app, jobs
from fastapi_app.celery_worker import celery, recommendation
from fastapi_app.common import Params

WORKER_LOST = {"code": "worker_lost", "message": "the worker process running the job died"}


async def submit(request: Request, job_id: str, q: Params, background: BackgroundTasks) -> None:
    # kombu publishes synchronously: one short Redis round trip on the loop, as `.delay()` in an
    # `async def` endpoint does in every FastAPI + Celery guide.
    recommendation.apply_async((job_id, q.user_id, q.db_ms, q.llm_ms), task_id=job_id)


async def queued(request: Request) -> int:
    # The broker's list: the messages no worker has taken (a busy worker process may hold one more).
    return await jobs.job_store(request).llen(celery.conf.task_default_queue)


async def reconcile(request: Request, job_id: str, record: dict) -> dict:
    if record["status"] not in ("queued", "running"):
        return record
    raw = await jobs.job_store(request).get(celery.backend.get_key_for_task(job_id))
    if raw is not None and celery.backend.decode_result(raw).get("status") == "FAILURE":
        return {"status": "failed", "error": WORKER_LOST}
    return record


app = async_app.create_app(jobs.jobs_router(submit, queued, reconcile))
