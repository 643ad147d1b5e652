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
from dataclasses import dataclass
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
    """Every request of a run, and its phase marks. Written to `path`, or with `forward` handed to that
    instead, request records only (a web-UI swarm's Locust worker: the master writes them)."""

    def __init__(self, path: str | Path | None = None, clock: Callable[[], float] = time.time,
                 forward: Callable[[dict], object] | None = None) -> None:
        self._fh = open(path, "w", buffering=1) if path is not None else None  # noqa: SIM115
        self.forward = forward
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

    def mark(self, phase: str, at: float | None = None, **extra: object) -> float:
        """A phase mark, now (or `at`: a web-UI row stopped in its warm-up opens its window there)."""
        now = self.clock() if at is None else at
        self._write({"mark": phase, "t": round(now, 6), **extra})
        return now

    def finish(self, reason: str, window: tuple[float, float] | None = None,
               unfinished: int | None = None, end: bool = True, row: int | None = None) -> int:
        """Write every request still in flight as censored (wait so far), then the end mark; returns
        how many of them were the window's (all of them without a window). `unfinished`: the
        master's count of its workers' (it has no request of its own).

        `end=False` (a web-UI row whose swarm goes on, its users changed): only the window's
        requests still in flight are written censored, tagged with `row`, and the ledger keeps
        recording; their answers, when they come, are written too, and `read_ledger` for that
        row leaves them out (they end after its end mark)."""
        if self.ended:
            return 0
        now = self.clock()
        tag = {} if row is None else {"row": row}
        mine = [(name, t0) for name, t0 in self.inflight.values()
                if end or (window is not None and window[0] <= t0 < window[1])]
        for name, t0 in mine:
            self._write({"n": name, "t0": round(t0, 6), "ms": round((now - t0) * 1000, 3), "cens": True,
                         **tag})
        if unfinished is None:
            unfinished = sum(window is None or window[0] <= t0 < window[1] for _, t0 in mine)
        if end:
            self.inflight.clear()
            self.ended = True
        self._write({"mark": "end", "t": round(now, 6), "reason": reason, "unfinished": unfinished, **tag})
        return unfinished

    def new_row(self) -> None:
        """A web-UI swarm's next row (its users changed): steady again once every user, spawned
        anew, has completed a request since."""
        self.cycled.clear()
        self.spawned = False

    def close(self) -> None:
        if self._fh is not None and not self._fh.closed:
            self._fh.close()

    def _write(self, obj: dict) -> None:
        if self.forward is not None:
            if "mark" not in obj:  # a worker's marks are not the run's: the master writes its own
                self.forward(obj)
        elif self._fh is not None and not self._fh.closed:
            self._fh.write(json.dumps(obj, separators=(",", ":")) + "\n")

    def write_forwarded(self, records: list[dict]) -> None:
        """A web-UI master: the request records a worker forwarded (its Ledger's `forward`)."""
        for rec in records:
            self._write(rec)


def report_status(recording: Recording, ledger: Ledger, send: Callable[[str, dict], object],
                  scenario_users: Callable[[], int], sleep: Callable[[float], object]) -> None:
    """A Locust worker's counts for the master's Fleet, every WORKER_STATUS_S while `ledger` records."""
    while recording.ledger is ledger and not ledger.ended:
        send("lab_status", ledger.status(scenario_users(), recording.window))
        sleep(WORKER_STATUS_S)


class Recording:
    """What this Locust process's request hooks (locustfile.py) write to: the harness's ledger
    (--ledger) or a web-UI swarm's (web_session.py), with the master's Fleet of its workers' reports
    and, on a worker, the window the master told it."""

    def __init__(self) -> None:
        self.ledger: Ledger | None = None
        self.fleet: Fleet | None = None
        self.window: tuple[float, float] | None = None
        self.web = False  # a web-UI swarm's: web_session.py ends the rows and the ledger
        self.flush: Callable[[], object] = lambda: None  # a web-UI worker: send the records it holds


