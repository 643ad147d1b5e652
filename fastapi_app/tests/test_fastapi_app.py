"""Unit tests for the FastAPI targets: validation, error shapes, routing, healthz, cpu.

No database or upstream is needed: DATABASE_URL points at a closed port (so DB work is a 503) and
the upstream paths are exercised against a closed port (502) and a silent socket (504).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from types import SimpleNamespace

import openai
import pytest
from fastapi.testclient import TestClient

from bench.procs import free_port
from fastapi_app import async_app, blocking_app, common, sync_core, threadpool_app
from tests.errors import assert_error

APPS = {"async": async_app, "threadpool": threadpool_app, "blocking": blocking_app}
USER = common.User(7, "User 7", 105433, 20, 98765, "rent")


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://lab@127.0.0.1:{free_port()}/lab")
    monkeypatch.setenv("UPSTREAM_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("TARGET_NAME", "fastapi-test")
    monkeypatch.setenv("DB_POOL_TIMEOUT_S", "2")
    common.get_settings.cache_clear()
    yield
    common.get_settings.cache_clear()


@pytest.fixture(params=list(APPS))
def app_module(request: pytest.FixtureRequest):
    return APPS[request.param]


@pytest.fixture
def client(app_module) -> Iterator[TestClient]:
    with TestClient(app_module.app, raise_server_exceptions=False) as c:
        yield c


def test_healthz(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


@pytest.mark.parametrize("path", [
    "/recommendation/", "/stream/", "/recommendation/abc", "/recommendation/+5",
    "/recommendation/1.0", "/recommendation/1e3", "/recommendation/%201", "/recommendation/1%0A",
    "/recommendation/0", "/recommendation/-1", "/recommendation/2147483648",
    "/recommendation/99999999999999999999999999999", "/recommendation/%D9%A3",
    "/recommendation/1?db_ms=", "/recommendation/1?db_ms=5001", "/recommendation/1?db_ms=-1",
    "/recommendation/1?db_ms=+1", "/recommendation/1?llm_ms=20001", "/recommendation/1?llm_ms=x",
    "/stream/1?tokens=0", "/stream/1?tokens=1001", "/stream/1?tokens=", "/cpu?n=0",
    "/cpu?n=5000001", "/cpu?n=", "/cpu?n=1.5",
])
def test_invalid_parameters_are_400(client: TestClient, path: str) -> None:
    assert_error(client.get(path), 400, "invalid_parameter")


def test_parameters_are_checked_in_contract_order(client: TestClient) -> None:
    r = client.get("/stream/x?db_ms=x&llm_ms=x&tokens=x")
    assert "user_id" in r.json()["error"]["message"]
    r = client.get("/stream/1?db_ms=x&llm_ms=x&tokens=x")
    assert "db_ms" in r.json()["error"]["message"]
    r = client.get("/stream/1?db_ms=1&llm_ms=x&tokens=x")
    assert "llm_ms" in r.json()["error"]["message"]
    r = client.get("/stream/1?db_ms=1&llm_ms=1&tokens=x")
    assert "tokens" in r.json()["error"]["message"]


def test_parse_query_defaults_and_edges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_MS", "7")
    monkeypatch.setenv("LLM_MS", "9")
    common.get_settings.cache_clear()
    assert common.parse_query("42", None, None) == common.Params(42, 7, 9, 16)
    assert common.parse_query("2147483647", "-0", "20000", "1000") == \
        common.Params(2147483647, 0, 20000, 1000)


@pytest.mark.parametrize(("method", "path"), [("POST", "/recommendation/1"),
                                              ("DELETE", "/healthz"), ("PUT", "/cpu")])
def test_wrong_method_is_405(client: TestClient, method: str, path: str) -> None:
    r = client.request(method, path)
    assert_error(r, 405, "method_not_allowed")
    assert "GET" in r.headers["allow"]


@pytest.mark.parametrize("path", ["/nope", "/recommendation", "/recommendation/1/extra",
                                  "/docs", "/openapi.json"])
def test_unknown_route_is_404(client: TestClient, path: str) -> None:
    assert_error(client.get(path), 404, "not_found")


@pytest.mark.parametrize("n", [1, 10, 100_000])
def test_cpu(client: TestClient, n: int) -> None:
    r = client.get(f"/cpu?n={n}")
    assert r.status_code == 200
    assert r.json() == {"n": n, "result": sum(int(i ** 0.5) for i in range(n))}


def test_cpu_default_n(client: TestClient) -> None:
    assert client.get("/cpu").json()["n"] == 100_000


@pytest.mark.parametrize("path", ["/readyz", "/recommendation/1?db_ms=0&llm_ms=0",
                                  "/stream/1?db_ms=0&llm_ms=0"])
def test_database_down_is_503(client: TestClient, path: str) -> None:
    assert_error(client.get(path), 503, "database_unavailable")


def _fake_db(monkeypatch: pytest.MonkeyPatch, app_module) -> None:
    module = async_app if app_module is async_app else sync_core

    if module is async_app:
        async def load_user(engine, user_id, db_ms):
            return USER
    else:
        def load_user(engine, user_id, db_ms):
            return USER
    monkeypatch.setattr(module, "load_user", load_user)


@pytest.mark.parametrize("path", ["/recommendation/7?llm_ms=0", "/stream/7?llm_ms=0"])
def test_upstream_refused_is_502(client: TestClient, app_module, monkeypatch, path) -> None:
    _fake_db(monkeypatch, app_module)
    assert_error(client.get(path), 502, "upstream_error")


@pytest.mark.parametrize("path", ["/recommendation/7?llm_ms=0", "/stream/7?llm_ms=0"])
def test_upstream_timeout_is_504(app_module, monkeypatch, path) -> None:
    _fake_db(monkeypatch, app_module)
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        monkeypatch.setenv("UPSTREAM_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setenv("UPSTREAM_TIMEOUT_S", "0.3")
        common.get_settings.cache_clear()
        with TestClient(app_module.app, raise_server_exceptions=False) as client:
            assert_error(client.get(path), 504, "upstream_timeout")


def test_prompt_and_payload() -> None:
    req = common.chat_request(common.User(3, "User 3", 100, 0, 0, None), 250)
    assert req["messages"] == [
        {"role": "system", "content": "You are a concise personal-finance assistant."},
        {"role": "user", "content": "User 3 spent 0 of a 100 cent budget over 0 transactions; "
                                    "top category: none. One tip?"}]
    assert req["model"] == "gpt-4o-mini" and req["extra_headers"] == {"X-Mock-Latency-Ms": "250"}
    assert "stream" not in req
    streamed = common.chat_request(USER, 0, 5)
    assert streamed["stream"] is True and streamed["max_completion_tokens"] == 5
    assert list(USER.payload("tip", "me")) == [
        "user_id", "name", "budget_cents", "spent_cents", "transactions", "top_category",
        "advice", "served_by"]


def test_sse_helpers() -> None:
    def chunk(content):
        return SimpleNamespace(choices=[SimpleNamespace(delta=SimpleNamespace(content=content))])
    assert common.sse_token(chunk('say "hi" ')) == 'data: {"token": "say \\"hi\\" "}\n\n'
    assert common.sse_token(chunk(None)) is None
    assert common.sse_token(SimpleNamespace(choices=[])) is None
    assert common.SSE_DONE == "data: [DONE]\n\n"
    timeout = openai.APITimeoutError(request=None)  # type: ignore[arg-type]
    # docs/CONTRACT.md: one fixed event per code, whatever the exception said
    assert common.sse_error(timeout) == ('event: error\ndata: {"error": {"code": "upstream_timeout", '
                                         '"message": "the upstream stream timed out"}}\n\n')
    assert common.sse_error(RuntimeError("boom")) == (
        'event: error\ndata: {"error": {"code": "upstream_error", '
        '"message": "the upstream stream failed"}}\n\n')
    assert common.SSE_HEADERS == {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                  "X-Accel-Buffering": "no"}


def test_db_url_conversion() -> None:
    url = "postgresql://lab:pw@127.0.0.1:5432/lab"
    assert common.db_url(url, "asyncpg") == "postgresql+asyncpg://lab:pw@127.0.0.1:5432/lab"
    assert common.db_url("postgres://u@h/d", "psycopg") == "postgresql+psycopg://u@h/d"


def test_threadpool_tokens_are_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    import anyio.to_thread
    monkeypatch.setenv("THREADPOOL_TOKENS", "7")
    common.get_settings.cache_clear()
    app = threadpool_app.app

    @app.get("/_tokens_probe")
    async def probe() -> dict:
        return {"tokens": anyio.to_thread.current_default_thread_limiter().total_tokens}

    try:
        with TestClient(app) as client:
            assert client.get("/_tokens_probe").json() == {"tokens": 7}
    finally:
        app.router.routes.pop()


@pytest.mark.parametrize("path", ["/sync/noawait", "/async/await-one", "/async/await-many",
                                  "/async/wrap-blocking", "/async/bad-blocking",
                                  "/async/cpu-bound", "/sync/cpu", "/async/cpu-inline"])
def test_seed002_endpoints(client: TestClient, path: str) -> None:
    r = client.get(path, params={"seconds": "0.01"})
    assert r.status_code == 200
    body = r.json()
    assert body["endpoint"] == path and body["seconds"] == 0.01 and body["elapsed_s"] >= 0.005
    assert client.get(path).json()["seconds"] == 0.1
    for bad in ("", "-1", "5.5", "abc", "1e1", "nan"):
        assert_error(client.get(path, params={"seconds": bad}), 400, "invalid_parameter")


def test_cpu_numpy_is_a_checked_matmul(client: TestClient) -> None:
    n = 5
    a = [[(i * n + j) % 7 for j in range(n)] for i in range(n)]
    want = sum(sum(a[i][k] * a[k][j] for k in range(n)) for i in range(n) for j in range(n))
    assert client.get("/cpu/numpy", params={"n": n}).json() == {"n": n, "result": want}
    assert client.get("/cpu/numpy").json()["n"] == 300
    for bad in ("", "0", "1001", "abc", "1.5"):
        assert_error(client.get("/cpu/numpy", params={"n": bad}), 400, "invalid_parameter")


def test_unexpected_error_is_json_500(app_module) -> None:
    app = app_module.app

    @app.get("/_boom")
    async def boom() -> None:
        raise RuntimeError("secret detail")

    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            r = client.get("/_boom")
        assert_error(r, 500, "internal_error")
        assert "secret" not in r.text and "Traceback" not in r.text
    finally:
        app.router.routes.pop()
