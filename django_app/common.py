"""What both Django targets share: validation, the uniform JSON errors, the upstream request."""

import inspect
import json
import logging
import re
import time
from contextlib import contextmanager
from functools import wraps
from math import isqrt

import httpx2
import openai
from django.core.exceptions import ObjectDoesNotExist
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, JsonResponse

from django_app.config import get_settings

log = logging.getLogger("django_app")

MODEL = "gpt-4o-mini"
SYSTEM = "You are a concise personal-finance assistant."
PROMPT = ("{name} spent {spent_cents} of a {budget_cents} cent budget over {transactions} "
          "transactions; top category: {top_category}. One tip?")
_INTEGER = re.compile(r"-?[0-9]+")  # ASCII only; fullmatch, so no trailing newline either


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# The contract's one wire form of a JSON body: compact, UTF-8 (docs/CONTRACT.md, "Responses").
JSON_DUMPS_PARAMS = {"separators": (",", ":"), "ensure_ascii": False}


def json_response(body: dict, status: int = 200) -> JsonResponse:
    # Content-Length, as CommonMiddleware would set it (we run none): no chunked encoding.
    response = JsonResponse(body, status=status, json_dumps_params=JSON_DUMPS_PARAMS)
    response["Content-Length"] = str(len(response.content))
    return response


def error_response(status: int, code: str, message: str) -> JsonResponse:
    return json_response({"error": {"code": code, "message": message}}, status)


def _error_for(exc: Exception) -> JsonResponse | None:
    """The contract's mapping of expected failures, with its fixed messages (docs/CONTRACT.md, "Error
    messages"; the cause is logged); None = unexpected (handler500)."""
    match exc:
        case ApiError():
            return error_response(exc.status, exc.code, exc.message)
        case ObjectDoesNotExist():
            return error_response(404, "not_found", "user not found")
        case openai.APITimeoutError():  # before APIError: it is a subclass
            log.warning("upstream timed out: %r", exc)
            return error_response(504, "upstream_timeout", "the upstream timed out")
        case openai.APIError():
            log.warning("upstream failed: %r", exc)
            return error_response(502, "upstream_error", "the upstream failed")
        case OperationalError() | InterfaceError():
            log.warning("database unavailable: %s", exc)
            return error_response(503, "database_unavailable", "the database is unavailable")
    return None


def _method_not_allowed(request: HttpRequest) -> JsonResponse:
    response = error_response(405, "method_not_allowed", "method not allowed")
    response["Allow"] = "GET"
    return response


def endpoint(view):
    """require_GET with the JSON 405, plus the error mapping; for sync and async views alike."""
    if inspect.iscoroutinefunction(view):
        @wraps(view)
        async def async_wrapper(request, *args, **kwargs):
            if request.method != "GET":
                return _method_not_allowed(request)
            try:
                return await view(request, *args, **kwargs)
            except Exception as exc:
                if (response := _error_for(exc)) is None:
                    raise
                return response
        return async_wrapper

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.method != "GET":
            return _method_not_allowed(request)
        try:
            return view(request, *args, **kwargs)
        except Exception as exc:
            if (response := _error_for(exc)) is None:
                raise
            return response
    return wrapper


# handler404/handler500/handler400 of both URLconfs: never Django's HTML pages.
def not_found(request, exception=None):
    return error_response(404, "not_found", "no such route")


def server_error(request):
    return error_response(500, "internal_error", "internal server error")


def bad_request(request, exception=None):
    return error_response(400, "invalid_parameter", "invalid request")


# -- validation (docs/CONTRACT.md): order user_id, db_ms, llm_ms, tokens ---------------------------
def _integer(name: str, text: str | None, lo: int, hi: int) -> int:
    # The length cap keeps int() away from Python's 4300-digit limit (a ValueError).
    if text is None or len(text) > 12 or not _INTEGER.fullmatch(text) or not lo <= int(text) <= hi:
        raise ApiError(400, "invalid_parameter", f"{name} must be an integer in {lo}..{hi}")
    return int(text)


def _query(request: HttpRequest, name: str, default: int, lo: int, hi: int) -> int:
    return _integer(name, request.GET[name], lo, hi) if name in request.GET else default


def recommendation_params(request: HttpRequest, user_id: str) -> tuple[int, int, int]:
    env = get_settings()
    return (_integer("user_id", user_id, 1, 2147483647),
            _query(request, "db_ms", env.db_ms, 0, 5000),
            _query(request, "llm_ms", env.llm_ms, 0, 20000))


