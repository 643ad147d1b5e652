"""fastapi-celery's workers: seed 000's "Production Fix: task queue (Celery) with Redis".

Prefork worker processes (`--concurrency` in the manifest) each do one job at a time with the same
sync clients as fastapi-threadpool (sync SQLAlchemy + `openai.OpenAI`, sync_core), created after
the fork and closed at the process's end. Redis is the broker, Celery's result backend and the job
records' store (jobs.py). Acknowledgement is Celery's default (early, no redelivery): a worker process
that dies mid-job leaves that job FAILURE (WorkerLostError) in the result backend, which the web
process reports as `failed` / `worker_lost` (celery_app.py). One job per process at a time
(prefetch 1, -O fair): a long job never holds others queued behind it in a busy process's buffer.
"""

from __future__ import annotations

from types import SimpleNamespace

import redis
from celery import Celery, signals
from sqlalchemy import create_engine

from fastapi_app import jobs, sync_core
from fastapi_app.common import Params, bound_statements, db_url, engine_kwargs, get_settings

celery = Celery("fastapi_app", broker=jobs.job_settings().redis_url,
                backend=jobs.job_settings().redis_url)
celery.conf.update(
    worker_prefetch_multiplier=1,
    result_expires=jobs.job_settings().job_ttl_s,
    broker_connection_retry_on_startup=True,
    task_serializer="json", result_serializer="json", accept_content=["json"],
)

clients = SimpleNamespace(engine=None, llm=None, store=None)  # this worker process's own


@signals.worker_process_init.connect
def open_clients(**_) -> None:
    s = get_settings()
    # One job at a time per process: one connection (DB_POOL_SIZE is the web process's pool).
    clients.engine = create_engine(db_url(s.database_url, "psycopg"),
                                   **{**engine_kwargs(s, "psycopg"), "pool_size": 1})
    bound_statements(clients.engine, s.db_timeout_s)
    clients.llm = sync_core.sync_openai(s)
    clients.store = redis.Redis.from_url(jobs.job_settings().redis_url)


@signals.worker_process_shutdown.connect
def close_clients(**_) -> None:
    if clients.engine is not None:
        clients.llm.close()
        clients.engine.dispose()
        clients.store.close()


@celery.task(name="recommendation")
def recommendation(job_id: str, user_id: int, db_ms: int, llm_ms: int) -> None:
    q = Params(user_id, db_ms, llm_ms)
    jobs.run_job(clients.store, job_id, lambda: sync_core.recommend(clients.engine, clients.llm, q))
