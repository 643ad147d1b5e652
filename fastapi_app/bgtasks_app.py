"""fastapi-bgtasks: seed 000's "Quick Fix: FastAPI BackgroundTasks + Redis status tracking".

The seed's blocking app is left as it was (blocking_app.routes: its `/recommendation` still freezes
the loop); the fix is a job endpoint. `POST /jobs/recommendation/{id}` answers 202 at once and adds
the UNCHANGED sync work (sync SQLAlchemy + `openai.OpenAI`, sync_core.recommend) as a
`BackgroundTasks` task. It is a plain `def`, so Starlette runs it in the AnyIO threadpool after the
response is sent: up to THREADPOOL_TOKENS jobs at once, in this same process, sharing its GIL, its
DB pool and its fate (a crash loses the queued and running jobs), and at most JOB_QUEUE_MAX more
waiting for a thread (`Backlog`). The status lives in Redis.
"""

from __future__ import annotations

import threading

from fastapi import BackgroundTasks, Request

from fastapi_app import blocking_app, jobs, pubsub, seed002, sync_core
from fastapi_app.common import Params, make_app


class Backlog:
    """Jobs submitted whose task has not started: they wait for a threadpool thread."""

    def __init__(self) -> None:
        self.waiting = 0
        self._lock = threading.Lock()  # the loop adds, threadpool threads take away

    def add(self, n: int) -> None:
        with self._lock:
            self.waiting += n


backlog = Backlog()


def recommendation_job(request: Request, job_id: str, q: Params) -> None:
    # Runs in a threadpool thread: blocking here holds the thread, not the loop.
    backlog.add(-1)
    engine, llm = request.state.engine, request.state.llm
    jobs.run_job(request.state.redis_sync, job_id, lambda: sync_core.recommend(engine, llm, q))


async def submit(request: Request, job_id: str, q: Params, background: BackgroundTasks) -> None:
    backlog.add(1)
    background.add_task(recommendation_job, request, job_id, q)  # runs once the 202 is sent


async def queued(request: Request) -> int:
    return backlog.waiting


app = make_app(sync_core.lifespan)
app.include_router(jobs.jobs_router(submit, queued))
app.include_router(blocking_app.routes)
app.include_router(seed002.router)
app.include_router(pubsub.router)  # opens the Redis clients the job records use
