"""Seed 003's experiment, re-run: several SSE streams fed by Redis pub/sub on one FastAPI target.

For each form of the endpoint (fastapi_app/pubsub.py) `listeners` clients open a stream (all at
once, or `stagger_s` apart), each on its own channel (the seed's "conversation A, B, C"). A stream
lasts its hold (`hold_s`, or `holds[i]`) from the moment its subscription is confirmed: then the
probe publishes the stop word to its channel. Meanwhile another client times GET /healthz on the
same target, the canary of the event loop, and (given the target's PID, or found by its port) a
sampler reads the target's CPU and memory.

What the seed claims, in these numbers: with blocking `listen()` the streams run one after another
(total ~ listeners x hold_s) and /healthz waits for them; with `redis.asyncio` they overlap (total
~ hold_s) and /healthz stays fast. The seed's own fix (polling) sits in between.

The streams are asyncio coroutines on one httpx.AsyncClient, so a thousand of them cost the probe
little; the canary is a thread of its own, so a busy probe loop does not inflate its latencies.
"""

from __future__ import annotations

import asyncio
import json
import math
import resource
import statistics
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import psutil
import redis.asyncio

from bench import probe

FORMS = ("blocking", "polling", "async")
STOP_WORD = "[DONE]"  # fastapi_app.pubsub.STOP_WORD (not imported: the harness needs no app code)
HEALTHZ_EVERY_S = 0.05
MAX_STREAM_TIMEOUT_S = 60.0  # the routes' timeout_s bound
SETTLED_MS = 100  # after a form, /healthz must answer this fast again before the next one starts
LIST_UP_TO = 20  # per-stream lists (waits) only for this many listeners or fewer


class StreamFailed(RuntimeError):
    """A stream answered something other than the contract's events: never a timing."""


@dataclass
class _Stream:
    opened: float | None = None
    subscribed: float | None = None
    published: float | None = None
    ended: float | None = None
    timed_out: bool = False  # the route's own timeout_s ended it ([TIMEOUT]) before the stop word


def measure(base_url: str, redis_url: str, *, listeners: int = 3, hold_s: float = 2.0,
            forms: Sequence[str] = FORMS, holds: Sequence[float] | None = None,
            stagger_s: float = 0.0, params: dict[str, str] | None = None, pid: int | None = None,
            budget_s: float | None = None, partial_ok: bool = False) -> dict:
    """Run the experiment once per form; returns flat numbers (seconds and milliseconds).

    `holds` gives each listener its own hold (then listeners = len(holds)); `stagger_s` opens
    listener i at i x stagger_s (the seed's users arrive one after another); `params` are extra
    query parameters of the route (poll_timeout_s); `pid` the target's process (None: found by the
    port of base_url, if it is a local process). `budget_s` bounds each form's run (default: what
    the streams need if served one by one). With `partial_ok`, streams still running at the budget
    (or ended by the route's timeout_s) are counted, not an error: the many-streams experiment
    reports how far the target got.

    Keys, per form F in `forms` ("blocking", "polling", "async"):
      F_total_s        first stream opened -> last stream ended (None: not all ended)
      F_last_start_s   first stream opened -> last stream's subscription confirmed (None: not all
                       started within the budget)
      F_mean_wait_s    mean over streams of opened -> subscription confirmed (its own wait)
      F_waits_s        each stream's wait, in the order they were opened (<= 20 listeners, all
                       started)
      F_started, F_ended, F_timed_out   how many streams (partial_ok runs)
      F_delivery_ms, F_delivery_p50_ms  stop word published -> [DONE] received (slowest, median)
      F_healthz_ms     slowest GET /healthz while the streams were open (a check still unanswered
                       when they ended counts with its wait so far; then F_healthz_censored = 1)
      F_healthz_p50_ms median of those /healthz latencies
      F_healthz_n      how many /healthz answers that is
      F_cpu_pct        the target's CPU over the run, % of one core (None: no PID)
      F_peak_rss_mb, F_peak_pss_mb      the target's peak memory over the run
    plus "listeners", "hold_s" (or "holds_s"), "stagger_s", "target_pid" (numbers only: results.json
    keeps an experiment's numbers and lists of numbers).
    Raises RuntimeError if any stream fails or (without partial_ok) does not end with the stop
    word: an error must never pass for a timing.
    """
    holds = list(holds) if holds is not None else [hold_s] * listeners
    result: dict = {"listeners": len(holds)}
    result |= {"hold_s": holds[0]} if len(set(holds)) == 1 else {"holds_s": holds}
    if stagger_s:
        result["stagger_s"] = stagger_s
    pid = target_pid(base_url, pid)
    result["target_pid"] = pid
    _raise_nofile(3 * len(holds) + 64)  # per listener: its HTTP stream, maybe a publisher connection
    for form in forms:
        run = asyncio.run(_run(base_url, redis_url, form, holds, stagger_s, params or {}, pid,
                               budget_s, partial_ok))
        result |= {f"{form}_{key}": value for key, value in run.items()}
    return result


