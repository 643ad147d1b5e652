"""Seed 003's Redis pub/sub stream, on every FastAPI target, in the forms the seed discusses.

The seed's symptom: "when one conversation is streaming, you cannot open another", caused by a
blocking `pubsub.listen()` inside an `async def` endpoint. Each route subscribes to `{channel}` and
streams what is published there as SSE until a message equals `[DONE]` or `timeout_s` elapses:

- `/pubsub/blocking/{channel}`: sync `redis.Redis` + `listen()` inside `async def` (THE
  ANTI-PATTERN, kept on purpose): the loop is frozen while it waits, so streams run one at a time
  and even /healthz waits.
- `/pubsub/polling/{channel}`: the seed's own fix, as written: sync `get_message(timeout=0.1)`
  plus `await asyncio.sleep(0.01)`. Streams interleave, but each poll still blocks the loop for up
  to 100 ms, so the canary pays for it. `poll_timeout_s` (default 0.1, the seed's) replaces that
  0.1: the seed's "get_message(timeout=10.0)  # Blocks 10 seconds!" against "timeout=0.1  # Max 100ms".
- `/pubsub/async/{channel}`: `redis.asyncio`, `await pubsub.get_message(timeout=...)`: the loop
  is free while it waits.

Every stream is bounded by `timeout_s`, so even the blocking form always ends. Events:
`data: {"subscribed": channel}` once the subscription is confirmed, `data: {"message": text}` per
message, then `data: [DONE]` (stop word received) or `data: [TIMEOUT]` (timeout_s elapsed).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import redis
import redis.asyncio
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic_settings import BaseSettings

from fastapi_app.common import DB_UNAVAILABLE, ApiError, log

STOP_WORD = "[DONE]"
DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S = 5.0, 60.0
SEED_POLL_TIMEOUT_S = 0.1  # the seed's fix: get_message(timeout=0.1)
SSE_DONE, SSE_TIMEOUT = "data: [DONE]\n\n", "data: [TIMEOUT]\n\n"
# decode_responses: messages are text. A refused connect (Redis down) fails at once whatever the
# timeout; the timeout bounds a silent host (in the blocking form that connect stalls the loop).
# Not shorter than 10 s: with 1,000 streams opened at once, a connect can wait seconds for the busy
# loop to see its completion, and a 2 s bound turned hundreds of them into 503s.
CLIENT_KWARGS: dict[str, Any] = {"decode_responses": True, "encoding_errors": "replace",
                                 "socket_connect_timeout": 10}


class RedisSettings(BaseSettings):
    redis_url: str | None = None  # unset: the routes answer 503 (nothing else needs Redis)
    # Every open stream holds one Redis connection of its form's pool. redis-py's default pool
    # (100 connections, sync and asyncio alike) caps a process at 100 concurrent streams: the
    # 101st answers 503 (MaxConnectionsError), whichever form. The lab raises the bound for both
    # clients alike, so that seed 003's "thousands of concurrent streams" can be measured at all.
    redis_max_connections: int = 4000


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict]:
    # FastAPI merges an included router's lifespan into the app's, so the app modules only
    # include the router. Neither client connects here: the app starts without Redis.
    settings = RedisSettings()
    url = settings.redis_url
    if not url:
        yield {}
        return
    pool = {**CLIENT_KWARGS, "max_connections": settings.redis_max_connections}
    sync_client = redis.Redis.from_url(url, **pool)
    async_client = redis.asyncio.Redis.from_url(url, **pool)
    try:
        yield {"redis_sync": sync_client, "redis_async": async_client}
    finally:
        await async_client.aclose()
        sync_client.close()


router = APIRouter(lifespan=lifespan)


# --- validation (the contract's 400 invalid_parameter shape) --------------------------------

_CHANNEL = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_SECONDS = re.compile(r"[0-9]{1,2}(\.[0-9]{1,3})?")


def parse_channel(raw: str) -> str:
    if not _CHANNEL.fullmatch(raw):
        raise ApiError(400, "invalid_parameter", "channel must be 1..128 of [A-Za-z0-9._:-]")
    return raw


def parse_timeout(raw: str | None) -> float:
    if raw is None:
        return DEFAULT_TIMEOUT_S
    if not _SECONDS.fullmatch(raw) or not 0 < float(raw) <= MAX_TIMEOUT_S:
        raise ApiError(400, "invalid_parameter", f"timeout_s must be a number in (0, {MAX_TIMEOUT_S:g}]")
    return float(raw)


def parse_poll_timeout(raw: str | None) -> float:
    """The polling form's get_message timeout: 0 (never waits) .. MAX_TIMEOUT_S, default the seed's 0.1."""
    if raw is None:
        return SEED_POLL_TIMEOUT_S
    if not _SECONDS.fullmatch(raw) or not 0 <= float(raw) <= MAX_TIMEOUT_S:
        raise ApiError(400, "invalid_parameter",
                       f"poll_timeout_s must be a number in [0, {MAX_TIMEOUT_S:g}]")
    return float(raw)


def client(request: Request, kind: str) -> Any:
    found = getattr(request.state, f"redis_{kind}", None)
    if found is None:
        log.warning("redis unavailable: REDIS_URL is not set")
        raise ApiError(503, "database_unavailable", DB_UNAVAILABLE)
    return found


def redis_down(exc: redis.RedisError) -> ApiError:
    log.warning("redis unavailable: %r", exc)
    return ApiError(503, "database_unavailable", DB_UNAVAILABLE)


# --- SSE ---------------------------------------------------------------------------------------

def event(message: dict) -> str | None:
    """One pub/sub message -> one SSE event (None for the kinds we do not forward)."""
    if message["type"] == "subscribe":
        return f"data: {json.dumps({'subscribed': message['channel']})}\n\n"
    if message["type"] != "message":
        return None
    if message["data"] == STOP_WORD:
        return SSE_DONE
    return f"data: {json.dumps({'message': message['data']})}\n\n"


def sse_redis_error(exc: redis.RedisError) -> str:
    # Headers are already sent, so a mid-stream failure can only be reported in-band.
    log.warning("redis failed mid-stream: %r", exc)
    error = {"code": "database_unavailable", "message": DB_UNAVAILABLE}
    return f"data: {json.dumps({'error': error})}\n\n"


def sse_response(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream")


# --- the three forms ---------------------------------------------------------------------------

def subscribe_sync(request: Request, channel: str) -> redis.client.PubSub:
    # A blocking connect + SUBSCRIBE on the event loop: short, but the loop waits for it too.
    # Done before the response starts, so a dead Redis is still a JSON 503.
    pubsub = client(request, "sync").pubsub()
    try:
        pubsub.subscribe(channel)
    except redis.RedisError as exc:
        pubsub.close()
        raise redis_down(exc) from None
    return pubsub


def listen(pubsub: redis.client.PubSub, deadline: float) -> Iterator[dict]:
    """`pubsub.listen()` with a deadline.

    redis-py's listen() is a loop of blocking reads (`parse_response(block=True)`); get_message
    with a timeout is the same blocking read, bounded, so the stream cannot outlive timeout_s.
    """
    while (left := deadline - time.monotonic()) > 0:
        if (message := pubsub.get_message(timeout=left)) is not None:
            yield message


async def relay(messages: AsyncIterator[dict | None], close: Callable[[], Awaitable[None]]
                ) -> AsyncIterator[str]:
    """SSE events from one form's messages, until the stop word, their deadline or a Redis error."""
    try:
        async for message in messages:
            if message is not None and (sse := event(message)):
                yield sse
                if sse == SSE_DONE:
                    return
        yield SSE_TIMEOUT
    except redis.RedisError as exc:
        yield sse_redis_error(exc)
    finally:
        await close()


