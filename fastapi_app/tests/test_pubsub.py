"""Seed 003's pub/sub routes (fastapi_app/pubsub.py): validation, 503s, and delivery over real Redis.

The TestClient runs the app on its own thread's event loop and returns a streamed body once the
stream has ended, so a publisher thread waits until the route has subscribed (PUBSUB NUMSUB) and
then publishes. Timing (who blocks whom) is tests/contract/test_pubsub.py's job.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from bench import infra
from bench.procs import free_port
from fastapi_app import async_app, blocking_app, common, pubsub, threadpool_app
from tests.errors import assert_error

APPS = {"async": async_app, "threadpool": threadpool_app, "blocking": blocking_app}
FORMS = ["blocking", "polling", "async"]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        with infra.redis_server(Path(tmp_path_factory.mktemp("redis"))) as (url, _):
            yield url
    except infra.RedisUnavailable as why:
        pytest.skip(str(why))


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The pub/sub routes touch neither the DB nor the upstream: these are never dialled.
    monkeypatch.setenv("DATABASE_URL", f"postgresql://lab@127.0.0.1:{free_port()}/lab")
    monkeypatch.setenv("UPSTREAM_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("TARGET_NAME", "fastapi-test")
    monkeypatch.delenv("REDIS_URL", raising=False)
    common.get_settings.cache_clear()
    yield
    common.get_settings.cache_clear()


def make_client(monkeypatch: pytest.MonkeyPatch, redis_url: str | None, app_module=async_app):
    if redis_url:
        monkeypatch.setenv("REDIS_URL", redis_url)
    return TestClient(app_module.app, raise_server_exceptions=False)


def events(body: str) -> list[str]:
    return [chunk.removeprefix("data: ") for chunk in body.split("\n\n") if chunk]


def publish_when_subscribed(url: str, channel: str, *messages: str) -> threading.Thread:
    def run() -> None:
        with redis.Redis.from_url(url, socket_timeout=5) as r:
            deadline = time.monotonic() + 10
            while dict(r.pubsub_numsub(channel)).get(channel.encode(), 0) < 1:
                assert time.monotonic() < deadline, "the route never subscribed"
                time.sleep(0.01)
            for message in messages:
                r.publish(channel, message)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("query", [
    "bad%20channel", "caf%C3%A9", "x" * 129, "ok?timeout_s=", "ok?timeout_s=0", "ok?timeout_s=0.0",
    "ok?timeout_s=60.5", "ok?timeout_s=61", "ok?timeout_s=-1", "ok?timeout_s=1e1", "ok?timeout_s=abc",
    "ok?timeout_s=%201", "",
])
def test_invalid_parameters_are_400(monkeypatch, redis_url: str, form: str, query: str) -> None:
    with make_client(monkeypatch, redis_url) as client:
        assert_error(client.get(f"/pubsub/{form}/{query}"), 400, "invalid_parameter")


@pytest.mark.parametrize("form", FORMS)
def test_wrong_method_is_405(monkeypatch, redis_url: str, form: str) -> None:
    with make_client(monkeypatch, redis_url) as client:
        assert_error(client.post(f"/pubsub/{form}/ch"), 405, "method_not_allowed")


@pytest.mark.parametrize("form", FORMS)
def test_without_redis_url_is_503(monkeypatch, form: str) -> None:
    with make_client(monkeypatch, None) as client:
        assert client.get("/healthz").status_code == 200  # the app itself runs without Redis
        assert_error(client.get(f"/pubsub/{form}/ch"), 503, "database_unavailable")


@pytest.mark.parametrize("form", FORMS)
def test_redis_down_is_503(monkeypatch, form: str) -> None:
    with make_client(monkeypatch, f"redis://127.0.0.1:{free_port()}/0") as client:
        assert_error(client.get(f"/pubsub/{form}/ch"), 503, "database_unavailable")


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("app_name", list(APPS))
def test_published_messages_reach_the_stream(monkeypatch, redis_url: str, app_name: str, form: str) -> None:
    channel = f"unit-{app_name}-{form}"
    with make_client(monkeypatch, redis_url, APPS[app_name]) as client:
        publisher = publish_when_subscribed(redis_url, channel, "hello", "wörld", pubsub.STOP_WORD, "late")
        r = client.get(f"/pubsub/{form}/{channel}", params={"timeout_s": "10"})
        publisher.join(5)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert events(r.text) == [json.dumps({"subscribed": channel}), json.dumps({"message": "hello"}),
                              json.dumps({"message": "wörld"}), "[DONE]"]


@pytest.mark.parametrize("form", FORMS)
def test_silence_ends_at_timeout(monkeypatch, redis_url: str, form: str) -> None:
    with make_client(monkeypatch, redis_url) as client:
        started = time.monotonic()
        r = client.get(f"/pubsub/{form}/quiet-{form}", params={"timeout_s": "0.3"})
        elapsed = time.monotonic() - started
    assert events(r.text) == [json.dumps({"subscribed": f"quiet-{form}"}), "[TIMEOUT]"]
    assert 0.25 < elapsed < 5


def test_parse_timeout_edges() -> None:
    assert pubsub.parse_timeout(None) == pubsub.DEFAULT_TIMEOUT_S
    assert pubsub.parse_timeout("60") == 60.0
    assert pubsub.parse_timeout("0.001") == 0.001


# --- the polling form's poll_timeout_s (the seed's get_message(timeout=...)) ------------------

@pytest.mark.parametrize("query", [
    "poll_timeout_s=", "poll_timeout_s=-1", "poll_timeout_s=60.5", "poll_timeout_s=61",
    "poll_timeout_s=1e1", "poll_timeout_s=abc", "poll_timeout_s=%200.1", "poll_timeout_s=0.0001",
    "poll_timeout_s=inf", "poll_timeout_s=nan", "timeout_s=1&poll_timeout_s=100",
])
def test_invalid_poll_timeout_is_400(monkeypatch, redis_url: str, query: str) -> None:
    with make_client(monkeypatch, redis_url) as client:
        assert_error(client.get(f"/pubsub/polling/ok?{query}"), 400, "invalid_parameter")


@pytest.mark.parametrize("poll", ["0", "0.1", "10"])
def test_poll_timeout_delivers(monkeypatch, redis_url: str, poll: str) -> None:
    channel = f"unit-poll-{poll}"
    with make_client(monkeypatch, redis_url) as client:
        publisher = publish_when_subscribed(redis_url, channel, "hello", pubsub.STOP_WORD)
        started = time.monotonic()
        r = client.get(f"/pubsub/polling/{channel}", params={"timeout_s": "20", "poll_timeout_s": poll})
        elapsed = time.monotonic() - started
        publisher.join(5)
    assert r.status_code == 200
    assert events(r.text) == [json.dumps({"subscribed": channel}), json.dumps({"message": "hello"}), "[DONE]"]
    assert elapsed < 5  # a message ends the wait at once, whatever the timeout


def test_poll_timeout_never_outlives_the_stream(monkeypatch, redis_url: str) -> None:
    with make_client(monkeypatch, redis_url) as client:
        started = time.monotonic()
        r = client.get("/pubsub/polling/quiet-poll", params={"timeout_s": "0.3", "poll_timeout_s": "30"})
        elapsed = time.monotonic() - started
    assert events(r.text) == [json.dumps({"subscribed": "quiet-poll"}), "[TIMEOUT]"]
    assert 0.25 < elapsed < 5


def test_parse_poll_timeout_edges() -> None:
    assert pubsub.parse_poll_timeout(None) == pubsub.SEED_POLL_TIMEOUT_S == 0.1
    assert pubsub.parse_poll_timeout("0") == 0.0
    assert pubsub.parse_poll_timeout("60") == 60.0
