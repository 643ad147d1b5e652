"""docs/CONTRACT.md, "Error messages": every error class, provoked on every target, answers its
documented message, the same everywhere, whatever caused it: no URL, no exception text, no SQL
(the cause is the server log's). 503 database_unavailable is provoked in test_database_errors.py
(and the jobs' codes in test_jobs.py), through the same `assert_error`, which accepts only the
documented messages."""

from __future__ import annotations

import pytest

from tests.conftest import UPSTREAM_TIMEOUT_S
from tests.errors import assert_error

BAD = "invalid_parameter"
USER_ID = "user_id must be an integer in 1..2147483647"
REQUESTS = [  # (method, path, status, code, message)
    ("GET", "/recommendation/abc", 400, BAD, USER_ID),
    ("GET", "/recommendation/", 400, BAD, USER_ID),
    ("GET", "/stream/0", 400, BAD, USER_ID),
    ("GET", "/recommendation/1?db_ms=x", 400, BAD, "db_ms must be an integer in 0..5000"),
    ("GET", "/recommendation/1?llm_ms=20001", 400, BAD, "llm_ms must be an integer in 0..20000"),
    ("GET", "/stream/1?tokens=0", 400, BAD, "tokens must be an integer in 1..1000"),
    ("GET", "/cpu?n=1.5", 400, BAD, "n must be an integer in 1..5000000"),
    ("GET", "/recommendation/10001?db_ms=0&llm_ms=0", 404, "not_found", "user not found"),
    ("GET", "/stream/10001?db_ms=0&llm_ms=0", 404, "not_found", "user not found"),
    ("GET", "/no/such/route", 404, "not_found", "no such route"),
    ("POST", "/recommendation/1", 405, "method_not_allowed", "method not allowed"),
    ("DELETE", "/healthz", 405, "method_not_allowed", "method not allowed"),
]


@pytest.mark.parametrize(("method", "path", "status", "code", "message"), REQUESTS,
                         ids=[f"{method} {path}" for method, path, *_ in REQUESTS])
def test_request_errors_answer_the_documented_message(client, method, path, status, code, message):
    assert_error(client.request(method, path), status, code, message)


@pytest.mark.parametrize("path", ["/recommendation/3?db_ms=0&llm_ms=0", "/stream/3?db_ms=0&llm_ms=0"])
def test_an_upstream_error_says_nothing_of_the_upstream(client, upstream, path):
    # The mock's error body and the SDKs' own texts name the URL and the status: none of it is sent.
    upstream.post("/mock/faults", json={"status": 500, "count": 1}).raise_for_status()
    try:
        resp = client.get(path)
    finally:
        upstream.delete("/mock/faults")
    assert_error(resp, 502, "upstream_error", "the upstream failed")


def test_a_completion_that_is_not_json_is_502_not_500(client, upstream):
    # A 200 with half of the completion's JSON: the upstream answered wrongly, so 502, never a 500
    # (the Python SDK raises a plain JSONDecodeError there, not an openai.APIError).
    upstream.post("/mock/faults", json={"mode": "malformed", "for_s": 30}).raise_for_status()
    try:
        resp = client.get("/recommendation/3?db_ms=0&llm_ms=0")
    finally:
        upstream.delete("/mock/faults")
    assert_error(resp, 502, "upstream_error", "the upstream failed")


def test_an_upstream_timeout_answers_the_documented_message(client):
    llm_ms = int(UPSTREAM_TIMEOUT_S * 1000) + 1500
    assert_error(client.get(f"/recommendation/3?db_ms=0&llm_ms={llm_ms}"), 504, "upstream_timeout",
                 "the upstream timed out")
