"""Every request of a harness run, one JSON line each, and the run's measurement phases
(docs/DESIGN.md, Measurement window).

Locust's own statistics count only the requests that finished before the run stopped, so where a
model queues (4 sync workers at 100 users) the long waits are cut off and the percentiles show the
lucky requests. The harness (bench/load.py) measures instead the requests STARTED inside a window
and lets them finish:

1. warm-up: until every scenario user has completed one request (the start-up burst is through
   the queue: steady state), at least `warmup_min_s`, at most `warmup_max_s`;
2. window: `window_s` seconds; the requests started in it are the measured ones;
3. drain: the load goes on (the queue stays as it was) until every request started in the window
   has finished, at most `drain_max_s`; what is still unfinished then (a window request, or one
   started earlier that never got an answer) is written as censored, with its wait so far.

Records (the format bench/load.py reads):

    {"n": "/recommendation/[id]", "t0": 1700000000.123456, "ms": 560.1, "ok": true}
    {"n": "/healthz", "t0": ..., "ms": 14000.0, "cens": true}     # unfinished at the end
    {"n": ..., "ok": false, "st": 503, "ec": "database_unavailable"}  # a failure: status, error code
    {"mark": "start" | "window" | "drain" | "end", "t": ..., ...}

No Locust or gevent import here: locustfile.py passes the greenlet as the key, gevent's sleep and
the runner's quit, so the logic is unit-tested with a fake clock (tests/harness/test_ledger.py).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path

WARMUP_MIN_S = 2.0  # covers the spawn (users start at `total` per second) and the first answers
TICK_S = 0.05


class Ledger:
    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time) -> None:
        self._fh = open(path, "w", buffering=1)  # noqa: SIM115 - open for the whole run
        self.clock = clock
        self.inflight: dict[Hashable, tuple[str, float]] = {}  # key -> (name, start)
        self.cycled: set[Hashable] = set()  # scenario users that have completed a request
        self.spawned = False  # Locust has started every user
        self.ended = False

    # --- requests -------------------------------------------------------------------------

    @contextlib.contextmanager
    def track(self, key: Hashable, name: str, scenario: bool = True) -> Iterator[None]:
        """Around one request: it is in flight from here until Locust's request event records it."""
        self.inflight[key] = (name, self.clock())
        killed = False
        try:
            yield
        except BaseException as exc:
            # Killed while waiting (GreenletExit at the end of the run): its wait so far is censored.
            # Any other exception before the request event fired is a failed request.
            killed = type(exc).__name__ in ("GreenletExit", "GeneratorExit")
            raise
        finally:
            self._unrecorded(key, censored=killed)
            if scenario and not killed:
                self.cycled.add(key)

    def record(self, key: Hashable, name: str, response_time_ms: float, ok: bool,
               start_time: float | None = None, status: int | None = None,
               code: str | None = None) -> None:
        """Locust's request event: the request in flight under `key` (or `start_time`) finished.

        A failure also keeps its HTTP status (0: no HTTP answer) and the uniform error's code
        (`error_code`), which `bench faults` counts."""
        if self.ended:  # the end mark closed the books: what finishes while Locust stops is not counted
            return
        entry = self.inflight.get(key)
        if entry is not None and entry[0] == name:
            del self.inflight[key]
            t0 = entry[1]
        else:  # e.g. the stream's time to first token, fired by hand with its start time
            t0 = start_time if start_time is not None else self.clock() - response_time_ms / 1000
        rec = {"n": name, "t0": round(t0, 6), "ms": round(response_time_ms, 3), "ok": ok}
        if not ok and status is not None:
            rec |= {"st": status, "ec": code}
        self._write(rec)

    def _unrecorded(self, key: Hashable, censored: bool) -> None:
        entry = self.inflight.pop(key, None)
        if entry is None or self.ended:
            return
        name, t0 = entry
        ms = round((self.clock() - t0) * 1000, 3)
        self._write({"n": name, "t0": round(t0, 6), "ms": ms, **({"cens": True} if censored
                                                                 else {"ok": False})})

    def pending_between(self, start: float, end: float) -> int:
        """Requests started in [start, end) that have not finished yet."""
        return sum(start <= t0 < end for _, t0 in self.inflight.values())

    # --- phases ---------------------------------------------------------------------------

    def mark(self, phase: str, **extra: object) -> float:
        now = self.clock()
        self._write({"mark": phase, "t": round(now, 6), **extra})
        return now

    def finish(self, reason: str, window: tuple[float, float] | None = None) -> None:
        """Write every request still in flight as censored (wait so far), then the end mark."""
        if self.ended:
            return
        now = self.clock()
        for name, t0 in self.inflight.values():
            self._write({"n": name, "t0": round(t0, 6), "ms": round((now - t0) * 1000, 3), "cens": True})
        unfinished = sum(window is None or window[0] <= t0 < window[1] for _, t0 in self.inflight.values())
        self.inflight.clear()
        self.ended = True
        self._write({"mark": "end", "t": round(now, 6), "reason": reason,
                     "unfinished": unfinished})

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def _write(self, obj: dict) -> None:
        if not self._fh.closed:
            self._fh.write(json.dumps(obj, separators=(",", ":")) + "\n")


def error_code(text: str | None) -> str | None:
    """The code of a uniform error body {"error": {"code", "message"}}; None for anything else."""
    try:
        body = json.loads(text or "")
    except ValueError:
        return None
    if isinstance(body, dict) and list(body) == ["error"] and isinstance(body["error"], dict) \
            and list(body["error"]) == ["code", "message"] and isinstance(body["error"]["code"], str):
        return body["error"]["code"]
    return None


def run_phases(ledger: Ledger, *, window_s: float, warmup_max_s: float, drain_max_s: float,
               scenario_users: Callable[[], int], sleep: Callable[[float], object],
               stop: Callable[[], object], warmup_min_s: float = WARMUP_MIN_S) -> None:
    """Warm-up until steady, the measured window, the drain; then stop the run.

    Steady state: once every scenario user has completed a request, the burst of first requests
    (all sent at once) has gone through the queue, and each request waits behind what a
    closed loop keeps in flight. A target so slow that this takes longer than warmup_max_s is
    measured anyway (the window mark says steady=false; the harness's W check tells the result).
    """
    start = ledger.mark("start")
    while True:
        elapsed = ledger.clock() - start
        users = scenario_users()
        if elapsed >= warmup_min_s and ledger.spawned and users and len(ledger.cycled) >= users:
            steady = True
            break
        if elapsed >= warmup_max_s:
            steady = False
            break
        sleep(TICK_S)
    if ledger.ended:  # the run was stopped from outside (Locust's --run-time backstop, Ctrl-C)
        return
    window_start = ledger.mark("window", steady=steady)
    sleep(window_s)
    if ledger.ended:
        return
    window = (window_start, ledger.mark("drain"))
    # Only the window's own requests are waited for: one started before it that is still waiting
    # (a starved user) is written censored at the end, which is all its row needs to know.
    while ledger.pending_between(*window) and ledger.clock() - window[1] < drain_max_s:
        sleep(TICK_S)
    if ledger.ended:
        return
    ledger.finish("drained" if not ledger.pending_between(*window) else "drain limit", window=window)
    stop()
