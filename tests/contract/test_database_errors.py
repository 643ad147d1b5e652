"""The database failing in ways other than being down (docs/CONTRACT.md, step 2; docs/FAULTS.md).

Every target runs against a PostgreSQL of the test's own (`own_pg`), as a role of its own, through
a TCP proxy of the test's, with DB_TIMEOUT_S = BUDGET_S:

- a statement that runs past the budget (pg_sleep longer than it): the server cancels it, 503
  database_unavailable within the budget;
- a server that accepts connections and never answers (the proxy cuts the connections it carried
  and then only accepts, silent): 503 within the budget, not a request held until the client gives
  up; 200 again once it answers;
- too many connections (SQLSTATE 53300: the role's CONNECTION LIMIT, its connections closed): 503,
  never a 500; 200 again once connections are allowed;
- PostgreSQL stopped mid-statement (SIGSTOP to it and its backends, `bench faults`' pg-hang): no
  statement_timeout runs and the kernel still acknowledges what is sent, so only the target's own
  client-side bound ends a statement: 503 within the budget, the one in flight and those after it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from urllib.parse import urlsplit, urlunsplit

import httpx
import psutil
import psycopg
import pytest

from bench.targets import TargetUnavailable, running
from tests.conftest import ALL_TARGETS, UPSTREAM_TIMEOUT_S
from tests.errors import assert_error

pytestmark = pytest.mark.slow

BUDGET_S = 2  # DB_TIMEOUT_S here: libpq's connect_timeout is whole seconds, and at least 2
MARGIN_S = 1.5  # a request's own work on a loaded 2-core machine, far below a second budget
ROLE = "lab_limited"
FAST = "?db_ms=0&llm_ms=0"
IN_FLIGHT_DB_MS = 1000  # a pg_sleep still running when the server stops


class SilentProxy:
    """127.0.0.1:<port> to PostgreSQL, until `silence()`: then the connections it carried are cut
    and new ones are accepted but never answered, as a hung server does; `resume()` forwards again."""

    def __init__(self, port: int):
        self._target = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._silent = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                self._open.append(client)
                if self._silent:
                    continue
                server = socket.create_connection(("127.0.0.1", self._target))
                self._open.append(server)
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _cut(self, silent: bool) -> None:
        with self._lock:
            self._silent = silent
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open = []

    def silence(self) -> None:
        self._cut(silent=True)

    def resume(self) -> None:
        self._cut(silent=False)

    def close(self) -> None:
        self._listener.close()
        self._cut(silent=False)


@pytest.fixture(scope="module")
def admin(own_pg):
    with psycopg.connect(own_pg[0], autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def proxy(own_pg):
    started = SilentProxy(urlsplit(own_pg[0]).port)
    yield started
    started.close()


@pytest.fixture(scope="module")
def role_url(own_pg, admin, proxy) -> str:
    """The targets' DATABASE_URL: a role of their own (so its CONNECTION LIMIT touches only
    them), through the proxy."""
    password = secrets.token_urlsafe(16)
    admin.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{password}'")
    admin.execute(f"GRANT SELECT ON users, transactions TO {ROLE}")
    url = urlsplit(own_pg[0])
    return urlunsplit(url._replace(netloc=f"{ROLE}:{password}@127.0.0.1:{proxy.port}"))


@pytest.fixture(scope="module", params=ALL_TARGETS, ids=lambda t: t.name)
def served(request, lab, role_url, tmp_path_factory):
    """(the running target, its Proc), with DB_TIMEOUT_S = BUDGET_S."""
    try:
        with running(request.param, dataclasses.replace(lab, database_url=role_url),
                     tmp_path_factory.mktemp(request.param.name), db_ms=0, llm_ms=0,
                     upstream_timeout_s=UPSTREAM_TIMEOUT_S, db_timeout_s=BUDGET_S) as started:
            yield started
    except TargetUnavailable as why:
        pytest.skip(f"{request.param.name} cannot run here: {why}")


def timed_get(base_url: str, path: str) -> tuple[float, httpx.Response]:
    with httpx.Client(base_url=base_url, timeout=60) as client:
        started = time.monotonic()
        resp = client.get(path)
        return time.monotonic() - started, resp


def serves_again(base_url: str, within_s: float = 20) -> None:
    deadline = time.monotonic() + within_s
    while timed_get(base_url, f"/recommendation/1{FAST}")[1].status_code != 200:
        assert time.monotonic() < deadline, f"{base_url}: no 200 {within_s:g} s after the fault ended"
        time.sleep(0.2)


def warm(base_url: str) -> None:
    """Pooled connections to lose: a few requests, each on its own client connection."""
    for i in range(8):
        assert timed_get(base_url, f"/recommendation/{i + 1}{FAST}")[1].status_code == 200


def test_a_statement_past_the_budget_is_503_within_it(served):
    resolved, _ = served
    took, resp = timed_get(resolved.base_url, "/recommendation/1?db_ms=5000&llm_ms=0")
    assert_error(resp, 503, "database_unavailable")
    assert took < BUDGET_S + MARGIN_S, f"{resolved.name}: 503 after {took:.2f} s (budget {BUDGET_S} s)"
    serves_again(resolved.base_url)


def test_a_database_that_never_answers_is_503_within_the_budget(served, proxy):
    resolved, _ = served
    warm(resolved.base_url)
    proxy.silence()
    try:
        answers = [timed_get(resolved.base_url, f"/recommendation/{i}{FAST}") for i in (1, 2, 3)]
    finally:
        proxy.resume()
    for took, resp in answers:
        assert_error(resp, 503, "database_unavailable")
        assert took < BUDGET_S + MARGIN_S, f"{resolved.name}: 503 after {took:.2f} s (budget {BUDGET_S} s)"
    serves_again(resolved.base_url)


def test_too_many_connections_is_503_not_500(served, admin):
    resolved, proc = served
    warm(resolved.base_url)
    admin.execute(f"ALTER ROLE {ROLE} CONNECTION LIMIT 0")
    try:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (ROLE,))
        answers = [timed_get(resolved.base_url, f"/recommendation/{i}{FAST}") for i in (1, 2, 3)]
    finally:
        admin.execute(f"ALTER ROLE {ROLE} CONNECTION LIMIT -1")
    for took, resp in answers:
        assert_error(resp, 503, "database_unavailable")
        assert took < BUDGET_S + MARGIN_S, f"{resolved.name}: 503 after {took:.2f} s"
    # The body says nothing of it (docs/CONTRACT.md); the server's log does.
    assert "too many connections" in proc.log_path.read_text(errors="replace"), \
        f"{resolved.name} did not log why the database was unavailable"
    serves_again(resolved.base_url)


def signal_postgres(pid: int, sig: int) -> None:
    """The postmaster first, then its children (as bench faults' pg-hang), CONT in reverse order."""
    root = psutil.Process(pid)
    tree = [root, *root.children(recursive=True)]
    for proc in tree if sig == signal.SIGSTOP else reversed(tree):
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def test_a_database_stopped_mid_statement_is_503_within_the_budget(served, own_pg):
    resolved, _ = served
    warm(resolved.base_url)
    concurrent = min(4, resolved.capacity or 4)
    sleeping = f"/recommendation/1?db_ms={IN_FLIGHT_DB_MS}&llm_ms=0"
    paths = [f"/recommendation/{i}{FAST}" for i in range(2, concurrent + 1)]
    with ThreadPoolExecutor(concurrent) as pool:
        calls = [pool.submit(timed_get, resolved.base_url, sleeping)]
        time.sleep(0.3)  # its pg_sleep is running
        signal_postgres(own_pg[1].pid, signal.SIGSTOP)
        try:
            calls += [pool.submit(timed_get, resolved.base_url, path) for path in paths]
            wait(calls, timeout=BUDGET_S + MARGIN_S + 0.5)  # stopped for longer than any answer may take
        finally:
            signal_postgres(own_pg[1].pid, signal.SIGCONT)
        answers = [call.result() for call in calls]
    for took, resp in answers:
        assert took < BUDGET_S + MARGIN_S, \
            f"{resolved.name}: {resp.status_code} after {took:.2f} s (budget {BUDGET_S} s)"
        assert_error(resp, 503, "database_unavailable")
    serves_again(resolved.base_url)
