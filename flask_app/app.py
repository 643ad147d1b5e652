"""Flask implementation of the Concurrency Lab contract (docs/CONTRACT.md).

The same code runs as flask-sync (gunicorn sync workers) and flask-gthread (gunicorn threaded
workers); only the worker class on the command line differs (see targets.toml).
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from functools import lru_cache

import openai
from flask import Flask, Response, jsonify, request
from flask.json.provider import DefaultJSONProvider
from pydantic_settings import BaseSettings
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException


class Settings(BaseSettings):
    database_url: str
    upstream_url: str
    target_name: str
    db_ms: int = 50
    llm_ms: int = 500
    upstream_timeout_s: float = 30.0
    db_pool_size: int = 1
    db_pool_timeout_s: float = 30.0


@lru_cache
def get_settings() -> Settings:
    return Settings()


USER_SQL = text("""
WITH recent AS (
    SELECT amount_cents, category FROM transactions
    WHERE user_id = :uid ORDER BY created_at DESC, id DESC LIMIT 20)
SELECT u.name, u.monthly_budget_cents,
       (SELECT count(*) FROM recent)::int,
       (SELECT coalesce(sum(amount_cents), 0) FROM recent)::bigint,
       (SELECT category FROM recent GROUP BY category
        ORDER BY sum(amount_cents) DESC, category ASC LIMIT 1)
FROM users u WHERE u.id = :uid
""")
SYSTEM_PROMPT = "You are a concise personal-finance assistant."
PROMPT = ("{name} spent {spent_cents} of a {budget_cents} cent budget over {transactions} "
          "transactions; top category: {top_category}. One tip?")
INT_RE = re.compile(r"-?[0-9]+")  # ASCII digits only: no "+", spaces, decimals or exponents
HTTP_CODES = {400: "invalid_parameter", 404: "not_found", 405: "method_not_allowed"}
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
               "X-Accel-Buffering": "no"}
# docs/CONTRACT.md pins these texts: the same on every target, whatever the upstream said.
MID_STREAM_MESSAGES = {"upstream_error": "the upstream stream failed",
                       "upstream_timeout": "the upstream stream timed out"}


class ContractJSON(DefaultJSONProvider):
    """The contract's one wire form of a JSON body: the handler's key order, compact separators,
    UTF-8 (not \\u-escaped) and no trailing newline (Flask's own provider adds one)."""

    ensure_ascii = False
    sort_keys = False

    def response(self, *args, **kwargs) -> Response:
        body = self.dumps(self._prepare_response_obj(args, kwargs), separators=(",", ":"))
        return self._app.response_class(body, mimetype=self.mimetype)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


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
                make_url(s.database_url).set(drivername="postgresql+psycopg"),
                pool_size=s.db_pool_size, max_overflow=0, pool_timeout=s.db_pool_timeout_s,
                isolation_level="AUTOCOMMIT")
            self._client = openai.OpenAI(
                base_url=s.upstream_url.rstrip("/") + "/v1", api_key="mock", max_retries=0,
                timeout=s.upstream_timeout_s)
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


def _int(name: str, raw: str | None, lo: int, hi: int) -> int:
    try:
        if raw is not None and INT_RE.fullmatch(raw) and lo <= (value := int(raw)) <= hi:
            return value
    except ValueError:  # more digits than Python's int() accepts
        pass
    raise ApiError(400, "invalid_parameter", f"{name} must be an integer in {lo}..{hi}")