def stream_params(request: HttpRequest, user_id: str) -> tuple[int, int, int, int]:
    return (*recommendation_params(request, user_id), _query(request, "tokens", 16, 1, 1000))


def cpu_body(request: HttpRequest) -> dict:
    n = _query(request, "n", 100000, 1, 5000000)
    return {"n": n, "result": sum(isqrt(i) for i in range(n))}  # pure Python, holds the GIL


# -- step 2's result and step 3's request -----------------------------------------------------------
def facts(user) -> dict:
    """The 200 body up to (not including) advice/served_by, in the contract's key order.

    `user` comes from models.user_summary: a User with the step-2 aggregates as attributes.
    """
    return {"user_id": user.id, "name": user.name, "budget_cents": user.monthly_budget_cents,
            "spent_cents": user.spent_cents, "transactions": user.transactions,
            "top_category": user.top_category}


def completion_args(f: dict, llm_ms: int, **extra) -> dict:
    prompt = PROMPT.format(name=f["name"], spent_cents=f["spent_cents"],
                           budget_cents=f["budget_cents"], transactions=f["transactions"],
                           top_category=f["top_category"] or "none")
    return {"model": MODEL,
            "messages": [{"role": "system", "content": SYSTEM},
                         {"role": "user", "content": prompt}],
            "extra_headers": {"X-Mock-Latency-Ms": str(llm_ms)}, **extra}


def stream_args(f: dict, llm_ms: int, tokens: int) -> dict:
    return completion_args(f, llm_ms, stream=True, max_completion_tokens=tokens)


class WholeCallDeadline(httpx2.HTTPTransport):
    """UPSTREAM_TIMEOUT_S for a whole call of django-sync's client (connect, headers and body), not
    for each read: httpx2 has no total timeout, and the SDK's `timeout=` bounds each read, which a
    body dribbled a byte at a time never trips. django-async uses asyncio.timeout instead."""

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

    def __iter__(self):
        for chunk in self.stream:
            if time.monotonic() > self.deadline:
                raise httpx2.ReadTimeout("the call outlasted UPSTREAM_TIMEOUT_S", request=self.request)
            yield chunk

    def close(self) -> None:
        self.stream.close()


@contextmanager
def upstream_answer():
    """Around step 3's call and the reading of its answer: a 200 that is no completion (half a
    JSON document, no choices[0].message.content) is the upstream's failure, 502, not a bug. The
    SDK raises a plain JSONDecodeError there (a ValueError), not an openai.APIError. django-async's
    deadline for the whole call (asyncio.timeout) raises TimeoutError: 504."""
    try:
        yield
    except TimeoutError as exc:
        log.warning("upstream timed out: the whole call outlasted UPSTREAM_TIMEOUT_S")
        raise ApiError(504, "upstream_timeout", "the upstream timed out") from exc
    except (ValueError, LookupError, AttributeError, TypeError) as exc:
        log.warning("upstream answered no completion: %r", exc)
        raise ApiError(502, "upstream_error", "the upstream failed") from exc


def advice_of(completion) -> str:
    """choices[0].message.content, the advice; a ValueError when there is none (upstream_answer)."""
    content = completion.choices[0].message.content
    if not isinstance(content, str):
        raise ValueError("a completion without choices[0].message.content")
    return content


def recommendation_response(f: dict, advice: str) -> JsonResponse:
    return json_response({**f, "advice": advice, "served_by": get_settings().target_name})


def sse(data) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


DONE = sse("[DONE]")


# docs/CONTRACT.md pins these texts: the same on every target, whatever the upstream said.
MID_STREAM_MESSAGES = {"upstream_error": "the upstream stream failed",
                       "upstream_timeout": "the upstream stream timed out"}


def stream_error_event(exc: Exception) -> bytes:
    """Mid-stream failure: the status line is gone, so say it in the stream's last event."""
    log.warning("upstream failed mid-stream: %r", exc)
    timeout = isinstance(exc, openai.APITimeoutError)
    code = "upstream_timeout" if timeout else "upstream_error"
    body = json.dumps({"error": {"code": code, "message": MID_STREAM_MESSAGES[code]}})
    return f"event: error\ndata: {body}\n\n".encode()


def token_of(chunk) -> str | None:
    return chunk.choices[0].delta.content if chunk.choices else None


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
