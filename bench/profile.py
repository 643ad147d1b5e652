"""`bench profile TARGET`: where one measured cell's CPU goes, layer by layer (docs/DESIGN.md, Profiles).

The cell is measured as `bench compare` measures one (infra, the target, its warm-up, one users level
of the recommendation scenario: a `Result` with the CPU ms per request of the process-tree sampler),
and while that level's window runs the target's process tree is profiled:

- Python: py-spy (`record --subprocesses --nonblocking`; idle threads left out), a speedscope file;
- Go: the app's opt-in pprof listener (PPROF_ADDR, loopback only), /debug/pprof/profile?seconds=D,
  a .pb.gz (folded with `go tool pprof -traces`);
- Node: V8's profiler through the inspector module in every process of the tree (bench/v8_profile.js,
  preloaded by NODE_OPTIONS=--require, started and stopped by SIGUSR2), .cpuprofile files.

Each tool's samples are folded into stacks (root first); a sample counts for the layer of its
innermost frame that belongs to one (LAYER_RULES), so the json, ssl or socket work the openai SDK
does counts as the SDK's, and a sample with no such frame (the runtime, the event loop's own
plumbing) as "other". A layer's CPU ms per request is its share x the row's CPU ms per request.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from bench import infra as infra_mod
from bench import probe
from bench.compare import (
    RESULTS_DIR,
    Cell,
    CompareOptions,
    Subject,
    cell_budget_s,
    measure_level,
    warm_up,
)
from bench.layers import (
    PPROF_RATE_HZ,
    V8_HOOK,
    Stacks,
    fold_cpuprofile,
    fold_pprof_traces,
    fold_speedscope,
    layer_samples,
    write_folded,
)
from bench.load import ledger_path
from bench.manifest import Target
from bench.procs import Proc, free_port, spawn
from bench.results import Profile, Result, Run, Scenario, new_run
from bench.targets import VENV_BIN, TargetUnavailable, running

LANGUAGES = {"flask": "python", "django": "python", "fastapi": "python", "go": "go", "node": "node"}
TOOLS = {"python": "py-spy", "go": "pprof", "node": "V8 profiler"}



class ProfileError(ValueError):
    """The target cannot be profiled (no profiler for its language, or not a recommendation target)."""


def language_of(target: Target) -> str:
    """python, go or node; a ProfileError names what is missing for any other."""
    if target.framework not in LANGUAGES:
        raise ProfileError(f"no profiler for {target.framework} ({target.name}): bench profile covers "
                           "Python (py-spy), Go (pprof) and Node (V8's profiler)")
    if not target.measured_in("recommendation"):
        raise ProfileError(f"{target.name} does not serve the recommendation load that bench profile "
                           "measures")
    return LANGUAGES[target.framework]


# --- the profilers ------------------------------------------------------------------------------

class Profiler:
    """One tool on one target: `settings` go into the target's environment at its start, `attach`
    follows its start, `start(seconds)` comes at the window's, `finish()` returns the folded stacks
    (and writes the tool's own file(s) into the run folder), `close()` stops whatever still runs."""

    tool = ""
    version_argv: tuple[str, ...] = ()  # prints the version, which version_label names
    version_label = "{tool} {version}"

    def __init__(self, out: Path, rate_hz: float) -> None:
        self.out = out  # the run folder and the files' prefix: <run>/profile-<target>
        self.rate_hz = rate_hz
        self.files: list[Path] = []
        self.pid: int | None = None

    @property
    def settings(self) -> dict[str, str]:
        return {}

    def attach(self, pid: int) -> None:
        self.pid = pid

    def start(self, seconds: int) -> None:
        raise NotImplementedError

    def finish(self) -> Stacks:
        raise NotImplementedError

    def close(self) -> None:
        pass


class PySpy(Profiler):
    tool = "py-spy"
    version_argv = (str(VENV_BIN / "py-spy"), "--version")
    proc: Proc | None = None

    def start(self, seconds: int) -> None:
        path = self.out.with_suffix(".speedscope.json")
        self.proc = spawn("py-spy", [
            str(VENV_BIN / "py-spy"), "record", "--pid", str(self.pid), "--subprocesses",
            "--rate", f"{self.rate_hz:g}", "--duration", str(seconds), "--format", "speedscope",
            "--nonblocking", "--full-filenames", "--output", str(path)],
            log_path=self.out.parent / "raw" / "py-spy.log", stop_signal=signal.SIGINT)
        self.files = [path]
        self.deadline = time.monotonic() + seconds + 30

    def finish(self) -> Stacks:
        while self.proc.alive() and time.monotonic() < self.deadline:
            time.sleep(0.1)
        self.close()
        if not self.files[0].exists():
            raise RuntimeError(f"py-spy wrote no profile:\n{self.proc.log_tail()}")
        return fold_speedscope(json.loads(self.files[0].read_text()))

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=10)  # SIGINT: py-spy writes what it sampled, then exits


