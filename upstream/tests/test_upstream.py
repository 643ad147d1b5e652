"""The mock upstream over real HTTP, through the real openai SDK (sync and async)."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import time

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from upstream.app import GC_THRESHOLDS, app

PROMPT = "Ada spent 61234 of a 150000 cent budget over 20 transactions; top category: groceries. One tip?"
MESSAGES = [
    {"role": "system", "content": "You are a concise personal-finance assistant."},
    {"role": "user", "content": PROMPT},
]


def expected_tokens(text: str, n: int) -> list[str]:
    """CONTRACT.md, computed independently of upstream/app.py."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    sentence = "Review your top category and set a weekly limit so the month ends within budget."
    filler = sentence.split(" ")
    return ["[" + digest + "]"] + [filler[(i - 1) % len(filler)] for i in range(1, n)]


@pytest.fixture
def client(upstream_url):
    with OpenAI(base_url=upstream_url + "/v1", api_key="mock", max_retries=0, timeout=10) as c:
        yield c


def aclient(upstream_url: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=upstream_url + "/v1", api_key="mock", max_retries=0, timeout=10)


def test_completion_is_deterministic_and_well_formed(client):
    first = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    again = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert first.object == "chat.completion"
    assert first.model == "gpt-4o-mini"
    choice = first.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == " ".join(expected_tokens(PROMPT, 16))
    assert again.choices[0].message.content == choice.message.content
    assert first.usage.completion_tokens == 16
    assert first.usage.total_tokens == first.usage.prompt_tokens + 16


@pytest.mark.parametrize(("kwargs", "n"), [({"max_completion_tokens": 1}, 1),
                                           ({"max_completion_tokens": 5}, 5),
                                           ({"max_tokens": 33}, 33)])
def test_token_count(client, kwargs, n):
    out = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **kwargs)
    assert out.choices[0].message.content == " ".join(expected_tokens(PROMPT, n))
    assert out.usage.completion_tokens == n


def test_digest_uses_last_message(client):
    messages = [*MESSAGES, {"role": "user", "content": "héllo ✓"}]
    out = client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_completion_tokens=3)
    assert out.choices[0].message.content == " ".join(expected_tokens("héllo ✓", 3))


def test_stream_concatenates_to_completion(client):
    full = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_completion_tokens=20)
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_completion_tokens=20, stream=True))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    contents = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    want = expected_tokens(PROMPT, 20)
    assert contents == [t + " " for t in want[:-1]] + [want[-1]]
    assert "".join(contents) == full.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_usage_and_fault(client):
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_completion_tokens=3, stream=True,
        stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                       extra_headers={"X-Mock-Status": "500"})


def test_async_stream_spreads_chunks_over_latency(upstream_url):
    async def main():
        async with aclient(upstream_url) as c:
            t0 = time.perf_counter()
            stream = await c.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, max_completion_tokens=4, stream=True,
                extra_headers={"X-Mock-Latency-Ms": "400"})
            arrivals, text = [], ""
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    arrivals.append(time.perf_counter() - t0)
                    text += chunk.choices[0].delta.content
            return arrivals, time.perf_counter() - t0, text

    arrivals, total, text = asyncio.run(main())
    assert text == " ".join(expected_tokens(PROMPT, 4))
    assert len(arrivals) == 4
    assert 0.35 <= total <= 1.5
    assert arrivals[0] < arrivals[-1] - 0.15  # spread out, not sent in one burst at the end


def test_latency_header_is_honoured(client):
    t0 = time.perf_counter()
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                   extra_headers={"X-Mock-Latency-Ms": "300"})
    assert 0.25 <= time.perf_counter() - t0 <= 1.5


def test_concurrent_requests_do_not_block_each_other(upstream_url):
    async def main():
        async with aclient(upstream_url) as c:
            t0 = time.perf_counter()
            outs = await asyncio.gather(*(
                c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                          extra_headers={"X-Mock-Latency-Ms": "300"})
                for _ in range(10)))
            return outs, time.perf_counter() - t0

    outs, elapsed = asyncio.run(main())
    assert len(outs) == 10 and elapsed < 1.5
    assert httpx.get(upstream_url + "/mock/stats").json()["max_in_flight"] >= 10


@pytest.mark.parametrize(("status", "exc", "kind"), [(500, openai.InternalServerError, "server_error"),
                                                     (503, openai.InternalServerError, "server_error"),
                                                     (429, openai.RateLimitError, "rate_limit_error")])
def test_mock_status_header(client, upstream_url, status, exc, kind):
    with pytest.raises(exc) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                       extra_headers={"X-Mock-Status": str(status)})
    assert info.value.status_code == status
    r = httpx.post(upstream_url + "/v1/chat/completions", json={"messages": MESSAGES},
                   headers={"X-Mock-Status": str(status)})
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == kind and error["param"] is None