# --- the target's process ------------------------------------------------------------------------

def target_pid(base_url: str, pid: int | None = None) -> int | None:
    """`pid` if given, else the local process listening on base_url's port (None: not found, or a
    container's port proxy, whose CPU is not the target's)."""
    if pid:
        return pid
    port = urlsplit(base_url).port
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                if psutil.Process(conn.pid).name().startswith("docker-proxy"):
                    return None
                return conn.pid
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        return None
    return None


def _raise_nofile(needed: int) -> None:
    """The probe holds up to two sockets per listener: raise our soft limit towards the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        if wanted < needed:
            raise RuntimeError(f"{needed} file descriptors needed, the hard limit is {hard}")


# --- the canary ----------------------------------------------------------------------------------

class _Canary(threading.Thread):
    """GET /healthz every HEALTHZ_EVERY_S from the first subscription until stopped."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        super().__init__(name="healthz-canary", daemon=True)
        self.base_url, self.timeout_s = base_url, timeout_s
        self.go, self.halt = threading.Event(), threading.Event()
        self.latencies: list[float] = []
        self.in_flight: float | None = None
        self.error: str | None = None

    def run(self) -> None:
        if not self.go.wait(self.timeout_s) or self.halt.is_set():
            return
        try:
            with httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(self.timeout_s, connect=5)) as c:
                while not self.halt.is_set():
                    self.in_flight = time.perf_counter()
                    resp = c.get("/healthz")
                    if resp.status_code != 200:
                        self.error = f"/healthz answered {resp.status_code}"
                        return
                    self.latencies.append(time.perf_counter() - self.in_flight)
                    self.in_flight = None
                    self.halt.wait(HEALTHZ_EVERY_S)
        except httpx.HTTPError as exc:
            self.error = f"/healthz failed: {type(exc).__name__}: {exc}"

    def finish(self, join_s: float) -> tuple[list[float], bool]:
        """Stop; a check still waiting after join_s counts with its wait so far (censored)."""
        self.halt.set()
        self.go.set()
        self.join(join_s)
        started = self.in_flight
        if self.is_alive() and started is not None:
            return [*self.latencies, time.perf_counter() - started], True
        if self.error:
            raise RuntimeError(self.error)
        return list(self.latencies), False


def _settle(base_url: str, max_s: float = 60.0) -> float:
    """Wait until /healthz answers within SETTLED_MS again (the streams' cleanup is done)."""
    started = time.perf_counter()
    with httpx.Client(base_url=base_url, timeout=max_s) as c:
        while time.perf_counter() - started < max_s:
            t0 = time.perf_counter()
            c.get("/healthz").raise_for_status()
            if time.perf_counter() - t0 < SETTLED_MS / 1000:
                break
            time.sleep(0.1)
    return time.perf_counter() - started


# --- one form ------------------------------------------------------------------------------------

