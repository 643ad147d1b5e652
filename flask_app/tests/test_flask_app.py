"""Unit tests for the apps of flask_app/ with each framework's test client: flask-sync and
flask-gthread (app.py), flask-async-views (async_views.py) and quart (quart_app.py).

The contract's tests run against all three app modules (`appmod` is parametrised); the tests at
the end of the file are about one model each. The DB-free tests point the app at a closed port, so
the 503 paths are exercised too. The integration tests use the session's real PostgreSQL and mock
upstream (the `lab` fixture of the root conftest.py, which reuses DATABASE_URL / UPSTREAM_URL when
they are set).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import math
import os
import threading
from dataclasses import dataclass

import pytest
from sqlalchemy.pool import NullPool
from werkzeug.datastructures import Headers

from tests.errors import assert_error

CLOSED = "postgresql://lab@127.0.0.1:1/lab"  # nothing listens on port 1: connection refused
APP_MODULES = {"sync": "flask_app.app", "async-views": "flask_app.async_views",
               "quart": "flask_app.quart_app"}


def import_app_module(name, monkeypatch):
    # Each module builds `app` at import from the environment: give it one.
    monkeypatch.setenv("DATABASE_URL", os.environ.get("DATABASE_URL", CLOSED))
    monkeypatch.setenv("UPSTREAM_URL", os.environ.get("UPSTREAM_URL", "http://127.0.0.1:1"))
    monkeypatch.setenv("TARGET_NAME", "flask-test")
    return importlib.import_module(APP_MODULES[name])


@pytest.fixture(params=list(APP_MODULES))
def appmod(request, monkeypatch):
    module = import_app_module(request.param, monkeypatch)
    yield module
    module.get_settings.cache_clear()


@dataclass
class Reply:
    """A Quart test response, read: the attributes of Werkzeug's test response these tests use."""

    status_code: int
    headers: Headers
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode()

    @property
    def mimetype(self) -> str:
        return self.headers["Content-Type"].split(";")[0]

    def get_data(self, as_text: bool = False):
        return self.text if as_text else self.data

    def get_json(self):
        return json.loads(self.data)


class QuartSyncClient:
    """Quart's async test client behind Flask's sync one: the app is served (app.test_app(), so
    before_serving and after_serving run) on one event loop for the client's life."""

    def __init__(self, app):
        self.application = app
        self._runner = asyncio.Runner()
        self._served = self._runner.run(self._serve())
        self._client = self.application.test_client()

    async def _serve(self):
        served = self.application.test_app()
        await served.__aenter__()
        return served

    def open(self, path: str, method: str = "GET") -> Reply:
        async def request():
            response = await self._client.open(path, method=method)
            return Reply(response.status_code, response.headers, await response.get_data())

        return self._runner.run(request())

    def get(self, path: str) -> Reply:
        return self.open(path)

    def __getattr__(self, method: str):  # client.post(path), client.delete(path), ...
        return lambda path: self.open(path, method=method.upper())

    def close(self) -> None:
        try:
            self._runner.run(self._served.__aexit__(None, None, None))  # after_serving
        finally:
            self._runner.close()


def make_client(appmod, **overrides):
    settings = appmod.Settings(**{"database_url": CLOSED, "upstream_url": "http://127.0.0.1:1",
                                  "target_name": "flask-test", "db_pool_timeout_s": 2,
                                  **overrides})
    app = appmod.create_app(settings)
    return QuartSyncClient(app) if appmod.__name__.endswith("quart_app") else app.test_client()


def close_client(client) -> None:
    if isinstance(client, QuartSyncClient):
        client.close()
    else:
        client.application.extensions["lab"].close()


@pytest.fixture
def client(appmod):
    made = make_client(appmod)
    yield made
    close_client(made)


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


