"""A simulated closed-loop Locust run against a FIFO server, written through the real ledger.

CONSTRUCTED data, not a measurement: `users` clients with no think time (spawned over
`spawn_s`, as Locust does at `-r users`) send requests to `servers` workers that serve them in
arrival order in `service_s` each; optionally a canary at 4 checks per second through the same
queue (a sync worker serves /healthz only when its turn comes). `lifo=True` serves the newest
request first instead, the unfairness a blocked event loop shows (some users cycle, the rest wait).
The locustfile's ledger (locust/request_ledger.py) records every request on a fake clock, and its
`run_phases` drives the simulation through `sleep`, so the file written is what a real run of that
model would write.
"""

from __future__ import annotations

import heapq
import importlib.util
import itertools
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path

from bench.manifest import REPO_ROOT

T0 = 1_700_000_000.0  # the fake clock starts at a plausible epoch
ROW = "/recommendation/[id]"
CANARY = "/healthz"


def ledger_module():
    """locust/request_ledger.py, loaded by path (the `locust` folder is not a package)."""
    path = REPO_ROOT / "locust" / "request_ledger.py"
    spec = importlib.util.spec_from_file_location("request_ledger", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import would: its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class ClosedLoop:
    def __init__(self, path: Path, *, users: int, servers: int, service_s: float, spawn_s: float = 1.0,
                 canary: bool = False, canary_service_s: float = 0.002, lifo: bool = False) -> None:
        self.now = T0
        self.ledger = ledger_module().Ledger(path, clock=lambda: self.now)
        self.users, self.servers, self.service_s = users, servers, service_s
        self.canary_service_s = canary_service_s
        self.lifo = lifo  # serve the newest request first: an unfair queue that starves the oldest
        self.free = servers
        self.queue: deque[str] = deque()
        self.open: dict[str, object] = {}  # user -> its ledger.track() context, while in flight
        self.started: dict[str, float] = {}
        self.spawned_users = 0
        self.stopped = False
        self._events: list[tuple[float, int, Callable, tuple]] = []
        self._seq = itertools.count()
        for i in range(users):
            self._at(T0 + spawn_s * i / users, self._spawn, f"u{i}")
        if canary:
            self._at(T0, self._issue, "canary")
        self._at(T0 + spawn_s, self._all_spawned)

    # --- the controller's view ----------------------------------------------------------------

    def run(self, *, window_s: float, warmup_max_s: float, drain_max_s: float,
            warmup_min_s: float = 2.0) -> None:
        mod = ledger_module()
        mod.run_phases(self.ledger, window_s=window_s, warmup_max_s=warmup_max_s,
                       drain_max_s=drain_max_s, warmup_min_s=warmup_min_s,
                       scenario_users=lambda: self.spawned_users, sleep=self.sleep, stop=self.stop)
        self.ledger.close()

    def sleep(self, seconds: float) -> None:
        until = self.now + seconds
        while self._events and self._events[0][0] <= until and not self.stopped:
            when, _, fn, args = heapq.heappop(self._events)
            self.now = when
            fn(*args)
        self.now = until

    def stop(self) -> None:
        self.stopped = True

    # --- the simulated system -----------------------------------------------------------------

    def _at(self, when: float, fn: Callable, *args) -> None:
        heapq.heappush(self._events, (when, next(self._seq), fn, args))

    def _spawn(self, user: str) -> None:
        self.spawned_users += 1
        self._issue(user)

    def _all_spawned(self) -> None:
        self.ledger.spawned = True

    def ledger_of(self, user: str):
        """The ledger that records this user's requests: the run's, with one Locust process."""
        return self.ledger

    def _issue(self, user: str) -> None:
        name = CANARY if user == "canary" else ROW
        track = self.ledger_of(user).track(user, name, scenario=user != "canary")
        track.__enter__()
        self.open[user] = track
        self.started[user] = self.now
        self.queue.append(user)
        self._dispatch()

    def _dispatch(self) -> None:
        while self.free and self.queue:
            user = self.queue.pop() if self.lifo else self.queue.popleft()
            self.free -= 1
            took = self.canary_service_s if user == "canary" else self.service_s
            self._at(self.now + took, self._done, user)

    def _done(self, user: str) -> None:
        self.free += 1
        name = CANARY if user == "canary" else ROW
        elapsed = self.now - self.started[user]
        self.ledger_of(user).record(user, name, elapsed * 1000, True)  # Locust's request event
        self.open.pop(user).__exit__(None, None, None)
        if user == "canary":  # constant_throughput(4): the next check 0.25 s after the last began
            self._at(self.started[user] + max(0.25, elapsed), self._issue, user)
        else:  # no think time
            self._issue(user)
        self._dispatch()


class ProcessesLoop(ClosedLoop):
    """The same closed loop from `locust --processes N`: user i runs on worker i % N (the canary on
    worker 0), each worker writes its own ledger (request_ledger.worker_ledger) and reports its
    status to the master's Fleet every WORKER_STATUS_S; the master's messages (the window, the end)
    arrive at once. The master runs the phases on its own ledger, `path`, as the locustfile does."""

    def __init__(self, path: Path, *, workers: int, **kw) -> None:
        mod = ledger_module()
        self.workers = [mod.Ledger(mod.worker_ledger(path, i), clock=lambda: self.now)
                        for i in range(workers)]
        self.told: tuple[float, float] | None = None  # the window the master told the workers
        super().__init__(path, **kw)
        self.fleet = mod.Fleet(self.ledger, workers, self._send, self.sleep)
        self.spawned_on = [0] * workers  # scenario users spawned on each worker
        self._at(self.now, self._report)

    def ledger_of(self, user: str):
        return self.workers[0 if user == "canary" else int(user[1:]) % len(self.workers)]

    def run(self, *, window_s: float, warmup_max_s: float, drain_max_s: float,
            warmup_min_s: float = 2.0) -> None:
        ledger_module().run_phases(self.ledger, window_s=window_s, warmup_max_s=warmup_max_s,
                                   drain_max_s=drain_max_s, warmup_min_s=warmup_min_s,
                                   scenario_users=self.fleet.users, sleep=self.sleep, stop=self.stop,
                                   fleet=self.fleet)
        for ledger in (self.ledger, *self.workers):
            ledger.close()

    def _spawn(self, user: str) -> None:
        self.spawned_on[int(user[1:]) % len(self.workers)] += 1
        super()._spawn(user)

    def _all_spawned(self) -> None:
        for ledger in self.workers:  # the master's spawning_complete, passed on to every worker
            ledger.spawned = True

    def _report(self) -> None:
        for i, ledger in enumerate(self.workers):
            if not ledger.ended:
                self.fleet.update(f"w{i}", ledger.status(self.spawned_on[i], self.told))
        self._at(self.now + ledger_module().WORKER_STATUS_S, self._report)

    def _send(self, kind: str, data: dict) -> None:
        if kind == "lab_window":
            self.told = tuple(data["window"])
        elif kind == "lab_finish":
            for i, ledger in enumerate(self.workers):
                window = data["window"]
                self.fleet.ended(f"w{i}", ledger.finish(data["reason"], tuple(window) if window else None))


SUBMIT = "/jobs/recommendation/[id]"
POLL = "/jobs/[id]"
JOB_RESULT = "job result"


class JobLoop(ClosedLoop):
    """The jobs scenario (the locustfile's JobUser) on the same fake clock: each user submits (the
    web answers in `submit_s`), the job waits for one of `servers` job workers (FIFO, `service_s`
    each), and the user polls every `poll_every_s` (a poll takes `poll_s`, the sleep comes before
    it) until a poll starts after the job has finished. As in the locustfile, the whole cycle is
    tracked as "job result", the submit and each poll are recorded with their own start times,
    and "job result" is recorded from the submit's start to the end of the poll that saw it done.
    The canary is answered by the web at once (the jobs do not run in its event loop). With
    `fail_every` n, every n-th job ends `failed`: its "job result" is a failure.
    """

    def __init__(self, path: Path, *, users: int, servers: int, service_s: float, submit_s: float = 0.004,
                 poll_s: float = 0.002, poll_every_s: float = 0.1, fail_every: int = 0, **kw) -> None:
        self.submit_s, self.poll_s, self.poll_every_s = submit_s, poll_s, poll_every_s
        self.fail_every = fail_every
        self.jobs_done = 0
        self.done_at: dict[str, float] = {}
        super().__init__(path, users=users, servers=servers, service_s=service_s, **kw)

    def _issue(self, user: str) -> None:
        name = CANARY if user == "canary" else JOB_RESULT
        track = self.ledger.track(user, name, scenario=user != "canary")
        track.__enter__()
        self.open[user] = track
        self.started[user] = self.now
        took = self.canary_service_s if user == "canary" else self.submit_s
        self._at(self.now + took, self._canary_done if user == "canary" else self._submitted, user)

    def _canary_done(self, user: str) -> None:
        elapsed = self.now - self.started[user]
        self.ledger.record(user, CANARY, elapsed * 1000, True)
        self.open.pop(user).__exit__(None, None, None)
        self._at(self.started[user] + max(0.25, elapsed), self._issue, user)

    def _submitted(self, user: str) -> None:
        self.ledger.record(user, SUBMIT, self.submit_s * 1000, True, start_time=self.started[user])
        self.queue.append(user)
        self._dispatch()
        self._at(self.now + self.poll_every_s, self._poll, user)

    def _dispatch(self) -> None:
        while self.free and self.queue:
            user = self.queue.popleft()
            self.free -= 1
            self._at(self.now + self.service_s, self._job_done, user)

    def _job_done(self, user: str) -> None:
        self.free += 1
        self.done_at[user] = self.now
        self._dispatch()

    def _poll(self, user: str) -> None:
        sees_done = user in self.done_at  # the job finished before this poll began
        self._at(self.now + self.poll_s, self._polled, user, self.now, sees_done)

    def _polled(self, user: str, began: float, sees_done: bool) -> None:
        self.ledger.record(user, POLL, self.poll_s * 1000, True, start_time=began)
        if not sees_done:
            self._at(self.now + self.poll_every_s, self._poll, user)
            return
        del self.done_at[user]
        self.jobs_done += 1
        failed = bool(self.fail_every) and self.jobs_done % self.fail_every == 0
        self.ledger.record(user, JOB_RESULT, (self.now - self.started[user]) * 1000, not failed,
                           start_time=self.started[user])
        self.open.pop(user).__exit__(None, None, None)
        self._issue(user)  # no think time
