"""Mock OpenAI chat-completions API: the lab's "external call" (docs/CONTRACT.md, docs/DESIGN.md).

A plain ASGI callable rather than a framework: the mock must never be the bottleneck
(>= 3,000 req/s on one core at 500 in flight; bench/upstream_bench.py measures it), so a request
costs one JSON parse, one SHA-256 and one JSON dump, and no framework layers.
Injected errors (X-Mock-Status, /mock/faults) answer at once, without the latency; a mid-stream
fault (/mock/faults with "after_tokens") lets a stream start, then fails it after that many tokens;
a timed outage (/mock/faults with "for_s") fails, hangs, answers broken JSON or dribbles its answer
for every request for that long.

    uvicorn upstream.app:app --host 127.0.0.1 --port 9000 --no-access-log --loop uvloop --http httptools \
        --timeout-keep-alive 75
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import itertools
import json
import re
import time
from collections import deque

SENTENCE = "Review your top category and set a weekly limit so the month ends within budget."
FILLER = SENTENCE.split(" ")
DEFAULT_TOKENS = 16
MAX_TOKENS = 100_000
MAX_LATENCY_MS = 600_000
# How a queued mid-stream fault fails the stream once its tokens are sent (docs/CONTRACT.md):
#   error: an OpenAI-style in-band `data: {"error": {...}}` event, then the body ends (no [DONE]);
#   drop:  the connection is cut (an incomplete chunked body);
#   stall: silence until the client gives up (its read timeout) or MAX_LATENCY_MS passes.
STREAM_FAULT_MODES = ("error", "drop", "stall")
# What a timed outage does to each completion request (docs/CONTRACT.md), besides a status:
#   hang:      no answer until the client gives up;
#   malformed: 200 application/json whose body is a completion cut in half (not JSON);
#   drip:      200 and the completion one byte per DRIP_INTERVAL_S for drip_s, then the rest at
#              once: a client whose timeout bounds each read, not the whole call, never times out.
OUTAGE_MODES = ("hang", "malformed", "drip")
DRIP_INTERVAL_S = 0.25
DEFAULT_DRIP_S = 10.0
RETRY_AFTER_S = 1  # what a 429 asks the client to wait, as OpenAI's Retry-After does
DEFAULT_MODEL = "gpt-4o-mini"
# The locustfile's GC_THRESHOLDS, for the same reason (docs/DESIGN.md, Measurement window): a
# request's objects outlive the young generation, and each collection holds back every answer due.
GC_THRESHOLDS = (100_000, 50, 100)

_INT = re.compile(r"[0-9]+")  # ASCII digits only (str.isdigit accepts other scripts)
_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_DONE = b"data: [DONE]\n\n"
_ids = itertools.count(1)
_dumps = json.JSONEncoder(separators=(",", ":")).encode

# OpenAI's error `type` per status; everything else 4xx/5xx falls back below.
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "invalid_request_error", 405: "invalid_request_error", 409: "conflict_error",
                422: "invalid_request_error", 429: "rate_limit_error"}


class Stats:
    """Counters for GET /mock/stats; plain ints are safe on one event loop."""

    def __init__(self) -> None:
        self.requests = self.streams = self.faults_served = self.in_flight = self.max_in_flight = 0
        self.faults: deque[int] = deque()  # one-shot statuses queued by POST /mock/faults
        # One-shot mid-stream faults (status, after_tokens, mode); only streamed requests take them.
        self.stream_faults: deque[tuple[int, int, str]] = deque()
        # A timed outage (POST /mock/faults with "for_s"): until the monotonic `outage_until`,
        # every completion request fails with `outage` (a status) or hangs (`"hang"`).
        self.outage: int | str | None = None
        self.outage_until = 0.0
        self.drip_s = DEFAULT_DRIP_S
        # How long the longest-reading client of the current drip outage stayed (until it hung up
        # or the body was complete): a client with a whole-call timeout leaves after it.
        self.drip_longest_s = 0.0

    def current_outage(self) -> int | str | None:
        if self.outage is not None and time.monotonic() >= self.outage_until:
            self.outage = None
        return self.outage

    def pending(self) -> int:
        return len(self.faults) + len(self.stream_faults)

    def as_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "streams": self.streams,
                "faults_served": self.faults_served, "faults_pending": self.pending(),
                "in_flight": self.in_flight, "max_in_flight": self.max_in_flight,
                "drip_longest_s": round(self.drip_longest_s, 3)}


stats = Stats()


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def error_body(status: int, message: str, code: str | None) -> bytes:
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return _dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()


async def send_json(send, status: int, body: bytes) -> None:
    headers = [*_JSON, (b"content-length", str(len(body)).encode())]
    if status == 429:
        headers.append((b"retry-after", str(RETRY_AFTER_S).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send, status: int, message: str, code: str | None) -> None:
    await send_json(send, status, error_body(status, message, code))


# ---- deterministic content ------------------------------------------------------------------

def tokens(digest: str, n: int) -> list[str]:
    """The answer's n tokens; the completion's content is them joined by single spaces."""
    return ["[" + digest + "]"] + [FILLER[(i - 1) % len(FILLER)] for i in range(1, n)]


def content_text(content) -> str:
    """A message's content as text: a string, or the text parts of a content-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def parse_request(raw: bytes) -> tuple[dict, str, int]:
    """Validate the chat request; returns (body, digest, n)."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "We could not parse the JSON body of your request.", "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", "invalid_json")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        raise ApiError(400, "'messages' must be a non-empty array of message objects.", "invalid_messages")
    n = body.get("max_completion_tokens")
    if n is None:
        n = body.get("max_tokens")
    if n is None:
        n = DEFAULT_TOKENS
    elif type(n) is not int or not 1 <= n <= MAX_TOKENS:
        raise ApiError(400, f"max_completion_tokens must be an integer in 1..{MAX_TOKENS}.", "invalid_value")
    text = content_text(messages[-1].get("content"))
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return body, digest, n


def prompt_tokens(messages: list) -> int:
    # Not a tokenizer: whitespace words, so usage is cheap and deterministic.
    return sum(len(content_text(m.get("content")).split()) for m in messages if isinstance(m, dict))


def header_ints(scope) -> tuple[int, int | None]:
    """(latency_ms, forced status) from X-Mock-Latency-Ms / X-Mock-Status."""
    latency, status = 0, None
    for name, value in scope["headers"]:
        if name == b"x-mock-latency-ms":
            text = value.decode("latin-1").strip()
            if not _INT.fullmatch(text) or int(text) > MAX_LATENCY_MS:
                raise ApiError(400, f"X-Mock-Latency-Ms must be an integer in 0..{MAX_LATENCY_MS}.",
                               "invalid_header")
            latency = int(text)
        elif name == b"x-mock-status":
            text = value.decode("latin-1").strip()
            if not _INT.fullmatch(text) or not 400 <= int(text) <= 599:
                raise ApiError(400, "X-Mock-Status must be an integer in 400..599.", "invalid_header")
            status = int(text)
    return latency, status


# ---- handlers -------------------------------------------------------------------------------

async def read_body(receive) -> bytes:
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body"):
        return body  # the common case: one message, no copying
    parts = [body]
    while message.get("more_body"):
        message = await receive()
        parts.append(message.get("body", b""))
    return b"".join(parts)


async def chat_completions(scope, receive, send) -> None:
    stats.requests += 1
    stats.in_flight += 1
    stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
    try:
        latency_ms, status = header_ints(scope)
        raw = await read_body(receive)
        outage = stats.current_outage()
        if outage == "hang":  # an upstream that accepted the request and never answers
            stats.faults_served += 1
            await hang_until_gone(receive)
            return
        if status is None and outage is not None and not isinstance(outage, int):
            stats.faults_served += 1
            await broken_answer(receive, send, outage, completion_body(*parse_request(raw)))
            return
        if status is None and outage is not None:
            status = outage
        elif status is None and stats.faults:
            status = stats.faults.popleft()
        if status is not None:
            stats.faults_served += 1
            raise ApiError(status, f"Mock upstream: injected HTTP {status}.", "mock_fault")
        body, digest, n = parse_request(raw)
        if body.get("stream") is not True:
            if latency_ms:
                await asyncio.sleep(latency_ms / 1000)
            await send_json(send, 200, completion_body(body, digest, n))
            return
        model = body.get("model")
        model = model if isinstance(model, str) else DEFAULT_MODEL
        stats.streams += 1
        fault = None
        if stats.stream_faults:
            fault = stats.stream_faults.popleft()
            stats.faults_served += 1
        await stream_completion(receive, send, body, digest, n, model, latency_ms, fault)
    except ApiError as e:
        await send_error(send, e.status, e.message, e.code)
    finally:
        stats.in_flight -= 1


def completion_body(body: dict, digest: str, n: int) -> bytes:
    """The chat.completion JSON for a parsed request (`parse_request`)."""
    model = body.get("model")
    content = " ".join(tokens(digest, n))
    p = prompt_tokens(body["messages"])
    return _dumps({
        "id": f"chatcmpl-mock{next(_ids)}", "object": "chat.completion",
        "created": int(time.time()), "model": model if isinstance(model, str) else DEFAULT_MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": p, "completion_tokens": n, "total_tokens": p + n},
    }).encode()


async def broken_answer(receive, send, mode: str, body: bytes) -> None:
    """A 200 that is no usable completion: half a JSON document, or the whole one dribbled."""
    if mode == "malformed":
        await send_json(send, 200, body[:len(body) // 2])
        return
    headers = [*_JSON, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    gone = asyncio.ensure_future(receive())  # the body is read: this returns when the client leaves
    loop = asyncio.get_running_loop()
    started, sent = loop.time(), 0
    try:
        while sent < len(body) - 1 and loop.time() - started < stats.drip_s and not gone.done():
            await send({"type": "http.response.body", "body": body[sent:sent + 1], "more_body": True})
            sent += 1
            await asyncio.wait([gone], timeout=DRIP_INTERVAL_S)
        if not gone.done():
            await send({"type": "http.response.body", "body": body[sent:]})
    finally:
        stats.drip_longest_s = max(stats.drip_longest_s, loop.time() - started)
        gone.cancel()


async def stream_completion(receive, send, body, digest, n, model, latency_ms,
                            fault: tuple[int, int, str] | None = None) -> None:
    """n content chunks at start + latency*(i+1)/n, then the stop chunk and [DONE].

    With a mid-stream `fault` (status, after_tokens, mode), the first after_tokens content chunks
    are sent as usual, then the stream fails as STREAM_FAULT_MODES describes.
    """
    await send({"type": "http.response.start", "status": 200, "headers": _SSE})
    # Once the body is read, receive() only returns on disconnect: stop sleeping for a gone client.
    gone = asyncio.ensure_future(receive())
    head = {"id": f"chatcmpl-mock{next(_ids)}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return dict(head, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])

    def sse(event: dict) -> dict:
        return {"type": "http.response.body", "body": b"data: " + _dumps(event).encode() + b"\n\n",
                "more_body": True}

    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, token in enumerate(tokens(digest, n)):
            if fault is not None and i == fault[1]:
                await fail_stream(send, gone, fault)
                return
            if latency_ms:
                await asyncio.sleep(max(0.0, start + latency_ms * (i + 1) / n / 1000 - loop.time()))
            if gone.done():
                return
            delta = {"content": token if i == n - 1 else token + " "}
            if i == 0:
                delta = {"role": "assistant", **delta}
            await send(sse(chunk(delta)))
        if fault is not None:  # after_tokens >= n: fail where the stop chunk would come
            await fail_stream(send, gone, fault)
            return
        await send(sse(chunk({}, "stop")))
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            p = prompt_tokens(body["messages"])
            usage = {"prompt_tokens": p, "completion_tokens": n, "total_tokens": p + n}
            await send(sse(dict(head, choices=[], usage=usage)))
        await send({"type": "http.response.body", "body": _DONE})
    finally:
        gone.cancel()


async def fail_stream(send, gone: asyncio.Future, fault: tuple[int, int, str]) -> None:
    status, _, mode = fault
    if mode == "error":  # what OpenAI sends when a stream breaks server-side; the SDKs raise on it
        event = error_body(status, f"Mock upstream: injected mid-stream failure (HTTP {status}).",
                           "mock_fault")
        await send({"type": "http.response.body", "body": b"data: " + event + b"\n\n"})
    elif mode == "stall":
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(gone), MAX_LATENCY_MS / 1000)
    # "drop" (and a stall that outlived MAX_LATENCY_MS): return with the body unfinished; the
    # server then closes the connection, so the client sees a truncated chunked body.


async def hang_until_gone(receive) -> None:
    """No answer: wait until the client disconnects (its timeout) or MAX_LATENCY_MS passes."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(receive(), MAX_LATENCY_MS / 1000)


