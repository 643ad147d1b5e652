"""flask-async-views: Flask's own async support (`flask[async]`) under gunicorn sync workers.

Flask is a WSGI framework. For every call of an `async def` view it uses asgiref's
`async_to_sync`: a new thread with a new event loop (`asyncio.run`) runs the view while the
worker's thread waits, and the loop is closed when the view returns. So a worker still serves one
request at a time and the concurrency is the worker count, as on flask-sync (capacity = workers).
`await` in a view only overlaps what that ONE request waits for (say two queries under
`asyncio.gather`); it never lets a worker take a second request. Flask's docs say so ("Each request
still ties up one worker, even for async views").

What is created per process and what per request follows from that new loop per request.
asyncpg connections and the httpx connection pool inside `AsyncOpenAI` belong to the loop that
opened them; a process-wide pooled `AsyncEngine` or client would hand request 2 a connection of
request 1's loop, closed by then ("attached to a different loop", "Event loop is closed"). So, as
SQLAlchemy's asyncio docs advise for an engine used from several loops:

- per process: one `AsyncEngine` with `NullPool` (the engine holds no loop state; its dialect reads
  the server's settings on its first connection only) and one `ssl.SSLContext`;
- per request: the PostgreSQL connection (opened by `engine.connect()`, closed when its block ends,
  before the upstream call) and the `AsyncOpenAI` client with its httpx client (`async with`,
  closed at the end of the request).

What that costs per request, beside flask-sync's pooled connection and kept-alive client (the
same capacity), as measured on the lab's 2-core machine against the harness's PostgreSQL when it
still trusted local connections (its scram-sha-256 password, as under compose, adds ~3-4 ms to each
new connection: this request's median went from 20-23 ms to 23-27 ms):

- a thread and an event loop, ~0.6 ms;
- a new PostgreSQL connection, ~7 ms: TCP, start-up and authentication, a backend process forked
  by PostgreSQL, asyncpg preparing both statements again, then the close (a query on a pooled
  connection: ~0.3 ms);
- a new TCP connection to the upstream, ~4 ms more than a kept-alive one;
- the client itself, ~0.3 ms only because the SSL context is built once per process: httpx would
  otherwise load the CA bundle for every client, ~25 ms of CPU, even for a plain-http upstream.

So /recommendation?db_ms=0&llm_ms=0 takes ~18 ms against flask-sync's ~7 ms; in the lab's workload
(db_ms 50, llm_ms 500) one request takes ~20 ms longer, costs ~2.5x flask-sync's CPU, and 100 users
get the same ~7 requests/s as from flask-sync: 4 workers, one request each. At most one connection
per worker is open at once (db_pool = workers); DB_TIMEOUT_S bounds the connect, as on every
target, and there is no pool to wait for. PostgreSQL runs the same statements per request as on every target
(tests/contract/test_same_work.py). In return, nothing for throughput: async views let one request
await several things at once, they do not make Flask concurrent (quart_app.py is Flask's API on an
event loop that does).

/stream: an async view cannot stream. Its loop is closed when it returns, before the body is sent,
and a WSGI body is a sync iterator. So /stream is a plain view that keeps ONE event loop
(`asyncio.Runner`) for the whole response: step 2, opening the upstream stream (so an error before
the first byte is still the JSON 502/504), then one `runner.run` per token; the client and the loop
are closed with the response. The same model as the async views, a loop per request, kept until
the body is sent. /healthz and /cpu stay plain views (common.configure): nothing to await, and an
async view would only add the thread and the loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any

from flask import Flask, Response, request
from openai import AsyncOpenAI, DefaultAsyncHttpxClient
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

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


class Resources:
    """What ONE worker process keeps across requests: an engine without a pool and an SSL context.

    Built on first use, in the worker (after gunicorn's fork), like app.Resources.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._pid: int | None = None

    def _build(self) -> None:
        if self._pid == os.getpid():
            return
        s = self.settings
        # NullPool: every connect() opens a connection on the running (this request's) loop and
        # the block's end closes it. AUTOCOMMIT: no BEGIN/ROLLBACK (docs/CONTRACT.md).
        self._engine = create_async_engine(
            db_url(s, "asyncpg"), poolclass=NullPool, isolation_level="AUTOCOMMIT",
            connect_args=connect_args(s, "asyncpg"))
        self._ssl = ssl.create_default_context()
        self._pid = os.getpid()

    @property
    def engine(self) -> AsyncEngine:
        self._build()
        return self._engine

    def client(self) -> AsyncOpenAI:
        """A client for this request's loop; the caller closes it (`async with`)."""
        self._build()
        return AsyncOpenAI(**openai_kwargs(self.settings),
                           http_client=DefaultAsyncHttpxClient(verify=self._ssl))

    def close(self) -> None:
        if self._pid == os.getpid():
            asyncio.run(self._engine.dispose())  # nothing pooled: drops the dialect's state only
            self._pid = None


async def _next(events: AsyncIterator[str]) -> str | None:
    return await anext(events, None)


class StreamBody:
    """The /stream body of one request with the event loop it runs on: one `runner.run` per event.
    The loop, the upstream response and the client are closed once, when the body ends or when the
    server closes it (the client went away), whichever comes first."""

    def __init__(self, runner: asyncio.Runner, llm: AsyncOpenAI, chunks: Any, log: logging.Logger):
        self._runner: asyncio.Runner | None = runner
        self._llm, self._chunks = llm, chunks
        self._events = aio.sse_events(chunks, log)

    def __iter__(self) -> Iterator[str]:
        try:
            while self._runner is not None and (event := self._runner.run(_next(self._events))):
                yield event
        finally:
            self.close()

    def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        try:
            runner.run(self._events.aclose())
            runner.run(self._chunks.close())  # in case the body was never iterated
            runner.run(self._llm.close())
        finally:
            runner.close()


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    res = Resources(settings)
    app = Flask(__name__)
    configure(app, request)
    app.extensions["lab"] = res

    @app.get("/recommendation/", defaults={"user_id": ""}, strict_slashes=False)
    @app.get("/recommendation/<user_id>")
    async def recommendation(user_id: str):
        user_id, db_ms, llm_ms = request_params(settings, user_id, request.args)
        user = await aio.load_user(res.engine, user_id, db_ms, settings.db_timeout_s, app.logger)
        call = chat_request(user, llm_ms)
        async with res.client() as llm:
            advice = await aio.complete(llm, call, settings.upstream_timeout_s, app.logger)
        return recommendation_body(user, advice, settings.target_name)

    @app.get("/stream/", defaults={"user_id": ""}, strict_slashes=False)
    @app.get("/stream/<user_id>")
    def stream(user_id: str):  # a plain view on purpose: see the module's docstring
        user_id, db_ms, llm_ms = request_params(settings, user_id, request.args)
        tokens = stream_tokens(request.args)
        runner = asyncio.Runner()  # this request's one loop, until the body is sent
        llm = res.client()
        try:
            user = runner.run(aio.load_user(res.engine, user_id, db_ms, settings.db_timeout_s, app.logger))
            chunks = runner.run(llm.chat.completions.create(
                **chat_request(user, llm_ms, stream=True, max_completion_tokens=tokens)))
        except BaseException:
            runner.run(llm.close())
            runner.close()
            raise
        # Werkzeug's response closes its body when the server does (StreamBody.close).
        return Response(StreamBody(runner, llm, chunks, app.logger), headers=SSE_HEADERS)

    @app.get("/readyz")
    async def readyz():
        return await aio.readyz(res.engine, settings.db_timeout_s, app.logger)

    return app


app = create_app()
