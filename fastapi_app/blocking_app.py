"""fastapi-blocking and fastapi-blocking-w4: THE ANTI-PATTERN, KEPT ON PURPOSE.

!!! DO NOT COPY THIS MODULE. It exists to measure the mistake described in the seeds (000:
!!! "Declare `async def` but use blocking operations inside -> blocks everything"; 004: "async
!!! def + blocking DB call -> freezes event loop").

The handlers are `async def`, so FastAPI runs them ON the event loop, yet they call the blocking
sync SQLAlchemy engine and sync `openai.OpenAI` client (the same code fastapi-threadpool runs in
threads). While one request waits on PostgreSQL or the upstream, the loop can do nothing else:
requests are served one at a time and even /healthz waits. fastapi-blocking-w4 is seed 000's
"option 4", the same code under `uvicorn --workers 4`: four frozen loops instead of one.
The fix is fastapi-async (await async clients) or fastapi-threadpool (plain `def`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from openai import Stream

from fastapi_app import pubsub, seed002, sync_core
from fastapi_app.common import SSE_HEADERS, cpu_sum, make_app, parse_n, parse_query

routes = APIRouter()  # also fastapi-bgtasks' (bgtasks_app.py): the app its quick fix leaves as it was


@routes.get("/recommendation/{user_id}")
async def recommendation(request: Request, user_id: str, db_ms: str | None = None,
                         llm_ms: str | None = None) -> dict:
    q = parse_query(user_id, db_ms, llm_ms)
    # ANTI-PATTERN: blocking DB query + blocking HTTP call inside `async def` freeze the loop.
    return sync_core.recommend(request.state.engine, request.state.llm, q)


async def blocking_events(chunks: Stream) -> AsyncIterator[str]:
    # ANTI-PATTERN: an async generator doing a blocking iteration. Every `next()` waits on the
    # socket with the loop frozen, so one open stream stalls every other request (seed 003).
    for event in sync_core.events(chunks):
        yield event


@routes.get("/stream/{user_id}")
async def stream(request: Request, user_id: str, db_ms: str | None = None,
                 llm_ms: str | None = None, tokens: str | None = None) -> StreamingResponse:
    q = parse_query(user_id, db_ms, llm_ms, tokens)
    chunks = sync_core.open_stream(request.state.engine, request.state.llm, q)  # ANTI-PATTERN
    return StreamingResponse(blocking_events(chunks), headers=SSE_HEADERS)


@routes.get("/readyz")
async def readyz(request: Request) -> dict:
    return sync_core.ready(request.state.engine)  # ANTI-PATTERN (a short one): blocking SELECT 1


@routes.get("/cpu")
async def cpu(n: str | None = None) -> dict:
    # `async def` + pure CPU work: the loop is busy for the whole computation.
    value = parse_n(n)
    return {"n": value, "result": cpu_sum(value)}


app = make_app(sync_core.lifespan)
app.include_router(routes)
app.include_router(seed002.router)
app.include_router(pubsub.router)  # seed 003; its lifespan opens the Redis clients