def test_fault_queue(client, upstream_url):
    before = httpx.get(upstream_url + "/mock/stats").json()["faults_served"]
    r = httpx.post(upstream_url + "/mock/faults", json={"status": 500, "count": 2})
    assert r.status_code == 200
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices[0].message.content
    assert httpx.get(upstream_url + "/mock/stats").json()["faults_served"] == before + 2

    httpx.post(upstream_url + "/mock/faults", json={"status": 502, "count": 5})
    assert httpx.delete(upstream_url + "/mock/faults").status_code == 200
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices[0].message.content


def test_async_fault_raises(upstream_url):
    async def main():
        async with aclient(upstream_url) as c:
            await c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    httpx.post(upstream_url + "/mock/faults", json={"status": 500, "count": 1})
    with pytest.raises(openai.InternalServerError):
        asyncio.run(main())


def test_stats_counters(client, upstream_url):
    before = httpx.get(upstream_url + "/mock/stats").json()
    list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    after = httpx.get(upstream_url + "/mock/stats").json()
    assert after["requests"] == before["requests"] + 1
    assert after["streams"] == before["streams"] + 1
    assert after["in_flight"] == 0
    assert {"faults_served", "max_in_flight"} <= set(after)


@pytest.mark.parametrize("value", ["abc", "-5", "1.5", ""])
def test_invalid_latency_is_400(client, value):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                       extra_headers={"X-Mock-Latency-Ms": value})


def test_invalid_body_is_400(upstream_url):
    bad = (b"not json", b"[]", b'{"messages": []}', b'{"messages": [{"content": "x"}], "max_tokens": 0}')
    for body in bad:
        r = httpx.post(upstream_url + "/v1/chat/completions", content=body)
        assert r.status_code == 400
        assert r.json()["error"]["type"] == "invalid_request_error"


def test_unknown_path_and_method(upstream_url):
    r = httpx.get(upstream_url + "/v1/nope")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = httpx.get(upstream_url + "/v1/chat/completions")
    assert r.status_code == 405
    assert r.json()["error"]["param"] is None


