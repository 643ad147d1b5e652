"""Faults, fast form, on every target (`bench faults` measures them under load).

1. PostgreSQL restarted: a restart closes every connection the targets hold. Here the fast form
   terminates them (pg_terminate_backend), which is what each pool sees after a restart:
   connections that look idle but are dead. After it, every request must succeed (0 failed after
   recovery): a pooled connection found dead is replaced and the read run again on a fresh one.
2. PostgreSQL really restarted (its fast shutdown, on a server of the test's own) with requests in
   flight: the server sends 57P01 on every connection, busy or not, then closes them. Only 200s and
   503 database_unavailable meanwhile; no process of the target dies; 200s once it is back.
3. The upstream answers 500 for a while: only 502 upstream_error meanwhile, then 200 again.
4. The upstream hangs: 504 upstream_timeout within the client timeout + 1 s, and no DB connection
   is held meanwhile (the contract releases it before the upstream call).
5. The upstream dribbles its answer past the client timeout: 504 upstream_timeout within the
   timeout + 1 s, and the target stopped reading then (the mock's drip_longest_s).
6. SIGTERM with requests in flight: every one completes, and the server exits cleanly (0, or
   uvicorn's re-raised SIGTERM after a complete shutdown) within its manifest's graceful_s.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest

from bench import infra
from bench.faults import clean_exit
from bench.targets import TargetUnavailable, running
from tests.conftest import ALL_TARGETS, UPSTREAM_TIMEOUT_S
from tests.contract.test_model_behaviour import concurrent_gets
from tests.errors import assert_error

pytestmark = pytest.mark.slow

FAST = "?db_ms=0&llm_ms=0"
# Targets that keep no connection between requests, so a restart finds none of theirs idle to close:
# flask-async-views opens one per request (NullPool), since each request runs on a new event loop
# (flask_app/async_views.py). Every other target must have pooled connections to lose.
NO_IDLE_CONNECTIONS = {"flask-async-views"}
STAGGER_S = 0.05  # one at a time, so uvicorn --workers cannot take a burst into one process
DRIP_NOTICED_S = 0.5  # the mock notices a client gone between two dribbled bytes


def terminate_lab_connections(db) -> int:
    """Every client connection to the lab database but this one, as a restart would."""
    return db.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND backend_type = 'client backend'").fetchone()[0]


def busy_lab_connections(db) -> list[tuple[str, str]]:
    """The targets' connections that are running a query or sitting inside a transaction."""
    return db.execute(
        "SELECT state, left(query, 60) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
        "AND state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')").fetchall()


def staggered(base_url: str, paths: list[str], *, timeout: float = 60) -> list[tuple[float, httpx.Response]]:
    """Each path on its own connection, STAGGER_S apart; (seconds it took, response) each."""
    def one(i: int, path: str) -> tuple[float, httpx.Response]:
        time.sleep(i * STAGGER_S)
        with httpx.Client(base_url=base_url, timeout=timeout) as client:
            started = time.monotonic()
            resp = client.get(path)
            return time.monotonic() - started, resp

    with ThreadPoolExecutor(len(paths)) as pool:
        return list(pool.map(one, range(len(paths)), paths))


def every_slot_serving(base_url: str, slots: int, llm_ms: int = 600, tries: int = 10) -> None:
    """Wait until `slots` staggered requests are served side by side. /readyz answers once one
    worker is up; under load the others may still be booting, and a request queued in the listen
    backlog when SIGTERM comes is refused by design, not lost in flight."""
    for _ in range(tries):
        took = [t for t, r in staggered(base_url, [f"/recommendation/1?db_ms=0&llm_ms={llm_ms}"] * slots)
                if r.status_code == 200]
        if len(took) == slots and max(took) < 1.6 * llm_ms / 1000:
            return
    pytest.fail(f"{base_url}: {slots} requests were never served side by side (last: {took})")


def test_no_request_fails_after_the_databases_connections_are_closed(client, target, db):
    # Every process and every pool slot holds a live connection first (16: all 4 workers' pools).
    concurrent_gets(target.base_url, [f"/recommendation/{i}{FAST}" for i in range(1, 17)])
    assert terminate_lab_connections(db) >= 1 or target.name in NO_IDLE_CONNECTIONS
    after = [client.get(f"/recommendation/{i}{FAST}") for i in range(100, 140)]
    failed = [(r.status_code, r.text[:120]) for r in after if r.status_code != 200]
    assert not failed, f"{target.name}: {len(failed)} of {len(after)} failed after recovery: {failed[:3]}"
    # And under concurrency, where several dead connections are taken at once.
    concurrent_gets(target.base_url, [f"/recommendation/{i}{FAST}" for i in range(200, 216)])
    assert terminate_lab_connections(db) >= 1 or target.name in NO_IDLE_CONNECTIONS
    concurrent_gets(target.base_url, [f"/recommendation/{i}{FAST}" for i in range(300, 316)])


