"""Seed 000's job fixes: the recommendation as a job whose state lives in Redis.

`POST /jobs/recommendation/{user_id}` validates like `/recommendation`, writes the record
`job:<id>` = queued, hands the work to the target's runner and answers 202 at once; `GET /jobs/{id}`
reads the record (docs/CONTRACT.md, "Background jobs"). The runners differ, that is the lesson:

- fastapi-bgtasks (bgtasks_app.py, option 1 "quick fix"): a `BackgroundTasks` task in the same
  process; the unchanged sync work runs in the AnyIO threadpool after the response is sent;
- fastapi-celery (celery_app.py, option 3 "production fix"): a Celery task, done by prefork worker
  processes (celery_worker.py).

Both run `run_job`: running -> done (the /recommendation body) or failed (the error the synchronous
endpoint would have answered). Every write renews the record's TTL, and a submission finding
JOB_QUEUE_MAX jobs not started is refused (503 queue_full, Retry-After), so nothing grows without
bound.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

import openai
import redis
import redis.asyncio
from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse
from pydantic_settings import BaseSettings

from fastapi_app.common import DB_UNAVAILABLE, ApiError, Params, error_response, is_db_down, parse_query

log = logging.getLogger("fastapi_app.jobs")

JOB_ID = re.compile(r"[0-9a-f]{32}")
STATUSES = ("queued", "running", "done", "failed")


class JobSettings(BaseSettings):
    redis_url: str | None = None  # unset: the job routes answer 503 queue_unavailable
    job_ttl_s: int = 3600
    job_queue_max: int = 1000  # jobs accepted and not started; past it a submission is refused


RETRY_AFTER_S = 1  # a refused client may try again soon: a job here lasts about one upstream call


@lru_cache
def job_settings() -> JobSettings:
    return JobSettings()


def job_key(job_id: str) -> str:
    return f"job:{job_id}"


def job_record(status: str, **fields: Any) -> str:
    return json.dumps({"status": status, **fields}, separators=(",", ":"), ensure_ascii=False)


def job_error(exc: BaseException) -> dict[str, str]:
    """The error the synchronous endpoint would have answered (common.install_error_handlers);
    run_job logs the cause."""
    if isinstance(exc, ApiError):
        return {"code": exc.code, "message": exc.message}
    if isinstance(exc, openai.APITimeoutError):
        return {"code": "upstream_timeout", "message": "the upstream timed out"}
    if isinstance(exc, openai.APIError):
        return {"code": "upstream_error", "message": "the upstream failed"}
    if is_db_down(exc):
        return {"code": "database_unavailable", "message": DB_UNAVAILABLE}
    return {"code": "internal_error", "message": "internal server error"}


def run_job(store: redis.Redis, job_id: str, work: Callable[[], dict]) -> None:
    """Do one job in the calling thread or process: running -> done | failed, each with the TTL."""
    ttl = job_settings().job_ttl_s
    store.set(job_key(job_id), job_record("running"), ex=ttl)
    try:
        result = work()
    except Exception as exc:  # noqa: BLE001 - every failure becomes the job's recorded error
        log.warning("job %s failed: %r", job_id, exc)
        store.set(job_key(job_id), job_record("failed", error=job_error(exc)), ex=ttl)
        return
    store.set(job_key(job_id), job_record("done", result=result), ex=ttl)


def queue_down(why: str) -> ApiError:
    log.warning("job queue unavailable: %s", why)
    return ApiError(503, "queue_unavailable", "the job queue is unavailable")


def job_store(request: Request) -> redis.asyncio.Redis:
    """The app's asyncio Redis client (opened by pubsub's lifespan when REDIS_URL is set)."""
    store = getattr(request.state, "redis_async", None)
    if store is None:
        raise queue_down("REDIS_URL is not set")
    return store


# submit(request, job_id, params, background): hand the job to the runner, once the queued record
# exists; `background` is the request's BackgroundTasks (run after the 202 is sent).
Submit = Callable[[Request, str, Params, BackgroundTasks], Awaitable[None]]
# status(request, job_id, record): a chance to correct a record the runner could not finish
# (Celery: a worker process that died mid-job); returns the record to answer with.
Reconcile = Callable[[Request, str, dict], Awaitable[dict]]
# queued(request): how many jobs the runner holds that have not started (JOB_QUEUE_MAX caps it).
Queued = Callable[[Request], Awaitable[int]]


async def _as_is(request: Request, job_id: str, record: dict) -> dict:
    return record


def jobs_router(submit: Submit, queued: Queued, reconcile: Reconcile = _as_is) -> APIRouter:
    router = APIRouter()

    @router.post("/jobs/recommendation/{user_id}")
    async def submit_job(request: Request, background: BackgroundTasks, user_id: str,
                         db_ms: str | None = None, llm_ms: str | None = None) -> JSONResponse:
        q = parse_query(user_id, db_ms, llm_ms)  # 400 before anything is queued
        store, job_id = job_store(request), uuid.uuid4().hex
        try:
            # A queue without a bound only moves the overload into memory and into every job's wait.
            if await queued(request) >= job_settings().job_queue_max:
                return error_response(503, "queue_full", "the job queue is full",
                                      headers={"Retry-After": str(RETRY_AFTER_S)})
            await store.set(job_key(job_id), job_record("queued"), ex=job_settings().job_ttl_s)
            await submit(request, job_id, q, background)
        except redis.RedisError as exc:
            raise queue_down(repr(exc)) from None
        return JSONResponse({"job_id": job_id, "status": "queued"}, 202,
                            headers={"Location": f"/jobs/{job_id}"})

    @router.get("/jobs/{job_id}")
    async def job_status(request: Request, job_id: str) -> dict:
        if not JOB_ID.fullmatch(job_id):
            raise ApiError(404, "not_found", "no such job")
        try:
            raw = await job_store(request).get(job_key(job_id))
            if raw is None:
                raise ApiError(404, "not_found", "no such job")  # never issued, or expired
            record = await reconcile(request, job_id, json.loads(raw))
        except redis.RedisError as exc:
            raise queue_down(repr(exc)) from None
        return {"job_id": job_id, **record}

    return router
