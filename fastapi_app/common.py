"""What every FastAPI target shares: settings, validation, the SQL, the prompt, the error shape.

The three app modules differ ONLY in how they wait (event loop, threadpool, or - on purpose -
blocking the loop); everything that defines the contract (docs/CONTRACT.md) lives here so the
targets cannot drift apart.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import anyio
import openai
import psycopg
import sqlalchemy.event
import sqlalchemy.exc
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic_settings import BaseSettings
from sqlalchemy import text
from sqlalchemy.engine import make_url
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("fastapi_app")


class Settings(BaseSettings):
    """Environment only (CONTRACT.md "Configuration"); names match the variables, any case."""

    database_url: str
    upstream_url: str
    target_name: str
    db_ms: int = 50
    llm_ms: int = 500
    upstream_timeout_s: float = 30.0
    db_pool_size: int = 15
    db_pool_timeout_s: float = 30.0
    db_timeout_s: float = 10.0
    # AnyIO's default threadpool size (40) unless set: the capacity of `def` handlers.
    threadpool_tokens: int | None = None


@lru_cache
def get_settings() -> Settings:
    return Settings()


def db_url(url: str, driver: str) -> str:
    """libpq-style DATABASE_URL -> SQLAlchemy URL for the given driver (psycopg / asyncpg)."""
    return make_url(url.replace("postgres://", "postgresql://", 1)).set(
        drivername=f"postgresql+{driver}").render_as_string(hide_password=False)


def engine_kwargs(s: Settings, driver: str) -> dict[str, Any]:
    # max_overflow=0: the pool size IS the model's DB capacity (docs/DESIGN.md, Fairness rules).
    # AUTOCOMMIT: read-only statements, so skip the BEGIN/ROLLBACK round trips per checkout.
    return {"pool_size": s.db_pool_size, "max_overflow": 0, "pool_timeout": s.db_pool_timeout_s,
            "isolation_level": "AUTOCOMMIT", "connect_args": connect_args(s, driver)}


def connect_args(s: Settings, driver: str) -> dict[str, Any]:
    """DB_TIMEOUT_S on every connection: to open it, and for each statement, which the server
    cancels (statement_timeout) and the client also gives up on by itself, for a server that hangs
    (asyncpg's command_timeout with statements_within; psycopg: BoundedConnection)."""
    ms = str(round(s.db_timeout_s * 1000))
    if driver == "asyncpg":
        return {"timeout": s.db_timeout_s, "command_timeout": s.db_timeout_s,
                "server_settings": {"statement_timeout": ms}}
    # libpq's connect_timeout is whole seconds
    return {"connect_timeout": math.ceil(s.db_timeout_s), "options": f"-c statement_timeout={ms}"}


def openai_kwargs(s: Settings) -> dict[str, Any]:
    # No retries: a failed upstream call is a measured error, not a hidden second attempt.
    return {"base_url": s.upstream_url.rstrip("/") + "/v1", "api_key": "mock",
            "max_retries": 0, "timeout": s.upstream_timeout_s}


# --- errors: one JSON shape for everything (CONTRACT.md "Responses") -------------------------

class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


# docs/CONTRACT.md, "Error messages": fixed texts, the same on every target; the cause is logged.
_HTTP_ERRORS = {400: ("invalid_parameter", "invalid request"), 404: ("not_found", "no such route"),
                405: ("method_not_allowed", "method not allowed")}
DB_UNAVAILABLE = "the database is unavailable"

# What "the database is unavailable" looks like from SQLAlchemy, psycopg and asyncpg: refused or
# dropped connections, and waiting longer than DB_POOL_TIMEOUT_S for a pooled connection.
DB_DOWN = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
           sqlalchemy.exc.TimeoutError, OSError)

# SQLSTATE classes of a server that is not there for us: 08 connection exception, 53 insufficient
# resources (53300 too many connections), 57 operator intervention (57P01 admin shutdown, 57P03
# "the database system is shutting down" / starting up, 57014 statement_timeout). asyncpg's errors
# reach SQLAlchemy as a plain DBAPIError, so the class is what tells them apart.
DB_DOWN_SQLSTATES = ("08", "53", "57")


def is_db_down(exc: BaseException) -> bool:
    """Whether an error means the database is unavailable (503), not a bug (500)."""
    if isinstance(exc, DB_DOWN):
        return True
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or ""
        return exc.connection_invalidated or str(sqlstate)[:2] in DB_DOWN_SQLSTATES
    return False


RETRY_ON_DEAD_CONNECTION = (1, 2)  # attempts of the request's read


