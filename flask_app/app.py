"""Flask implementation of the Concurrency Lab contract (docs/CONTRACT.md), with sync libraries.

The same code runs as flask-sync (gunicorn sync workers) and flask-gthread (gunicorn threaded
workers); only the worker class on the command line differs (see targets.toml). What the contract
fixes (validation, SQL, prompt, SSE events, JSON and errors) is in common.py, shared with
flask-async-views (async_views.py) and quart (quart_app.py).
"""

from __future__ import annotations

import os
import threading

import openai
from flask import Flask, Response, request
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import DBAPIError

from flask_app.common import (
    READY_SQL,
    RETRY_ATTEMPTS,
    SLEEP_SQL,
    SSE_HEADERS,
    USER_SQL,
    Settings,
    advice_of,
    bound_statements,
    chat_request,
    configure,
    connect_args,
    db_url,
    get_settings,
    recommendation_body,
    request_params,
    retry_on,
    sse_events,
    stream_tokens,
    sync_openai,
    upstream_answer,
    user_from_row,
)


class Resources:
    """The DB pool and the upstream client of ONE process.

    Built on first use, so every gunicorn worker builds its own after the fork: a pool inherited
    across a fork would share sockets between processes.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._pid: int | None = None

    def _build(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:  # gthread: the first requests of a worker race to get here
            if self._pid == os.getpid():
                return
            s = self.settings
            # AUTOCOMMIT and no pool_pre_ping: no BEGIN/ROLLBACK around each checkout and no ping
            # on it, so a request costs the pg_sleep plus one query (docs/CONTRACT.md). A
            # connection that died meanwhile fails its query once, SQLAlchemy drops the pool and
            # load_user runs the read again on a fresh connection.
            self._engine = create_engine(
                db_url(s, "psycopg"), pool_size=s.db_pool_size, max_overflow=0,
                pool_timeout=s.db_pool_timeout_s, isolation_level="AUTOCOMMIT",
                connect_args=connect_args(s, "psycopg"))
            bound_statements(self._engine, s.db_timeout_s)
            self._client = sync_openai(s)
            self._pid = os.getpid()

    @property
    def engine(self) -> Engine:
        self._build()
        return self._engine

    @property
    def client(self) -> openai.OpenAI:
        self._build()
        return self._client

    def close(self) -> None:
        if self._pid == os.getpid():
            self._engine.dispose()
            self._client.close()
            self._pid = None


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    res = Resources(settings)
    app = Flask(__name__)
    configure(app, request)
    app.extensions["lab"] = res

    def load_user(user_id: int, db_ms: int) -> dict:
        for attempt in RETRY_ATTEMPTS:
            try:
                with res.engine.connect() as conn:  # ONE pooled connection for the sleep and the query...
                    if db_ms:
                        conn.execute(SLEEP_SQL, {"s": db_ms / 1000})
                    row = conn.execute(USER_SQL, {"uid": user_id}).one_or_none()
                break  # ...and it is back in the pool before the slow upstream call.
            except DBAPIError as exc:
                if not retry_on(exc, attempt):
                    raise
        return user_from_row(user_id, row)

    @app.get("/recommendation/", defaults={"user_id": ""}, strict_slashes=False)
    @app.get("/recommendation/<user_id>")
    def recommendation(user_id: str):
        user_id, db_ms, llm_ms = request_params(settings, user_id, request.args)
        user = load_user(user_id, db_ms)
        call = chat_request(user, llm_ms)
        with upstream_answer(app.logger):
            advice = advice_of(res.client.chat.completions.create(**call))
        return recommendation_body(user, advice, settings.target_name)

    @app.get("/stream/", defaults={"user_id": ""}, strict_slashes=False)
    @app.get("/stream/<user_id>")
    def stream(user_id: str):
        user_id, db_ms, llm_ms = request_params(settings, user_id, request.args)
        tokens = stream_tokens(request.args)
        user = load_user(user_id, db_ms)
        # Returns once the upstream answered 2xx: a refused or failed request is still a JSON
        # 502/504. From here on the response is a 200 stream, as on every target.
        chunks = res.client.chat.completions.create(
            **chat_request(user, llm_ms, stream=True, max_completion_tokens=tokens))
        response = Response(sse_events(chunks, app.logger), headers=SSE_HEADERS)
        response.call_on_close(chunks.close)  # also when the client goes away mid-stream
        return response

    @app.get("/readyz")
    def readyz():
        with res.engine.connect() as conn:
            conn.execute(READY_SQL)
        return {"status": "ready"}

    return app


app = create_app()
