"""fastapi-procpool: fastapi-async, with `/cpu` offloaded to a process pool.

Seed 002: "`async def` handlers that offload ... heavy CPU to a process pool"; seed 004: heavy CPU
belongs in "a process pool or a separate worker service". `/cpu` awaits
`loop.run_in_executor(ProcessPoolExecutor(CPU_PROCESSES), cpu_sum, n)`: the pure-Python work runs in
other processes, each with its own GIL, so the loop stays free for the other requests and up to
CPU_PROCESSES computations run in parallel. Everything else is fastapi-async's code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from pydantic_settings import BaseSettings

from fastapi_app import async_app
from fastapi_app.common import cpu_sum, parse_n


class PoolSettings(BaseSettings):
    cpu_processes: int = 2


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict]:
    pool = ProcessPoolExecutor(PoolSettings().cpu_processes)
    # Python 3.11's default start method here is fork, and the pool forks all its processes at the
    # first task: do that now, before the server runs threads, rather than under the first request.
    await asyncio.get_running_loop().run_in_executor(pool, cpu_sum, 1)
    try:
        yield {"cpu_pool": pool}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


offloaded = APIRouter(lifespan=lifespan)


@offloaded.get("/cpu")
async def cpu(request: Request, n: str | None = None) -> dict:
    value = parse_n(n)
    result = await asyncio.get_running_loop().run_in_executor(request.state.cpu_pool, cpu_sum, value)
    return {"n": value, "result": result}


app = async_app.create_app(offloaded)
