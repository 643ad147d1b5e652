"""What every target of this folder shares: the contract (docs/CONTRACT.md) written once.

flask-sync and flask-gthread (app.py), flask-async-views (async_views.py) and quart (quart_app.py)
differ only in how they wait; settings, validation, the SQL, the prompt, the SSE events, the JSON
wire form and the error mapping live here, so the four cannot drift apart. Quart reuses Flask's
JSON provider and Werkzeug's routing and HTTP exceptions, so `configure` serves both frameworks.

Nothing async is imported here (aio.py has the async targets' share): flask-sync's memory is
measured against Flask's bare hello-world, and must not carry what only the async targets need.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import httpx2
import openai
import psycopg
from flask.json.provider import DefaultJSONProvider
from pydantic_settings import BaseSettings
from sqlalchemy import URL, Engine, event, make_url, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
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
    db_timeout_s: float = 10.0


@lru_cache
def get_settings() -> Settings:
    return Settings()


def db_url(settings: Settings, driver: str) -> URL:
    """libpq-style DATABASE_URL -> SQLAlchemy URL for the driver (psycopg, asyncpg)."""
    return make_url(settings.database_url).set(drivername=f"postgresql+{driver}")


def connect_args(settings: Settings, driver: str) -> dict[str, Any]:
    """DB_TIMEOUT_S on every connection: to open it, and for each statement, which the server
    cancels (statement_timeout) and the client also gives up on by itself, for a server that hangs
    (asyncpg's command_timeout; psycopg: BoundedConnection)."""
    seconds = settings.db_timeout_s
    ms = str(round(seconds * 1000))
    if driver == "asyncpg":
        return {"timeout": seconds, "command_timeout": seconds,
                "server_settings": {"statement_timeout": ms}}
    # libpq's connect_timeout is whole seconds
    return {"connect_timeout": math.ceil(seconds), "options": f"-c statement_timeout={ms}"}


def openai_kwargs(settings: Settings) -> dict[str, Any]:
    # No retries: a failed upstream call is a measured error, not a hidden second attempt.
    return {"base_url": settings.upstream_url.rstrip("/") + "/v1", "api_key": "mock",
            "max_retries": 0, "timeout": settings.upstream_timeout_s}


class WholeCallDeadline(httpx2.HTTPTransport):
    """UPSTREAM_TIMEOUT_S for a whole call of the sync client (connect, headers and body), not for
    each read: httpx2 has no total timeout, and the SDK's `timeout=` bounds each read, which a body
    dribbled a byte at a time never trips. The async targets use asyncio.timeout (aio.complete)."""

    def __init__(self, timeout_s: float):
        super().__init__(limits=openai.DEFAULT_CONNECTION_LIMITS)  # what the SDK's own client has
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

    def __init__(self, stream: httpx2.SyncByteStream, deadline: float, request: httpx2.Request):
        self.stream, self.deadline, self.request = stream, deadline, request

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.stream:
            if time.monotonic() > self.deadline:
                raise httpx2.ReadTimeout("the call outlasted UPSTREAM_TIMEOUT_S", request=self.request)
            yield chunk

    def close(self) -> None:
        self.stream.close()


def sync_openai(settings: Settings) -> openai.OpenAI:
    """The sync targets' client: openai_kwargs, and one deadline for each whole call."""
    deadline = WholeCallDeadline(settings.upstream_timeout_s)
    return openai.OpenAI(**openai_kwargs(settings), http_client=openai.DefaultHttpxClient(transport=deadline))


# --- step 2: the database --------------------------------------------------------------------

SLEEP_SQL = text("SELECT pg_sleep(:s)")
READY_SQL = text("SELECT 1")
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
RETRY_ATTEMPTS = (1, 2)  # of the request's read: once more on a fresh connection (retry_on)


def retry_on(exc: DBAPIError, attempt: int) -> bool:
    """Run the read again? Only once, and only when the connection was one the server had closed
    (SQLAlchemy recognised a disconnect and dropped the pool's connections): the fresh connection
    then answers. A database that is down fails the second attempt too, as a 503. A statement left
    unanswered is not run again (its connection is closed too): it would only wait as long again."""
    return attempt == 1 and exc.connection_invalidated and not isinstance(exc.orig, StatementTimeout)


class StatementTimeout(psycopg.OperationalError):
    """No answer to a statement within DB_TIMEOUT_S (BoundedConnection): a 503, not retried."""


class BoundedConnection(psycopg.Connection):
    """psycopg waits for the server's answer without limit: libpq has no client-side statement
    timeout, and a stopped server's kernel still acknowledges what is sent, so no TCP timeout fires
    either (bench faults' pg-hang). Each wait here that has no timeout of its own ends after
    `timeout_s`, and the connection, its statement unanswered, is closed: it cannot be used again."""

    timeout_s: float | None = None

    def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout_s
        try:
            return super().wait(gen, *args, **kwargs)
        except psycopg.OperationalError as exc:
            if self.info.transaction_status != psycopg.pq.TransactionStatus.ACTIVE:
                raise
            self.close()
            raise StatementTimeout(f"no answer within {self.timeout_s} s") from exc


def bound_statements(engine: Engine, timeout_s: float) -> None:
    """The engine's psycopg connections are BoundedConnections waiting at most `timeout_s`."""

    @event.listens_for(engine, "do_connect")
    def connect(dialect: Any, record: Any, cargs: Any, cparams: Any) -> BoundedConnection:
        conn = BoundedConnection.connect(*cargs, **cparams)
        conn.timeout_s = timeout_s
        return conn


def user_from_row(user_id: int, row: Any) -> dict[str, Any]:
    if row is None:
        raise ApiError(404, "not_found", "user not found")
    name, budget, transactions, spent, top = row
    return {"user_id": user_id, "name": name, "budget_cents": budget, "spent_cents": spent,
            "transactions": transactions, "top_category": top}


# What "the database is unavailable" looks like from SQLAlchemy, psycopg and asyncpg: refused or
# dropped connections (asyncpg's connect raises plain OSError, its timeout TimeoutError), and
# waiting longer than DB_POOL_TIMEOUT_S for a pooled connection.
DB_DOWN = (OperationalError, InterfaceError, PoolTimeoutError, OSError)
# SQLSTATE classes of a server that is not there for us: 08 connection exception, 53 insufficient
# resources (53300 too many connections), 57 operator intervention (57P01 admin shutdown, 57P03
# starting up / shutting down, 57014 statement_timeout). asyncpg's errors reach SQLAlchemy as a
# plain DBAPIError, so the class is what tells them apart.
DB_DOWN_SQLSTATES = ("08", "53", "57")


def is_db_down(exc: BaseException) -> bool:
    """Whether an error means the database is unavailable (503), not a bug (500)."""
    if isinstance(exc, DB_DOWN):
        return True
    if isinstance(exc, DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or ""
        return exc.connection_invalidated or str(sqlstate)[:2] in DB_DOWN_SQLSTATES
    return False


@contextmanager
def database_errors(log: logging.Logger) -> Iterator[None]:
    """Turn a database-down error raised inside into the contract's 503 (also around `await`s)."""
    try:
        yield
    except Exception as exc:
        if not is_db_down(exc):
            raise
        log.warning("database unavailable: %r", exc)
        raise ApiError(503, "database_unavailable", "the database is unavailable") from exc


# --- validation (docs/CONTRACT.md, Validation) ---------------------------------------------

INT_RE = re.compile(r"-?[0-9]+")  # ASCII digits only: no "+", spaces, decimals or exponents


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def parse_int(name: str, raw: str | None, lo: int, hi: int) -> int:
    try:
        if raw is not None and INT_RE.fullmatch(raw) and lo <= (value := int(raw)) <= hi:
            return value
    except ValueError:  # more digits than Python's int() accepts
        pass
    raise ApiError(400, "invalid_parameter", f"{name} must be an integer in {lo}..{hi}")


def query_int(args: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = args.get(name)
    return default if raw is None else parse_int(name, raw, lo, hi)


def request_params(settings: Settings, user_id: str, args: Mapping[str, str]) -> tuple[int, int, int]:
    """user_id, db_ms, llm_ms in the contract's order, all before any DB or upstream work."""
    return (parse_int("user_id", user_id, 1, 2147483647),
            query_int(args, "db_ms", settings.db_ms, 0, 5000),
            query_int(args, "llm_ms", settings.llm_ms, 0, 20000))


def stream_tokens(args: Mapping[str, str]) -> int:
    return query_int(args, "tokens", 16, 1, 1000)


# --- step 3: the upstream call ---------------------------------------------------------------

SYSTEM_PROMPT = "You are a concise personal-finance assistant."
PROMPT = ("{name} spent {spent_cents} of a {budget_cents} cent budget over {transactions} "
          "transactions; top category: {top_category}. One tip?")


def chat_request(user: dict[str, Any], llm_ms: int, **kwargs: Any) -> dict[str, Any]:
    """Keyword arguments of `chat.completions.create`, sync and async clients alike (`kwargs`:
    `stream=True, max_completion_tokens=...` for /stream)."""
    prompt = PROMPT.format(**{**user, "top_category": user["top_category"] or "none"})
    return {"model": "gpt-4o-mini",
            "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                         {"role": "user", "content": prompt}],
            "extra_headers": {"X-Mock-Latency-Ms": str(llm_ms)}, **kwargs}


@contextmanager
def upstream_answer(log: logging.Logger) -> Iterator[None]:
    """Around step 3's call and the reading of its answer: a 200 that is no completion (half a
    JSON document, no choices[0].message.content) is the upstream's failure, 502, not a bug. The
    SDK raises a plain JSONDecodeError there (a ValueError), not an openai.APIError. The async
    targets' deadline for the whole call (asyncio.timeout) raises TimeoutError: 504."""
    try:
        yield
    except TimeoutError as exc:
        log.warning("upstream timed out: the whole call outlasted UPSTREAM_TIMEOUT_S")
        raise ApiError(504, "upstream_timeout", "the upstream timed out") from exc
    except (ValueError, LookupError, AttributeError, TypeError) as exc:
        log.warning("upstream answered no completion: %r", exc)
        raise ApiError(502, "upstream_error", "the upstream failed") from exc


def advice_of(completion: Any) -> str:
    """choices[0].message.content, the advice; a ValueError when there is none (upstream_answer)."""
    content = completion.choices[0].message.content
    if not isinstance(content, str):
        raise ValueError("a completion without choices[0].message.content")
    return content


def recommendation_body(user: dict[str, Any], advice: str, served_by: str) -> dict[str, Any]:
    # Key order is part of the contract.
    return {**user, "advice": advice, "served_by": served_by}


SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
               "X-Accel-Buffering": "no"}
SSE_DONE = "data: [DONE]\n\n"
# docs/CONTRACT.md pins these texts: the same on every target, whatever the upstream said.
MID_STREAM_MESSAGES = {"upstream_error": "the upstream stream failed",
                       "upstream_timeout": "the upstream stream timed out"}


def sse_token(chunk: Any) -> str | None:
    """One `chat.completion.chunk` -> its SSE event, or None for a chunk without text."""
    token = chunk.choices[0].delta.content if chunk.choices else None
    return f"data: {json.dumps({'token': token})}\n\n" if token else None


def sse_error(exc: Exception, log: logging.Logger) -> str:
    """The stream's last event after a failure mid-stream: the status line is sent, so in-band."""
    log.warning("stream aborted: %r", exc)
    code = "upstream_timeout" if isinstance(exc, openai.APITimeoutError) else "upstream_error"
    body = {"error": {"code": code, "message": MID_STREAM_MESSAGES[code]}}
    return f"event: error\ndata: {json.dumps(body)}\n\n"


def sse_events(chunks: Any, log: logging.Logger) -> Iterator[str]:
    """The /stream body from the sync SDK's stream (aio.sse_events: the async one's)."""
    try:
        for chunk in chunks:
            if event := sse_token(chunk):
                yield event
        yield SSE_DONE
    except Exception as exc:  # noqa: BLE001 - the status line is sent: report it in-band
        yield sse_error(exc, log)


# --- the app skeleton: JSON wire form, errors, /healthz, /cpu --------------------------------

class ContractJSON(DefaultJSONProvider):
    """The contract's one wire form of a JSON body: the handler's key order, compact separators,
    UTF-8 (not \\u-escaped) and no trailing newline (Flask's own provider adds one). Quart uses
    Flask's provider classes, so this serves both."""

    ensure_ascii = False
    sort_keys = False

    def response(self, *args, **kwargs):
        body = self.dumps(self._prepare_response_obj(args, kwargs), separators=(",", ":"))
        return self._app.response_class(body, mimetype=self.mimetype)


# docs/CONTRACT.md, "Error messages": fixed texts, the same on every target; the cause is logged.
HTTP_ERRORS = {400: ("invalid_parameter", "invalid request"), 404: ("not_found", "no such route"),
               405: ("method_not_allowed", "method not allowed")}
Reply = tuple[dict[str, Any], int, dict[str, str]]  # what an error handler returns


def error_reply(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    return {"error": {"code": code, "message": message}}, status, headers or {}


def error_handlers(log: logging.Logger) -> dict[type[Exception], Callable[[Any], Reply]]:
    """Exception class -> handler, for Flask's and Quart's `register_error_handler` alike (both pick
    the most specific class of the exception's MRO)."""

    def unexpected(exc: Exception) -> Reply:
        log.error("unhandled error", exc_info=exc)
        return error_reply(500, "internal_error", "internal server error")

    def database(exc: Exception) -> Reply:
        if not is_db_down(exc):
            return unexpected(exc)
        log.warning("database unavailable: %r", exc)
        return error_reply(503, "database_unavailable", "the database is unavailable")

    def upstream(exc: openai.APIError) -> Reply:
        log.warning("upstream failed: %r", exc)
        if isinstance(exc, openai.APITimeoutError):  # a subclass: the timeout before the other failures
            return error_reply(504, "upstream_timeout", "the upstream timed out")
        return error_reply(502, "upstream_error", "the upstream failed")

    def http_error(exc: HTTPException) -> Reply:
        status = exc.code or 500
        code, message = HTTP_ERRORS.get(status) or (exc.name.lower().replace(" ", "_"), exc.name)
        allow = getattr(exc, "valid_methods", None)  # a 405 keeps its Allow header
        return error_reply(status, code, message, {"Allow": ", ".join(allow)} if allow else None)

    return {
        ApiError: lambda exc: error_reply(exc.status, exc.code, exc.message),
        openai.APIError: upstream,
        DBAPIError: database,
        PoolTimeoutError: database,
        HTTPException: http_error,
        Exception: unexpected,
    }


def as_async(func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` as a coroutine function. Quart runs a plain function in a thread of its executor;
    these only build a reply or do pure CPU work, which belongs on the loop (as in fastapi-async)."""

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


def configure(app: Any, request: Any, *, asynchronous: bool = False) -> None:
    """What every app of this folder (a Flask or, `asynchronous`, a Quart app) shares: the JSON wire
    form, no slash merging, the error handlers, /healthz and /cpu. `request`: the framework's."""
    app.json = ContractJSON(app)
    app.url_map.merge_slashes = False  # no HTML 308 redirects for "//"
    wrap = as_async if asynchronous else (lambda func: func)
    for exc_class, handler in error_handlers(app.logger).items():
        app.register_error_handler(exc_class, wrap(handler))

    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    def cpu() -> dict[str, int]:
        n = query_int(request.args, "n", 100000, 1, 5000000)
        return {"n": n, "result": sum(math.isqrt(i) for i in range(n))}

    for path, view in (("/healthz", healthz), ("/cpu", cpu)):
        app.add_url_rule(path, view.__name__, wrap(view), methods=["GET"])
