"""Issue 10, "same work on every target": the same DB round trips, the same bytes on the wire and
the same mid-stream upstream failure, on every target (docs/CONTRACT.md).

- DB round trips are counted by PostgreSQL itself (pg_stat_statements, loaded by bench/infra.py):
  every statement any backend ran between a reset and the read-back, transaction control and
  health-check pings included.
- Bodies are compared byte for byte with an independent canonical rendering: the contract's key
  order, compact separators, UTF-8 (not \\u-escaped), nothing HTML-escaped, no trailing newline.
- Mid-stream failures are made by the mock upstream (`POST /mock/faults` with "after_tokens").
"""

from __future__ import annotations

import json
import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import expected_recommendation

# -- DB round trips ---------------------------------------------------------------------------------


def _statements(db) -> list[tuple[str, int]]:
    """(query, calls) of every statement run in this database since the last reset, but ours."""
    rows = db.execute(
        "SELECT query, calls FROM pg_stat_statements "
        "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND query NOT LIKE '%pg_stat_statements%' ORDER BY calls DESC").fetchall()
    return [(query, calls) for query, calls in rows if calls]


@pytest.fixture
def stat_statements(db):
    if db.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone() is None:
        pytest.skip("pg_stat_statements is not installed in this database (DATABASE_URL points at a "
                    "server bench/infra.py did not start)")
    return db


def _warm_up(target, client) -> None:
    """Open (and set up) every DB connection the target will use: per-connection setup is not
    per-request work. Enough concurrent requests holding the DB at once to need the whole pool."""
    n = max(2 * target.db_pool, 4)
    with ThreadPoolExecutor(n) as pool:
        statuses = list(pool.map(
            lambda i: client.get(f"/recommendation/{i + 1}?db_ms=150&llm_ms=0").status_code, range(n)))
    assert statuses == [200] * n


# (path, runs pg_sleep): /recommendation and /stream, found and not found, with and without sleep.
REQUESTS = [
    ("/recommendation/11?db_ms=0&llm_ms=0", False),
    ("/recommendation/12?db_ms=5&llm_ms=0", True),
    ("/recommendation/13?db_ms=0&llm_ms=0", False),
    ("/recommendation/10001?db_ms=5&llm_ms=0", True),  # 404: the query finds no user
    ("/recommendation/10002?db_ms=0&llm_ms=0", False),
    ("/stream/14?db_ms=5&llm_ms=0&tokens=2", True),
    ("/stream/15?db_ms=0&llm_ms=0&tokens=2", False),
]


def test_one_query_per_request_besides_the_sleep(client, target, stat_statements):
    db = stat_statements
    _warm_up(target, client)
    db.execute("SELECT pg_stat_statements_reset()")
    for path, _ in REQUESTS:
        resp = client.get(path)
        assert resp.status_code in (200, 404), (path, resp.status_code, resp.text)
        resp.read()  # a stream is over (and its DB work long done) once the body is in
    statements = _statements(db)
    sleeps = Counter()
    others = Counter()
    for query, calls in statements:
        (sleeps if "pg_sleep" in query else others)[query] += calls
    shown = "\n".join(f"{calls:4d} x {' '.join(query.split())[:150]}" for query, calls in statements)
    assert sum(sleeps.values()) == sum(1 for _, sleep in REQUESTS if sleep), shown
    assert len(others) == 1 and sum(others.values()) == len(REQUESTS), (
        f"{len(REQUESTS)} requests should run one query each besides pg_sleep, and nothing else "
        f"(no BEGIN/ROLLBACK, no SELECT 1 health checks); PostgreSQL ran:\n{shown}")
    (query,) = others
    assert "recent" in query.lower() and "users" in query.lower(), shown  # the contract's CTE


# -- bytes on the wire ------------------------------------------------------------------------------

ODD_USER_ID = 1_999_999_999  # no seeded user; added for this module, then removed
ODD_NAME = 'Zoë "Q" <b>&amp;</b> \\ O\'Brien\t✓ 𝄞'
ODD_TRANSACTIONS = [(1250, "café & <bar>"), (990, "café & <bar>"), (2240, "ünïcode/\"quoted\"")]


@pytest.fixture(scope="module")
def odd_user(db):
    """A user whose name and categories need JSON escaping: quotes, backslash, tab, HTML, non-ASCII."""
    db.execute("INSERT INTO users (id, name, monthly_budget_cents) VALUES (%s, %s, %s)",
               (ODD_USER_ID, ODD_NAME, 123456))
    for k, (amount, category) in enumerate(ODD_TRANSACTIONS):
        db.execute("INSERT INTO transactions (user_id, amount_cents, category, created_at) "
                   "VALUES (%s, %s, %s, timestamptz '2026-02-01 00:00:00+00' + %s * interval '1 day')",
                   (ODD_USER_ID, amount, category, k))
    try:
        yield ODD_USER_ID
    finally:
        db.execute("DELETE FROM transactions WHERE user_id = %s", (ODD_USER_ID,))
        db.execute("DELETE FROM users WHERE id = %s", (ODD_USER_ID,))


