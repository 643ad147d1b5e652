"""Start and stop the processes the harness owns.

Every child gets its own session (so a terminal Ctrl-C reaches only the harness, which then stops
children in order) and a parent-death signal (so a killed harness leaves no stray process). The
harness stops only what it started: the process group it created, by PID.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on host:port now (SO_REUSEADDR, as servers bind)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _die_with_parent(sig: int) -> Callable[[], None]:
    def preexec() -> None:
        _libc.prctl(_PR_SET_PDEATHSIG, sig)
    return preexec


@dataclass
class Proc:
    """A child process (and its process group) started by the harness."""

    name: str
    popen: subprocess.Popen
    log_path: Path | None
    stop_signal: int = signal.SIGTERM
    relaunch: Callable[[], subprocess.Popen] | None = None  # spawn's own arguments, once more

    def restart(self) -> None:
        """Start the same command again (e.g. PostgreSQL after a fault); the Proc follows it."""
        if self.alive():
            raise RuntimeError(f"{self.name} is still running")
        if self.relaunch is None:
            raise RuntimeError(f"{self.name} cannot be restarted")
        self.popen = self.relaunch()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """Signal the whole group we started, wait, then SIGKILL what is left."""
        if self.popen.returncode is not None and not _group_alive(self.pid):
            return
        for sig, wait in ((self.stop_signal, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                self.popen.poll()
                if not _group_alive(self.pid):
                    return
                time.sleep(0.05)
        self.popen.poll()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # e.g. postgres running as its own user: still there
        return True
    return True


def spawn(name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
          cwd: Path | None = None, log_path: Path | None = None, user: str | None = None,
          stop_signal: int = signal.SIGTERM) -> Proc:
    """Start argv in a new session; output goes to log_path (or is discarded)."""
    def launch() -> subprocess.Popen:
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - child owns it
        try:
            return subprocess.Popen(
                list(argv), env=dict(env) if env is not None else None, cwd=cwd, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                user=user, preexec_fn=_die_with_parent(stop_signal))
        except FileNotFoundError as exc:
            raise RuntimeError(f"cannot start {name}: {exc.filename} not found") from None
        finally:
            if log_path:
                out.close()

    return Proc(name=name, popen=launch(), log_path=log_path, stop_signal=stop_signal, relaunch=launch)


def wait_http(url: str, proc: Proc | None = None, timeout: float = 60.0,
              ok: Callable[[httpx.Response], bool] = lambda r: r.status_code == 200) -> None:
    """Poll url until ok(response); fail fast with the log tail if proc dies first."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc is not None and not proc.alive():
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode} before "
                                   f"{url} was ready:\n{proc.log_tail()}")
            try:
                resp = client.get(url)
                if ok(resp):
                    return
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}"
            time.sleep(0.1)
    tail = f"\n{proc.log_tail()}" if proc else ""
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s ({last}){tail}")