async def faults(scope, receive, send) -> None:
    if scope["method"] == "DELETE":
        stats.faults.clear()
        stats.stream_faults.clear()
        stats.outage = None
    else:
        usage = ('Expected {"status": 500, "count": 1}, optionally with "after_tokens": N and '
                 '"mode": "error"|"drop"|"stall" for a mid-stream fault, or a timed outage: '
                 '{"status": 500, "for_s": 5} or {"mode": "hang"|"malformed"|"drip", "for_s": 5} '
                 '("drip" takes "drip_s": how long each answer dribbles, default 10).')
        try:
            spec = json.loads(await read_body(receive))
            status, count = spec.get("status", 500), spec.get("count", 1)
            after, mode, for_s = spec.get("after_tokens"), spec.get("mode"), spec.get("for_s")
        except (ValueError, AttributeError):
            raise ApiError(400, usage, "invalid_json") from None
        if for_s is not None:
            await start_outage(send, status, mode, for_s, spec.get("drip_s", DEFAULT_DRIP_S), usage)
            return
        valid = type(status) is int and 400 <= status <= 599 and type(count) is int and 0 <= count <= 10**6
        if not valid:
            raise ApiError(400, "status must be an integer in 400..599, count in 0..10**6.", "invalid_value")
        if after is None and mode is None:
            stats.faults.extend([status] * count)
        elif type(after) is int and 0 <= after <= MAX_TOKENS and (mode is None or mode in STREAM_FAULT_MODES):
            stats.stream_faults.extend([(status, after, mode or "error")] * count)
        else:
            raise ApiError(400, f"after_tokens must be an integer in 0..{MAX_TOKENS} and mode one of "
                                f"{', '.join(STREAM_FAULT_MODES)}. {usage}", "invalid_value")
    await send_json(send, 200, _dumps({"faults_pending": stats.pending()}).encode())


