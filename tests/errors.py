"""The contract's error shape (docs/CONTRACT.md, "Responses"), asserted on any test response:
httpx (the contract suite, Starlette's TestClient) or Werkzeug (Flask's test client)."""

from __future__ import annotations

import json


def assert_error(response, status: int, code: str) -> None:
    text = response.text  # httpx and Werkzeug responses both decode their body as .text
    assert response.status_code == status, text
    media_type = response.headers["content-type"].split(";")[0].strip()
    assert media_type == "application/json", response.headers
    body = json.loads(text)
    assert list(body) == ["error"] and list(body["error"]) == ["code", "message"], body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    assert "Traceback" not in text
