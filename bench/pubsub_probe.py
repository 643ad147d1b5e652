"""Seed 003's experiment, re-run: several SSE streams fed by Redis pub/sub on one FastAPI target.

For each form of the endpoint (fastapi_app/pubsub.py) `listeners` clients open a stream at once,
each on its own channel (the seed's "conversation A, B, C"). A stream lasts `hold_s` from the
moment its subscription is confirmed: then the probe publishes the stop word to its channel.
Meanwhile another client times GET /healthz on the same target, the canary of the event loop.

What the seed claims, in these numbers: with blocking `listen()` the streams run one after another
(total ~ listeners x hold_s) and /healthz waits for them; with `redis.asyncio` they overlap (total
~ hold_s) and /healthz stays fast. The seed's own fix (polling) sits in between.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import redis

FORMS = ("blocking", "polling", "async")
STOP_WORD = "[DONE]"  # fastapi_app.pubsub.STOP_WORD (not imported: the harness needs no app code)
HEALTHZ_EVERY_S = 0.05


@dataclass
class _Stream:
    opened: float
    subscribed: float
    ended: float


def measure(base_url: str, redis_url: str, *, listeners: int = 3, hold_s: float = 2.0,
            forms: tuple[str, ...] = FORMS) -> dict:
    """Run the experiment once per form; returns flat numbers (seconds and milliseconds).

    Keys, per form F in `forms` ("blocking", "polling", "async"):
      F_total_s        first stream opened -> last stream ended (claim: blocking ~ listeners x
                       hold_s, async ~ hold_s)
      F_last_start_s   first stream opened -> last stream's subscription confirmed (how long the
                       last "user" waited before its stream even started)
      F_healthz_ms     slowest GET /healthz while the streams were open
      F_healthz_p50_ms median of those /healthz latencies
      F_healthz_n      how many /healthz answers that is
    plus "listeners" and "hold_s". Raises RuntimeError if any stream fails or does not end with
    the stop word: an error must never pass for a timing.
    """
    result: dict = {"listeners": listeners, "hold_s": hold_s}
    with redis.Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=5) as publisher:
        publisher.ping()
        for form in forms:
            run = _run(base_url, publisher, form, listeners, hold_s)
            result |= {f"{form}_{key}": value for key, value in run.items()}
    return result


def _run(base_url: str, publisher: redis.Redis, form: str, listeners: int, hold_s: float) -> dict:
    # Each stream's own bound on the server; the clients' bound covers the streams queued
    # behind it (the blocking form serves them one at a time).
    stream_timeout_s = min(60.0, hold_s + 10)
    budget_s = listeners * stream_timeout_s + 10
    timeout = httpx.Timeout(budget_s, connect=5)
    run_id = uuid.uuid4().hex[:8]
    gate = threading.Barrier(listeners + 1)
    first_subscribed, all_done = threading.Event(), threading.Event()
    limits = httpx.Limits(max_connections=listeners, max_keepalive_connections=listeners)

    with httpx.Client(base_url=base_url, timeout=timeout, limits=limits) as client, \
            ThreadPoolExecutor(listeners + 1) as pool:
        client.get("/healthz").raise_for_status()  # untimed: connection set up

        def listen(i: int) -> _Stream:
            channel = f"probe-{run_id}-{form}-{i}"
            gate.wait(timeout=10)
            opened = time.perf_counter()
            subscribed, line = None, ""
            with client.stream("GET", f"/pubsub/{form}/{channel}",
                               params={"timeout_s": f"{stream_timeout_s:g}"}) as resp:
                if resp.status_code != 200:
                    resp.read()
                    raise RuntimeError(f"{form} stream answered {resp.status_code}: {resp.text[:200]}")
                for line in resp.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line.removeprefix("data: ")
                    if subscribed is None:
                        # The first event confirms the subscription: this "conversation" starts.
                        subscribed = time.perf_counter()
                        first_subscribed.set()
                        time.sleep(hold_s)
                        publisher.publish(channel, STOP_WORD)
                    elif data == "[DONE]":
                        return _Stream(opened, subscribed, time.perf_counter())
                    elif data.startswith("[") or '"error"' in data:
                        break
            raise RuntimeError(f"{form} stream {i} ended without the stop word (last event: {line!r})")

        def canary() -> list[float]:
            gate.wait(timeout=10)
            first_subscribed.wait(timeout=budget_s)
            latencies = []
            with httpx.Client(base_url=base_url, timeout=timeout) as probe:
                while not all_done.is_set():
                    started = time.perf_counter()
                    probe.get("/healthz").raise_for_status()
                    latencies.append(time.perf_counter() - started)
                    all_done.wait(HEALTHZ_EVERY_S)
            return latencies

        healthz = pool.submit(canary)
        try:
            streams = list(pool.map(listen, range(listeners), timeout=budget_s))
        finally:
            all_done.set()
            first_subscribed.set()  # never leave the canary waiting
        latencies = healthz.result(timeout=budget_s)

    start = min(s.opened for s in streams)
    return {"total_s": round(max(s.ended for s in streams) - start, 3),
            "last_start_s": round(max(s.subscribed for s in streams) - start, 3),
            "healthz_ms": round(1000 * max(latencies), 1) if latencies else None,
            "healthz_p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
            "healthz_n": len(latencies)}
