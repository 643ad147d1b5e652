"""django-async: async views under uvicorn, the ORM's async API, openai.AsyncOpenAI.

How the async ORM really runs (Django 5.2.19, asgiref 3.13): `aget()`, `aaggregate()`, `afirst()`
and `async for` over a queryset (here the raw() one of step 2) are
`sync_to_async(thread_sensitive=True)` wrappers around the sync ORM, and pg_sleep goes the same
way. "Thread-sensitive" means "the same thread as the other thread-sensitive calls *of this
context*": ASGIHandler runs each request inside its own `ThreadSensitiveContext`, so each request
gets a fresh one-thread executor, and that request's DB calls run one after another on it, with
that thread's connection from the psycopg pool (settings_async.py). Requests overlap their DB
work; each ORM call costs a thread hop, and so do the request_started/finished signals Django
sends around every request (even /healthz). A process-wide single DB thread only exists outside a
request (e.g. a script calling the async ORM under asyncio.run: asgiref's single_thread_executor).

Measured on a shared 2-core box, 8 concurrent requests, pool 15 (django-sync for comparison), when
step 2 was still three ORM queries in three hops (aget, aaggregate, afirst):
  db_ms=200 llm_ms=0:   django-async 268-278 ms (1 round)   django-sync 434-470 ms (2 rounds)
  db_ms=0   llm_ms=400: django-async 448-453 ms (1 round)   django-sync 831-834 ms (2 rounds)
  8 x sync_to_async(pg_sleep 200 ms), no request context: 1620 ms on 1 thread;
  same inside a ThreadSensitiveContext each:               210 ms on 8 threads.
  30 concurrent db_ms=1000: 2 rounds (15 pg_sleep active at once = the pool), 42 OS threads.
  100 concurrent llm_ms=400: 1.19 s, CPU-bound on the one process (6.4 CPU-ms per request
  at db 0 / llm 0, vs 5.4 on a sync worker; /healthz 0.8 vs 0.5).
So the DB concurrency is capped by DB_POOL_SIZE (a waiting request blocks its own thread, not the
loop), the request concurrency is not capped, and the upstream call runs on the event loop after
the connection went back to the pool.
"""

import asyncio
from functools import cache

import openai
from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError
from django.http import StreamingHttpResponse

from django_app.common import (
    DONE,
    SSE_HEADERS,
    advice_of,
    completion_args,
    cpu_body,
    endpoint,
    facts,
    json_response,
    recommendation_params,
    recommendation_response,
    sse,
    stream_args,
    stream_error_event,
    stream_params,
    token_of,
    upstream_answer,
)
from django_app.config import get_settings
from django_app.models import Outage, auser_summary, pg_sleep, release, select_one


@cache
def llm() -> openai.AsyncOpenAI:
    """One client per process (one event loop under uvicorn), created on first use."""
    env = get_settings()
    return openai.AsyncOpenAI(base_url=env.upstream_url.rstrip("/") + "/v1", api_key="mock",
                              max_retries=0, timeout=env.upstream_timeout_s)


async def load_facts(user_id: int, db_ms: int) -> dict:
    for attempt in (1, 2):
        failure = None
        try:
            if Outage.suspected:  # the pool would wait for a connection: ask the server first
                await sync_to_async(Outage.fail_fast)()
            if db_ms:
                await sync_to_async(pg_sleep)(db_ms)
            found = facts(await auser_summary(user_id))  # User.DoesNotExist -> 404
        except (OperationalError, InterfaceError) as exc:
            Outage.noticed()
            failure = exc
        finally:
            # Back to the pool before the upstream call. Must run on the request's DB thread:
            # `connection` is per thread, so sync_to_async(connection.close) would close the wrong
            # one. A connection the server had closed (a restart) is dropped there instead.
            dropped = await sync_to_async(release)()
        if failure is None:
            return found
        if attempt == 2 or not dropped:  # the database is down, or it failed twice: 503
            raise failure
    raise AssertionError("unreachable")


@endpoint
async def recommendation(request, user_id: str):
    user_id, db_ms, llm_ms = recommendation_params(request, user_id)
    f = await load_facts(user_id, db_ms)
    call = completion_args(f, llm_ms)
    with upstream_answer():
        # One deadline for the whole call: the SDK's `timeout=` bounds each read only.
        async with asyncio.timeout(get_settings().upstream_timeout_s):
            advice = advice_of(await llm().chat.completions.create(**call))
    return recommendation_response(f, advice)


@endpoint
async def stream(request, user_id: str):
    user_id, db_ms, llm_ms, tokens = stream_params(request, user_id)
    f = await load_facts(user_id, db_ms)
    # Opened here, before the first byte, so a refused/failed upstream is still a JSON 502/504.
    chunks = await llm().chat.completions.create(**stream_args(f, llm_ms, tokens))

    async def events():
        async with chunks:
            try:
                async for chunk in chunks:
                    if token := token_of(chunk):
                        yield sse({"token": token})
            except Exception as exc:  # noqa: BLE001 - the status line is sent: report it in-band
                yield stream_error_event(exc)
                return
        yield DONE

    return StreamingHttpResponse(events(), content_type="text/event-stream", headers=SSE_HEADERS)


@endpoint
async def cpu(request):
    # Deliberately on the event loop, like fastapi-async's: pure CPU blocks it (seed 004).
    return json_response(cpu_body(request))


@endpoint
async def healthz(request):
    return json_response({"status": "ok"})


@endpoint
async def readyz(request):
    try:
        await sync_to_async(select_one)()
    finally:
        await sync_to_async(release)()
    return json_response({"status": "ready"})