def test_healthz(upstream_url):
    r = httpx.get(upstream_url + "/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def _stream_contents(client, n: int = 5, timeout: float | None = None) -> tuple[list[str], Exception | None]:
    """Contents of a streamed completion as far as it got, and the exception that ended it."""
    got: list[str] = []
    c = client.with_options(timeout=timeout) if timeout else client
    try:
        for chunk in c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                               max_completion_tokens=n, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                got.append(chunk.choices[0].delta.content)
    except openai.APIError as exc:
        return got, exc
    return got, None


@pytest.mark.parametrize(("mode", "exc"), [("error", openai.APIError),
                                           ("drop", openai.APIConnectionError),
                                           ("stall", openai.APITimeoutError)])
@pytest.mark.parametrize("after", [0, 2, 5])
def test_mid_stream_fault(client, upstream_url, mode, exc, after):
    want = [t + " " for t in expected_tokens(PROMPT, 5)]
    want[-1] = want[-1].rstrip()
    before = httpx.get(upstream_url + "/mock/stats").json()["faults_served"]
    r = httpx.post(upstream_url + "/mock/faults", json={"count": 1, "after_tokens": after, "mode": mode})
    assert r.status_code == 200 and r.json()["faults_pending"] == 1
    # A non-streamed request does not take a mid-stream fault.
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices[0].message.content
    got, error = _stream_contents(client, timeout=0.5 if mode == "stall" else None)
    assert got == want[:after]
    assert isinstance(error, exc), repr(error)
    if mode == "error":
        assert "injected mid-stream failure" in str(error)
    assert httpx.get(upstream_url + "/mock/stats").json()["faults_served"] == before + 1
    assert _stream_contents(client) == (want, None)  # one-shot: the next stream is whole


def test_mid_stream_fault_default_mode_and_bad_specs(upstream_url):
    r = httpx.post(upstream_url + "/mock/faults", json={"after_tokens": 1})
    assert r.status_code == 200 and r.json()["faults_pending"] == 1
    raw = httpx.post(upstream_url + "/v1/chat/completions",
                     json={"messages": MESSAGES, "stream": True, "max_tokens": 3})
    events = [e for e in raw.text.split("\n\n") if e]
    assert len(events) == 2 and events[-1].startswith('data: {"error":')  # one token, then the error
    assert "[DONE]" not in raw.text
    for bad in ({"after_tokens": -1}, {"after_tokens": "1"}, {"after_tokens": 1, "mode": "explode"},
                {"mode": "drop"}):
        assert httpx.post(upstream_url + "/mock/faults", json=bad).status_code == 400, bad
    assert httpx.get(upstream_url + "/mock/stats").json()["faults_pending"] == 0


def test_timed_outage_fails_every_request_until_it_ends(client, upstream_url):
    r = httpx.post(upstream_url + "/mock/faults", json={"status": 503, "for_s": 0.6})
    assert r.status_code == 200 and r.json() == {"outage": 503, "for_s": 0.6}
    for _ in range(3):  # not one-shot: every request inside the outage fails
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    time.sleep(0.7)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices[0].message.content


def test_timed_hang_answers_nothing_until_the_client_gives_up(client, upstream_url):
    assert httpx.post(upstream_url + "/mock/faults", json={"mode": "hang", "for_s": 30}).status_code == 200
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(upstream_url + "/v1/chat/completions", json={"messages": MESSAGES}, timeout=0.5)
    assert 0.4 < time.monotonic() - started < 3
    assert httpx.get(upstream_url + "/mock/stats").json()["in_flight"] <= 1  # the server saw it go
    assert httpx.delete(upstream_url + "/mock/faults").status_code == 200  # DELETE ends the outage
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices[0].message.content


def test_a_timed_429_says_when_to_retry(client, upstream_url):
    assert httpx.post(upstream_url + "/mock/faults", json={"status": 429, "for_s": 30}).status_code == 200
    try:
        r = httpx.post(upstream_url + "/v1/chat/completions", json={"messages": MESSAGES}, timeout=5)
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["type"] == "rate_limit_error"
        with pytest.raises(openai.RateLimitError):  # max_retries=0, as the targets: no second try
            client.with_options(max_retries=0).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    finally:
        httpx.delete(upstream_url + "/mock/faults")


def test_a_malformed_outage_answers_200_with_half_a_completion(client, upstream_url):
    spec = {"mode": "malformed", "for_s": 30}
    assert httpx.post(upstream_url + "/mock/faults", json=spec).status_code == 200
    try:
        r = httpx.post(upstream_url + "/v1/chat/completions", json={"messages": MESSAGES}, timeout=5)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.text.startswith('{"id":"chatcmpl-mock')
        with pytest.raises(ValueError):
            r.json()
        # The Python SDK raises a plain JSONDecodeError here, no openai.APIError: a target must map
        # it to 502 upstream_error itself (docs/CONTRACT.md).
        with pytest.raises(ValueError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    finally:
        httpx.delete(upstream_url + "/mock/faults")


def test_a_drip_outlives_a_per_read_timeout_but_not_a_whole_call_deadline(upstream_url):
    spec = {"mode": "drip", "for_s": 30, "drip_s": 1.5}
    assert httpx.post(upstream_url + "/mock/faults", json=spec).status_code == 200
    try:
        started = time.monotonic()  # httpx's timeout bounds each read: a byte per 0.25 s never trips it
        r = httpx.post(upstream_url + "/v1/chat/completions", json={"messages": MESSAGES}, timeout=0.5)
        took = time.monotonic() - started
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]  # whole, at last
        assert 1.4 < took < 4
        assert 1.4 < httpx.get(upstream_url + "/mock/stats").json()["drip_longest_s"] < 4

        async def with_deadline() -> None:
            async with httpx.AsyncClient(timeout=10) as c:
                await asyncio.wait_for(c.post(upstream_url + "/v1/chat/completions",
                                              json={"messages": MESSAGES}), 0.5)

        assert httpx.post(upstream_url + "/mock/faults", json=spec).status_code == 200  # resets the longest
        with pytest.raises(TimeoutError):
            asyncio.run(with_deadline())
        time.sleep(0.5)  # the mock notices the client gone at its next byte
        assert httpx.get(upstream_url + "/mock/stats").json()["drip_longest_s"] < 1.4
    finally:
        httpx.delete(upstream_url + "/mock/faults")


@pytest.mark.parametrize("bad", [{"for_s": 0}, {"for_s": "5"}, {"for_s": 5, "mode": "drop"},
                                 {"for_s": 5, "status": 200}, {"for_s": 10**9},
                                 {"for_s": 5, "mode": "drip", "drip_s": 0}])
def test_timed_outage_bad_specs_are_400(upstream_url, bad):
    r = httpx.post(upstream_url + "/mock/faults", json=bad)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_value", r.text


def test_startup_freezes_the_heap_and_raises_the_collector_thresholds():
    before = gc.get_threshold()
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[str] = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message["type"])

    try:
        asyncio.run(app({"type": "lifespan"}, receive, send))
        assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
        assert gc.get_threshold() == GC_THRESHOLDS != before
        assert gc.get_freeze_count() > 0
    finally:  # this test process keeps Python's defaults
        gc.unfreeze()
        gc.set_threshold(*before)
