"""The contract's error shape (docs/CONTRACT.md, "Responses") and its fixed messages ("Error
messages"), asserted on any test response: httpx (the contract suite, Starlette's TestClient) or
Werkzeug (Flask's test client)."""

from __future__ import annotations

import json

RANGES = {"user_id": (1, 2147483647), "db_ms": (0, 5000), "llm_ms": (0, 20000), "tokens": (1, 1000),
          "n": (1, 5000000)}
# Every message a body may carry, per code: nothing else (no URL, no exception text, no SQL).
MESSAGES = {
    "invalid_parameter": {
        *(f"{name} must be an integer in {lo}..{hi}" for name, (lo, hi) in RANGES.items()),
        "invalid request",
        # seed 003's pub/sub streams and seed 002's probes (fastapi_app only)
        "channel must be 1..128 of [A-Za-z0-9._:-]", "timeout_s must be a number in (0, 60]",
        "poll_timeout_s must be a number in [0, 60]", "seconds must be a number in 0..5",
        "n must be an integer in 1..1000"},
    "not_found": {"user not found", "no such route", "no such job"},
    "method_not_allowed": {"method not allowed"},
    "internal_error": {"internal server error"},
    "upstream_error": {"the upstream failed"},
    "upstream_timeout": {"the upstream timed out"},
    "database_unavailable": {"the database is unavailable"},
    "queue_unavailable": {"the job queue is unavailable"},
    "queue_full": {"the job queue is full"},
    "worker_lost": {"the worker process running the job died"},
}


def assert_error(response, status: int, code: str, message: str | None = None) -> None:
    """`message`: the one expected; otherwise any of the code's documented messages."""
    text = response.text  # httpx and Werkzeug responses both decode their body as .text
    assert response.status_code == status, text
    media_type = response.headers["content-type"].split(";")[0].strip()
    assert media_type == "application/json", response.headers
    body = json.loads(text)
    assert list(body) == ["error"] and list(body["error"]) == ["code", "message"], body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"] in ({message} if message else MESSAGES[code]), body
    assert "Traceback" not in text