RESTARTS = 3  # node-express died at the first or second restart under this load before its fix
IN_FLIGHT = 16


def process_tree(pid: int) -> set[int]:
    root = psutil.Process(pid)
    return {root.pid, *(child.pid for child in root.children(recursive=True))}


@pytest.mark.parametrize("definition", ALL_TARGETS, ids=lambda t: t.name)
def test_a_postgresql_restart_with_requests_in_flight_kills_no_process(definition, lab, own_pg, tmp_path):
    url, pg = own_pg
    answers: Counter[str] = Counter()
    stop = threading.Event()

    def load(i: int, base_url: str) -> None:
        # db_ms 0-2: some requests sit in pg_sleep, others between statements, when 57P01 comes.
        with httpx.Client(base_url=base_url, timeout=30) as c:
            while not stop.is_set():
                try:
                    resp = c.get(f"/recommendation/{i + 1}?db_ms={i % 3}&llm_ms=0")
                except httpx.TransportError as exc:
                    answers[f"no answer: {type(exc).__name__}"] += 1
                    continue
                if resp.status_code != 200:
                    assert_error(resp, 503, "database_unavailable")
                answers[str(resp.status_code)] += 1

    try:
        with running(definition, dataclasses.replace(lab, database_url=url), tmp_path, db_ms=0,
                     llm_ms=0, upstream_timeout_s=UPSTREAM_TIMEOUT_S) as (resolved, proc):
            every_slot_serving(resolved.base_url, min(4, resolved.capacity or 4), llm_ms=300)
            before = process_tree(proc.pid)
            with ThreadPoolExecutor(IN_FLIGHT) as pool:
                loops = [pool.submit(load, i, resolved.base_url) for i in range(IN_FLIGHT)]
                try:
                    for _ in range(RESTARTS):
                        time.sleep(0.7)
                        pg.stop()  # SIGINT: the fast shutdown
                        pg.restart()
                        infra.wait_pg(url, pg)
                    time.sleep(1.0)
                finally:
                    stop.set()
                for loop in loops:
                    loop.result()
            lost = before - process_tree(proc.pid) if proc.alive() else before
            with httpx.Client(base_url=resolved.base_url, timeout=30) as c:
                deadline = time.monotonic() + 10
                while c.get(f"/recommendation/1{FAST}").status_code != 200:
                    assert time.monotonic() < deadline, f"{definition.name}: no 200 after the restarts"
                    time.sleep(0.2)
                after = [c.get(f"/recommendation/{i}{FAST}").status_code for i in range(400, 420)]
            log = proc.log_path.read_text(errors="replace")
    except TargetUnavailable as why:
        pytest.skip(f"{definition.name} cannot run here: {why}")
    crash = log[log.find("Unhandled"):][:2000] if "Unhandled" in log else log[-2000:]
    assert not lost, f"{definition.name}: processes {lost} died in the restarts ({dict(answers)}):\n{crash}"
    assert not [a for a in answers if a.startswith("no answer")], f"{definition.name}: {dict(answers)}"
    assert answers["200"] and answers["503"], f"{definition.name}: the restarts went unseen: {dict(answers)}"
    assert after == [200] * len(after), f"{definition.name}: after the restarts: {after}"


def test_an_upstream_outage_is_502_while_it_lasts_then_every_request_succeeds(client, target, upstream):
    outage_s = 1.0
    upstream.post("/mock/faults", json={"status": 500, "for_s": outage_s}).raise_for_status()
    ends = time.monotonic() + outage_s
    seen: list[tuple[float, httpx.Response]] = []  # (start, response)
    lock = threading.Lock()

    def loop(worker: int) -> None:
        with httpx.Client(base_url=target.base_url, timeout=30) as c:
            uid = 1 + worker
            while time.monotonic() < ends + 1.0:
                started = time.monotonic()
                resp = c.get(f"/recommendation/{uid}?db_ms=0&llm_ms=20")
                with lock:
                    seen.append((started, resp))

    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(loop, range(4)))
    finally:
        upstream.delete("/mock/faults")
    during = [r for t, r in seen if t < ends - 0.1]
    assert any(r.status_code == 502 for r in during), f"{target.name}: no 502 during the outage"
    for resp in (r for r in during if r.status_code != 200):
        assert_error(resp, 502, "upstream_error")
    after = [r for t, r in seen if t > ends + 0.05]
    assert after and all(r.status_code == 200 for r in after), \
        f"{target.name}: after the outage: {[r.status_code for r in after]}"