def retry_on(exc: sqlalchemy.exc.DBAPIError, attempt: int) -> bool:
    """Run the read again? Only once, and only when the error was a connection the server had
    closed (SQLAlchemy recognised a disconnect and invalidated the pool): the fresh connection
    then answers. A database that is down fails the second attempt too, fast, as a 503. A statement
    left unanswered is not run again (its connection is closed too): it would only wait as long."""
    return attempt == 1 and exc.connection_invalidated and not isinstance(exc.orig, StatementTimeout)


def statements_within(timeout_s: float) -> AbstractContextManager[anyio.CancelScope]:
    """fastapi-async's bound on the statements of one checkout, their cleanup included. asyncpg's
    command_timeout ends a statement a server never answers (bench faults' pg-hang), but SQLAlchemy
    then closes the connection gracefully, which waits a fixed time of its own for that silent
    server. anyio's cancel scope cancels again at every await until the block is left, so that
    close is cut short (SQLAlchemy then force-closes the connection): a 503 at the deadline."""
    return anyio.fail_after(timeout_s)


class StatementTimeout(psycopg.OperationalError):
    """No answer to a statement within DB_TIMEOUT_S (BoundedConnection): a 503, not retried."""


class BoundedConnection(psycopg.Connection):
    """The sync targets' connection. psycopg waits for the server's answer without limit: libpq has
    no client-side statement timeout, and a stopped server's kernel still acknowledges what is
    sent, so no TCP timeout fires either (bench faults' pg-hang). Each wait here that has no timeout
    of its own ends after `timeout_s`, and the connection, its statement unanswered, is closed."""

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


def bound_statements(engine: sqlalchemy.Engine, timeout_s: float) -> None:
    """The engine's psycopg connections are BoundedConnections waiting at most `timeout_s`."""

    @sqlalchemy.event.listens_for(engine, "do_connect")
    def connect(dialect: Any, record: Any, cargs: Any, cparams: Any) -> BoundedConnection:
        conn = BoundedConnection.connect(*cargs, **cparams)
        conn.timeout_s = timeout_s
        return conn


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's own 404 (unknown route) and 405 (known path, wrong method; keeps Allow).
        code, message = _HTTP_ERRORS.get(exc.status_code, ("http_error", str(exc.detail)))
        return error_response(exc.status_code, code, message, headers=exc.headers)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        # Parameters are taken as strings and validated by `parse_int`; this only catches the rest.
        return error_response(400, "invalid_parameter", "invalid request")

    async def upstream(request: Request, exc: openai.APIError) -> JSONResponse:
        log.warning("upstream failed: %r", exc)
        if isinstance(exc, openai.APITimeoutError):  # a subclass: the timeout before the other failures
            return error_response(504, "upstream_timeout", "the upstream timed out")
        return error_response(502, "upstream_error", "the upstream failed")

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return error_response(500, "internal_error", "internal server error")

    async def db_error(request: Request, exc: Exception) -> JSONResponse:
        if is_db_down(exc):
            log.warning("database unavailable: %r", exc)  # the cause: the log's, not the client's
            return error_response(503, "database_unavailable", DB_UNAVAILABLE)
        return await unexpected(request, exc)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(openai.APIError, upstream)
    for exc_class in (*DB_DOWN, sqlalchemy.exc.DBAPIError):  # DBAPIError: the other driver errors
        app.add_exception_handler(exc_class, db_error)
    app.add_exception_handler(Exception, unexpected)


# --- validation (CONTRACT.md "Validation") --------------------------------------------------

_INT = re.compile(r"-?[0-9]+")


def parse_int(name: str, raw: str | None, lo: int, hi: int, default: int | None = None) -> int:
    """Text must fully match ^-?[0-9]+$ and lie in lo..hi; absent -> default; empty -> 400."""
    if raw is None and default is not None:
        return default
    # fullmatch, not `$`: `$` would accept a trailing newline. The length cap keeps int() cheap.
    if raw is None or not _INT.fullmatch(raw) or len(raw) > 20 or not lo <= int(raw) <= hi:
        raise ApiError(400, "invalid_parameter", f"{name} must be an integer in {lo}..{hi}")
    return int(raw)


@dataclass(frozen=True)
class Params:
    user_id: int
    db_ms: int
    llm_ms: int
    tokens: int = 16


def parse_query(user_id: str, db_ms: str | None, llm_ms: str | None,
                tokens: str | None = None) -> Params:
    """Checked in the contract's order: user_id, db_ms, llm_ms, tokens."""
    s = get_settings()
    return Params(parse_int("user_id", user_id, 1, 2_147_483_647),
                 parse_int("db_ms", db_ms, 0, 5000, s.db_ms),
                 parse_int("llm_ms", llm_ms, 0, 20000, s.llm_ms),
                 parse_int("tokens", tokens, 1, 1000, 16))


# --- step 2: the database --------------------------------------------------------------------

