"""fastapi-async: one uvicorn process, one event loop, every wait awaited.

SQLAlchemy 2 asyncio + asyncpg and `openai.AsyncOpenAI`: while a request waits on PostgreSQL or the
upstream, the loop serves the others (seed 000's "better fix"). Capacity is bounded only by the DB
pool (DB_POOL_SIZE) during step 2.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy.exc
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import StreamingResponse
from openai import AsyncOpenAI
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from fastapi_app import pubsub, seed002
from fastapi_app.common import (
    DB_UNAVAILABLE,
    READY_SQL,
    RETRY_ON_DEAD_CONNECTION,
    SLEEP_SQL,
    SSE_DONE,
    SSE_HEADERS,
    USER_SQL,
    ApiError,
    User,
    advice_of,
    chat_request,
    cpu_sum,
    db_url,
    engine_kwargs,
    get_settings,
    is_db_down,
    log,
    make_app,
    openai_kwargs,
    parse_n,
    parse_query,
    retry_on,
    sse_error,
    sse_token,
    statements_within,
    upstream_answer,
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict]:
    s = get_settings()
    # Neither connects here: the app starts without a reachable DB (readyz then says 503).
    engine = create_async_engine(db_url(s.database_url, "asyncpg"), **engine_kwargs(s, "asyncpg"))
    llm = AsyncOpenAI(**openai_kwargs(s))
    try:
        yield {"engine": engine, "llm": llm}
    finally:
        await llm.close()
        await engine.dispose()


# /recommendation, /stream and /readyz: also served by fastapi-celery's web process and by
# fastapi-procpool, which differ only in their job and /cpu routes.
routes = APIRouter()


async def load_user(engine: AsyncEngine, user_id: int, db_ms: int) -> User:
    # One pooled connection for the sleep and the query, returned before the upstream call;
    # run again once on a fresh connection when the pooled one was dead (sync_core.load_user).
    for attempt in RETRY_ON_DEAD_CONNECTION:
        try:
            async with engine.connect() as conn:
                with statements_within(get_settings().db_timeout_s):
                    if db_ms:
                        await conn.execute(SLEEP_SQL, {"seconds": db_ms / 1000})
                    row = (await conn.execute(USER_SQL, {"user_id": user_id})).first()
            return User.from_row(user_id, row)
        except sqlalchemy.exc.DBAPIError as exc:
            if not retry_on(exc, attempt):
                raise
    raise AssertionError("unreachable")


@routes.get("/recommendation/{user_id}")
async def recommendation(request: Request, user_id: str, db_ms: str | None = None,
                         llm_ms: str | None = None) -> dict:
    q = parse_query(user_id, db_ms, llm_ms)
    user = await load_user(request.state.engine, q.user_id, q.db_ms)
    call = chat_request(user, q.llm_ms)
    with upstream_answer():
        # One deadline for the whole call: the SDK's `timeout=` bounds each read only.
        async with asyncio.timeout(get_settings().upstream_timeout_s):
            advice = advice_of(await request.state.llm.chat.completions.create(**call))
    return user.payload(advice, get_settings().target_name)


@routes.get("/stream/{user_id}")
async def stream(request: Request, user_id: str, db_ms: str | None = None,
                 llm_ms: str | None = None, tokens: str | None = None) -> StreamingResponse:
    q = parse_query(user_id, db_ms, llm_ms, tokens)
    user = await load_user(request.state.engine, q.user_id, q.db_ms)
    # Opened before the response starts, so an upstream error is still a JSON 502/504.
    chunks = await request.state.llm.chat.completions.create(
        **chat_request(user, q.llm_ms, q.tokens))

    async def events() -> AsyncIterator[str]:
        try:
            async for chunk in chunks:
                if event := sse_token(chunk):
                    yield event
            yield SSE_DONE
        except Exception as exc:  # noqa: BLE001 - headers are sent; report in-band
            yield sse_error(exc)
        finally:
            await chunks.close()

    return StreamingResponse(events(), headers=SSE_HEADERS)


@routes.get("/readyz")
async def readyz(request: Request) -> dict:
    try:
        async with request.state.engine.connect() as conn:
            with statements_within(get_settings().db_timeout_s):
                await conn.execute(READY_SQL)
    except Exception as exc:
        if not is_db_down(exc):
            raise
        log.warning("database unavailable: %r", exc)
        raise ApiError(503, "database_unavailable", DB_UNAVAILABLE) from None
    return {"status": "ready"}


async def cpu(n: str | None = None) -> dict:
    # `async def` on purpose: pure-Python CPU work runs ON the loop and stalls everything else
    # for its duration (seed 004's CPU-bound lesson); /healthz latency shows it.
    value = parse_n(n)
    return {"n": value, "result": cpu_sum(value)}


def create_app(*routers: APIRouter) -> FastAPI:
    """fastapi-async's app plus `routers` (first, so that theirs win over the /cpu below)."""
    app = make_app(lifespan)
    for router in (*routers, routes, seed002.router, pubsub.router):  # pubsub: seed 003
        app.include_router(router)
    app.add_api_route("/cpu", cpu, methods=["GET"])
    return app


app = create_app()
