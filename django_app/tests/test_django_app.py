"""Unit tests of the Django targets that need no database or upstream.

Django is configured inside a fixture, not at import time, and with the environment patched only
while settings.py is read, so nothing leaks into the other apps' tests in the same session.
The DATABASE_URL points at a closed port: requests that pass validation reach the DB and get a
fast 503, which is how these tests prove a value was accepted.
"""

from __future__ import annotations

import asyncio
import os
from unittest import mock

import httpx2
import openai
import pytest

DEAD_DB = "postgresql://lab@127.0.0.1:1/lab"
ENV = {"DATABASE_URL": DEAD_DB, "UPSTREAM_URL": "http://127.0.0.1:1", "TARGET_NAME": "django-test",
       "DJANGO_SETTINGS_MODULE": "django_app.settings", "DB_MS": "50", "LLM_MS": "500"}


@pytest.fixture(scope="module")
def django_ready():
    import django
    from django.apps import apps

    if not apps.ready:
        with mock.patch.dict(os.environ, ENV):
            django.setup()
            from django.conf import settings

            settings.DATABASES  # noqa: B018 - evaluate settings.py while the env is patched
    return django


@pytest.fixture(params=["sync", "async"])
def get(request, django_ready):
    """GET/any-method helper returning (status, json) through the sync or async URLconf."""
    from django.test import AsyncClient, Client, override_settings

    if request.param == "sync":
        client = Client()

        def call(path, method="get"):
            response = getattr(client, method)(path)
            return response.status_code, response["Content-Type"], response.json()
    else:
        def call(path, method="get"):
            async def go():
                with override_settings(ROOT_URLCONF="django_app.urls_async"):
                    return await getattr(AsyncClient(), method)(path)
            response = asyncio.run(go())
            return response.status_code, response["Content-Type"], response.json()
    return call


INVALID = [
    "/recommendation/", "/recommendation/abc", "/recommendation/0", "/recommendation/-1",
    "/recommendation/2147483648", "/recommendation/%2B1", "/recommendation/%201", "/recommendation/1.0",
    "/recommendation/1e3", "/recommendation/%D9%A1", "/recommendation/1%0A", "/recommendation/0x10",
    "/recommendation/" + "9" * 5000,
    "/recommendation/1?db_ms=", "/recommendation/1?db_ms=-1", "/recommendation/1?db_ms=5001",
    "/recommendation/1?db_ms=1.5", "/recommendation/1?db_ms=%2B5", "/recommendation/1?llm_ms=20001",
    "/recommendation/1?llm_ms=", "/stream/", "/stream/x", "/stream/1?db_ms=abc",
    "/stream/1?tokens=0", "/stream/1?tokens=1001", "/stream/1?tokens=", "/cpu?n=0", "/cpu?n=5000001",
    "/cpu?n=", "/cpu?n=1_000",
]


@pytest.mark.parametrize("path", INVALID)
def test_invalid_parameters_are_400(get, path):
    status, content_type, body = get(path)
    assert status == 400
    assert content_type == "application/json"
    assert body["error"]["code"] == "invalid_parameter"
    assert set(body["error"]) == {"code", "message"}


@pytest.mark.parametrize(("path", "named"), [
    ("/recommendation/abc?db_ms=x&llm_ms=y", "user_id"),
    ("/recommendation/1?db_ms=x&llm_ms=y", "db_ms"),
    ("/recommendation/1?db_ms=0&llm_ms=y", "llm_ms"),
    ("/stream/1?llm_ms=y&tokens=0", "llm_ms"),
    ("/stream/1?tokens=0", "tokens"),
])
def test_parameters_checked_in_contract_order(get, path, named):
    status, _, body = get(path)
    assert status == 400 and body["error"]["message"].startswith(named)


@pytest.mark.parametrize("path", [
    "/recommendation/1", "/recommendation/2147483647?db_ms=5000&llm_ms=20000",
    "/recommendation/1?db_ms=0&llm_ms=0", "/recommendation/01", "/recommendation/1?db_ms=-0",
    "/stream/7?tokens=1000", "/stream/7?tokens=1", "/readyz",
])
def test_valid_requests_reach_the_database(get, path):
    # The DB is a closed port: passing validation shows up as a fast, uniform 503.
    status, _, body = get(path)
    assert (status, body["error"]["code"]) == (503, "database_unavailable")


def test_healthz(get):
    assert get("/healthz") == (200, "application/json", {"status": "ok"})


@pytest.mark.parametrize(("n", "result"), [(1, 0), (10, 16), (1000, 20584), (100000, 21031854)])
def test_cpu(get, n, result):
    assert get(f"/cpu?n={n}") == (200, "application/json", {"n": n, "result": result})


def test_cpu_default_n(get):
    assert get("/cpu")[2]["n"] == 100000


@pytest.mark.parametrize("path", ["/", "/nope", "/healthz/", "/recommendation", "/recommendation/1/x"])
def test_unknown_routes_are_json_404(get, path):
    status, content_type, body = get(path)
    assert (status, content_type, body["error"]["code"]) == (404, "application/json", "not_found")


@pytest.mark.parametrize(("path", "method"), [
    ("/recommendation/1", "post"), ("/stream/1", "put"), ("/cpu", "delete"), ("/healthz", "post"),
    ("/readyz", "patch"), ("/recommendation/abc", "post"),
])
def test_wrong_method_is_json_405(get, path, method):
    status, content_type, body = get(path, method)
    assert (status, content_type, body["error"]["code"]) == (405, "application/json", "method_not_allowed")