SLEEP_SQL = text("SELECT pg_sleep(:seconds)")
READY_SQL = text("SELECT 1")
USER_SQL = text("""
WITH recent AS (
    SELECT amount_cents, category FROM transactions
    WHERE user_id = :user_id ORDER BY created_at DESC, id DESC LIMIT 20)
SELECT u.name, u.monthly_budget_cents,
       (SELECT count(*) FROM recent)::int,
       (SELECT coalesce(sum(amount_cents), 0) FROM recent)::bigint,
       (SELECT category FROM recent GROUP BY category
        ORDER BY sum(amount_cents) DESC, category ASC LIMIT 1)
FROM users u WHERE u.id = :user_id
""")


@dataclass(frozen=True)
class User:
    user_id: int
    name: str
    budget_cents: int
    transactions: int
    spent_cents: int
    top_category: str | None

    @classmethod
    def from_row(cls, user_id: int, row: Any) -> User:
        if row is None:
            raise ApiError(404, "not_found", "user not found")
        return cls(user_id, *row)

    def payload(self, advice: str, served_by: str) -> dict[str, Any]:
        # Key order is part of the contract.
        return {"user_id": self.user_id, "name": self.name, "budget_cents": self.budget_cents,
                "spent_cents": self.spent_cents, "transactions": self.transactions,
                "top_category": self.top_category, "advice": advice, "served_by": served_by}


# --- step 3: the upstream call ---------------------------------------------------------------

def chat_request(user: User, llm_ms: int, tokens: int | None = None) -> dict[str, Any]:
    """Keyword arguments for `chat.completions.create` (sync and async clients alike)."""
    prompt = (f"{user.name} spent {user.spent_cents} of a {user.budget_cents} cent budget over "
              f"{user.transactions} transactions; top category: {user.top_category or 'none'}. "
              "One tip?")
    kwargs: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "You are a concise personal-finance assistant."},
                     {"role": "user", "content": prompt}],
        "extra_headers": {"X-Mock-Latency-Ms": str(llm_ms)},
    }
    if tokens is not None:
        kwargs |= {"stream": True, "max_completion_tokens": tokens}
    return kwargs


@contextmanager
def upstream_answer() -> Iterator[None]:
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


def sse_token(chunk: Any) -> str | None:
    """One `chat.completion.chunk` -> one SSE event, or None for chunks without text."""
    content = chunk.choices[0].delta.content if chunk.choices else None
    return f"data: {json.dumps({'token': content})}\n\n" if content else None


SSE_DONE = "data: [DONE]\n\n"
# The stream's headers on every target (docs/CONTRACT.md). Content-Type is given here, not as
# media_type, which would make Starlette append "; charset=utf-8".
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
               "X-Accel-Buffering": "no"}
# docs/CONTRACT.md pins these texts: the same on every target, whatever the upstream said.
MID_STREAM_MESSAGES = {"upstream_error": "the upstream stream failed",
                       "upstream_timeout": "the upstream stream timed out"}


def sse_error(exc: Exception) -> str:
    """The stream's last event after a mid-stream failure: the headers are sent, so in-band."""
    log.warning("upstream failed mid-stream: %r", exc)
    code = "upstream_timeout" if isinstance(exc, openai.APITimeoutError) else "upstream_error"
    body = json.dumps({"error": {"code": code, "message": MID_STREAM_MESSAGES[code]}})
    return f"event: error\ndata: {body}\n\n"


# --- /cpu ------------------------------------------------------------------------------------

def cpu_sum(n: int) -> int:
    """Pure-Python CPU work (holds the GIL): sum of isqrt(i) for i in [0, n)."""
    return sum(map(math.isqrt, range(n)))


def parse_n(n: str | None) -> int:
    return parse_int("n", n, 1, 5_000_000, 100_000)


# --- the app skeleton --------------------------------------------------------------------------

common = APIRouter()


@common.get("/healthz")
async def healthz() -> dict[str, str]:
    # The canary: async and touching nothing, so its latency is the event loop's responsiveness.
    return {"status": "ok"}


@common.get("/recommendation/", include_in_schema=False)
@common.get("/stream/", include_in_schema=False)
async def empty_user_id() -> None:
    raise ApiError(400, "invalid_parameter", "user_id must be an integer in 1..2147483647")


def make_app(lifespan: Callable[[FastAPI], AbstractAsyncContextManager[Any]]) -> FastAPI:
    """A FastAPI app with the shared routes and the error handlers; each model adds the rest."""
    # No /docs or /openapi.json (the same route table as the other frameworks) and no slash
    # redirects (`/recommendation` is an unknown route, not a 307).
    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None,
                  redirect_slashes=False)
    install_error_handlers(app)
    app.include_router(common)
    return app
