"""bench/infra.py: the embedded PostgreSQL takes no connection without the run's password."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest


@pytest.fixture
def own_postgres(lab, monkeypatch):
    if not any(proc.name == "postgres" for proc in lab.procs):
        pytest.skip("DATABASE_URL given: this session's PostgreSQL is not bench/infra.py's")
    # libpq would fall back to these, and a test must not pass on a password found lying around.
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")
    return urlsplit(lab.database_url)


def with_password(url, password: str | None) -> str:
    auth = url.username if password is None else f"{url.username}:{password}"
    return urlunsplit(url._replace(netloc=f"{auth}@{url.hostname}:{url.port}"))


def test_the_database_url_carries_a_password_that_works(own_postgres):
    assert own_postgres.password and len(own_postgres.password) >= 24
    with psycopg.connect(with_password(own_postgres, own_postgres.password)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("password", [None, "", "not-the-password"])
def test_a_connection_without_the_password_is_refused(own_postgres, password):
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(with_password(own_postgres, password), connect_timeout=5)
