"""Blocking clients shared by fastapi-threadpool and fastapi-blocking: sync SQLAlchemy + psycopg 3
and `openai.OpenAI`. Every function here blocks its calling thread; whether that is fine (a
threadpool thread) or a disaster (the event loop) depends on who calls it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import anyio.to_thread
import sqlalchemy.exc
from fastapi import FastAPI
from openai import OpenAI, Stream
from sqlalchemy import Engine, create_engine

from fastapi_app.common import (
    DB_UNAVAILABLE,
    READY_SQL,
    RETRY_ON_DEAD_CONNECTION,
    SLEEP_SQL,
    SSE_DONE,
    USER_SQL,
    ApiError,
    Params,
    User,
    advice_of,
    chat_request,
    db_url,
    engine_kwargs,
    get_settings,
    is_db_down,
    log,
    openai_kwargs,
    retry_on,
    sse_error,
    sse_token,
    upstream_answer,
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict]:
    s = get_settings()
    if s.threadpool_tokens:
        # The threadpool's size is the capacity of `def` handlers; the limiter is per event loop.
        anyio.to_thread.current_default_thread_limiter().total_tokens = s.threadpool_tokens
    # Neither connects here: the app starts without a reachable DB (readyz then says 503).
    engine = create_engine(db_url(s.database_url, "psycopg"), **engine_kwargs(s, "psycopg"))
    llm = OpenAI(**openai_kwargs(s))
    try:
        yield {"engine": engine, "llm": llm}
    finally:
        llm.close()
        engine.dispose()


def load_user(engine: Engine, user_id: int, db_ms: int) -> User:
    # One pooled connection for the sleep and the query, returned before the upstream call.
    # A connection the server had closed (a restart) fails once: SQLAlchemy then invalidates the
    # pool, and the same read runs again on a fresh connection (no ping on every checkout).
    for attempt in RETRY_ON_DEAD_CONNECTION:
        try:
            with engine.connect() as conn:
                if db_ms:
                    conn.execute(SLEEP_SQL, {"seconds": db_ms / 1000})
                row = conn.execute(USER_SQL, {"user_id": user_id}).first()
            return User.from_row(user_id, row)
        except sqlalchemy.exc.DBAPIError as exc:
            if not retry_on(exc, attempt):
                raise
    raise AssertionError("unreachable")


def recommend(engine: Engine, llm: OpenAI, q: Params) -> dict:
    user = load_user(engine, q.user_id, q.db_ms)
    call = chat_request(user, q.llm_ms)
    with upstream_answer():
        advice = advice_of(llm.chat.completions.create(**call))
    return user.payload(advice, get_settings().target_name)


def open_stream(engine: Engine, llm: OpenAI, q: Params) -> Stream:
    user = load_user(engine, q.user_id, q.db_ms)
    # Opened before the response starts, so an upstream error is still a JSON 502/504.
    return llm.chat.completions.create(**chat_request(user, q.llm_ms, q.tokens))


def events(chunks: Stream) -> Iterator[str]:
    try:
        for chunk in chunks:
            if event := sse_token(chunk):
                yield event
        yield SSE_DONE
    except Exception as exc:  # noqa: BLE001 - headers are sent; report in-band
        yield sse_error(exc)
    finally:
        chunks.close()


def ready(engine: Engine) -> dict:
    try:
        with engine.connect() as conn:
            conn.execute(READY_SQL)
    except Exception as exc:
        if not is_db_down(exc):
            raise
        log.warning("database unavailable: %r", exc)
        raise ApiError(503, "database_unavailable", DB_UNAVAILABLE) from None
    return {"status": "ready"}
