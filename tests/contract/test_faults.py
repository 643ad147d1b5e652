"""Faults, fast form, on every target: what a PostgreSQL restart does to the pools.

A restart closes every connection the targets hold. Natively the fast form terminates them
(pg_terminate_backend), which is what each pool sees after a restart: connections that look idle
but are dead. After it, the targets must serve every request (0 failed after recovery): a pooled
connection found dead is replaced and the query run again on a fresh one, never a 503 for the
user who happened to get it.
"""

from __future__ import annotations

import pytest

from tests.contract.test_model_behaviour import concurrent_gets

pytestmark = pytest.mark.slow

FAST = "?db_ms=0&llm_ms=0"


def terminate_lab_connections(db) -> int:
    """Every client connection to the lab database but this one, as a restart would."""
    return db.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND backend_type = 'client backend'").fetchone()[0]


def test_no_request_fails_after_the_databases_connections_are_closed(client, target, db):
    # Every process and every pool slot holds a live connection first (16: all 4 workers' pools).
    concurrent_gets(target.base_url, [f"/recommendation/{i}{FAST}" for i in range(1, 17)])
    assert terminate_lab_connections(db) >= 1
    after = [client.get(f"/recommendation/{i}{FAST}") for i in range(100, 140)]
    failed = [(r.status_code, r.text[:120]) for r in after if r.status_code != 200]
    assert not failed, f"{target.name}: {len(failed)} of {len(after)} failed after recovery: {failed[:3]}"
    # And under concurrency, where several dead connections are taken at once.
    concurrent_gets(target.base_url, [f"/recommendation/{i}{FAST}" for i in range(200, 216)])
    assert terminate_lab_connections(db) >= 1
    concurrent_gets(target.base_url, [f"/recommendation/{i}{FAST}" for i in range(300, 316)])
