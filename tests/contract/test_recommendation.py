"""docs/CONTRACT.md on every target: same inputs, same JSON (except served_by), uniform errors."""

from __future__ import annotations

import pytest

from tests.conftest import UPSTREAM_TIMEOUT_S, expected_recommendation
from tests.errors import assert_error

KEYS = ["user_id", "name", "budget_cents", "spent_cents", "transactions", "top_category",
        "advice", "served_by"]


@pytest.mark.parametrize("user_id", [1, 42, 777, 9999, 10000])
def test_happy_path_matches_sql(client, target, db, user_id):
    resp = client.get(f"/recommendation/{user_id}", params={"db_ms": 0, "llm_ms": 0})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert list(body) == KEYS
    assert body == expected_recommendation(db, user_id, target.name)


def test_defaults_come_from_environment(client, target, db):
    """No query parameters: DB_MS=50 and LLM_MS=500 from the environment apply."""
    resp = client.get("/recommendation/5")
    assert resp.status_code == 200, resp.text
    assert resp.elapsed.total_seconds() >= 0.5
    assert resp.json() == expected_recommendation(db, 5, target.name)


BAD_INPUTS = [
    "/recommendation/abc", "/recommendation/1.5", "/recommendation/0", "/recommendation/-3",
    "/recommendation/2147483648", "/recommendation/99999999999999999999", "/recommendation/+5",
    "/recommendation/", "/recommendation/%20", "/recommendation/1?db_ms=x",
    "/recommendation/1?db_ms=", "/recommendation/1?db_ms=-1", "/recommendation/1?db_ms=5001",
    "/recommendation/1?db_ms=1.0", "/recommendation/1?llm_ms=abc", "/recommendation/1?llm_ms=-5",
    "/recommendation/1?llm_ms=20001", "/recommendation/1?llm_ms=",
]


@pytest.mark.parametrize("path", BAD_INPUTS)
def test_bad_input_is_400(client, path):
    assert_error(client.get(path), 400, "invalid_parameter")


def test_limits_are_inclusive(client):
    assert client.get("/recommendation/1?db_ms=0&llm_ms=0").status_code == 200
    # 2147483647 is a valid id that no user has.
    assert_error(client.get("/recommendation/2147483647?db_ms=0&llm_ms=0"), 404, "not_found")


def test_unknown_user_is_404(client):
    assert_error(client.get("/recommendation/10001?db_ms=0&llm_ms=0"), 404, "not_found")


def test_unknown_route_is_404(client):
    assert_error(client.get("/no/such/route"), 404, "not_found")


def test_wrong_method_is_405(client):
    assert_error(client.post("/recommendation/1"), 405, "method_not_allowed")
    assert_error(client.delete("/healthz"), 405, "method_not_allowed")


def test_upstream_500_is_502(client, upstream):
    upstream.post("/mock/faults", json={"status": 500, "count": 1}).raise_for_status()
    try:
        assert_error(client.get("/recommendation/3?db_ms=0&llm_ms=0"), 502, "upstream_error")
    finally:
        upstream.delete("/mock/faults")
    assert client.get("/recommendation/3?db_ms=0&llm_ms=0").status_code == 200


def test_slow_upstream_is_504(client):
    llm_ms = int(UPSTREAM_TIMEOUT_S * 1000) + 1500
    resp = client.get(f"/recommendation/3?db_ms=0&llm_ms={llm_ms}")
    assert_error(resp, 504, "upstream_timeout")
    assert resp.elapsed.total_seconds() < llm_ms / 1000  # gave up at its timeout, not later


def test_healthz(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


def test_readyz(client):
    resp = client.get("/readyz")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"status": "ready"}