async def _run(base_url: str, redis_url: str, form: str, holds: list[float], stagger_s: float,
               params: dict[str, str], pid: int | None, budget_s: float | None,
               partial_ok: bool) -> dict:
    n = len(holds)
    # Each stream's own bound on the server. It runs from when the route handled the request, and
    # the blocking form serves the streams one at a time: it covers the whole queue.
    stream_timeout_s = min(MAX_STREAM_TIMEOUT_S, sum(holds) + 10)
    if partial_ok:
        stream_timeout_s = MAX_STREAM_TIMEOUT_S
    budget = budget_s or (sum(min(MAX_STREAM_TIMEOUT_S, h + 10) for h in holds) + n * stagger_s + 10)
    run_id = uuid.uuid4().hex[:8]
    channels = [f"probe-{run_id}-{form}-{i}" for i in range(n)]
    streams = [_Stream() for _ in range(n)]
    query = {"timeout_s": f"{stream_timeout_s:g}", **params}
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    timeout = httpx.Timeout(budget, connect=min(budget, 30))
    canary = _Canary(base_url, budget)

    async with httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits) as client, \
            redis.asyncio.Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=10,
                                         max_connections=n + 10) as publisher:  # redis-py: 100
        await publisher.ping()
        (await client.get("/healthz")).raise_for_status()  # untimed: the probe is set up

        async def listen(i: int) -> None:
            s, channel = streams[i], channels[i]
            if stagger_s:
                await asyncio.sleep(i * stagger_s)
            s.opened = time.perf_counter()
            async with client.stream("GET", f"/pubsub/{form}/{channel}", params=query) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    raise StreamFailed(f"{form} stream answered {resp.status_code}: {resp.text[:200]}")
                if not resp.headers.get("content-type", "").startswith("text/event-stream"):
                    raise StreamFailed(f"{form} stream is {resp.headers.get('content-type')!r}")
                async for line in resp.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line.removeprefix("data: ")
                    if s.subscribed is None:
                        if data != json.dumps({"subscribed": channel}):
                            raise StreamFailed(f"{form} stream {i}: first event {data!r}")
                        # The first event confirms the subscription: this "conversation" starts.
                        s.subscribed = time.perf_counter()
                        canary.go.set()
                        await asyncio.sleep(holds[i])
                        s.published = time.perf_counter()
                        if await publisher.publish(channel, STOP_WORD) != 1:
                            raise StreamFailed(f"{form} stream {i}: no subscriber on {channel}")
                    elif data == "[DONE]":
                        s.ended = time.perf_counter()
                        return
                    elif data == "[TIMEOUT]" and partial_ok:
                        s.timed_out = True
                        return
                    else:
                        raise StreamFailed(f"{form} stream {i}: unexpected event {data!r}")
            raise StreamFailed(f"{form} stream {i} ended without the stop word")

        canary.start()
        sampler = probe.TreeSampler(pid, interval=0.5) if pid else None
        try:
            if sampler:
                sampler.__enter__()
            tasks = [asyncio.create_task(listen(i)) for i in range(n)]
            done, pending = await asyncio.wait(tasks, timeout=budget)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        finally:
            if sampler:
                sampler.__exit__(None, None, None)
            # The canary's last check may be stuck behind a frozen loop: give it a moment.
            latencies, censored = await asyncio.to_thread(canary.finish, 5.0 if partial_ok else 30.0)
        failures = [t.exception() for t in done if t.exception() is not None]
        if failures:
            raise RuntimeError(f"{len(failures)} of {n} {form} streams failed; first: "
                               f"{type(failures[0]).__name__}: {failures[0]}")
        if pending and not partial_ok:
            raise RuntimeError(f"{len(pending)} of {n} {form} streams still open after {budget:.0f} s")
    settle_s = await asyncio.to_thread(_settle, base_url)
    return _summary(streams, latencies, censored, sampler) | (
        {"settle_s": round(settle_s, 1)} if settle_s > 1 else {})


def _summary(streams: list[_Stream], latencies: list[float], censored: bool,
             sampler: probe.TreeSampler | None) -> dict:
    opened = [s.opened for s in streams if s.opened is not None]
    start = min(opened)
    started = [s for s in streams if s.subscribed is not None]
    ended = [s for s in streams if s.ended is not None]
    waits = [s.subscribed - s.opened for s in started]
    deliveries = [s.ended - s.published for s in ended]
    everyone = len(ended) == len(streams)
    out: dict = {
        "total_s": round(max(s.ended for s in ended) - start, 3) if everyone else None,
        "last_start_s": (round(max(s.subscribed for s in started) - start, 3)
                         if len(started) == len(streams) else None),
        "mean_wait_s": round(statistics.fmean(waits), 3) if waits else None,
        "started": len(started), "ended": len(ended),
        "timed_out": sum(s.timed_out for s in streams),
        "delivery_ms": round(1000 * max(deliveries), 1) if deliveries else None,
        "delivery_p50_ms": round(1000 * statistics.median(deliveries), 1) if deliveries else None,
        "healthz_ms": round(1000 * max(latencies), 1) if latencies else None,
        "healthz_p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "healthz_n": len(latencies),
    }
    if censored:
        out["healthz_censored"] = 1
    if len(streams) <= LIST_UP_TO and len(started) == len(streams):
        out["waits_s"] = [round(s.subscribed - s.opened, 3) for s in streams]
    if sampler is not None:
        out |= {"cpu_pct": round(sampler.cpu_pct(), 1), "peak_rss_mb": round(sampler.peak["rss"], 1),
                "peak_pss_mb": round(sampler.peak["pss"], 1)}
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}
