"""fastapi-threadpool: one uvicorn process, plain `def` handlers with blocking clients.

FastAPI runs every `def` path function in AnyIO's threadpool (40 tokens by default,
THREADPOOL_TOKENS overrides), so blocking SQLAlchemy/psycopg and `openai.OpenAI` calls hold a
thread, never the event loop (seed 002/004: "when in doubt, use def").
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import StreamingResponse

from fastapi_app import pubsub, seed002, sync_core
from fastapi_app.common import SSE_HEADERS, cpu_sum, make_app, parse_n, parse_query

app = make_app(sync_core.lifespan)
app.include_router(seed002.router)
app.include_router(pubsub.router)  # seed 003; its lifespan opens the Redis clients


@app.get("/recommendation/{user_id}")
def recommendation(request: Request, user_id: str, db_ms: str | None = None,
                   llm_ms: str | None = None) -> dict:
    q = parse_query(user_id, db_ms, llm_ms)
    return sync_core.recommend(request.state.engine, request.state.llm, q)


@app.get("/stream/{user_id}")
def stream(request: Request, user_id: str, db_ms: str | None = None, llm_ms: str | None = None,
           tokens: str | None = None) -> StreamingResponse:
    q = parse_query(user_id, db_ms, llm_ms, tokens)
    chunks = sync_core.open_stream(request.state.engine, request.state.llm, q)
    # A sync generator: Starlette pulls each chunk in the threadpool, so the loop stays free.
    return StreamingResponse(sync_core.events(chunks), headers=SSE_HEADERS)


@app.get("/readyz")
def readyz(request: Request) -> dict:
    return sync_core.ready(request.state.engine)


@app.get("/cpu")
def cpu(n: str | None = None) -> dict:
    # `def`: runs on a worker thread, so the loop (and /healthz) keeps answering, but threads
    # share one GIL: concurrent /cpu calls still take turns.
    value = parse_n(n)
    return {"n": value, "result": cpu_sum(value)}
