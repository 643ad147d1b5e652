"""Run one target from its manifest: build if needed, start, wait for /readyz, stop by PID."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from bench.infra import Infra
from bench.manifest import REPO_ROOT, ResolvedTarget, Target
from bench.procs import Proc, free_port, spawn, wait_http

VENV_BIN = Path(sys.executable).parent


class TargetUnavailable(RuntimeError):
    """The target cannot run on this machine (e.g. its toolchain is missing)."""


def build(target: Target, log_dir: Path) -> None:
    """Run the target's build step, if it has one; TargetUnavailable says why it cannot run."""
    if not target.build:
        return
    if shutil.which(target.build[0]) is None:
        raise TargetUnavailable(f"{target.build[0]} not found on PATH")
    log = log_dir / f"build-{target.name}.log"
    with log.open("w") as fh:
        done = subprocess.run(target.build, cwd=REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT,
                              check=False)
    if done.returncode != 0:
        raise TargetUnavailable(f"build failed:\n{log.read_text()[-2000:]}")


def label(target: Target, overrides: dict[str, int] | None = None) -> str:
    """A target's name plus its per-run overrides (flask-sync-workers16): logs, raw files."""
    return target.name + "".join(f"-{k}{v}" for k, v in (overrides or {}).items())


def target_env(resolved: ResolvedTarget, infra: Infra, **settings: object) -> dict[str, str]:
    """The target's environment: ours + infra URLs + manifest env + TARGET_NAME + settings."""
    return {
        **os.environ, **infra.env(), **resolved.env,
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        "TARGET_NAME": resolved.name,
        **{key.upper(): str(value) for key, value in settings.items()},
    }


@contextlib.contextmanager
def running(target: Target, infra: Infra, log_dir: Path, *, overrides: dict[str, int] | None = None,
            port: int | None = None, host: str = "127.0.0.1", ready_timeout: float = 90,
            **settings: object) -> Iterator[tuple[ResolvedTarget, Proc]]:
    """Build, start and wait for a target; stop its whole process group on exit.

    `settings` become environment variables (db_ms=50 → DB_MS=50).
    """
    build(target, log_dir)
    resolved = target.resolve(overrides, host=host, port=port or free_port(host))
    proc = spawn(target.name, resolved.argv, env=target_env(resolved, infra, **settings),
                 cwd=REPO_ROOT, log_path=log_dir / f"{label(target, overrides)}.log")
    try:
        wait_http(f"http://{host}:{resolved.port}/readyz", proc, timeout=ready_timeout)
        yield resolved, proc
    finally:
        proc.stop()