def _query_int(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    return default if raw is None else _int(name, raw, lo, hi)


def _error(status: int, code: str, message: str) -> Response:
    response = jsonify(error={"code": code, "message": message})
    response.status_code = status
    return response


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    res = Resources(settings)
    app = Flask(__name__)
    app.json = ContractJSON(app)
    app.url_map.merge_slashes = False  # no HTML 308 redirects for "//"
    app.extensions["lab"] = res

    def params(user_id: str) -> tuple[int, int, int]:
        # Contract order: user_id, db_ms, llm_ms; all before any DB or upstream work.
        return (_int("user_id", user_id, 1, 2147483647),
                _query_int("db_ms", settings.db_ms, 0, 5000),
                _query_int("llm_ms", settings.llm_ms, 0, 20000))

    def load_user(user_id: int, db_ms: int) -> dict:
        # A connection the server had closed (a restart) fails once: SQLAlchemy then invalidates
        # the pool and the same read runs again on a fresh connection; a database that is down
        # fails that attempt too (503).
        for attempt in (1, 2):
            try:
                with res.engine.connect() as conn:  # ONE pooled connection for the sleep and the query...
                    if db_ms:
                        conn.execute(text("SELECT pg_sleep(:s)"), {"s": db_ms / 1000})
                    row = conn.execute(USER_SQL, {"uid": user_id}).one_or_none()
                break  # ...and it is back in the pool before the slow upstream call.
            except DBAPIError as exc:
                if attempt == 2 or not exc.connection_invalidated:
                    raise
        if row is None:
            raise ApiError(404, "not_found", f"user {user_id} not found")
        name, budget, transactions, spent, top = row
        return {"user_id": user_id, "name": name, "budget_cents": budget, "spent_cents": spent,
                "transactions": transactions, "top_category": top}

    def upstream(user: dict, llm_ms: int, **kwargs):
        prompt = PROMPT.format(**{**user, "top_category": user["top_category"] or "none"})
        return res.client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "system", "content": SYSTEM_PROMPT},
                      {"role": "user", "content": prompt}],
            extra_headers={"X-Mock-Latency-Ms": str(llm_ms)}, **kwargs)

    @app.get("/recommendation/", defaults={"user_id": ""}, strict_slashes=False)
    @app.get("/recommendation/<user_id>")
    def recommendation(user_id: str):
        user_id, db_ms, llm_ms = params(user_id)
        user = load_user(user_id, db_ms)
        advice = upstream(user, llm_ms).choices[0].message.content
        return {**user, "advice": advice, "served_by": settings.target_name}

    @app.get("/stream/", defaults={"user_id": ""}, strict_slashes=False)
    @app.get("/stream/<user_id>")
    def stream(user_id: str):
        user_id, db_ms, llm_ms = params(user_id)
        tokens = _query_int("tokens", 16, 1, 1000)
        user = load_user(user_id, db_ms)
        # Returns once the upstream answered 2xx: a refused or failed request is still a JSON
        # 502/504. From here on the response is a 200 stream, as on every target.
        chunks = upstream(user, llm_ms, stream=True, max_completion_tokens=tokens)

        def events():
            try:
                for c in chunks:
                    if c.choices and (token := c.choices[0].delta.content):
                        yield f"data: {json.dumps({'token': token})}\n\n"
                yield "data: [DONE]\n\n"
            except Exception as exc:  # noqa: BLE001 - the status line is sent: report it in-band
                app.logger.warning("stream aborted: %r", exc)
                code = ("upstream_timeout" if isinstance(exc, openai.APITimeoutError)
                        else "upstream_error")
                body = {"error": {"code": code, "message": MID_STREAM_MESSAGES[code]}}
                yield f"event: error\ndata: {json.dumps(body)}\n\n"

        response = Response(events(), headers=SSE_HEADERS)
        response.call_on_close(chunks.close)  # also when the client goes away mid-stream
        return response

    @app.get("/cpu")
    def cpu():
        n = _query_int("n", 100000, 1, 5000000)
        return {"n": n, "result": sum(math.isqrt(i) for i in range(n))}

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        with res.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ready"}

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return _error(exc.status, exc.code, exc.message)

    @app.errorhandler(openai.APITimeoutError)
    def upstream_timeout(exc):
        return _error(504, "upstream_timeout", f"upstream did not answer in time: {exc}")

    @app.errorhandler(openai.APIError)  # status 4xx/5xx or connection failure
    def upstream_error(exc):
        return _error(502, "upstream_error", f"upstream call failed: {exc}")

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeoutError)
    def database_unavailable(exc):
        app.logger.warning("database unavailable: %s", exc)
        return _error(503, "database_unavailable", "database unavailable")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        code = HTTP_CODES.get(status) or exc.name.lower().replace(" ", "_")
        response = _error(status, code, exc.description or exc.name)
        if allow := getattr(exc, "valid_methods", None):  # 405 keeps its Allow header
            response.headers["Allow"] = ", ".join(allow)
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        app.logger.exception("unhandled error")
        return _error(500, "internal_error", "internal server error")

    return app


app = create_app()
