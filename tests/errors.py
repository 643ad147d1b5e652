"""The contract's error shape, asserted on an httpx / Starlette TestClient response."""

from __future__ import annotations


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"] and list(body["error"]) == ["code", "message"]
    assert body["error"]["code"] == code and body["error"]["message"]