# -- error mapping, without a network --------------------------------------------------------------
REQUEST = httpx2.Request("POST", "http://upstream/v1/chat/completions")


def _status_error(status: int) -> openai.APIStatusError:
    return openai.InternalServerError("boom", response=httpx2.Response(status, request=REQUEST), body=None)


@pytest.mark.parametrize(("exc", "status", "code"), [
    (openai.APITimeoutError(request=REQUEST), 504, "upstream_timeout"),
    (openai.APIConnectionError(request=REQUEST), 502, "upstream_error"),
    (_status_error(500), 502, "upstream_error"),
    (_status_error(429), 502, "upstream_error"),
    ("OperationalError", 503, "database_unavailable"),
    ("InterfaceError", 503, "database_unavailable"),
    ("DoesNotExist", 404, "not_found"),
])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_failures_map_to_the_contract(django_ready, exc, status, code, kind):
    import json

    from django import db
    from django.test import RequestFactory

    from django_app.common import endpoint
    from django_app.models import User

    if isinstance(exc, str):
        exc = User.DoesNotExist() if exc == "DoesNotExist" else getattr(db, exc)("down")

    if kind == "sync":
        @endpoint
        def view(request):
            raise exc
        response = view(RequestFactory().get("/x"))
    else:
        @endpoint
        async def view(request):
            raise exc
        response = asyncio.run(view(RequestFactory().get("/x")))
    assert response.status_code == status
    assert json.loads(response.content) == {"error": {"code": code, "message": mock.ANY}}


def test_unexpected_errors_propagate_to_handler500(django_ready):
    from django.test import RequestFactory

    from django_app.common import endpoint, server_error

    @endpoint
    def view(request):
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        view(RequestFactory().get("/x"))
    response = server_error(RequestFactory().get("/x"))
    assert response.status_code == 500 and response["Content-Type"] == "application/json"


def test_prompt_and_request_shape(django_ready):
    from django_app.common import completion_args, stream_args

    facts = {"user_id": 1, "name": "Ada", "budget_cents": 150000, "spent_cents": 61234,
             "transactions": 20, "top_category": None}
    args = completion_args(facts, 250)
    assert args["model"] == "gpt-4o-mini"
    assert args["messages"] == [
        {"role": "system", "content": "You are a concise personal-finance assistant."},
        {"role": "user", "content": "Ada spent 61234 of a 150000 cent budget over 20 transactions; "
                                    "top category: none. One tip?"}]
    assert args["extra_headers"] == {"X-Mock-Latency-Ms": "250"}
    assert "stream" not in args
    streamed = stream_args(facts, 0, 7)
    assert (streamed["stream"], streamed["max_completion_tokens"]) == (True, 7)


def test_database_url_parsing():
    from django_app.config import database_from_url

    db = database_from_url("postgresql://lab%40x:s%2Fecret@127.0.0.1:5433/lab?sslmode=disable")
    assert db == {"ENGINE": "django.db.backends.postgresql", "NAME": "lab", "USER": "lab@x",
                  "PASSWORD": "s/ecret", "HOST": "127.0.0.1", "PORT": "5433",
                  "OPTIONS": {"sslmode": "disable"}}
    assert database_from_url("postgres://u@[::1]/db")["HOST"] == "::1"
    with pytest.raises(ValueError):
        database_from_url("mysql://u@h/db")


def test_settings(django_ready):
    from django.conf import settings

    assert settings.DEBUG is False
    assert settings.MIDDLEWARE == []
    default = settings.DATABASES["default"]
    # no health check: it would be a second query per request (docs/CONTRACT.md)
    assert (default["CONN_MAX_AGE"], default["CONN_HEALTH_CHECKS"]) == (None, False)
    assert "DATABASE_URL" not in os.environ or os.environ["DATABASE_URL"] != DEAD_DB  # no leak


def test_async_settings_use_a_pool(django_ready):
    import importlib

    with mock.patch.dict(os.environ, {**ENV, "DB_POOL_SIZE": "15", "DB_POOL_TIMEOUT_S": "7"}):
        from django_app import config

        config.get_settings.cache_clear()
        try:
            module = importlib.reload(importlib.import_module("django_app.settings_async"))
        finally:  # re-read under the test env: the views call get_settings() too
            config.get_settings.cache_clear()
            config.get_settings()
    default = module.DATABASES["default"]
    assert default["CONN_MAX_AGE"] == 0
    assert default["OPTIONS"]["pool"] == {"min_size": 15, "max_size": 15, "timeout": 7.0}
    assert module.ROOT_URLCONF == "django_app.urls_async"


def test_stream_events_format(django_ready):
    from django_app.common import DONE, sse, stream_error_event

    assert sse({"token": "Review "}) == b'data: {"token": "Review "}\n\n'
    assert DONE == b"data: [DONE]\n\n"
    # docs/CONTRACT.md: one fixed event per code, whatever the exception said
    assert stream_error_event(openai.APITimeoutError(request=REQUEST)) == (
        b'event: error\ndata: {"error": {"code": "upstream_timeout", '
        b'"message": "the upstream stream timed out"}}\n\n')
    assert stream_error_event(openai.APIConnectionError(request=REQUEST)) == (
        b'event: error\ndata: {"error": {"code": "upstream_error", '
        b'"message": "the upstream stream failed"}}\n\n')
