"""Sample a process tree's memory (RSS, PSS, USS) and CPU while load runs.

PSS is the headline: RSS counts pages shared by forked workers (the interpreter, imported modules)
once per process, so summing RSS over a gunicorn tree overstates its memory; PSS splits each shared
page between the processes that map it, so the tree's PSS adds up to what it really costs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

MB = 1024 * 1024


def tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants that still exist."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def memory_mb(pid: int) -> dict[str, float]:
    """Summed RSS / PSS / USS of a process tree right now, in MiB."""
    total = {"rss": 0.0, "pss": 0.0, "uss": 0.0}
    for proc in tree(pid):
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total["rss"] += info.rss / MB
        total["pss"] += info.pss / MB
        total["uss"] += info.uss / MB
    return total


@dataclass
class _ProcStats:
    role: str
    first_cpu: float
    last_cpu: float
    peak_rss: float = 0.0
    peak_pss: float = 0.0
    peak_uss: float = 0.0
    peak_threads: int = 0  # OS threads of the process (seed 001: "no extra threads")


class PeriodicSampler:
    """Calls `_sample()` on entry, every `interval` seconds in a thread, and on exit.

    Subclasses (dataclasses) define `interval` and `_sample`; `started` and `elapsed` are set here.
    """

    interval: float
    elapsed: float = 0.0

    def _sample(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.elapsed = time.monotonic() - self.started

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()


@dataclass
class TreeSampler(PeriodicSampler):
    """Background sampler of one process tree (the target, or Locust)."""

    pid: int
    interval: float = 0.5
    memory: bool = True
    peak: dict[str, float] = field(default_factory=lambda: {"rss": 0.0, "pss": 0.0, "uss": 0.0})
    procs: dict[int, _ProcStats] = field(default_factory=dict)
    samples: list[dict[str, float]] = field(default_factory=list)

    def _sample(self) -> None:
        now = {"t": time.monotonic() - getattr(self, "started", time.monotonic()),
               "rss": 0.0, "pss": 0.0, "uss": 0.0}
        for proc in tree(self.pid):
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    cpu = times.user + times.system
                    info = proc.memory_full_info() if self.memory else None
                    threads = proc.num_threads()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            stats = self.procs.get(proc.pid)
            if stats is None:
                role = "main" if proc.pid == self.pid else _role(proc)
                stats = self.procs[proc.pid] = _ProcStats(role=role, first_cpu=cpu, last_cpu=cpu)
            stats.last_cpu = cpu
            stats.peak_threads = max(stats.peak_threads, threads)
            if info is not None:
                rss, pss, uss = info.rss / MB, info.pss / MB, info.uss / MB
                stats.peak_rss = max(stats.peak_rss, rss)
                stats.peak_pss = max(stats.peak_pss, pss)
                stats.peak_uss = max(stats.peak_uss, uss)
                now["rss"] += rss
                now["pss"] += pss
                now["uss"] += uss
        for key in ("rss", "pss", "uss"):
            self.peak[key] = max(self.peak[key], now[key])
        self.samples.append(now)

    def cpu_seconds(self) -> float:
        """CPU time the tree used while sampled (processes that vanished count up to last sample)."""
        return sum(s.last_cpu - s.first_cpu for s in self.procs.values())

    def cpu_pct(self) -> float:
        """Average CPU of the whole tree over the sampled time, % of one core."""
        return 100.0 * self.cpu_seconds() / self.elapsed if self.elapsed else 0.0

    def max_process_cpu_pct(self) -> float:
        """The busiest single process, % of one core: ≥ 90 means that process was the limit."""
        if not self.elapsed or not self.procs:
            return 0.0
        return max(100.0 * (s.last_cpu - s.first_cpu) / self.elapsed for s in self.procs.values())


def _role(proc: psutil.Process) -> str:
    """A child's part: "celery" for a Celery worker process (fastapi-celery's job workers, told apart
    from its web server), else "worker"."""
    try:
        return "celery" if is_celery(proc.cmdline()) else "worker"
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "worker"


def is_celery(argv: list[str]) -> bool:
    """Whether a command line is a Celery worker's: the program is the `celery` script (run by its
    interpreter: `.../python .../bin/celery -A ...`; its prefork children keep that command line),
    `python -m celery`, or the process title Celery sets when setproctitle is installed
    (`[celeryd: celery@host:ForkPoolWorker-1]`). Not merely "celery" anywhere in it: fastapi-celery's
    launcher (`-m fastapi_app.celery_stack`) and web server (`fastapi_app.celery_app:app`) have it too."""
    if argv and argv[0].startswith("[celeryd"):
        return True
    if any(Path(part).name == "celery" for part in argv[:2]):
        return True
    return argv[1:3] == ["-m", "celery"]