RECORDING = Recording()


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
                 sleep: Callable[[float], object], forwarded: bool = False) -> None:
        self.ledger, self.workers, self.send, self.sleep = ledger, workers, send, sleep
        self.forwarded = forwarded  # the workers' requests are in the master's own file (web UI)
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

    def finish(self, reason: str, window: tuple[float, float] | None = None, end: bool = True,
               row: int | None = None) -> int:
        """Every worker writes its end (its requests in flight censored); then the master's end mark.
        `end=False`, `row`: a web-UI row whose swarm goes on (Ledger.finish)."""
        self.send("lab_finish", {"reason": reason, "window": list(window) if window else None,
                                 "end": end, "row": row})
        waited = 0.0
        while len(self.ends) < self.workers and waited < FINISH_WAIT_S:
            self.sleep(TICK_S)
            waited += TICK_S
        unfinished = self.ledger.finish(reason, window, unfinished=self.unfinished(), end=end, row=row)
        self.ends = {}  # a web-UI swarm's next row finishes again
        return unfinished


@dataclass
class RowControl:
    """A web-UI row's phases, steered by what the user does in the Locust web UI (web_session.py):
    the harness's three phases, with the window closed from outside instead of after a fixed time."""
    row: int  # the row's number in its swarm: its marks and censored records carry it
    window_s: float | None = None  # close the window after this long (Record s, the Compare form)
    close: str | None = None  # why the window closed: "record", "stop", "users", "quit"
    cut: bool = False  # end the drain now (Stop pressed again, Locust stopping the users)
    phase: str = "warm-up"  # warm-up, window, drain, done
    on_phase: Callable[[str], object] | None = None  # told as each phase begins (the samplers' edges)
    recorded: bool = False  # its row is saved: whoever comes second leaves it

    def enter(self, phase: str) -> None:
        self.phase = phase
        if self.on_phase is not None:
            self.on_phase(phase)

    def closing(self, opened: float, now: float) -> str | None:
        if self.close is None and self.window_s is not None and now - opened >= self.window_s:
            self.close = "record"
        return self.close


def run_phases(ledger: Ledger, *, window_s: float | None = None, warmup_max_s: float,
               drain_max_s: float, scenario_users: Callable[[], int], sleep: Callable[[float], object],
               stop: Callable[[], object], warmup_min_s: float = WARMUP_MIN_S,
               fleet: Fleet | None = None, control: RowControl | None = None) -> str | None:
    """Warm-up until steady, the measured window, the drain; then stop the run.

    Steady state: once every scenario user has completed a request, the burst of first requests
    (all sent at once) has gone through the queue, and each request waits behind what a
    closed loop keeps in flight. A target so slow that this takes longer than warmup_max_s is
    measured anyway (the window mark says steady=false; the harness's W check tells the result).
    With a `fleet` (locust --processes) the requests are the workers': its reports decide, and the
    marks go to `ledger`, the master's.

    With a `control` (a web-UI row) the window lasts until the control closes it, the marks carry
    its row, and a row closed because its users changed leaves the ledger recording for the next
    one. Returns why the window closed ("warm-up": before it opened; None: the ledger ended from
    outside).
    """
    run = fleet or ledger  # who holds the requests
    tag = {} if control is None else {"row": control.row}
    workers = {} if fleet is None else {"workers": fleet.workers, **({"forwarded": True} if fleet.forwarded
                                                                     else {})}
    start = ledger.mark("start", **workers, **tag)
    while True:
        elapsed = ledger.clock() - start
        if control is not None and control.close:
            return "warm-up"
        if elapsed >= warmup_min_s and run.steady(scenario_users()):
            steady = True
            break
        if elapsed >= warmup_max_s:
            steady = False
            break
        sleep(TICK_S)
    if ledger.ended:  # the run was stopped from outside (Locust's --run-time backstop, Ctrl-C)
        return None
    window_start = ledger.mark("window", steady=steady, **tag)
    if control is None:
        sleep(window_s)
        reason = "window"
    else:
        control.enter("window")
        while not (reason := control.closing(window_start, ledger.clock())) and not ledger.ended:
            sleep(TICK_S)
    if ledger.ended:
        return None
    window = (window_start, ledger.mark("drain", **tag))
    if control is not None:
        control.enter("drain")
    # Only the window's own requests are waited for: one started before it that is still waiting
    # (a starved user) is written censored at the end, which is all its row needs to know.
    while (not run.drained(window) and ledger.clock() - window[1] < drain_max_s
           and not (control is not None and control.cut) and not ledger.ended):
        sleep(TICK_S)
    if ledger.ended:
        return None
    ends = control is None or reason != "users"
    run.finish("drained" if run.drained(window) else "drain limit", window=window, end=ends,
               row=None if control is None else control.row)
    if control is not None:
        control.enter("done")
    if ends:
        stop()
    return reason