def test_a_hanging_upstream_is_504_at_the_timeout_with_no_db_connection_held(client, target, upstream, db):
    concurrent = min(4, target.capacity or 4)
    upstream.post("/mock/faults", json={"mode": "hang", "for_s": 60}).raise_for_status()
    try:
        busy: list = []
        with ThreadPoolExecutor(1) as pool:
            calls = pool.submit(staggered, target.base_url,
                                [f"/recommendation/{i}{FAST}" for i in range(1, concurrent + 1)])
            time.sleep(concurrent * STAGGER_S + 0.4)  # every request is waiting on the upstream now
            for _ in range(3):
                busy += busy_lab_connections(db)
                time.sleep(0.2)
            results = calls.result()
    finally:
        upstream.delete("/mock/faults")
    assert not busy, f"{target.name} held DB connections during the upstream call: {busy}"
    for took, resp in results:
        assert_error(resp, 504, "upstream_timeout")
        assert took < UPSTREAM_TIMEOUT_S + 1.0, f"{target.name}: 504 after {took:.2f} s"
    assert client.get(f"/recommendation/1{FAST}").status_code == 200


def test_a_dribbled_answer_is_504_at_the_timeout_not_read_to_its_end(client, target, upstream):
    # A 200, then the completion a byte at a time for longer than the timeout: UPSTREAM_TIMEOUT_S
    # bounds the whole call, so the target hangs up at the timeout (a per-read timeout never trips).
    upstream.post("/mock/faults", json={"mode": "drip", "for_s": 30, "drip_s": UPSTREAM_TIMEOUT_S + 3}
                  ).raise_for_status()
    try:
        started = time.monotonic()
        resp = client.get(f"/recommendation/3{FAST}")
        took = time.monotonic() - started
        time.sleep(DRIP_NOTICED_S)
        read_s = upstream.get("/mock/stats").json()["drip_longest_s"]
    finally:
        upstream.delete("/mock/faults")
    assert_error(resp, 504, "upstream_timeout")
    assert took < UPSTREAM_TIMEOUT_S + 1.0, f"{target.name}: 504 after {took:.2f} s"
    assert read_s < UPSTREAM_TIMEOUT_S + 1.0, f"{target.name} read the dribble for {read_s:.2f} s"
    assert client.get(f"/recommendation/1{FAST}").status_code == 200


@pytest.mark.parametrize("definition", ALL_TARGETS, ids=lambda t: t.name)
def test_sigterm_lets_every_request_in_flight_finish_then_exits_cleanly(definition, lab, tmp_path):
    try:
        with running(definition, lab, tmp_path, db_ms=0, llm_ms=0,
                     upstream_timeout_s=UPSTREAM_TIMEOUT_S + 10) as (resolved, proc):
            concurrent = min(4, resolved.capacity or 4)
            every_slot_serving(resolved.base_url, concurrent)
            llm_ms = 1500
            with ThreadPoolExecutor(1) as pool:
                calls = pool.submit(staggered, resolved.base_url,
                                    [f"/recommendation/{i}?db_ms=0&llm_ms={llm_ms}"
                                     for i in range(1, concurrent + 1)])
                time.sleep(concurrent * STAGGER_S + 0.5)  # all in flight, none finished
                os.kill(proc.pid, signal.SIGTERM)  # the server's own process, as `docker stop` does
                stopped = time.monotonic()
                results = calls.result()
            code = proc.popen.wait(timeout=(resolved.target.graceful_s or 30) + 5)
            took = time.monotonic() - stopped
    except TargetUnavailable as why:
        pytest.skip(f"{definition.name} cannot run here: {why}")
    assert [r.status_code for _, r in results] == [200] * concurrent, \
        f"{definition.name} lost in-flight requests: {[r.text[:80] for _, r in results]}"
    assert clean_exit(code, proc.log_tail(50)), \
        f"{definition.name} exited {code} after SIGTERM:\n{proc.log_tail()}"
    assert took <= resolved.target.graceful_s + 2, f"{definition.name} took {took:.1f} s to stop"