async def blocking_messages(pubsub: redis.client.PubSub, deadline: float) -> AsyncIterator[dict]:
    # ANTI-PATTERN, on purpose (seed 003): a blocking iterator inside an async generator.
    # Every wait for the next message freezes the whole event loop.
    for message in listen(pubsub, deadline):
        yield message


async def polling_messages(pubsub: redis.client.PubSub, deadline: float,
                           poll_timeout_s: float = SEED_POLL_TIMEOUT_S) -> AsyncIterator[dict | None]:
    while (left := deadline - time.monotonic()) > 0:
        # The seed's fix, as written: each call still blocks the loop for up to its timeout
        # (0.1 s); the sleep is what lets the other requests run in between.
        message = pubsub.get_message(timeout=min(poll_timeout_s, left))
        if message is None:
            await asyncio.sleep(0.01)
        yield message


async def async_messages(pubsub: redis.asyncio.client.PubSub, deadline: float
                         ) -> AsyncIterator[dict | None]:
    while (left := deadline - time.monotonic()) > 0:
        # Awaited: while this stream waits for Redis, the loop serves everything else.
        yield await pubsub.get_message(timeout=left)


def closer(pubsub: redis.client.PubSub) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        pubsub.close()
    return close


@router.get("/pubsub/blocking/{channel}")
async def pubsub_blocking(request: Request, channel: str, timeout_s: str | None = None) -> StreamingResponse:
    channel, seconds = parse_channel(channel), parse_timeout(timeout_s)
    pubsub = subscribe_sync(request, channel)
    deadline = time.monotonic() + seconds
    return sse_response(relay(blocking_messages(pubsub, deadline), closer(pubsub)))


@router.get("/pubsub/polling/{channel}")
async def pubsub_polling(request: Request, channel: str, timeout_s: str | None = None,
                         poll_timeout_s: str | None = None) -> StreamingResponse:
    channel, seconds = parse_channel(channel), parse_timeout(timeout_s)
    poll = parse_poll_timeout(poll_timeout_s)
    pubsub = subscribe_sync(request, channel)
    deadline = time.monotonic() + seconds
    return sse_response(relay(polling_messages(pubsub, deadline, poll), closer(pubsub)))


@router.get("/pubsub/async/{channel}")
async def pubsub_async(request: Request, channel: str, timeout_s: str | None = None) -> StreamingResponse:
    channel, seconds = parse_channel(channel), parse_timeout(timeout_s)
    pubsub = client(request, "async").pubsub()
    try:
        await pubsub.subscribe(channel)
    except redis.RedisError as exc:
        await pubsub.aclose()
        raise redis_down(exc) from None
    deadline = time.monotonic() + seconds
    return sse_response(relay(async_messages(pubsub, deadline), pubsub.aclose))


@router.get("/pubsub/blocking/", include_in_schema=False)
@router.get("/pubsub/polling/", include_in_schema=False)
@router.get("/pubsub/async/", include_in_schema=False)
async def empty_channel() -> None:
    raise ApiError(400, "invalid_parameter", "channel must be 1..128 of [A-Za-z0-9._:-]")