def test_unexpected_error_is_json(client):
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
    close_client(client)


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
    close_client(client)
    client = make_client(appmod, database_url=lab.database_url,
                         upstream_url=lab.upstream_url, upstream_timeout_s=0.2)
    assert_error(client.get("/recommendation/1?db_ms=0&llm_ms=2000"), 504, "upstream_timeout")
    # the mock answers 200 at once and is then silent: as on every target (docs/CONTRACT.md), the
    # stream has started, so the timeout is reported in-band with the contract's fixed message
    response = client.get("/stream/1?db_ms=0&llm_ms=2000&tokens=1")
    assert response.status_code == 200 and response.headers["Content-Type"] == "text/event-stream"
    assert response.get_data() == (b'event: error\ndata: {"error": {"code": "upstream_timeout", '
                                   b'"message": "the upstream stream timed out"}}\n\n')
    close_client(client)


# --- one model each ------------------------------------------------------------------------------

@pytest.fixture
def async_views(monkeypatch):
    module = import_app_module("async-views", monkeypatch)
    yield module
    module.get_settings.cache_clear()


@pytest.fixture
def quart_app(monkeypatch):
    module = import_app_module("quart", monkeypatch)
    yield module
    module.get_settings.cache_clear()


def test_flask_runs_each_async_view_call_on_a_new_event_loop(async_views):
    """async_views.py's premise: Flask runs an async view on a loop of its own, in another thread,
    closed when the view returns, so nothing bound to a loop can serve a second request."""
    client = make_client(async_views)
    seen = []

    @client.application.get("/loop")
    async def loop():
        seen.append((asyncio.get_running_loop(), threading.get_ident()))
        return {}

    for _ in range(2):
        assert client.get("/loop").status_code == 200
    (first, first_thread), (second, second_thread) = seen
    assert first is not second and first.is_closed() and second.is_closed()
    assert threading.get_ident() not in (first_thread, second_thread)
    close_client(client)


def test_async_views_keep_no_connection_and_no_client_between_requests(async_views):
    res = make_client(async_views).application.extensions["lab"]
    assert isinstance(res.engine.pool, NullPool)  # a connection per request, closed by it
    one, other = res.client(), res.client()
    assert one is not other  # a client per request, for that request's loop
    for llm in (one, other):
        asyncio.run(llm.close())
    res.close()


def test_async_views_stream_closes_its_client_when_the_client_goes_away(async_views, lab, monkeypatch):
    client = make_client(async_views, database_url=lab.database_url, upstream_url=lab.upstream_url)
    res = client.application.extensions["lab"]
    made = []
    build = res.client
    monkeypatch.setattr(res, "client", lambda: made.append(build()) or made[-1])
    response = client.get("/stream/42?db_ms=0&llm_ms=2000&tokens=20", buffered=False)
    assert response.status_code == 200
    assert next(iter(response.response)).startswith(b'data: {"token": "[')  # the first token
    (llm,) = made
    assert not llm.is_closed()
    response.close()  # what the server does when the client went away mid-stream
    assert llm.is_closed()
    close_client(client)


def test_quart_opens_its_pool_and_client_when_serving_and_closes_them_after(quart_app):
    app = quart_app.create_app(quart_app.Settings(
        database_url=CLOSED, upstream_url="http://127.0.0.1:1", target_name="flask-test",
        db_pool_size=15))
    assert "lab" not in app.extensions  # nothing is opened at import or create_app
    client = QuartSyncClient(app)
    pools = app.extensions["lab"]
    assert pools.engine.pool.size() == 15 and not pools.llm.is_closed()
    client.close()
    assert "lab" not in app.extensions and pools.llm.is_closed()


def test_quart_serves_consecutive_requests_from_one_pooled_connection(quart_app, lab):
    client = make_client(quart_app, database_url=lab.database_url, upstream_url=lab.upstream_url,
                         db_pool_size=15)
    for user_id in (1, 2, 3):
        assert client.get(f"/recommendation/{user_id}?db_ms=0&llm_ms=0").status_code == 200
    pool = client.application.extensions["lab"].engine.pool
    assert (pool.checkedin(), pool.checkedout()) == (1, 0)  # opened once, back before the upstream
    close_client(client)
