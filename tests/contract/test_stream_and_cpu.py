"""/stream (SSE forwarding of the upstream's tokens) and /cpu on every target."""

from __future__ import annotations

import json
import math

import pytest

from tests.conftest import UPSTREAM_TIMEOUT_S, expected_recommendation
from tests.errors import assert_error


def sse_events(text: str) -> list[str]:
    return [block.removeprefix("data: ") for block in text.split("\n\n") if block.strip()]


@pytest.mark.parametrize("tokens", [1, 5, 16])
def test_stream_forwards_every_token(client, target, db, tokens):
    resp = client.get(f"/stream/42?db_ms=0&llm_ms=100&tokens={tokens}")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp.text)
    assert events[-1] == "[DONE]"
    received = [json.loads(e)["token"] for e in events[:-1]]
    assert len(received) == tokens
    expected = expected_recommendation(db, 42, target.name, tokens=tokens)["advice"]
    assert "".join(received) == expected


def test_a_stream_may_outlast_the_upstream_timeout_while_it_moves(client):
    # UPSTREAM_TIMEOUT_S bounds each gap of a stream, not the stream: tokens far less than the
    # timeout apart, for longer than the timeout in all (docs/CONTRACT.md, step 3 and /stream).
    llm_ms = int(UPSTREAM_TIMEOUT_S * 1000) + 1000
    resp = client.get(f"/stream/42?db_ms=0&llm_ms={llm_ms}&tokens={llm_ms // 250}")
    assert resp.status_code == 200, resp.text
    assert sse_events(resp.text)[-1] == "[DONE]", resp.text[-200:]


@pytest.mark.parametrize("path", ["/stream/0", "/stream/abc", "/stream/1?tokens=0",
                                  "/stream/1?tokens=1001", "/stream/1?llm_ms=-1"])
def test_stream_bad_input_is_400(client, path):
    assert_error(client.get(path), 400, "invalid_parameter")


def test_stream_unknown_user_is_404(client):
    assert_error(client.get("/stream/10001?db_ms=0&llm_ms=0"), 404, "not_found")


@pytest.mark.parametrize("n", [1, 2, 10, 1000, 123457])
def test_cpu_result(client, n):
    resp = client.get(f"/cpu?n={n}")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"n": n, "result": sum(math.isqrt(i) for i in range(n))}


@pytest.mark.parametrize("path", ["/cpu?n=0", "/cpu?n=5000001", "/cpu?n=abc", "/cpu?n="])
def test_cpu_bad_input_is_400(client, path):
    assert_error(client.get(path), 400, "invalid_parameter")