class Pprof(Profiler):
    tool = "pprof"
    version_argv = ("go", "version")
    version_label = "{tool}, {version}"

    def __init__(self, out: Path, rate_hz: float) -> None:
        super().__init__(out, PPROF_RATE_HZ)
        self.addr = f"127.0.0.1:{free_port()}"
        self.thread: threading.Thread | None = None
        self.error: str | None = None

    @property
    def settings(self) -> dict[str, str]:
        return {"pprof_addr": self.addr}  # PPROF_ADDR: go_app serves net/http/pprof there

    def start(self, seconds: int) -> None:
        path = self.out.with_suffix(".pb.gz")
        self.files = [path]

        def fetch() -> None:
            try:
                resp = httpx.get(f"http://{self.addr}/debug/pprof/profile", params={"seconds": seconds},
                                 timeout=seconds + 30)
                resp.raise_for_status()
                path.write_bytes(resp.content)
            except httpx.HTTPError as exc:
                self.error = f"{type(exc).__name__}: {exc}"

        self.thread = threading.Thread(target=fetch, name="pprof", daemon=True)
        self.thread.start()

    def finish(self) -> Stacks:
        self.thread.join()
        if self.error:
            raise RuntimeError(f"pprof: {self.error}")
        go = shutil.which("go")
        if go is None:
            raise TargetUnavailable("go not found on PATH (go tool pprof folds the profile)")
        done = subprocess.run([go, "tool", "pprof", "-traces", str(self.files[0])], capture_output=True,
                              text=True, check=False, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"go tool pprof -traces failed:\n{done.stderr[-2000:]}")
        return fold_pprof_traces(done.stdout, self.rate_hz)


class V8(Profiler):
    tool = "V8 profiler"
    version_argv = ("node", "--version")
    version_label = "{tool}, node {version}"
    timer: threading.Timer | None = None

    @property
    def settings(self) -> dict[str, str]:
        preload = f"{os.environ.get('NODE_OPTIONS', '')} --require {json.dumps(str(V8_HOOK))}".strip()
        return {"node_options": preload, "lab_v8_profile_prefix": str(self.out),
                "lab_v8_profile_interval_us": str(round(1e6 / self.rate_hz))}

    def start(self, seconds: int) -> None:
        self.pids = [p.pid for p in probe.tree(self.pid)]  # node:cluster: the primary and its workers
        self._signal()
        self.timer = threading.Timer(seconds, self._signal)
        self.timer.daemon = True
        self.timer.start()

    def _signal(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR2)

    def finish(self) -> Stacks:
        self.timer.join()
        self.files = [Path(f"{self.out}-{pid}.cpuprofile") for pid in self.pids]
        deadline = time.monotonic() + 15
        while not all(f.exists() for f in self.files) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.files = [f for f in self.files if f.exists()]
        if not self.files:
            raise RuntimeError("no .cpuprofile written: is bench/v8_profile.js preloaded (NODE_OPTIONS)?")
        stacks: Stacks = Counter()
        for f in self.files:
            stacks.update(fold_cpuprofile(json.loads(f.read_text())))
        return stacks

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()


PROFILERS: dict[str, type[Profiler]] = {"python": PySpy, "go": Pprof, "node": V8}


class WindowWatch:
    """Called on every tick of a Locust run: reads its ledger (written line by line) and calls `then`
    once, when the window's mark appears."""

    def __init__(self, ledger: Path, then: Callable[[], None]) -> None:
        self.ledger, self.then = ledger, then
        self.offset = 0
        self.seen = False

    def __call__(self) -> None:
        if self.seen or not self.ledger.exists():
            return
        with self.ledger.open("rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read()
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.splitlines():
            if b'"mark"' in line and json.loads(line).get("mark") == "window":
                self.seen = True
                self.then()
                return


# --- the run ------------------------------------------------------------------------------------

@dataclass
class ProfileOptions:
    targets: list[Target]
    users: int = 100
    duration_s: float = 20.0  # the measured window, which is also what the profiler samples
    db_ms: int = 50
    llm_ms: int = 500
    rate_hz: float = 100  # samples per second (py-spy, V8); Go's profiler has its own 100 Hz
    results_dir: Path = RESULTS_DIR
    invocation: tuple[list[str], str | None] | None = None

    def compare_options(self) -> CompareOptions:
        return CompareOptions(targets=self.targets, users=[self.users], duration_s=self.duration_s,
                              db_ms=self.db_ms, llm_ms=self.llm_ms, calibration=False, claims=False,
                              quick=True, results_dir=self.results_dir)


def run_profile(opts: ProfileOptions, console: Console | None = None, run_id: str | None = None) -> Path:
    """Each target's cell measured and profiled in its window, one after another on the same
    PostgreSQL and upstream: results/profile-<run>/ with results.json (the rows and their `profiles`
    entries), the tools' files and the folded stacks. A target that fails is skipped, with why."""
    console = console or Console()
    run, run_dir = new_run(opts.results_dir, "profile-", run_id, Scenario(
        name="profile", db_ms=opts.db_ms, llm_ms=opts.llm_ms, duration_s=opts.duration_s), opts.invocation)
    with contextlib.ExitStack() as stack:
        infra = stack.enter_context(infra_mod.start(run_dir / "raw"))
        progress = stack.enter_context(Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(), console=console))
        for target in opts.targets:
            try:
                run.profiles.append(profile_target(target, opts, infra, run, run_dir, progress))
            except Exception as exc:  # the run folder keeps the row (if measured) and says why
                why = str(exc) if isinstance(exc, TargetUnavailable) else \
                    f"failed: {type(exc).__name__}: {exc}"
                run.skipped[target.name] = why.strip().splitlines()[0]
                (run_dir / "raw" / f"{target.name}.error.txt").write_text(why)
            run.save(run_dir)
    return run_dir


