"""Unit tests for the Flask app with Flask's test client.

The DB-free tests point the app at a closed port, so the 503 paths are exercised too. The
integration tests at the bottom use the session's real PostgreSQL and mock upstream (the `lab`
fixture of the root conftest.py, which reuses DATABASE_URL / UPSTREAM_URL when they are set).
"""

from __future__ import annotations

import importlib
import json
import math
import os

import pytest

from tests.errors import assert_error

CLOSED = "postgresql://lab@127.0.0.1:1/lab"  # nothing listens on port 1: connection refused


@pytest.fixture
def appmod(monkeypatch):
    # flask_app.app builds `app` at import from the environment: give it one.
    monkeypatch.setenv("DATABASE_URL", os.environ.get("DATABASE_URL", CLOSED))
    monkeypatch.setenv("UPSTREAM_URL", os.environ.get("UPSTREAM_URL", "http://127.0.0.1:1"))
    monkeypatch.setenv("TARGET_NAME", "flask-test")
    module = importlib.import_module("flask_app.app")
    yield module
    module.get_settings.cache_clear()


def make_client(appmod, **overrides):
    settings = appmod.Settings(**{"database_url": CLOSED, "upstream_url": "http://127.0.0.1:1",
                                  "target_name": "flask-test", "db_pool_timeout_s": 2,
                                  **overrides})
    return appmod.create_app(settings).test_client()


@pytest.fixture
def client(appmod):
    return make_client(appmod)


BAD_USER_IDS = ["0", "-1", "2147483648", "abc", "1.5", "1e3", "+1", "%201", "1%20", "%EF%BC%91",
                "1%0A", "9" * 5000]
BAD_QUERIES = [
    "db_ms=", "db_ms=-1", "db_ms=5001", "db_ms=1.0", "db_ms=%2B5", "db_ms=%205", "db_ms=x",
    "llm_ms=", "llm_ms=-1", "llm_ms=20001", "llm_ms=1e2", "llm_ms=0x10",
]


@pytest.mark.parametrize("prefix", ["/recommendation", "/stream"])
@pytest.mark.parametrize("user_id", BAD_USER_IDS)
def test_bad_user_id(client, prefix, user_id):
    assert_error(client.get(f"{prefix}/{user_id}"), 400, "invalid_parameter")


@pytest.mark.parametrize("path", ["/recommendation/", "/stream/", "/recommendation", "/stream"])
def test_empty_user_id(client, path):
    assert_error(client.get(path), 400, "invalid_parameter")


@pytest.mark.parametrize("prefix", ["/recommendation", "/stream"])
@pytest.mark.parametrize("query", BAD_QUERIES)
def test_bad_query(client, prefix, query):
    assert_error(client.get(f"{prefix}/1?{query}"), 400, "invalid_parameter")


@pytest.mark.parametrize("query", ["tokens=", "tokens=0", "tokens=1001", "tokens=2.0"])
def test_bad_tokens(client, query):
    assert_error(client.get(f"/stream/1?{query}"), 400, "invalid_parameter")


@pytest.mark.parametrize("query", ["n=", "n=0", "n=5000001", "n=-5", "n=1%2C000"])
def test_bad_cpu_n(client, query):
    assert_error(client.get(f"/cpu?{query}"), 400, "invalid_parameter")


def test_parameter_order(client):
    # user_id is checked before db_ms, db_ms before llm_ms.
    def message(path):
        return client.get(path).get_json()["error"]["message"]

    assert "user_id" in message("/recommendation/0?db_ms=x&llm_ms=x")
    assert "db_ms" in message("/recommendation/1?db_ms=x&llm_ms=x")
    assert "llm_ms" in message("/recommendation/1?llm_ms=x")


@pytest.mark.parametrize("path", ["/nope", "/recommendation/1/extra", "/recommendation//1", "/"])
def test_unknown_route(client, path):
    assert_error(client.get(path), 404, "not_found")


