"""`bench up TARGET...`: the native interactive path (`make up TARGET=...`; docs/DESIGN.md).

Starts the infra (embedded PostgreSQL + mock upstream, or the servers DATABASE_URL / UPSTREAM_URL
name) and each target on its manifest port, bound to 127.0.0.1; prints the URLs and the exact
`locust` command for the web UI; runs until Ctrl-C or SIGTERM, then stops everything it started,
by PID, through the same context managers `bench compare` uses. Logs go to .lab/up/<timestamp>/.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench import infra, manifest
from bench.load import LOCUSTFILE
from bench.manifest import REPO_ROOT, ResolvedTarget, Target
from bench.procs import Proc, free_port, port_is_free
from bench.session import write_registry
from bench.targets import TargetUnavailable, running

RUNS_DIR = REPO_ROOT / ".lab" / "up"
LOCUST_CONF = REPO_ROOT / "locust" / "locust.conf"
LOCUST = Path(sys.executable).parent / "locust"
HOST = "127.0.0.1"
WEB_PORT = 8089


def _shown(path: Path) -> str:
    """A path as typed from the repository root (where the printed command runs)."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(REPO_ROOT))
    return str(path)


def locust_argv(resolved: ResolvedTarget, pid: int | None, db_ms: int, llm_ms: int,
                web_port: int = WEB_PORT, registry: Path | None = None) -> list[str]:
    """The Locust web UI, its Host set to one target; run from the repository root.

    With `pid`, the memory tab watches that process tree; without, the one listening on the Host's
    port, so it follows the Host from swarm to swarm. `registry` (write_registry's file) names the
    targets behind their URLs for the Comparison tab's rows and the Host field's list."""
    return [_shown(LOCUST), "-f", _shown(LOCUSTFILE), "--config", _shown(LOCUST_CONF),
            "--web-host", HOST, "--web-port", str(web_port), "-H", resolved.base_url,
            *(["--memory-pid", str(pid)] if pid else []),
            *(["--lab-targets", _shown(registry)] if registry else []),
            "--db-ms", str(db_ms), "--llm-ms", str(llm_ms), "RecommendationUser", "Canary"]


def _interrupt(signum, frame):
    # The first Ctrl-C / SIGTERM starts the shutdown; further ones must not cut it short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _report(console: Console, lab: infra.Infra, started: list[tuple[ResolvedTarget, Proc]],
            run_dir: Path, db_ms: int, llm_ms: int) -> None:
    table = Table("target", "URL", "PID", "model", title="Concurrency Lab: up")
    for resolved, proc in started:
        table.add_row(resolved.name, resolved.base_url, str(proc.pid), resolved.model)
    table.columns[1].no_wrap = True
    console.print(table)
    for key, value in lab.env().items():
        given = " (from the environment)" if os.environ.get(key) else ""
        console.print(f"{key}={value}{given}", soft_wrap=True, markup=False, highlight=False)
    console.print(f"logs: {run_dir}", soft_wrap=True, markup=False, highlight=False)
    web_port = WEB_PORT if port_is_free(WEB_PORT) else free_port(HOST)
    registry = write_registry(run_dir / "targets.json", [resolved for resolved, _ in started])
    console.print(f"\nLocust web UI (in another terminal, from {REPO_ROOT}):", soft_wrap=True,
                  highlight=False)
    console.print(shlex.join(locust_argv(started[0][0], None, db_ms, llm_ms, web_port, registry)),
                  soft_wrap=True, markup=False, highlight=False)
    console.print(f"then open http://{HOST}:{web_port}: its Host field lists the targets above, and "
                  "every swarm is recorded in its Comparison tab (results/web-ui-<time>/).  Ctrl-C here "
                  "stops everything.", soft_wrap=True, highlight=False)


def up(targets: list[Target], console: Console, *, overrides: dict[str, int] | None = None,
       db_ms: int = 50, llm_ms: int = 500, runs_dir: Path = RUNS_DIR) -> int:
    """Run until interrupted; return the exit code (0 after Ctrl-C, 1 when a target died)."""
    run_dir = runs_dir / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    started: list[tuple[ResolvedTarget, Proc]] = []
    code = 0
    try:
        with contextlib.ExitStack() as stack:
            console.print(f"starting infra (logs in {run_dir}) …", soft_wrap=True, highlight=False)
            lab = stack.enter_context(infra.start(run_dir))
            for target in targets:
                port = target.port
                if not port_is_free(port):
                    port = free_port(HOST)
                    console.print(f"[yellow]{target.name}: port {target.port} is busy, using {port}[/]")
                console.print(f"starting {target.name} …", highlight=False)
                try:
                    started.append(stack.enter_context(running(
                        target, lab, run_dir, overrides=overrides, port=port, host=HOST,
                        db_ms=db_ms, llm_ms=llm_ms)))
                except TargetUnavailable as why:
                    console.print(f"[yellow]{target.name} skipped: {why}[/]")
            if not started:
                console.print("[red]no target could start[/]")
                return 1
            _report(console, lab, started, run_dir, db_ms, llm_ms)
            while True:
                time.sleep(1)
                dead = [(r, p) for r, p in started if not p.alive()]
                if dead:
                    for resolved, proc in dead:
                        console.print(f"[red]{resolved.name} exited with {proc.popen.returncode}:[/]")
                        console.print(proc.log_tail(), markup=False, highlight=False)
                    code = 1
                    break
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    names = ", ".join(r.name for r, _ in started) or "nothing"
    console.print(f"stopped {names} and the infra it started; logs in {run_dir}", soft_wrap=True,
                  highlight=False)
    return code


def main(names: list[str], console: Console, *, all_targets: bool = False, sets: Sequence[str] = (),
         db_ms: int = 50, llm_ms: int = 500) -> int:
    """The `bench up` command: validate the arguments, then run until interrupted."""
    if not names and not all_targets:
        raise ValueError("name at least one target (or --all); `bench targets` lists them")
    chosen = manifest.select([] if all_targets else names)
    overrides = manifest.parse_overrides(sets, chosen)
    return up(chosen, console, overrides=overrides, db_ms=db_ms, llm_ms=llm_ms)
