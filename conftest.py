"""Fixtures for every test folder (tests/, upstream/tests, flask_app/tests, ...)."""

from __future__ import annotations

import pytest

from bench import infra


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """The lab's PostgreSQL (seeded from db/init.sql), mock upstream and Redis, once per session.

    DATABASE_URL / UPSTREAM_URL / REDIS_URL in the environment are used instead (bench/infra.py).
    """
    with infra.start(tmp_path_factory.mktemp("infra")) as started:
        yield started