def profile_target(target: Target, opts: ProfileOptions, infra, run: Run, run_dir: Path,
                   progress: Progress) -> Profile:
    """One target: started, warmed up, one users level measured with its tree profiled in the window."""
    name, language = target.name, language_of(target)
    copts = opts.compare_options()
    cell = Cell(target, {}, "recommendation", [opts.users])
    seconds = max(1, round(opts.duration_s))
    profiler = PROFILERS[language](run_dir / f"profile-{name}", opts.rate_hz)
    task = progress.add_task(f"{name}: starting", total=cell_budget_s(cell, copts))
    with contextlib.ExitStack() as stack:
        stack.callback(profiler.close)  # the profiler stopped even on Ctrl-C
        resolved, proc = stack.enter_context(running(
            target, infra, run_dir / "raw", db_ms=opts.db_ms, llm_ms=opts.llm_ms,
            upstream_timeout_s=copts.upstream_timeout_s, **profiler.settings))
        progress.update(task, description=f"{name}: warming up")
        subject = Subject.of(resolved, "recommendation", pid=proc.pid)
        subject = replace(subject, warmup_s=round(warm_up(resolved.base_url, opts.db_ms, opts.llm_ms), 2))
        profiler.attach(proc.pid)
        prefix = run_dir / "raw" / f"{name}_u{opts.users}"

        def begin() -> None:
            progress.update(task, description=f"{name} @ {opts.users} users: {profiler.tool}, window")
            profiler.start(seconds)

        watch = WindowWatch(ledger_path(prefix), begin)
        result = measure_level(subject, cell, opts.users, copts, prefix, None, progress, task, on_tick=watch)
        run.results.append(result)
        run.save(run_dir)
        if not watch.seen:
            raise RuntimeError("the window never opened: nothing was profiled")
        progress.update(task, description=f"{name}: folding the profile")
        stacks = profiler.finish()
        if not proc.alive():
            raise RuntimeError(f"{name} died during the run:\n{proc.log_tail()}")
        progress.update(task, description=f"{name}: done", completed=progress.tasks[task].total)
    return profile_entry(target, opts.users, language, profiler, stacks, result, seconds)


def profile_entry(target: Target, users: int, language: str, profiler: Profiler, stacks: Stacks,
                  result: Result, seconds: int) -> Profile:
    """The `profiles` entry: the samples by layer, and the files (the folded stacks written here)."""
    folded = profiler.out.with_suffix(".folded")
    write_folded(folded, stacks)
    counts = layer_samples(language, stacks)
    total = sum(counts.values())
    return Profile(target=target.name, users=users, language=language, tool=tool_version(profiler),
                   rate_hz=profiler.rate_hz, window_s=seconds, samples=total,
                   layers={k: round(100 * n / total, 1) if total else 0.0 for k, n in counts.items()},
                   layer_samples=counts, cpu_ms_per_request=result.cpu_ms_per_request,
                   files=[f.name for f in profiler.files], folded=folded.name,
                   flame_graph=f"flame-{target.name}.svg")


def tool_version(profiler: Profiler) -> str:
    """What made the samples: "py-spy 0.4.3", "pprof, go1.26.8", "V8 profiler, node v20.20.2"."""
    try:
        out = subprocess.run(profiler.version_argv, capture_output=True, text=True, check=False,
                             timeout=10).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        out = []
    version = next((word for word in out if re.match(r"(v|go)?\d", word)), None)
    return profiler.version_label.format(tool=profiler.tool, version=version) if version else profiler.tool
