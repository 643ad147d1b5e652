"""django-sync: plain views under gunicorn sync workers (one request per process at a time).

Database: the worker's single persistent connection (settings.CONN_MAX_AGE = None). Step 2 uses it;
step 3 (the upstream call) does not touch it, so "released" here means idle-but-open: with one
thread per process nobody else could use it anyway, and pool size = capacity = 1 per worker.
"""

from functools import cache

import openai
from django.http import StreamingHttpResponse

from django_app.common import (
    DONE,
    SSE_HEADERS,
    WholeCallDeadline,
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
from django_app.models import load_user, select_one


@cache
def llm() -> openai.OpenAI:
    """One client per worker process, created on first use, i.e. after gunicorn's fork."""
    env = get_settings()
    deadline = WholeCallDeadline(env.upstream_timeout_s)  # for each whole call, not each read
    return openai.OpenAI(base_url=env.upstream_url.rstrip("/") + "/v1", api_key="mock",
                         max_retries=0, timeout=env.upstream_timeout_s,
                         http_client=openai.DefaultHttpxClient(transport=deadline))


@endpoint
def recommendation(request, user_id: str):
    user_id, db_ms, llm_ms = recommendation_params(request, user_id)
    f = facts(load_user(user_id, db_ms))  # User.DoesNotExist -> 404
    call = completion_args(f, llm_ms)
    with upstream_answer():
        advice = advice_of(llm().chat.completions.create(**call))
    return recommendation_response(f, advice)


@endpoint
def stream(request, user_id: str):
    user_id, db_ms, llm_ms, tokens = stream_params(request, user_id)
    f = facts(load_user(user_id, db_ms))
    # Opened here, before the first byte, so a refused/failed upstream is still a JSON 502/504.
    chunks = llm().chat.completions.create(**stream_args(f, llm_ms, tokens))

    def events():
        with chunks:  # closes the upstream response on client disconnect too
            try:
                for chunk in chunks:
                    if token := token_of(chunk):
                        yield sse({"token": token})
            except Exception as exc:  # noqa: BLE001 - the status line is sent: report it in-band
                yield stream_error_event(exc)
                return
        yield DONE

    # The worker is held for the whole stream: seed 003's "one stream blocks the others".
    return StreamingHttpResponse(events(), content_type="text/event-stream", headers=SSE_HEADERS)


@endpoint
def cpu(request):
    return json_response(cpu_body(request))


@endpoint
def healthz(request):
    return json_response({"status": "ok"})


@endpoint
def readyz(request):
    select_one()
    return json_response({"status": "ready"})
