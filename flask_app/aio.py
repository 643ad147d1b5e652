"""What the two async targets of this folder share: flask-async-views (async_views.py) and quart
(quart_app.py). Step 2 on an AsyncEngine (SQLAlchemy asyncio + asyncpg), /readyz's check and the
/stream body from an `openai.AsyncOpenAI` stream; the rest of the contract is in common.py.

They differ in where the engine and the client live (per process and pooled for quart; per
request for flask-async-views, whose every request runs on a new event loop: see its docstring),
not in what a request sends to PostgreSQL and the upstream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from typing import Any

import anyio
from openai import AsyncOpenAI
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from flask_app.common import (
    READY_SQL,
    RETRY_ATTEMPTS,
    SLEEP_SQL,
    SSE_DONE,
    USER_SQL,
    advice_of,
    database_errors,
    retry_on,
    sse_error,
    sse_token,
    upstream_answer,
    user_from_row,
)


async def load_user(engine: AsyncEngine, user_id: int, db_ms: int, timeout_s: float,
                    log: logging.Logger) -> dict[str, Any]:
    """ONE connection for the sleep and the query, returned before the upstream call; run again
    once on a fresh connection when the one taken was dead (common.retry_on); 503 when the
    database is unavailable, or gives no answer within `timeout_s` (DB_TIMEOUT_S: statements)."""
    with database_errors(log):
        for attempt in RETRY_ATTEMPTS:
            try:
                async with engine.connect() as conn:
                    with statements_within(timeout_s):
                        if db_ms:
                            await conn.execute(SLEEP_SQL, {"s": db_ms / 1000})
                        row = (await conn.execute(USER_SQL, {"uid": user_id})).one_or_none()
                break
            except DBAPIError as exc:
                if not retry_on(exc, attempt):
                    raise
    return user_from_row(user_id, row)


def statements_within(timeout_s: float) -> AbstractContextManager[anyio.CancelScope]:
    """A bound on the statements of one checkout, their cleanup included. asyncpg's command_timeout
    ends a statement a server never answers (bench faults' pg-hang), but SQLAlchemy then closes the
    connection gracefully, which waits a fixed time of its own for that silent server. anyio's
    cancel scope cancels again at every await until the block is left, so that close is cut short
    (SQLAlchemy then force-closes the connection) and the request answers 503 at the deadline."""
    return anyio.fail_after(timeout_s)


async def complete(llm: AsyncOpenAI, call: dict[str, Any], timeout_s: float, log: logging.Logger) -> str:
    """Step 3's advice, within one deadline for the whole call: the SDK's `timeout=` bounds each
    read only, which an answer dribbled a byte at a time never trips (common.upstream_answer)."""
    with upstream_answer(log):
        async with asyncio.timeout(timeout_s):
            return advice_of(await llm.chat.completions.create(**call))


async def readyz(engine: AsyncEngine, timeout_s: float, log: logging.Logger) -> dict[str, str]:
    with database_errors(log):
        async with engine.connect() as conn:
            with statements_within(timeout_s):
                await conn.execute(READY_SQL)
    return {"status": "ready"}


async def sse_events(chunks: Any, log: logging.Logger) -> AsyncIterator[str]:
    """The /stream body from an AsyncOpenAI stream (common.sse_events: the sync one's). Closes
    the upstream response however it ends: done, failed, or the client gone (aclose)."""
    try:
        async for chunk in chunks:
            if event := sse_token(chunk):
                yield event
        yield SSE_DONE
    except Exception as exc:  # noqa: BLE001 - the status line is sent: report it in-band
        yield sse_error(exc, log)
    finally:
        await chunks.close()