@pytest.mark.parametrize("method,path", [("post", "/recommendation/1"), ("delete", "/healthz"),
                                         ("put", "/cpu"), ("post", "/stream/1")])
def test_wrong_method(client, method, path):
    response = getattr(client, method)(path)
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_unexpected_error_is_json(appmod):
    client = make_client(appmod)
    client.application.view_functions["healthz"] = lambda: 1 / 0
    assert_error(client.get("/healthz"), 500, "internal_error")


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


@pytest.mark.parametrize("n", [1, 2, 100, 100000])
def test_cpu(client, n):
    assert client.get(f"/cpu?n={n}").get_json() == {
        "n": n, "result": sum(math.isqrt(i) for i in range(n))}


def test_cpu_default(client):
    assert client.get("/cpu").get_json()["n"] == 100000


def test_json_wire_form(client):
    """docs/CONTRACT.md: compact, key order kept, UTF-8 as is, no trailing newline."""
    assert client.get("/healthz").data == b'{"status":"ok"}'
    response = client.get("/recommendation/abc")
    assert response.data == (b'{"error":{"code":"invalid_parameter",'
                             b'"message":"user_id must be an integer in 1..2147483647"}}')
    assert response.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("path", ["/readyz", "/recommendation/1?db_ms=0", "/stream/1?db_ms=0"])
def test_database_down(client, path):
    assert_error(client.get(path), 503, "database_unavailable")


# --- integration: real PostgreSQL and mock upstream (the session's `lab`) ----------------------

@pytest.fixture
def live(appmod, lab):
    client = make_client(appmod, database_url=lab.database_url, upstream_url=lab.upstream_url)
    yield client
    client.application.extensions["lab"].close()


def test_live_recommendation_and_stream(live):
    response = live.get("/recommendation/42?db_ms=0&llm_ms=0")
    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == ["user_id", "name", "budget_cents", "spent_cents", "transactions",
                          "top_category", "advice", "served_by"]
    assert body["user_id"] == 42 and body["name"] == "User 42" and body["transactions"] == 20
    assert body["served_by"] == "flask-test"

    response = live.get("/stream/42?db_ms=0&llm_ms=0&tokens=16")
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    events = [e.removeprefix("data: ") for e in response.get_data(as_text=True).split("\n\n") if e]
    assert events[-1] == "[DONE]"
    assert "".join(json.loads(e)["token"] for e in events[:-1]) == body["advice"]


def test_live_not_found_and_ready(live):
    assert_error(live.get("/recommendation/10001?db_ms=0&llm_ms=0"), 404, "not_found")
    assert live.get("/readyz").get_json() == {"status": "ready"}


def test_live_upstream_errors(appmod, lab):
    client = make_client(appmod, database_url=lab.database_url,
                         upstream_url="http://127.0.0.1:1")  # refused → 502
    assert_error(client.get("/recommendation/1?db_ms=0&llm_ms=0"), 502, "upstream_error")
    assert_error(client.get("/stream/1?db_ms=0&llm_ms=0"), 502, "upstream_error")
    client.application.extensions["lab"].close()
    client = make_client(appmod, database_url=lab.database_url,
                         upstream_url=lab.upstream_url, upstream_timeout_s=0.2)
    assert_error(client.get("/recommendation/1?db_ms=0&llm_ms=2000"), 504, "upstream_timeout")
    # the mock answers 200 at once and is then silent: as on every target (docs/CONTRACT.md), the
    # stream has started, so the timeout is reported in-band with the contract's fixed message
    response = client.get("/stream/1?db_ms=0&llm_ms=2000&tokens=1")
    assert response.status_code == 200 and response.headers["Content-Type"] == "text/event-stream"
    assert response.get_data() == (b'event: error\ndata: {"error": {"code": "upstream_timeout", '
                                   b'"message": "the upstream stream timed out"}}\n\n')
    client.application.extensions["lab"].close()