def seconds_ok(value) -> bool:
    return type(value) in (int, float) and 0 < value <= MAX_LATENCY_MS / 1000


async def start_outage(send, status, mode, for_s, drip_s, usage: str) -> None:
    if not seconds_ok(for_s) or not seconds_ok(drip_s):
        raise ApiError(400, f"for_s and drip_s must be numbers of seconds in (0, {MAX_LATENCY_MS // 1000}]. "
                            f"{usage}", "invalid_value")
    if mode not in (None, *OUTAGE_MODES) or type(status) is not int or not 400 <= status <= 599:
        raise ApiError(400, f"A timed outage takes a status in 400..599 or a mode, one of "
                            f"{', '.join(OUTAGE_MODES)}. {usage}", "invalid_value")
    stats.outage, stats.outage_until = mode or status, time.monotonic() + for_s
    stats.drip_s, stats.drip_longest_s = drip_s, 0.0
    await send_json(send, 200, _dumps({"outage": stats.outage, "for_s": for_s}).encode())


async def get_stats(scope, receive, send) -> None:
    await send_json(send, 200, _dumps(stats.as_dict()).encode())


async def healthz(scope, receive, send) -> None:
    await send_json(send, 200, b'{"status":"ok"}')


ROUTES = {
    "/v1/chat/completions": ({"POST"}, chat_completions),
    "/mock/faults": ({"POST", "DELETE"}, faults),
    "/mock/stats": ({"GET"}, get_stats),
    "/healthz": ({"GET"}, healthz),
}


async def lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            gc.freeze()  # what importing uvicorn, uvloop and this module allocated is never scanned again
            gc.set_threshold(*GC_THRESHOLDS)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send) -> None:
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
        return
    path, method = scope["path"], scope["method"]
    route = ROUTES.get(path.rstrip("/") or "/")
    try:
        if route is None:
            raise ApiError(404, f"Invalid URL ({method} {path})", "unknown_url")
        methods, handler = route
        if method not in methods:
            raise ApiError(405, f"Method {method} not allowed for {path}.", "method_not_allowed")
        await handler(scope, receive, send)
    except ApiError as e:
        await send_error(send, e.status, e.message, e.code)