def canonical(body: dict) -> bytes:
    """The one wire form of every JSON body (docs/CONTRACT.md, "Responses")."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def assert_json_bytes(resp: httpx.Response, status: int, expected: bytes) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json", resp.headers
    assert resp.content == expected, f"\n got  {resp.content!r}\n want {expected!r}"


@pytest.mark.parametrize("user", [1, 42, 9999, "odd"])
def test_recommendation_bytes(client, target, db, odd_user, user):
    user_id = odd_user if user == "odd" else user
    expected = expected_recommendation(db, user_id, target.name)  # built in the contract's key order
    assert list(expected) == ["user_id", "name", "budget_cents", "spent_cents", "transactions",
                              "top_category", "advice", "served_by"]
    resp = client.get(f"/recommendation/{user_id}?db_ms=0&llm_ms=0")
    assert_json_bytes(resp, 200, canonical(expected))


@pytest.mark.parametrize(("path", "body"), [
    ("/healthz", {"status": "ok"}),
    ("/readyz", {"status": "ready"}),
    ("/cpu?n=10", {"n": 10, "result": sum(math.isqrt(i) for i in range(10))}),
])
def test_other_200_bytes(client, path, body):
    assert_json_bytes(client.get(path), 200, canonical(body))


@pytest.mark.parametrize(("method", "path", "status", "code"), [
    ("GET", "/recommendation/abc", 400, "invalid_parameter"),
    ("GET", "/recommendation/10001?db_ms=0&llm_ms=0", 404, "not_found"),
    ("GET", "/no/such/route", 404, "not_found"),
    ("POST", "/recommendation/1", 405, "method_not_allowed"),
])
def test_error_bytes(client, method, path, status, code):
    """Messages are free text per target; the shape, key order and compact form are not."""
    resp = client.request(method, path)
    message = resp.json()["error"]["message"]
    assert isinstance(message, str) and message
    assert_json_bytes(resp, status, canonical({"error": {"code": code, "message": message}}))


def test_upstream_error_bytes(client, upstream):
    upstream.post("/mock/faults", json={"status": 500, "count": 1}).raise_for_status()
    try:
        resp = client.get("/recommendation/3?db_ms=0&llm_ms=0")
    finally:
        upstream.delete("/mock/faults")
    message = resp.json()["error"]["message"]
    assert_json_bytes(resp, 502, canonical({"error": {"code": "upstream_error", "message": message}}))


# -- /stream: headers, tokens and the mid-stream failure -------------------------------------------

SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache",
               "x-accel-buffering": "no"}
# docs/CONTRACT.md pins these texts: the same on every target, whatever the upstream said.
MID_STREAM_MESSAGES = {"upstream_error": "the upstream stream failed",
                       "upstream_timeout": "the upstream stream timed out"}


def token_events(db, user_id: int, tokens: int) -> list[bytes]:
    """The expected `data: {"token": ...}` events, from the independently computed advice."""
    words = expected_recommendation(db, user_id, "", tokens=tokens)["advice"].split(" ")
    texts = [w + " " for w in words[:-1]] + words[-1:]
    return [f"data: {json.dumps({'token': t})}\n\n".encode() for t in texts]


def mid_stream_error(code: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": MID_STREAM_MESSAGES[code]}})
    return f"event: error\ndata: {body}\n\n".encode()


def get_stream(client, path: str) -> httpx.Response:
    resp = client.get(path)
    assert resp.status_code == 200, resp.text
    for name, value in SSE_HEADERS.items():
        assert resp.headers.get(name) == value, (name, dict(resp.headers))
    return resp


def test_stream_bytes(client, db):
    resp = get_stream(client, "/stream/42?db_ms=0&llm_ms=0&tokens=5")
    assert resp.content == b"".join(token_events(db, 42, 5)) + b"data: [DONE]\n\n"


@pytest.mark.parametrize(("mode", "after", "code"), [
    ("error", 1, "upstream_error"),   # an in-band OpenAI error event after the first token
    ("error", 3, "upstream_error"),
    ("error", 0, "upstream_error"),   # the upstream said 200, then failed before any token
    ("drop", 1, "upstream_error"),    # the connection is cut mid-body
    ("stall", 1, "upstream_timeout"),  # silence longer than UPSTREAM_TIMEOUT_S
    ("stall", 0, "upstream_timeout"),
])
def test_mid_stream_failure_bytes(client, upstream, db, mode, after, code):
    upstream.post("/mock/faults", json={"count": 1, "after_tokens": after, "mode": mode}).raise_for_status()
    try:
        resp = get_stream(client, "/stream/42?db_ms=0&llm_ms=0&tokens=5")
        assert upstream.get("/mock/stats").json()["faults_pending"] == 0  # this request took it
    finally:
        upstream.delete("/mock/faults")
    want = b"".join(token_events(db, 42, 5)[:after]) + mid_stream_error(code)
    assert resp.content == want, f"\n got  {resp.content!r}\n want {want!r}"
    # the target is fine afterwards
    assert get_stream(client, "/stream/42?db_ms=0&llm_ms=0&tokens=2").content.endswith(b"data: [DONE]\n\n")

