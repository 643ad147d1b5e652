"""quart: Quart (Flask's API reimplemented on asyncio, an ASGI app) under hypercorn, its server.

One process, one event loop, every wait awaited: while a request waits on PostgreSQL or the
upstream, the loop serves the others (fastapi-async's model, written against Flask's API). Unlike
flask-async-views, whose loop lives for one request, this loop lives as long as the process, so
the pool and the client are per process: an AsyncEngine (SQLAlchemy asyncio + asyncpg) with a pool
of DB_POOL_SIZE connections (15, the fairness rule's cap for an event loop; no overflow) and one
`AsyncOpenAI` client. Both are built in `before_serving`, on the serving loop (importing the module
opens nothing), and closed in `after_serving`, which hypercorn runs at shutdown once the requests
in flight have finished (its --graceful-timeout, the manifest's graceful_s).

Every view is `async def` (Quart runs a plain `def` view in a thread of its executor). /cpu too, on
purpose: the work runs on the loop and holds every other request meanwhile, as on fastapi-async
(seed 004's CPU-bound lesson). The contract's pieces (validation, SQL, prompt, SSE, JSON, errors)
are common.py's and aio.py's, shared with the Flask targets.
"""

from __future__ import annotations

from dataclasses import dataclass

from openai import AsyncOpenAI
from quart import Quart, Response, request
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from flask_app import aio
from flask_app.common import (
    SSE_HEADERS,
    Settings,
    chat_request,
    configure,
    connect_args,
    db_url,
    get_settings,
    openai_kwargs,
    recommendation_body,
    request_params,
    stream_tokens,
)


@dataclass(frozen=True)
class Pools:
    """The process's DB pool and upstream client, between before_serving and after_serving."""

    engine: AsyncEngine
    llm: AsyncOpenAI


def create_app(settings: Settings | None = None) -> Quart:
    settings = settings or get_settings()
    app = Quart(__name__)
    configure(app, request, asynchronous=True)
    # Quart cuts a response body still being sent after RESPONSE_TIMEOUT (60 s), silently; the
    # other servers have no such cap, and the upstream timeout already bounds a stream.
    app.config["RESPONSE_TIMEOUT"] = None
    log = app.logger

    @app.before_serving
    async def open_pools() -> None:
        s = settings
        # Neither connects here: the app starts without a reachable DB (/readyz then says 503).
        # AUTOCOMMIT and no pre-ping: the pg_sleep plus one query per request (docs/CONTRACT.md).
        engine = create_async_engine(
            db_url(s, "asyncpg"), pool_size=s.db_pool_size, max_overflow=0,
            pool_timeout=s.db_pool_timeout_s, isolation_level="AUTOCOMMIT",
            connect_args=connect_args(s, "asyncpg"))
        app.extensions["lab"] = Pools(engine, AsyncOpenAI(**openai_kwargs(s)))

    @app.after_serving
    async def close_pools() -> None:
        pools = app.extensions.pop("lab")
        await pools.llm.close()
        await pools.engine.dispose()

    def pools() -> Pools:
        return app.extensions["lab"]

    @app.get("/recommendation/", defaults={"user_id": ""}, strict_slashes=False)
    @app.get("/recommendation/<user_id>")
    async def recommendation(user_id: str):
        user_id, db_ms, llm_ms = request_params(settings, user_id, request.args)
        user = await aio.load_user(pools().engine, user_id, db_ms, settings.db_timeout_s, log)
        call = chat_request(user, llm_ms)
        advice = await aio.complete(pools().llm, call, settings.upstream_timeout_s, log)
        return recommendation_body(user, advice, settings.target_name)

    @app.get("/stream/", defaults={"user_id": ""}, strict_slashes=False)
    @app.get("/stream/<user_id>")
    async def stream(user_id: str):
        user_id, db_ms, llm_ms = request_params(settings, user_id, request.args)
        tokens = stream_tokens(request.args)
        user = await aio.load_user(pools().engine, user_id, db_ms, settings.db_timeout_s, log)
        # Opened before the response starts, so an upstream error is still a JSON 502/504.
        chunks = await pools().llm.chat.completions.create(
            **chat_request(user, llm_ms, stream=True, max_completion_tokens=tokens))
        return Response(aio.sse_events(chunks, log), headers=SSE_HEADERS)

    @app.get("/readyz")
    async def readyz():
        return await aio.readyz(pools().engine, settings.db_timeout_s, log)

    return app


app = create_app()
