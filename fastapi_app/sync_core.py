"""Blocking clients shared by fastapi-threadpool and fastapi-blocking: sync SQLAlchemy + psycopg 3
and `openai.OpenAI`. Every function here blocks its calling thread; whether that is fine (a
threadpool thread) or a disaster (the event loop) depends on who calls it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import anyio.to_thread
import httpx2
import sqlalchemy.exc
from fastapi import FastAPI
from openai import DEFAULT_CONNECTION_LIMITS, DefaultHttpxClient, OpenAI, Stream
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
    Settings,
    User,
    advice_of,
    bound_statements,
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
    bound_statements(engine, s.db_timeout_s)
    llm = sync_openai(s)
    try:
        yield {"engine": engine, "llm": llm}
    finally:
        llm.close()
        engine.dispose()


class WholeCallDeadline(httpx2.HTTPTransport):
    """UPSTREAM_TIMEOUT_S for a whole call of the sync client (connect, headers and body), not for
    each read: httpx2 has no total timeout, and the SDK's `timeout=` bounds each read, which a body
    dribbled a byte at a time never trips. fastapi-async uses asyncio.timeout instead."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(limits=DEFAULT_CONNECTION_LIMITS)  # what the SDK's own client has
        self.timeout_s = timeout_s

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        deadline = time.monotonic() + self.timeout_s
        response = super().handle_request(request)
        # A stream (/stream) keeps the contract's per-read rule: it may last as long as it moves.
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            response.stream = DeadlineStream(response.stream, deadline, request)
        return response


class DeadlineStream(httpx2.SyncByteStream):
    """A body whose read ending past the deadline raises httpx2.ReadTimeout (the SDK's
    APITimeoutError: a 504). A body that stops altogether still ends at the per-read timeout."""

    def __init__(self, stream: httpx2.SyncByteStream, deadline: float, request: httpx2.Request) -> None:
        self.stream, self.deadline, self.request = stream, deadline, request

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.stream:
            if time.monotonic() > self.deadline:
                raise httpx2.ReadTimeout("the call outlasted UPSTREAM_TIMEOUT_S", request=self.request)
            yield chunk

    def close(self) -> None:
        self.stream.close()


def sync_openai(s: Settings) -> OpenAI:
    """The sync client (also the Celery workers'): openai_kwargs, one deadline for each whole call."""
    deadline = WholeCallDeadline(s.upstream_timeout_s)
    return OpenAI(**openai_kwargs(s), http_client=DefaultHttpxClient(transport=deadline))


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
