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

With `locust --processes N` (bench/load.py, when one process would pass 80 % of a core) the master
runs no users: each worker writes its own file, `worker_ledger()` beside the run's, and reports its
counts to the master every WORKER_STATUS_S (`Ledger.status`). The master runs `run_phases` once for
the whole run on a `Fleet` of those reports, writing the marks (and no request) to the run's own
file, whose start mark names the workers; bench/load.py merges the files. One clock decides: the
marks are the master's wall-clock times and every worker stamps its requests with the same
machine's clock, so a request is in the window by its own start time, whichever process sent it.

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
WORKER_STATUS_S = 0.1  # locust --processes: how often a worker reports its counts to the master
FINISH_WAIT_S = 5.0  # how long the master waits for every worker to write its end


def worker_ledger(path: str | Path, index: int) -> Path:
    """Worker `index`'s file beside the run's: x_requests.jsonl -> x_requests.w0.jsonl (bench/load.py
    reads the same names)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.w{index}{path.suffix}")


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

    def steady(self, users: int) -> bool:
        """Every one of `users` scenario users has completed a request, all of them spawned."""
        return self.spawned and users > 0 and len(self.cycled) >= users

    def drained(self, window: tuple[float, float]) -> bool:
        return not self.pending_between(*window)

    def status(self, users: int, window: tuple[float, float] | None) -> dict:
        """A worker's counts for the master's Fleet: its scenario users, how many have cycled, and
        its requests in flight (of them, those started in the window, once it knows the window)."""
        return {"users": users, "cycled": len(self.cycled), "spawned": self.spawned,
                "inflight": len(self.inflight), "window": list(window) if window else None,
                "pending": self.pending_between(*window) if window else None}

    # --- phases ---------------------------------------------------------------------------

    def mark(self, phase: str, **extra: object) -> float:
        now = self.clock()
        self._write({"mark": phase, "t": round(now, 6), **extra})
        return now

    def finish(self, reason: str, window: tuple[float, float] | None = None,
               unfinished: int | None = None) -> int:
        """Write every request still in flight as censored (wait so far), then the end mark; returns
        how many of them were the window's (all of them without a window). `unfinished`: the
        master's count of its workers' (it has no request of its own)."""
        if self.ended:
            return 0
        now = self.clock()
        for name, t0 in self.inflight.values():
            self._write({"n": name, "t0": round(t0, 6), "ms": round((now - t0) * 1000, 3), "cens": True})
        if unfinished is None:
            unfinished = sum(window is None or window[0] <= t0 < window[1]
                             for _, t0 in self.inflight.values())
        self.inflight.clear()
        self.ended = True
        self._write({"mark": "end", "t": round(now, 6), "reason": reason,
                     "unfinished": unfinished})
        return unfinished

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


class Fleet:
    """The master's view of its workers' ledgers (`locust --processes N`), for run_phases.

    Each worker reports `Ledger.status` every WORKER_STATUS_S; the latest report of each counts. The
    warm-up ends when all N have reported, every user is spawned and every scenario user of every
    worker has cycled; the drain when every worker, told the window, reports none of its requests
    pending; the end when every worker has censored what it still has in flight (`ended`). So the
    phases are one decision for the whole run, as with a single process, only a report late.
    """

    def __init__(self, ledger: Ledger, workers: int, send: Callable[[str, dict], object],
                 sleep: Callable[[float], object]) -> None:
        self.ledger, self.workers, self.send, self.sleep = ledger, workers, send, sleep
        self.reports: dict[str, dict] = {}  # worker -> its latest status
        self.ends: dict[str, int] = {}  # worker -> the window's requests it censored at its end
        self.window: list[float] | None = None  # told to the workers

    def update(self, worker: str, status: dict) -> None:
        self.reports[worker] = status

    def ended(self, worker: str, unfinished: int) -> None:
        self.ends[worker] = unfinished

    def users(self) -> int:
        return sum(r["users"] for r in self.reports.values())

    def steady(self, users: int) -> bool:
        reports = self.reports.values()
        return (len(self.reports) >= self.workers and all(r["spawned"] for r in reports) and users > 0
                and sum(r["cycled"] for r in reports) >= users)

    def drained(self, window: tuple[float, float]) -> bool:
        if self.window != list(window):
            self.window = list(window)
            self.send("lab_window", {"window": self.window})
        told = [r for r in self.reports.values() if r["window"] == self.window]
        return len(told) >= self.workers and not sum(r["pending"] for r in told)

    def unfinished(self) -> int:
        """The window's requests still in flight at the end (every request, before a window)."""
        if len(self.ends) >= self.workers:
            return sum(self.ends.values())
        return sum(r["pending"] if r["pending"] is not None and r["window"] == self.window
                   else r["inflight"] for r in self.reports.values())

    def finish(self, reason: str, window: tuple[float, float] | None = None) -> int:
        """Every worker writes its end (its requests in flight censored); then the master's end mark."""
        self.send("lab_finish", {"reason": reason, "window": list(window) if window else None})
        waited = 0.0
        while len(self.ends) < self.workers and waited < FINISH_WAIT_S:
            self.sleep(TICK_S)
            waited += TICK_S
        return self.ledger.finish(reason, window, unfinished=self.unfinished())


def run_phases(ledger: Ledger, *, window_s: float, warmup_max_s: float, drain_max_s: float,
               scenario_users: Callable[[], int], sleep: Callable[[float], object],
               stop: Callable[[], object], warmup_min_s: float = WARMUP_MIN_S,
               fleet: Fleet | None = None) -> None:
    """Warm-up until steady, the measured window, the drain; then stop the run.

    Steady state: once every scenario user has completed a request, the burst of first requests
    (all sent at once) has gone through the queue, and each request waits behind what a
    closed loop keeps in flight. A target so slow that this takes longer than warmup_max_s is
    measured anyway (the window mark says steady=false; the harness's W check tells the result).
    With a `fleet` (locust --processes) the requests are the workers': its reports decide, and the
    marks go to `ledger`, the master's.
    """
    run = fleet or ledger  # who holds the requests
    start = ledger.mark("start", **({"workers": fleet.workers} if fleet else {}))
    while True:
        elapsed = ledger.clock() - start
        if elapsed >= warmup_min_s and run.steady(scenario_users()):
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
    while not run.drained(window) and ledger.clock() - window[1] < drain_max_s:
        sleep(TICK_S)
    if ledger.ended:
        return
    run.finish("drained" if run.drained(window) else "drain limit", window=window)
    stop()
